"""The DDPM "simple" denoising loss."""

import torch
from torch import Tensor

from ctdm.diffusion.channel import noise_data
from ctdm.diffusion.schedules import DDPMSchedule
from ctdm.losses.base import EpsFn, LossTerm


class DenoisingMSE(LossTerm):
    """E_{t, eps} mean_i (eps - eps_hat(z_{a_t}, a_t))_i^2 with a_t drawn by `schedule` (DDPM: t uniform)."""

    name = "mse"

    def __init__(self, weight: float = 1.0, schedule=None, every_n_steps: int = 1):
        super().__init__(weight, every_n_steps)
        self.schedule = schedule if schedule is not None else DDPMSchedule()

    def per_sample(self, eps_fn: EpsFn, x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
        """Squared error averaged over dimensions, [N], for given levels and noise."""
        eps_hat = eps_fn(noise_data(x, logsnr, eps), logsnr)
        return (eps - eps_hat).pow(2).flatten(1).mean(1)

    def __call__(self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator | None = None, reference=None):
        logsnr = self.schedule.sample_logsnr(len(x), generator, device=x.device)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        loss = self.per_sample(eps_fn, x, logsnr, eps).mean()
        return loss, {self.name: loss.detach()}
