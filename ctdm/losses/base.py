"""What every loss term shares: a non-negative weight and how often it runs."""

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

EpsFn = Callable[[Tensor, Tensor], Tensor]


def check_number(key: str, value, *, positive: bool = False, non_negative: bool = False) -> float:
    """A finite number (optionally > 0 or >= 0), or a ValueError naming the config key."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and non_negative:
        ok = value >= 0
    if not ok:
        need = "> 0" if positive else ">= 0" if non_negative else "finite"
        raise ValueError(f"{key} must be a finite number {need}, got {value!r}.")
    return float(value)


class LossTerm:
    """A loss term: `term(eps_fn, x, generator, reference) -> (loss, logs)`; the module sums weight * loss.

    every_n_steps: the term joins the training objective on steps divisible by it (not rescaled).
    """

    name = "term"

    def __init__(self, weight: float = 1.0, every_n_steps: int = 1):
        self.weight = check_number(f"loss.{self.name}.weight", weight, non_negative=True)
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(
                f"loss.{self.name}.every_n_steps must be an integer >= 1, got {every_n_steps!r}."
            )
        self.every_n_steps = every_n_steps

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None, reference=None):
        raise NotImplementedError


def check_weights(terms: Mapping[str, LossTerm]) -> None:
    """The objective needs at least one term with a positive weight."""
    if not terms:
        raise ValueError("loss has no terms; pick one with loss=mse (options live in conf/loss/).")
    if all(term.weight == 0 for term in terms.values()):
        weights = ", ".join(f"loss.{k}.weight=0" for k in terms)
        raise ValueError(f"All loss weights are zero ({weights}); at least one must be positive.")
