"""The importance-weighted likelihood (ITD) loss: the ITD estimate of -log p(x) as an objective."""

import torch

from ctdm.diffusion.checks import check_int, check_number
from ctdm.diffusion.likelihood import Draws, check_draws, nll
from ctdm.losses.base import EpsFn, LossTerm
from ctdm.losses.memory import AUTO, AutoChunk, check_max_batch


class ITDLoss(LossTerm):
    """mean_x of the `points`-point ITD estimate of -log p(x) (nats per sample).

    Its gradient is that of 1/2 w(a) |eps - eps_hat(z_a, a)|^2 with log-SNR a from the reference's
    truncated logistic and importance weights w: a denoising loss weighted to be a likelihood bound.
    draws: how the points are drawn (`Draws(stratified=True)`: the batch's levels spread evenly over
    the importance distribution, VDM's low-discrepancy sampler). max_batch: rows per network call, each
    call activation-checkpointed so that memory follows it (an integer; "auto": all rows in one call when
    they fit `memory_budget` bytes, else as many as fit; None: one call); memory_budget: None is the
    samplers' default (half the free GPU memory, a quarter of the RAM; ctdm.losses.memory).
    """

    name = "itd"

    def __init__(
        self,
        weight: float = 1.0,
        points: int = 1,
        max_batch: int | str | None = AUTO,
        every_n_steps: int = 1,
        draws: Draws | None = None,
        memory_budget: float | None = None,
    ):
        super().__init__(weight, every_n_steps)
        self.points = check_int("points", points)
        self.draws = check_draws(Draws() if draws is None else draws, self.points, shared_ratio=False)
        self.max_batch = check_max_batch(max_batch)
        self.memory_budget = (
            None if memory_budget is None else check_number("memory_budget", memory_budget, positive=True)
        )
        self.auto_chunk = AutoChunk(self.memory_budget)

    def __call__(self, eps_fn: EpsFn, x, generator: torch.Generator | None = None, reference=None):
        if reference is None:
            raise ValueError(
                "reference is None: the ITD loss needs the likelihood Reference "
                "(DiffusionModule passes its own)."
            )
        value = nll(
            eps_fn,
            x,
            reference,
            n_points=self.points,
            generator=generator,
            max_batch=self.auto_chunk(self.network_rows(len(x)))
            if self.max_batch == AUTO
            else self.max_batch,
            draws=self.draws,
        ).mean()
        return value, {self.name: value.detach()}

    def network_rows(self, batch: int) -> int:
        return batch * self.points
