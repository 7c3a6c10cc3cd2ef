"""Drawing samples: one sampler over a set of sample seeds, in batches, and the shares of all ranks.

`generate` calls the sampler as `sampler(denoiser, shape, seeds, device=...)` (a parallel sampler also
with a `hook` that sees every Picard pass), under the training run's autocast, and returns a
`Generation`: the samples and what they cost. `gather` puts the ranks' generations together.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from tqdm.auto import tqdm

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
    `pass_score` (name, score(samples)) records the parallel sampler's score after every pass."""
    chunks = seeds.split(batch_size or max(len(seeds), 1)) if len(seeds) else ()
    parallel = getattr(sampler, "parallel", False)
    curve = [] if parallel and pass_score is not None and len(chunks) == 1 else None
    bar = tqdm(
        total=len(seeds), desc=f"sampling {sampler.name}", unit="sample", disable=not progress, leave=False
    )

    def hook(pass_index, x_last, info):
        bar.set_postfix(passes=pass_index, active=info["active"], refresh=False)
        if curve is not None:
            name, score = pass_score
            curve.append({"pass": pass_index, "nfe": info["nfe"], name: score(x_last[: len(seeds)].cpu())})

    parts, nfe, passes, seconds, converged = [], 0.0, 0, 0.0, True
    for chunk in chunks:
        kwargs = {"hook": hook} if parallel else {}
        with autocast(precision, device):
            samples, stats = sampler(denoiser, shape, chunk, device=device, **kwargs)
        parts.append(samples)
        nfe += stats.nfe * len(chunk) / len(seeds)
        passes, seconds = max(passes, stats.passes), seconds + stats.seconds
        converged = converged and stats.converged
        bar.update(len(chunk))
    bar.close()
    local = torch.cat(parts) if parts else torch.empty(0, *shape, device=device)
    return Generation(local, nfe, passes, seconds, converged, curve)


def gather(generation: Generation, ranks: Ranks, num_samples: int) -> Generation:
    """All ranks' generations as one: the samples of every index in order (on the CPU), NFE weighted by
    each rank's share, passes and seconds of the slowest rank. Collective: call it on every rank."""
    if ranks.world == 1:
        return replace(generation, samples=generation.samples.cpu())
    local = generation.samples
    per_rank = ranks.all_gather(
        torch.tensor(
            [generation.nfe * len(local), generation.passes, generation.seconds, float(generation.converged)],
            device=local.device,
        )
    ).reshape(ranks.world, 4)
    return Generation(
        samples=ranks.gather(local, num_samples).cpu(),
        nfe=float(per_rank[:, 0].sum()) / num_samples,
        passes=int(per_rank[:, 1].max()),
        seconds=float(per_rank[:, 2].max()),
        converged=bool(per_rank[:, 3].min() > 0),
        curve=generation.curve,
    )
