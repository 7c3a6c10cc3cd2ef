"""The importance-weighted likelihood (ITD) loss: the ITD estimate of -log p(x) as an objective."""

import torch

from ctdm.diffusion.checks import check_int
from ctdm.diffusion.likelihood import Draws, check_draws, nll
from ctdm.losses.base import EpsFn, LossTerm


class ITDLoss(LossTerm):
    """mean_x of the `points`-point ITD estimate of -log p(x) (nats per sample).

    Its gradient is that of 1/2 w(a) |eps - eps_hat(z_a, a)|^2 with log-SNR a from the reference's
    truncated logistic and importance weights w: a denoising loss weighted to be a likelihood bound.
    draws: how the points are drawn (`Draws(stratified=True)`: the batch's levels spread evenly over
    the importance distribution, VDM's low-discrepancy sampler).
    """

    name = "itd"

    def __init__(
        self,
        weight: float = 1.0,
        points: int = 1,
        max_batch: int | None = None,
        every_n_steps: int = 1,
        draws: Draws | None = None,
    ):
        super().__init__(weight, every_n_steps)
        self.points = check_int("points", points)
        self.draws = check_draws(Draws() if draws is None else draws, self.points, shared_ratio=False)
        self.max_batch = None if max_batch is None else check_int("max_batch", max_batch)

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
            max_batch=self.max_batch,
            draws=self.draws,
        ).mean()
        return value, {self.name: value.detach()}
