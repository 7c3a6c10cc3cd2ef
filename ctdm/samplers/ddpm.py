"""DDPM ancestral sampling and DDIM over a (possibly strided) subset of the training schedule.

Both work on the variance-preserving z: a step from level a_t to the less noisy a_s is
x_next = c_z x + c_eps eps_hat(x, a_t) + noise_std n, written as x + drift(x, k) + noise_k with
drift = (c_z - 1) x + c_eps eps_hat and noise_k = noise_std_k n, the form the parallel solver uses.
`noise_std` is the std of the step's fresh Gaussian noise (DDPM's sigma_t); it is not EDM's sigma,
which in ctdm.samplers always means the noise level exp(-a/2).
"""

import torch
from torch import Tensor

from ctdm.diffusion.checks import check_int, check_number
from ctdm.diffusion.schedules import DDPMSchedule
from ctdm.samplers.base import StepSampler, call_eps, levels, nonzero_variances, per_row

__all__ = ["DDIMSampler", "DDPMSampler", "ddim_coefficients", "ddpm_coefficients", "ddpm_levels"]


def ddpm_levels(schedule: DDPMSchedule, steps: int) -> Tensor:
    """Log-SNR of `steps` evenly strided timesteps T..1 of the schedule, noisiest first (float64 [steps])."""
    if not isinstance(schedule, DDPMSchedule):
        raise ValueError(
            f"schedule must be a discrete DDPMSchedule (ddpm / ddim step between its timesteps; for a "
            f"continuous noise distribution use the heun or euler sampler), got {schedule!r}."
        )
    if check_int("steps", steps) > schedule.num_steps:
        raise ValueError(
            f"steps must be at most the schedule's {schedule.num_steps} timesteps, got {steps!r}."
        )
    timesteps = torch.linspace(schedule.num_steps, 1, steps, dtype=torch.float64).round().long()
    return schedule.logsnr[timesteps - 1]


def ddpm_coefficients(logsnr_t: Tensor, logsnr_s: Tensor, variance: str = "posterior"):
    """(c_z, c_eps, noise_std) of the DDPM transition from level a_t to the less noisy a_s (float64).

    Posterior q(x_s | x_t, x0) with x0 = (z - sqrt(1-ab_t) eps_hat)/sqrt(ab_t): mean
    A x0 + B z with A = sqrt(ab_s) beta/(1-ab_t), B = sqrt(1-beta)(1-ab_s)/(1-ab_t), beta = 1 - ab_t/ab_s.
    a_s = +inf is the clean endpoint. `variance` is "posterior" (beta-tilde) or "beta"; noise_std is
    its square root.
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
        raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}.")
    var = torch.where(torch.isinf(logsnr_s), torch.zeros_like(var), var)  # no noise on the last step
    return c_z, c_eps, var.sqrt()


def ddim_coefficients(logsnr_t: Tensor, logsnr_s: Tensor, eta: float = 0.0):
    """(c_z, c_eps, noise_std) of the DDIM step a_t -> a_s (Song et al. 2021, eq. 12), float64.

    x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - noise_std^2) eps_hat + noise_std n with
    noise_std = eta sqrt((1-ab_s)/(1-ab_t)) sqrt(1 - ab_t/ab_s) (the paper's sigma); eta = 1 is DDPM's
    posterior step.
    """
    ab_t, ab_s = torch.sigmoid(logsnr_t), torch.sigmoid(logsnr_s)
    one_minus_ab_t, one_minus_ab_s = torch.sigmoid(-logsnr_t), torch.sigmoid(-logsnr_s)
    var = eta**2 * one_minus_ab_s / one_minus_ab_t * (1 - ab_t / ab_s)
    var = torch.where(torch.isinf(logsnr_s), torch.zeros_like(var), var)
    c_z = (ab_s / ab_t).sqrt()
    c_eps = (one_minus_ab_s - var).clamp(min=0).sqrt() - c_z * one_minus_ab_t.sqrt()
    return c_z, c_eps, var.sqrt()


class VPSampler(StepSampler):
    """A sampler of the variance-preserving z with linear steps c_z x + c_eps eps_hat + noise_std n.

    Sets the grid: `logsnr` [steps] (noisiest first) and `logsnr_next` (the level each step ends at,
    +inf for the last), and the step variance (DDPM's posterior variance of each transition).
    Subclasses then set c_z, c_eps and noise_std over those transitions.
    """

    def __init__(self, steps: int, schedule: DDPMSchedule | None, name: str):
        self.schedule = schedule if schedule is not None else DDPMSchedule()
        self.logsnr = ddpm_levels(self.schedule, steps)
        self.logsnr_next = torch.cat([self.logsnr[1:], torch.tensor([torch.inf], dtype=torch.float64)])
        self.steps, self.name = steps, name
        _, _, posterior_std = ddpm_coefficients(self.logsnr, self.logsnr_next, "posterior")
        self.step_variance = nonzero_variances(posterior_std**2)
        self.nfe_per_step = torch.ones(steps, dtype=torch.long)

    def set_coefficients(self, c_z: Tensor, c_eps: Tensor, noise_std: Tensor) -> None:
        self.c_z, self.c_eps, self.noise_std = c_z, c_eps, noise_std
        self.c_z_minus_1 = c_z - 1  # the drift's coefficient on x

    def prior(self, n0: Tensor) -> Tensor:
        return n0

    def drift(self, eps_fn, x: Tensor, k: Tensor, n: Tensor) -> Tensor:
        eps_hat = call_eps(eps_fn, x, levels(self.logsnr, k, x), self.name)
        return per_row(self.c_z_minus_1, k, x) * x + per_row(self.c_eps, k, x) * eps_hat

    def noise(self, n: Tensor, k: Tensor) -> Tensor:
        return per_row(self.noise_std, k, n) * n


class DDPMSampler(VPSampler):
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
        super().__init__(steps, schedule, name)
        self.variance = variance
        self.set_coefficients(*ddpm_coefficients(self.logsnr, self.logsnr_next, variance))


class DDIMSampler(VPSampler):
    """DDIM with `steps` evenly strided timesteps and stochasticity `eta` in [0, 1] (0: the ODE)."""

    def __init__(
        self,
        steps: int = 100,
        schedule: DDPMSchedule | None = None,
        eta: float = 0.0,
        name: str = "ddim",
    ):
        self.eta = check_number("eta", eta, non_negative=True)
        if self.eta > 1:
            raise ValueError(f"eta must be in [0, 1] (0: the ODE, 1: DDPM's posterior step), got {eta!r}.")
        super().__init__(steps, schedule, name)
        self.set_coefficients(*ddim_coefficients(self.logsnr, self.logsnr_next, self.eta))
