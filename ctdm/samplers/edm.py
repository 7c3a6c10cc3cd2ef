"""EDM samplers (Karras et al. 2022, Algorithm 2): Heun (2nd order) and Euler on the Karras sigma grid.

They work on EDM's x = z / sqrt(s(a)) with sigma = exp(-a/2), EDM's noise level (the only meaning of
"sigma" in ctdm.samplers), where the ODE derivative (x - D(x; sigma)) / sigma is exactly the noise
prediction eps_hat(z, a). A step from sigma_k: churn to sigma_hat = sigma_k (1 + gamma_k) with fresh
noise, an Euler step to sigma_{k+1}, and (Heun, not on the last step) the trapezoidal correction with
a second evaluation at sigma_{k+1}. Written as x_next = x + drift(x, k): the churn noise is part of
the drift (it enters before the network sees x), so the explicit noise term is zero.
"""

import math

import torch
from torch import Tensor

from ctdm.diffusion.channel import append_dims
from ctdm.diffusion.checks import check_number
from ctdm.diffusion.schedules import karras_sigmas
from ctdm.samplers.base import StepSampler, call_eps, levels, nonzero_variances, per_row


class EDMSampler(StepSampler):
    """EDM's stochastic sampler; `order` 2 is Heun (last step Euler), 1 is Euler.

    sigma_min, sigma_max, rho: the Karras grid of noise levels (ctdm.diffusion.karras_sigmas).
    S_churn, S_noise, S_tmin, S_tmax as in EDM: steps with S_tmin <= sigma_k <= S_tmax raise the
    noise level by gamma = min(S_churn / steps, sqrt(2) - 1) with N(0, S_noise^2) noise first.
    S_churn = 0 (the default) is the deterministic ODE sampler.
    """

    def __init__(
        self,
        steps: int = 18,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        order: int = 2,
        S_churn: float = 0.0,
        S_noise: float = 1.0,
        S_tmin: float = 0.0,
        S_tmax: float | None = None,
        name: str = "heun",
    ):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (Euler) or 2 (Heun), got {order!r}.")
        S_churn = check_number("S_churn", S_churn, non_negative=True)
        S_noise = check_number("S_noise", S_noise, non_negative=True)
        S_tmin = check_number("S_tmin", S_tmin, non_negative=True)
        S_tmax = math.inf if S_tmax is None else check_number("S_tmax", S_tmax, non_negative=True)
        if S_tmin > S_tmax:
            raise ValueError(f"S_tmin must be <= S_tmax, got S_tmin={S_tmin!r}, S_tmax={S_tmax!r}.")
        self.sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)  # [steps + 1]; checks its arguments
        self.steps, self.name, self.order = steps, name, order
        t, t_next = self.sigmas[:-1], self.sigmas[1:]
        in_range = (t >= S_tmin) & (t <= S_tmax)
        gamma = torch.where(in_range, min(S_churn / steps, math.sqrt(2) - 1), 0.0).double()
        self.t_hat = t * (1 + gamma)
        self.churn_std = S_noise * (self.t_hat**2 - t**2).sqrt()
        self.has_churn = bool((self.churn_std > 0).any())
        self.logsnr_hat = -2 * self.t_hat.log()
        self.logsnr_next = torch.where(t_next > 0, -2 * t_next.log(), torch.inf)
        self.logsnr = -2 * t.log()
        self.h = t_next - self.t_hat
        self.second = (order == 2) & (t_next > 0)  # Heun's correction, except on the last step
        self.nfe_per_step = 1 + self.second.long()
        # Step variance: the VE posterior variance sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2 of the
        # step (DDPM's posterior variance mapped to EDM's x), the last step reusing the previous one.
        self.step_variance = nonzero_variances(t_next**2 * (t**2 - t_next**2) / t**2)

    def prior(self, n0: Tensor) -> Tensor:
        return float(self.sigmas[0]) * n0

    def _d(self, eps_fn, x: Tensor, logsnr: Tensor) -> Tensor:
        """dx/dsigma = (x - D(x; sigma)) / sigma = eps_hat(x sqrt(s(a)), a) at rows' levels [M]."""
        z = x * torch.sigmoid(append_dims(logsnr, x.dim())).sqrt()
        return call_eps(eps_fn, z, logsnr, self.name)

    def drift(self, eps_fn, x: Tensor, k: Tensor, n: Tensor) -> Tensor:
        k = k.expand(len(x))  # one index per row: the Heun correction picks rows
        x_hat = x + per_row(self.churn_std, k, x) * n if self.has_churn else x
        h = per_row(self.h, k, x)
        d = self._d(eps_fn, x_hat, levels(self.logsnr_hat, k, x))
        x_next = x_hat + h * d
        second = self.second[k]
        if second.any():
            rows = second.nonzero().squeeze(1)
            d2 = self._d(eps_fn, x_next[rows], levels(self.logsnr_next, k[rows], x[rows]))
            x_next = x_next.index_copy(0, rows, x_hat[rows] + h[rows] * (d[rows] + d2) / 2)
        return x_next - x


class HeunSampler(EDMSampler):
    """EDM Heun (2nd order): 2 evaluations per step, one on the last; NFE = 2 steps - 1."""

    def __init__(self, steps: int = 18, name: str = "heun", **kwargs):
        super().__init__(steps=steps, order=2, name=name, **kwargs)


class EulerSampler(EDMSampler):
    """Euler on the same grid: one evaluation per step."""

    def __init__(self, steps: int = 18, name: str = "euler", **kwargs):
        super().__init__(steps=steps, order=1, name=name, **kwargs)
