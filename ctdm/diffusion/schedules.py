"""Discrete DDPM schedules expressed as log-SNR levels.

Networks are conditioned on continuous log-SNR, so a schedule is only a grid of levels plus the
distribution the training loss draws them from.
"""

import math

import torch
from torch import Tensor

from ctdm.diffusion.checks import check_int, check_number


class DDPMSchedule:
    """DDPM's T-step schedule (Ho et al. 2020): linear betas, or the cosine schedule (Nichol & Dhariwal).

    `logsnr[t-1]` is log(alpha_bar_t / (1 - alpha_bar_t)) for t = 1..T, decreasing in t (float64).
    """

    def __init__(
        self,
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        kind: str = "linear",
    ):
        check_int("num_steps", num_steps)
        if kind == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(
                    f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, got "
                    f"beta_start={beta_start!r}, beta_end={beta_end!r}."
                )
            betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
            log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)
        elif kind == "cosine":
            s = 0.008
            t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
            log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)
        else:
            raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}.")
        self.num_steps = num_steps
        self.kind = kind
        # log(ab / (1 - ab)) computed from log(ab) without cancellation near ab = 1.
        self.logsnr = log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))

    def sample_logsnr(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """Levels of n timesteps drawn uniformly from 1..T, as float32 [n] on `device`."""
        t = torch.randint(0, self.num_steps, (n,), generator=generator, device=device)
        return self.logsnr.to(device=device, dtype=torch.float32)[t]

    def __repr__(self) -> str:
        return f"DDPMSchedule(num_steps={self.num_steps}, kind={self.kind!r})"


def logsnr_to_sigma(logsnr: Tensor) -> Tensor:
    """EDM's noise level of the variance-exploding view x_edm = z / sqrt(s(a)): sigma = exp(-a/2)."""
    return torch.exp(-0.5 * logsnr)


def sigma_to_logsnr(sigma: Tensor) -> Tensor:
    return -2 * torch.log(sigma)


def ddpm_timestep(schedule: DDPMSchedule, logsnr: Tensor) -> Tensor:
    """The continuous DDPM timestep t in [1, T] of a log-SNR, interpolating the (decreasing) grid."""
    grid = schedule.logsnr.flip(0)  # increasing, grid[j] belongs to t = T - j
    a = logsnr.double().clamp(float(grid[0]), float(grid[-1]))
    j = torch.searchsorted(grid, a).clamp(1, len(grid) - 1)
    frac = (a - grid[j - 1]) / (grid[j] - grid[j - 1])
    return (schedule.num_steps - (j - 1) - frac).to(logsnr.dtype)


class EDMLogNormal:
    """EDM's training distribution: ln sigma ~ N(p_mean, p_std^2), i.e. a = -2 ln sigma."""

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2):
        self.p_mean = check_number("p_mean", p_mean)
        self.p_std = check_number("p_std", p_std, positive=True)

    def sample_logsnr(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        log_sigma = self.p_mean + self.p_std * torch.randn(n, generator=generator, device=device)
        return -2 * log_sigma


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """Karras et al.'s grid sigma_0 = sigma_max > ... > sigma_{steps-1} = sigma_min, then sigma_steps = 0
    (float64 [steps + 1]), with sigma_i = (smax^(1/rho) + i/(steps-1) (smin^(1/rho) - smax^(1/rho)))^rho.
    One step goes from sigma_max straight to 0."""
    check_int("steps", steps)
    sigma_min = check_number("sigma_min", sigma_min, positive=True)
    sigma_max = check_number("sigma_max", sigma_max, positive=True)
    rho = check_number("rho", rho, positive=True)
    if not sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min must be < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}."
        )
    frac = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
    sigmas = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def karras_logsnr(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """The Karras grid's `steps` levels as log-SNR (float64, noisiest first; the final sigma = 0 left out)."""
    return sigma_to_logsnr(karras_sigmas(steps, sigma_min, sigma_max, rho)[:-1])
