"""The DDPM "simple" denoising loss, and what every loss term shares."""

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ctdm.diffusion.channel import noise_data
from ctdm.diffusion.schedules import DDPMSchedule

EpsFn = Callable[[Tensor, Tensor], Tensor]


class LossTerm:
    """A loss term with a non-negative `weight`; subclasses implement `__call__(eps_fn, x, generator)`."""

    name = "term"

    def __init__(self, weight: float = 1.0):
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ValueError(f"loss.{self.name}.weight must be a finite number >= 0, got {weight!r}.")
        self.weight = float(weight)

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError


class MSELoss(LossTerm):
    """E_{t, eps} mean_i (eps - eps_hat(z_{a_t}, a_t))_i^2 with t uniform over the schedule's steps.

    Returns the batch mean and, in `logs`, the same value under the term's name.
    """

    name = "mse"

    def __init__(self, weight: float = 1.0, schedule: DDPMSchedule | None = None):
        super().__init__(weight)
        self.schedule = schedule if schedule is not None else DDPMSchedule()

    def per_sample(self, eps_fn: EpsFn, x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
        """Squared error averaged over dimensions, [N], for given levels and noise."""
        eps_hat = eps_fn(noise_data(x, logsnr, eps), logsnr)
        return (eps - eps_hat).pow(2).flatten(1).mean(1)

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None):
        logsnr = self.schedule.sample_logsnr(len(x), generator, device=x.device)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        loss = self.per_sample(eps_fn, x, logsnr, eps).mean()
        return loss, {self.name: loss.detach()}


def check_weights(terms: Mapping[str, LossTerm]) -> None:
    """The objective needs at least one term with a positive weight."""
    if not terms:
        raise ValueError("loss has no terms; pick one with loss=mse (options live in conf/loss/).")
    if all(term.weight == 0 for term in terms.values()):
        weights = ", ".join(f"loss.{k}.weight=0" for k in terms)
        raise ValueError(f"All loss weights are zero ({weights}); at least one must be positive.")
