"""DDPM ancestral sampling and DDIM over a (possibly strided) subset of the training schedule.

Both work on the variance-preserving z: a step from level a_t to the less noisy a_s is
x_next = c_z x + c_eps eps_hat(x, a_t) + sigma n, written as x + drift(x, k) + noise_k with
drift = (c_z - 1) x + c_eps eps_hat and noise_k = sigma_k n, the form the parallel solver uses.
"""

import torch
from torch import Tensor

from ctdm.diffusion.schedules import DDPMSchedule
from ctdm.samplers.base import SamplerStats, StepSampler, call_eps, check_float, check_int

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "SamplerStats",
    "ddim_coefficients",
    "ddpm_coefficients",
    "ddpm_levels",
]


def ddpm_levels(schedule: DDPMSchedule, steps: int) -> Tensor:
    """Log-SNR of `steps` evenly strided timesteps T..1 of the schedule, noisiest first (float64 [steps])."""
    if not isinstance(schedule, DDPMSchedule):
        raise ValueError(
            f"sampler.schedule must be a discrete DDPMSchedule (ddpm / ddim step between its timesteps; "
            f"for a continuous noise distribution use sampler=heun or euler), got {schedule!r}."
        )
    check_int("sampler.steps", steps, 1, schedule.num_steps)
    timesteps = torch.linspace(schedule.num_steps, 1, steps, dtype=torch.float64).round().long()
    return schedule.logsnr[timesteps - 1]


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


def ddim_coefficients(logsnr_t: Tensor, logsnr_s: Tensor, eta: float = 0.0):
    """(c_z, c_eps, sigma) of the DDIM step a_t -> a_s (Song et al. 2021, eq. 12), float64.

    x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma n with
    sigma = eta sqrt((1-ab_s)/(1-ab_t)) sqrt(1 - ab_t/ab_s); eta = 1 is DDPM's posterior step.
    """
    ab_t, ab_s = torch.sigmoid(logsnr_t), torch.sigmoid(logsnr_s)
    one_minus_ab_t, one_minus_ab_s = torch.sigmoid(-logsnr_t), torch.sigmoid(-logsnr_s)
    var = eta**2 * one_minus_ab_s / one_minus_ab_t * (1 - ab_t / ab_s)
    var = torch.where(torch.isinf(logsnr_s), torch.zeros_like(var), var)
    c_z = (ab_s / ab_t).sqrt()
    c_eps = (one_minus_ab_s - var).clamp(min=0).sqrt() - c_z * one_minus_ab_t.sqrt()
    return c_z, c_eps, var.sqrt()


class _VPSampler(StepSampler):
    """A sampler of the variance-preserving z with linear steps c_z x + c_eps eps_hat + sigma n."""

    def _setup(self, steps: int, schedule: DDPMSchedule | None, name: str) -> Tensor:
        self.schedule = schedule if schedule is not None else DDPMSchedule()
        self.logsnr = ddpm_levels(self.schedule, steps)  # noisiest first, [steps]
        self.steps, self.name = steps, name
        targets = torch.cat([self.logsnr[1:], torch.tensor([torch.inf], dtype=torch.float64)])
        # Error scale for the parallel solver: DDPM's posterior variance of each transition.
        _, _, posterior_sigma = ddpm_coefficients(self.logsnr, targets, "posterior")
        self.error_scale = self.variance_scale(posterior_sigma**2)
        self.nfe_per_step = torch.ones(steps, dtype=torch.long)
        return targets

    def prior(self, n0: Tensor) -> Tensor:
        return n0

    def drift(self, eps_fn, x: Tensor, k, n: Tensor) -> Tensor:
        eps_hat = call_eps(eps_fn, x, self.levels(self.logsnr, k, x), self.name)
        return self.coefficient(self._c_z_minus_1, k, x) * x + self.coefficient(self.c_eps, k, x) * eps_hat

    def noise(self, n: Tensor, k) -> Tensor:
        return self.coefficient(self.sigma, k, n) * n


class DDPMSampler(_VPSampler):
    """Ancestral sampling with `steps` evenly strided timesteps of the training schedule.

    variance: "posterior" (beta-tilde, DDPM's lower bound) or "beta" (the upper one).
    """

    def __init__(
        self,
        steps: int = 1000,
        schedule: DDPMSchedule | None = None,
        variance: str = "posterior",
        name: str = "ddpm",
    ):
        targets = self._setup(steps, schedule, name)
        self.variance = variance
        self.c_z, self.c_eps, self.sigma = ddpm_coefficients(self.logsnr, targets, variance)
        self._c_z_minus_1 = self.c_z - 1


class DDIMSampler(_VPSampler):
    """DDIM with `steps` evenly strided timesteps and stochasticity `eta` in [0, 1] (0: the ODE)."""

    def __init__(
        self,
        steps: int = 100,
        schedule: DDPMSchedule | None = None,
        eta: float = 0.0,
        name: str = "ddim",
    ):
        targets = self._setup(steps, schedule, name)
        self.eta = check_float("sampler.eta", eta, 0.0, strict=False, high=1.0)
        self.c_z, self.c_eps, self.sigma = ddim_coefficients(self.logsnr, targets, self.eta)
        self._c_z_minus_1 = self.c_z - 1
