"""The importance-weighted likelihood (ITD) loss: the ITD estimate of -log p(x) as an objective."""

import torch

from ctdm.diffusion.likelihood import nll
from ctdm.losses.base import EpsFn, LossTerm


class ITDLoss(LossTerm):
    """mean_x of the `points`-point ITD estimate of -log p(x) (nats per sample).

    Its gradient is that of 1/2 w(a) |eps - eps_hat(z_a, a)|^2 with log-SNR a from the reference's
    truncated logistic and importance weights w: a denoising loss weighted to be a likelihood bound.
    """

    name = "itd"

    def __init__(
        self, weight: float = 1.0, points: int = 1, max_batch: int | None = None, every_n_steps: int = 1
    ):
        super().__init__(weight, every_n_steps)
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise ValueError(f"loss.itd.points must be an integer >= 1, got {points!r}.")
        self.points, self.max_batch = points, max_batch

    def __call__(self, eps_fn: EpsFn, x, generator: torch.Generator | None = None, reference=None):
        if reference is None:
            raise ValueError(
                "loss.itd needs the likelihood reference (data variances); the module passes it."
            )
        value = nll(
            eps_fn,
            x,
            n_points=self.points,
            **reference.options(),
            generator=generator,
            max_batch=self.max_batch,
        ).mean()
        return value, {self.name: value.detach()}
