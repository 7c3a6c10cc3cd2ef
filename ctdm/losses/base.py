"""What every loss term shares: a non-negative weight and how often it runs."""

from collections.abc import Mapping

import torch
from torch import Tensor

from ctdm.diffusion.checks import check_int, check_number
from ctdm.diffusion.likelihood import EpsFn


class LossTerm:
    """A loss term: `term(eps_fn, x, generator, reference) -> (loss, logs)`; the module sums weight * loss.

    every_n_steps: the term joins the training objective on steps divisible by it (not rescaled).
    """

    name = "term"

    def __init__(self, weight: float = 1.0, every_n_steps: int = 1):
        self.weight = check_number("weight", weight, non_negative=True)
        self.every_n_steps = check_int("every_n_steps", every_n_steps)

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None, reference=None):
        raise NotImplementedError

    def network_rows(self, batch: int) -> int:
        """Network rows one call sends through the graph for `batch` items (ctdm.losses.memory)."""
        return batch


def check_weights(terms: Mapping[str, LossTerm]) -> None:
    """The objective needs at least one term with a positive weight (each weight is checked by its term)."""
    if not terms:
        raise ValueError("terms is empty: the objective needs at least one loss term.")
    if all(term.weight == 0 for term in terms.values()):
        raise ValueError(
            f"All loss weights are zero ({', '.join(f'{k}: 0' for k in terms)}); at least one must be > 0."
        )
