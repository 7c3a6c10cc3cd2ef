"""EDM's weighted x-space loss (Karras et al. 2022), written through the noise predictor."""

import torch

from ctdm.diffusion.channel import noise_data
from ctdm.diffusion.checks import check_number
from ctdm.diffusion.schedules import EDMLogNormal
from ctdm.losses.base import EpsFn, LossTerm


class EDMLoss(LossTerm):
    """lambda(sigma) |D(x + sigma n; sigma) - x|^2 with ln sigma ~ N(p_mean, p_std^2) and
    lambda = (sigma^2 + sd^2) / (sigma sd)^2, averaged over dimensions. sigma is EDM's noise level
    exp(-a/2) and sd = sigma_data the data's standard deviation, as in NVlabs/edm's EDMLoss.

    With D = x_edm - sigma eps_hat the error D - x is sigma (n - eps_hat), so the loss is
    (sigma^2 + sd^2) / sd^2 * mean_i (eps - eps_hat)_i^2 at log-SNR a = -2 ln sigma: the same value
    EDM computes, whatever the network's parameterisation.
    """

    name = "edm"

    def __init__(
        self,
        weight: float = 1.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_data: float = 0.5,
        every_n_steps=1,
    ):
        super().__init__(weight, every_n_steps)
        self.distribution = EDMLogNormal(p_mean, p_std)
        self.sigma_data = check_number("sigma_data", sigma_data, positive=True)

    def __call__(self, eps_fn: EpsFn, x, generator: torch.Generator | None = None, reference=None):
        logsnr = self.distribution.sample_logsnr(len(x), generator, device=x.device)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        error = (eps - eps_fn(noise_data(x, logsnr, eps), logsnr)).pow(2).flatten(1).mean(1)
        sigma2 = torch.exp(-logsnr)
        loss = ((sigma2 + self.sigma_data**2) / self.sigma_data**2 * error).mean()
        return loss, {self.name: loss.detach()}
