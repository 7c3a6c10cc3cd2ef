"""The step form every sequential sampler shares, and its sequential loop.

A sampler over K steps is three pieces (k-diffusion style, plain tensors, no Lightning):

    x_0     = prior(n_0)
    x_{k+1} = x_k + drift(eps_fn, x_k, k, n_{k+1}) + noise(n_{k+1}, k)        k = 0 .. K-1

where n_0 .. n_K are standard normal draws fixed up front from each sample's own generator. `drift`
is a deterministic function of x_k (it may use n_{k+1} inside, as EDM's churn does) and is written
for a batch of rows that may each sit at a different step k, so the same definition serves the
sequential loop below and the parallel Picard solver (ctdm.samplers.parallel), which evaluates a
whole window of steps in one batch.
"""

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ctdm.samplers.noise import per_sample_normal


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


def check_int(key: str, value, low: int = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a ValueError naming the config key and the allowed range."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise ValueError(f"{key} must be {allowed}, got {value!r}.")
    return value


def check_float(
    key: str, value, low: float = 0.0, *, strict: bool = True, high: float | None = None
) -> float:
    """A finite float > low (>= low if not strict), <= high if given; else a ValueError naming the key."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"{key} must be a finite number {bound}, got {value!r}.")
    return float(value)


def as_eps_fn(denoiser):
    """Accept a noise predictor `eps_fn(z, logsnr)` or an object that has one as `.eps`."""
    if hasattr(denoiser, "eps") and callable(denoiser.eps):
        return denoiser.eps
    if callable(denoiser):
        return denoiser
    raise TypeError(
        f"A sampler needs a noise predictor eps_fn(z [N, *shape], logsnr [N]) -> eps_hat, got {denoiser!r}."
    )


def expand(v: Tensor, like: Tensor) -> Tensor:
    """[M] -> [M, 1, ..., 1] to broadcast against rows shaped like `like`."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


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


class StepSampler:
    """Base of the sequential samplers: subclasses set `steps`, `name`, `error_scale` [K] and
    `nfe_per_step` [K] and define `prior`, `drift` and `noise`.

    `error_scale[k]` is the variance the parallel solver divides step k's change by: the posterior
    variance of the same log-SNR transition in the sampler's own coordinates (what DDPM ancestral
    sampling would add there), also for ODE steps (DDIM eta = 0, Euler, Heun), so one tolerance means
    the same on every sampler. The last step, which ends at the clean level and has zero posterior
    variance, reuses the previous step's scale.
    """

    name: str = "sampler"
    steps: int
    error_scale: Tensor
    nfe_per_step: Tensor

    def prior(self, n0: Tensor) -> Tensor:
        raise NotImplementedError

    def drift(self, eps_fn, x: Tensor, k, n: Tensor) -> Tensor:
        """drift for rows x [M, *shape] at steps k ([M] long, or one int) with their step noise n."""
        raise NotImplementedError

    def noise(self, n: Tensor, k) -> Tensor:
        """The additive noise term of steps k [M] for standard normal draws n [M, *shape]."""
        return torch.zeros_like(n)

    def coefficient(self, values: Tensor, k, like: Tensor):
        """values[k] from a float64 table over steps, to multiply rows shaped like `like`.

        k is a step index per row ([M] long; the parallel solver) or one int for every row (the
        sequential loop, which then gets a Python float and saves the per-row gathers).
        """
        cache = self.__dict__.setdefault("_coef_cache", {})
        if isinstance(k, int):
            key = (id(values), "list")
            if key not in cache:
                cache[key] = (values, values.tolist())
            return cache[key][1][k]
        key = (id(values), like.device, like.dtype)
        if key not in cache:
            cache[key] = (values, values.to(device=like.device, dtype=like.dtype))
        return expand(cache[key][1][k], like)

    def levels(self, values: Tensor, k, like: Tensor) -> Tensor:
        """Log-SNR levels [M] for the rows of `like` at steps k (see `coefficient`), for eps_fn."""
        if isinstance(k, int):
            return like.new_full((len(like),), self.coefficient(values, k, like))
        return self.coefficient(values, k, like).reshape(-1)

    def draw_noise(self, shape: tuple[int, ...], seeds: Tensor, device=None) -> Tensor:
        """n_0 .. n_K for every sample: [N, K+1, *shape], row i from the generator seeded with seeds[i]."""
        return per_sample_normal(seeds, (self.steps + 1, *shape), device=device)

    @staticmethod
    def variance_scale(var: Tensor) -> Tensor:
        """Posterior variances per step -> error scales: a zero (clean last step) reuses the one before."""
        scale = var.clone()
        for k in range(len(scale)):
            if not scale[k] > 0:
                scale[k] = scale[k - 1] if k > 0 else 1.0
        return scale

    @torch.no_grad()
    def __call__(
        self, eps_fn, shape: tuple[int, ...], seeds: Tensor, device=None
    ) -> tuple[Tensor, SamplerStats]:
        """Samples [len(seeds), *shape]; sample i uses only the generator seeded with seeds[i]."""
        start = time.perf_counter()
        eps_fn = as_eps_fn(eps_fn)
        noise = self.draw_noise(tuple(shape), seeds, device)
        x = self.prior(noise[:, 0])
        for k in range(self.steps):
            n = noise[:, k + 1]
            x = x + self.drift(eps_fn, x, k, n) + self.noise(n, k)
        return x, SamplerStats(
            nfe=int(self.nfe_per_step.sum()), passes=self.steps, seconds=time.perf_counter() - start
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, steps={self.steps})"
