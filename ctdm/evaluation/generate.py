"""Drawing samples: one sampler over a set of sample seeds, in batches, and the shares of all ranks.

`generate` calls the sampler as `sampler(denoiser, shape, seeds, device=..., hook=...)` (the hook sees
every step of a sequential sampler and every Picard pass: progress, per-pass scores), under the training
run's autocast, and returns a `Generation`: the samples and what they cost. `gather` puts the ranks'
generations together.
"""

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ctdm.evaluation.progress import SamplingProgress
from ctdm.evaluation.seeds import Ranks
from ctdm.precision import autocast


@dataclass
class Generation:
    """One sampler's samples for a set of seeds (in seed order) and their cost.

    nfe: network evaluations per sample (mean over samples); passes: sequential depth (the most over
    batches and ranks); seconds: wall time (summed over batches, the slowest rank); converged: False
    when a parallel sampler stopped at its max_passes; curve: for a parallel sampler given a
    `pass_score` and run in one batch, [{"pass", "nfe", <score name>: value}] after every pass.
    """

    samples: Tensor
    nfe: float
    passes: int
    seconds: float
    converged: bool = True
    curve: list[dict] | None = None


@torch.no_grad()
def generate(
    sampler,
    denoiser,
    shape: tuple[int, ...],
    seeds: Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: str | None = None,
    pass_score: tuple[str, Callable[[Tensor], float]] | None = None,
    progress: bool = False,
) -> Generation:
    """The samples of `seeds` [N] by `sampler`, in batches of `batch_size` (memory only: sample i does not
    change). `precision`: Lightning's trainer.precision, so the network runs as in training (bf16-mixed).
    `pass_score` (name, score(samples)) records the parallel sampler's score after every pass. `progress`:
    a bar per batch that moves with every step or pass, with an ETA (ctdm.evaluation.progress)."""
    stats = Generation(torch.empty(0, device=device), 0.0, 0, 0.0)
    options = dict(device=device, batch_size=batch_size, precision=precision, pass_score=pass_score)
    parts = [
        samples
        for _, samples in generate_chunks(
            sampler, denoiser, shape, seeds, stats, progress=progress, **options
        )
    ]
    stats.samples = torch.cat(parts) if parts else torch.empty(0, *shape, device=device)
    return stats


@torch.no_grad()
def generate_chunks(
    sampler,
    denoiser,
    shape: tuple[int, ...],
    seeds: Tensor,
    stats: Generation,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: str | None = None,
    pass_score: tuple[str, Callable[[Tensor], float]] | None = None,
    progress: bool = False,
    num_chunks: int | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """`generate` one chunk at a time: yields (offset into `seeds`, samples) for batches of `batch_size`
    seeds, so a caller can score and write each chunk and let it go. `stats` (a Generation) gathers NFE,
    passes, seconds, convergence and the per-pass curve as chunks come. `num_chunks` pads with empty
    chunks up to that many (DDP: every rank takes part in every chunk's collective)."""
    chunks = seeds.split(batch_size or max(len(seeds), 1)) if len(seeds) else ()
    parallel = getattr(sampler, "parallel", False)
    stats.curve = curve = [] if parallel and pass_score is not None and len(chunks) == 1 else None
    takes_hook = "hook" in inspect.signature(sampler).parameters  # any callable may be a sampler

    offset = 0
    for i, chunk in enumerate(chunks):
        label = f"sampling {sampler.name}" + (f" (batch {i + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        bar = SamplingProgress(sampler, label, enabled=progress)

        def hook(index, x, info=None, bar=bar):
            if info is None:  # a sequential sampler's step
                return bar.step(index, x)
            bar.picard_pass(index, x, info)
            if curve is not None:
                name, score = pass_score
                curve.append({"pass": index, "nfe": info["nfe"], name: score(x[: len(seeds)].cpu())})

        try:
            with autocast(precision, device):
                samples, chunk_stats = sampler(
                    denoiser, shape, chunk, device=device, **({"hook": hook} if takes_hook else {})
                )
        finally:
            bar.close()
        stats.nfe += chunk_stats.nfe * len(chunk) / len(seeds)
        stats.passes = max(stats.passes, chunk_stats.passes)
        stats.seconds += chunk_stats.seconds
        stats.converged = stats.converged and chunk_stats.converged
        yield offset, samples
        offset += len(chunk)
    for _ in range(len(chunks), num_chunks or 0):
        yield offset, torch.empty(0, *shape, device=device)


def gather(generation: Generation, ranks: Ranks, num_samples: int) -> Generation:
    """All ranks' generations as one: the samples of every index in order (on the CPU), NFE weighted by
    each rank's share, passes and seconds of the slowest rank. Collective: call it on every rank."""
    if ranks.world == 1:
        return replace(generation, samples=generation.samples.cpu())
    stats = gather_stats(generation, len(generation.samples), ranks, num_samples)
    return replace(stats, samples=ranks.gather(generation.samples, num_samples).cpu())


def gather_stats(generation: Generation, local_count: int, ranks: Ranks, num_samples: int) -> Generation:
    """The cost of all ranks' generations (this one drew `local_count` samples): NFE weighted by each
    rank's share, passes and seconds of the slowest rank; the samples are left as they are. Collective."""
    if ranks.world == 1:
        return generation
    device = generation.samples.device
    per_rank = ranks.all_gather(
        torch.tensor(
            [
                generation.nfe * local_count,
                generation.passes,
                generation.seconds,
                float(generation.converged),
            ],
            device=device,
        )
    ).reshape(ranks.world, 4)
    return replace(
        generation,
        nfe=float(per_rank[:, 0].sum()) / num_samples,
        passes=int(per_rank[:, 1].max()),
        seconds=float(per_rank[:, 2].max()),
        converged=bool(per_rank[:, 3].min() > 0),
    )
