"""Discrete DDPM schedules expressed as log-SNR levels.

Networks are conditioned on continuous log-SNR, so a schedule is only a grid of levels plus the
distribution the training loss draws them from.
"""

import math

import torch
from torch import Tensor


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
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"schedule num_steps must be an integer >= 1, got {num_steps!r}.")
        if kind == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(
                    f"schedule betas must satisfy 0 < beta_start <= beta_end < 1, got "
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
            raise ValueError(f"schedule kind must be 'linear' or 'cosine', got {kind!r}.")
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
