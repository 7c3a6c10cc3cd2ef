"""The mechanism the paper claims, measured exactly: does a denoiser err more off the training paths,
where samplers (Picard solvers most of all) query it, and does CDL lower that error?

For a Gaussian mixture law the optimal noise predictor eps*(z, a) = E[eps | z_a = z] is exact
(`GaussianMixture.eps`), so a trained denoiser's error |eps_hat(z, a) - eps*(z, a)|^2 (summed over
dimensions) can be measured anywhere in (z, a):
  (a) on the training paths: z = z_a(x) with x from the law, at the levels the sampler uses;
  (b) at the states the sampler actually queries: every (z, a) of every call, i.e. every iterate of
      every Picard pass, recorded by wrapping the eps_fn (`QueryRecorder`; works for any sampler).
(b) / (a) > 1 says the solver's queries lie where training did not teach the denoiser. For 1-D data
`error_heatmap` draws the error over (z, log-SNR), the paper's Figure 1, with the queries on top.
"""

import math
from pathlib import Path

import torch
from torch import Tensor

from ctdm.diffusion.channel import noise_data
from ctdm.diffusion.likelihood import EpsFn
from ctdm.evaluation import generate, sample_seeds


class QueryRecorder:
    """An eps_fn that answers with `eps_fn` and keeps every (z, logsnr) it was asked (on the CPU).

    It names `eps_fn` as `__wrapped__`, so the call-time probe of a sampler's automatic chunking measures
    the network itself and only the sampler's own queries are recorded (ctdm.samplers.timing)."""

    def __init__(self, eps_fn: EpsFn):
        self.eps_fn = self.__wrapped__ = eps_fn
        self.z: list[Tensor] = []
        self.logsnr: list[Tensor] = []

    def __call__(self, z: Tensor, logsnr: Tensor) -> Tensor:
        self.z.append(z.detach().cpu())
        self.logsnr.append(logsnr.detach().expand(len(z)).cpu())
        return self.eps_fn(z, logsnr)

    @property
    def calls(self) -> int:
        return len(self.z)

    def states(self) -> tuple[Tensor, Tensor]:
        """Every queried state, z [N, *shape] and logsnr [N], in call order."""
        if not self.z:
            raise ValueError("QueryRecorder recorded no queries: run a sampler with it as the eps_fn first.")
        return torch.cat(self.z), torch.cat(self.logsnr)


@torch.no_grad()
def denoiser_error(
    eps_fn: EpsFn, exact_eps: EpsFn, z: Tensor, logsnr: Tensor, max_batch: int = 4096
) -> Tensor:
    """|eps_fn(z, a) - exact_eps(z, a)|^2 summed over dimensions, [N], in chunks of max_batch states."""
    if z.shape[0] != logsnr.shape[0]:
        raise ValueError(f"z and logsnr must have the same length, got {z.shape[0]} and {logsnr.shape[0]}.")
    out = []
    for zc, ac in zip(z.split(max_batch), logsnr.split(max_batch), strict=True):
        diff = eps_fn(zc, ac).double() - exact_eps(zc, ac).double()
        out.append(diff.pow(2).flatten(1).sum(1))
    return torch.cat(out) if out else z.new_zeros(0, dtype=torch.float64)


def path_states(law, logsnr: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """States on the training paths at the given levels: z = z_a(x), x from `law`, one fresh (x, eps)
    per level (the MSE loss's inputs)."""
    x = law.sample(len(logsnr), generator).to(logsnr.device)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return noise_data(x, logsnr.to(x.dtype), eps)


@torch.no_grad()
def measure_ood_error(
    eps_fn: EpsFn,
    law,
    sampler,
    num_samples: int = 2000,
    seed: int = 0,
    shape: tuple[int, ...] | None = None,
) -> dict:
    """The denoiser's exact error on the training paths and at the sampler's queries, as numbers.

    Runs `sampler` (sequential or parallel) with a recording eps_fn for samples 0 .. num_samples-1 of
    `seed` (ctdm.evaluation's per-sample seeds, as every evaluation draws them); path states are drawn
    at the very levels the sampler queried, so (a) and (b) differ only in where z lies. Returns a
    JSON-ready dict: error_on_paths, error_at_queries (means over states), ratio, their medians
    (median_on_paths, median_at_queries, median_ratio), queries (states), calls, and both
    means per log-SNR bin (`by_logsnr`: bin edges and the two curves; empty bins are null).
    """
    shape = tuple(shape) if shape is not None else (law.dim,)
    recorder = QueryRecorder(eps_fn)
    generate(sampler, recorder, shape, sample_seeds(seed, range(num_samples)))
    z_q, a_q = recorder.states()
    on_queries = denoiser_error(eps_fn, law.eps, z_q, a_q)
    z_p = path_states(law, a_q, torch.Generator().manual_seed(seed))
    on_paths = denoiser_error(eps_fn, law.eps, z_p, a_q)
    edges = torch.linspace(float(a_q.min()), float(a_q.max()) + 1e-6, 13, dtype=torch.float64)
    index = torch.bucketize(a_q.double(), edges[1:-1])

    def binned(values: Tensor) -> list:
        sums = torch.zeros(12, dtype=torch.float64).index_add_(0, index, values)
        counts = torch.zeros(12, dtype=torch.float64).index_add_(0, index, torch.ones_like(values))
        return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]

    paths, queries = float(on_paths.mean()), float(on_queries.mean())
    median_paths, median_queries = float(on_paths.median()), float(on_queries.median())
    return {
        "error_on_paths": paths,
        "error_at_queries": queries,
        "ratio": queries / paths if paths > 0 else math.inf,
        # medians: the means are dominated by the first Picard iterates, far off the data
        "median_on_paths": median_paths,
        "median_at_queries": median_queries,
        "median_ratio": median_queries / median_paths if median_paths > 0 else math.inf,
        "queries": len(a_q),
        "calls": recorder.calls,
        "by_logsnr": {
            "edges": edges.tolist(),
            "on_paths": binned(on_paths),
            "at_queries": binned(on_queries),
        },
    }


@torch.no_grad()
def error_heatmap(
    eps_fn: EpsFn,
    law,
    path: str | Path,
    queries: tuple[Tensor, Tensor] | None = None,
    z_range: tuple[float, float] | None = None,
    logsnr_range: tuple[float, float] = (-10.5, 9.5),  # the 1000-step linear DDPM grid: -10.1 to 9.2
    resolution: int = 200,
    title: str = "",
) -> tuple[Path, Tensor]:
    """The paper's Figure 1 for 1-D data: log10 |eps_hat - eps*|^2 over a (log-SNR, z) grid, with the
    data's noised density as contours (where training puts its inputs) and, if given, the sampler's
    queried states on top. Returns the PNG's path and the error grid [resolution (z), resolution (a)]."""
    from ctdm.plotting import plt, save_figure

    if law.dim != 1:
        raise ValueError(f"error_heatmap draws 1-D data over (z, log-SNR); this law has dimension {law.dim}.")
    if z_range is None:
        spread = float(law.means.abs().max() + 4 * law.variances.max().sqrt())
        z_range = (-spread, spread)
    zs = torch.linspace(*z_range, resolution, dtype=torch.float64)
    levels = torch.linspace(*logsnr_range, resolution, dtype=torch.float64)
    zz, aa = torch.meshgrid(zs, levels, indexing="ij")
    z_flat, a_flat = zz.reshape(-1, 1).float(), aa.reshape(-1).float()
    error = denoiser_error(eps_fn, law.eps, z_flat, a_flat).view(resolution, resolution)
    # The density of z_a under the data: a mixture with means alpha m_k, variances alpha^2 v_k + sigma^2.
    alpha2 = torch.sigmoid(aa)
    means, variances = law.means[:, 0].double(), law.variances[:, 0].double()
    var = alpha2[..., None] * variances + (1 - alpha2[..., None])
    dens = (
        law.weights.double()
        * torch.exp(-0.5 * (zz[..., None] - alpha2[..., None].sqrt() * means) ** 2 / var)
        / torch.sqrt(2 * math.pi * var)
    ).sum(-1)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    mesh = ax.pcolormesh(
        levels.numpy(), zs.numpy(), error.clamp_min(1e-8).log10().numpy(), shading="auto", cmap="magma"
    )
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10} |\hat\epsilon - \epsilon^*|^2$")
    ax.contour(
        levels.numpy(), zs.numpy(), dens.numpy(), levels=[1e-3, 1e-2, 1e-1], colors="cyan", linewidths=0.8
    )
    if queries is not None:
        zq, aq = queries
        keep = torch.randperm(len(aq), generator=torch.Generator().manual_seed(0))[:20000]
        ax.scatter(aq[keep].numpy(), zq[keep, 0].numpy(), s=0.3, c="white", alpha=0.25, linewidths=0)
    ax.set_xlabel("log-SNR a")
    ax.set_ylabel("z")
    ax.set_xlim(*logsnr_range)
    ax.set_ylim(*z_range)
    ax.set_title(title or "denoiser error vs the exact denoiser (cyan: data paths; white: sampler queries)")
    return save_figure(fig, path, dpi=110), error
