"""The DDPM "simple" denoising loss."""

import torch
from torch import Tensor

from ctdm.diffusion.channel import noise_data
from ctdm.diffusion.schedules import DDPMSchedule
from ctdm.losses.base import EpsFn, LossTerm


class DenoisingMSE(LossTerm):
    """E_{t, eps} mean_i (eps - eps_hat(z_{a_t}, a_t))_i^2 with a_t drawn by `schedule` (DDPM: t uniform).

    reduction: how each sample's squared errors combine over dimensions: "mean" (DDPM's
    F.mse_loss) or "sum" (the authors' DDPM baseline, d times larger).
    """

    name = "mse"

    def __init__(self, weight: float = 1.0, schedule=None, every_n_steps: int = 1, reduction: str = "mean"):
        super().__init__(weight, every_n_steps)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' (over dimensions), got {reduction!r}.")
        self.schedule = schedule if schedule is not None else DDPMSchedule()
        self.reduction = reduction

    def per_sample(self, eps_fn: EpsFn, x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
        """Squared error over dimensions (mean or sum, `reduction`), [N], for given levels and noise."""
        eps_hat = eps_fn(noise_data(x, logsnr, eps), logsnr)
        error = (eps - eps_hat).pow(2).flatten(1)
        return error.mean(1) if self.reduction == "mean" else error.sum(1)

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None, reference=None):
        logsnr = self.schedule.sample_logsnr(len(x), generator, device=x.device)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        loss = self.per_sample(eps_fn, x, logsnr, eps).mean()
        return loss, {self.name: loss.detach()}
