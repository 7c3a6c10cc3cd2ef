"""DDPM ancestral sampling over a (possibly strided) subset of the training schedule.

Each step is x_next = c_z x + c_eps eps_hat(x, a_i) + sigma_i n_i, i.e. x + drift(x, i) + noise_i,
the form the parallel (Picard) solver also uses.
"""

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ctdm.diffusion.schedules import DDPMSchedule
from ctdm.samplers.noise import per_sample_normal


@dataclass
class SamplerStats:
    """nfe: network evaluations per sample; passes: sequential depth; seconds: wall time."""

    nfe: int
    passes: int
    seconds: float


def ddpm_coefficients(logsnr_t: Tensor, logsnr_s: Tensor, variance: str = "posterior"):
    """(c_z, c_eps, sigma) of the DDPM transition from level a_t to the less noisy a_s (float64).

    Posterior q(x_s | x_t, x0) with x0 = (z - sqrt(1-ab_t) eps_hat)/sqrt(ab_t): mean
    A x0 + B z with A = sqrt(ab_s) beta/(1-ab_t), B = sqrt(1-beta)(1-ab_s)/(1-ab_t), beta = 1 - ab_t/ab_s.
    a_s = +inf is the clean endpoint. `variance` is "posterior" (beta-tilde) or "beta".
    """
    ab_t, ab_s = torch.sigmoid(logsnr_t), torch.sigmoid(logsnr_s)
    one_minus_ab_t, one_minus_ab_s = torch.sigmoid(-logsnr_t), torch.sigmoid(-logsnr_s)
    alpha = ab_t / ab_s
    beta = 1 - alpha
    a_coef = ab_s.sqrt() * beta / one_minus_ab_t
    b_coef = alpha.sqrt() * one_minus_ab_s / one_minus_ab_t
    c_z = a_coef / ab_t.sqrt() + b_coef
    c_eps = -a_coef * one_minus_ab_t.sqrt() / ab_t.sqrt()
    if variance == "posterior":
        var = one_minus_ab_s / one_minus_ab_t * beta
    elif variance == "beta":
        var = beta
    else:
        raise ValueError(f"sampler.variance must be 'posterior' or 'beta', got {variance!r}.")
    var = torch.where(torch.isinf(logsnr_s), torch.zeros_like(var), var)  # no noise on the last step
    return c_z, c_eps, var.sqrt()


class DDPMSampler:
    """Ancestral sampling with `steps` evenly strided timesteps of the training schedule."""

    def __init__(
        self,
        steps: int = 1000,
        schedule: DDPMSchedule | None = None,
        variance: str = "posterior",
        name: str = "ddpm",
    ):
        self.schedule = schedule if schedule is not None else DDPMSchedule()
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.schedule.num_steps:
            raise ValueError(
                f"sampler.steps must be an integer from 1 to the schedule's {self.schedule.num_steps} steps, "
                f"got {steps!r}."
            )
        self.steps, self.name = steps, name
        timesteps = torch.linspace(self.schedule.num_steps, 1, steps, dtype=torch.float64).round().long()
        self.logsnr = self.schedule.logsnr[timesteps - 1]  # noisiest first, [steps]
        targets = torch.cat([self.logsnr[1:], torch.tensor([torch.inf], dtype=torch.float64)])
        self.c_z, self.c_eps, self.sigma = ddpm_coefficients(self.logsnr, targets, variance)

    def __call__(
        self, eps_fn, shape: tuple[int, ...], seeds: Tensor, device=None
    ) -> tuple[Tensor, SamplerStats]:
        """Samples [len(seeds), *shape]; sample i uses only the generator seeded with seeds[i]."""
        start = time.perf_counter()
        noise = per_sample_normal(seeds, (self.steps + 1, *shape), device=device)  # [N, steps+1, *shape]
        x = noise[:, 0]
        levels = self.logsnr.float().to(device)
        for i in range(self.steps):
            eps_hat = eps_fn(x, levels[i].expand(len(x)))
            x = (
                float(self.c_z[i]) * x
                + float(self.c_eps[i]) * eps_hat
                + float(self.sigma[i]) * noise[:, i + 1]
            )
        return x, SamplerStats(nfe=self.steps, passes=self.steps, seconds=time.perf_counter() - start)
