"""The step form every sequential sampler shares, and its sequential loop.

A sampler over K steps is three pieces (k-diffusion style, plain tensors, no Lightning):

    x_0     = prior(n_0)
    x_{k+1} = x_k + drift(eps_fn, x_k, k, n_{k+1}) + noise(n_{k+1}, k)        k = 0 .. K-1

where n_j is draw j of the sample's own counter-based generator (ctdm.samplers.noise: a pure function of
(seed, j), so a step's noise can be drawn whenever the step is reached, in any order). The step
index k is always a tensor: one index per row ([M] long, the parallel solver, whose rows sit at
different steps) or one index for every row (a 0-d tensor, the sequential loop below). `drift` is a
deterministic function of x_k (it may use n_{k+1} inside, as EDM's churn does), so one definition
serves both the sequential loop and the parallel Picard solver (ctdm.samplers.parallel).

Coefficient tables are float64 tensors over the steps; `on(device, dtype)` gives the sampler whose
tables live where the samples do, so a step gathers `table[k]` and nothing else.
"""

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ctdm.diffusion.channel import append_dims
from ctdm.samplers.noise import per_sample_normal

NOISE_CHUNK_ELEMENTS = 1 << 22  # noise values the sequential loop draws at once (16 MB in float32)


@dataclass
class SamplerStats:
    """What one sampling run cost.

    nfe: network evaluations per sample (for the parallel solver the mean over samples);
    passes: sequential depth, i.e. steps for sequential samplers and Picard passes for the parallel one;
    seconds: wall time; converged: False only when the parallel solver stopped at `max_passes`.
    """

    nfe: float
    passes: int
    seconds: float
    converged: bool = True
    extra: dict = field(default_factory=dict)


def as_eps_fn(denoiser):
    """Accept a noise predictor `eps_fn(z, logsnr)` or an object that has one as `.eps`."""
    if hasattr(denoiser, "eps") and callable(denoiser.eps):
        return denoiser.eps
    if callable(denoiser):
        return denoiser
    raise TypeError(
        f"A sampler needs a noise predictor eps_fn(z [N, *shape], logsnr [N]) -> eps_hat, got {denoiser!r}."
    )


def call_eps(eps_fn, z: Tensor, logsnr: Tensor, sampler_name: str) -> Tensor:
    """eps_fn(z, logsnr), refusing outputs that are not a noise prediction shaped like z."""
    out = eps_fn(z, logsnr)
    if not isinstance(out, Tensor) or out.shape != z.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"sampler {sampler_name!r} needs the epsilon parameterisation: eps_fn(z, logsnr) must return "
            f"eps_hat shaped like z {tuple(z.shape)}, got {got}. Allowed: a noise predictor; wrap x0 / v / "
            "EDM denoisers so they answer eps_hat = (z - sqrt(s(a)) x0_hat) / sqrt(s(-a))."
        )
    return out


def nonzero_variances(var: Tensor) -> Tensor:
    """Per-step variances with each zero (the clean last step) replaced by the step before's."""
    out = var.clone()
    for k in range(len(out)):
        if not out[k] > 0:
            out[k] = out[k - 1] if k > 0 else 1.0
    return out


def per_row(table: Tensor, k: Tensor, like: Tensor) -> Tensor:
    """table[k] shaped to multiply rows like `like` ([M, 1, ...] for k [M], [1, 1, ...] for 0-d k)."""
    return append_dims(table[k], like.dim())


def levels(table: Tensor, k: Tensor, like: Tensor) -> Tensor:
    """Log-SNR levels [M] of the rows of `like` at steps k, for eps_fn."""
    return table[k].expand(len(like)).contiguous()  # a real [M] tensor, as networks expect


class StepSampler:
    """Base of the sequential samplers: subclasses set `steps`, `name`, `step_variance` [K] and
    `nfe_per_step` [K] and define `prior`, `drift` and `noise`.

    `step_variance[k]` is the variance the parallel solver divides step k's change by: the posterior
    variance of the same log-SNR transition in the sampler's own coordinates (what DDPM ancestral
    sampling would add there), also for ODE steps (DDIM eta = 0, Euler, Heun), so one tolerance means
    the same on every sampler. The last step, which ends at the clean level and has zero posterior
    variance, reuses the previous step's.
    """

    name: str = "sampler"
    steps: int
    step_variance: Tensor
    nfe_per_step: Tensor

    def prior(self, n0: Tensor) -> Tensor:
        raise NotImplementedError

    def drift(self, eps_fn, x: Tensor, k: Tensor, n: Tensor) -> Tensor:
        """drift for rows x [M, *shape] at steps k ([M] or 0-d long) with their step noise n."""
        raise NotImplementedError

    def noise(self, n: Tensor, k: Tensor) -> Tensor:
        """The additive noise term of steps k for standard normal draws n [M, *shape]."""
        return torch.zeros_like(n)

    def on(self, device=None, dtype: torch.dtype | None = None) -> "StepSampler":
        """A shallow copy whose floating tables are on `device` in `dtype` (index tables keep theirs)."""
        moved = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(
                    moved, key, value.to(device, dtype) if value.is_floating_point() else value.to(device)
                )
        return moved

    @torch.no_grad()
    def __call__(
        self, eps_fn, shape: tuple[int, ...], seeds: Tensor, device=None, hook=None
    ) -> tuple[Tensor, SamplerStats]:
        """Samples [len(seeds), *shape]; sample i uses only the draws of seeds[i]. `hook(step, x)` runs after
        every step (1 .. steps) with the current states (progress bars: ctdm.evaluation.progress)."""
        start = time.perf_counter()
        eps_fn, shape = as_eps_fn(eps_fn), tuple(shape)
        seeds = torch.as_tensor(seeds, dtype=torch.long, device=device)
        x = per_sample_normal(seeds, 0, shape)
        steps = self.on(x.device, x.dtype)
        x = steps.prior(x)
        # The steps' noise is drawn a chunk of steps at a time: few generator calls, bounded memory.
        chunk = max(1, NOISE_CHUNK_ELEMENTS // max(1, x.numel()))
        all_steps = torch.arange(self.steps, device=x.device)
        for first in range(0, self.steps, chunk):
            ks = all_steps[first : first + chunk]
            noise = per_sample_normal(seeds[:, None], ks[None, :] + 1, shape)  # [N, chunk, *shape]
            for i, k in enumerate(ks):  # k: 0-d, shared by every row
                n = noise[:, i]
                x = x + steps.drift(eps_fn, x, k, n) + steps.noise(n, k)
                if hook is not None:
                    hook(first + i + 1, x)
        return x, SamplerStats(
            nfe=int(self.nfe_per_step.sum()), passes=self.steps, seconds=time.perf_counter() - start
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, steps={self.steps})"
