"""Evaluate samplers on a denoiser: draw every sampler's samples on the same seeds, score them, and write
the plots and per-pass curves. Lightning-free: the training callback (ctdm.callbacks.SampleEvaluation),
`python -m ctdm.evaluate` (through that callback), the diagnostics and the experiment reports call these.
"""

import contextlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ctdm.evaluation.generate import Generation, gather_stats, generate_chunks
from ctdm.evaluation.records import EvaluationResult, SamplerResult, first_below
from ctdm.evaluation.sample_file import SampleFile
from ctdm.evaluation.seeds import ONE_PROCESS, Ranks, rank_share, sample_seeds
from ctdm.plotting import plot_pass_curve, plot_samples

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_samplers(
    samplers: Sequence,
    denoiser,
    scorer,
    shape: tuple[int, ...],
    *,
    num_samples: int,
    seed: int = 0,
    batch_size: int | None = None,
    threshold: float | None = None,
    ranks: Ranks = ONE_PROCESS,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    progress: bool = False,
    samples_dir: str | Path | None = None,
    keep: int | None = None,
) -> EvaluationResult:
    """Every sampler (`sampler.name` names its metrics) on the noise predictor `denoiser` (eps(z, logsnr),
    or a module with `.eps`), samples 0 .. num_samples-1 of `seed`, this rank its share; scored by `scorer`
    (ctdm.evaluation.scorers). Parallel samplers in one process and one batch also get their score after
    every pass, and the first pass at or below `threshold`. Collective under DDP: call it on every rank.

    Streaming: samples are drawn, scored and written in chunks of `batch_size` (all at once when None),
    so memory follows the chunk, not num_samples. `samples_dir`: rank 0 writes every sample there as it
    comes (`samples_<sampler>.npy`, ctdm.evaluation.SampleFile). `keep`: the result keeps the first
    `keep` samples (for plots; None keeps all of them, as a notebook wants).
    """
    share = ranks.share(num_samples)
    seeds = sample_seeds(seed, share)
    step = batch_size or max(math.ceil(num_samples / ranks.world), 1)
    num_chunks = math.ceil(math.ceil(num_samples / ranks.world) / step)  # rank 0 has the largest share
    results = []
    for sampler in samplers:
        parallel = getattr(sampler, "parallel", False)
        stats = Generation(torch.empty(0, device=device), 0.0, 0, 0.0)  # gather_stats sends from its device
        chunks = generate_chunks(
            sampler,
            denoiser,
            shape,
            seeds,
            stats,
            device=device,
            batch_size=step,
            precision=precision,
            pass_score=scorer.pass_score if ranks.world == 1 else None,  # a pass holds this rank's share
            progress=progress and ranks.is_zero,
            num_chunks=num_chunks,
        )
        writer = None
        if samples_dir is not None and ranks.is_zero:
            writer = SampleFile(Path(samples_dir) / f"samples_{sampler.name}.npy", num_samples, shape)
        kept: list[Tensor] = []
        scorer.reset()
        with writer if writer is not None else contextlib.nullcontext():
            for offset, local in chunks:
                first = share.start + offset
                if scorer.per_rank:  # FID/KID: this rank's share; their states sync in compute()
                    scorer.update(local, torch.arange(first, first + len(local)))
                for start, rows in _gather_chunk(local, offset, step, ranks, num_samples):
                    if not scorer.per_rank:  # MMD: every sample, on every rank
                        scorer.update(rows)
                    if writer is not None:
                        writer.write(start, rows)
                    if keep is None or start < keep:
                        kept.append((start, rows.cpu() if keep is None else rows[: keep - start].cpu()))
            written = writer.close() if writer is not None else None
        everything = gather_stats(stats, len(seeds), ranks, num_samples)
        scores = scorer.compute()
        if not everything.converged:
            log.warning("%s stopped at max_passes=%d before converging", sampler.name, everything.passes)
        curve = everything.curve or None
        hit = first_below(curve, scorer.name, threshold) if curve and threshold is not None else None
        kept.sort(key=lambda part: part[0])
        samples = torch.cat([rows for _, rows in kept]) if kept else torch.empty(0, *shape)
        results.append(
            SamplerResult(
                name=sampler.name,
                samples=samples,
                scores=scores,
                nfe=everything.nfe,
                passes=everything.passes,
                seconds=everything.seconds,
                converged=everything.converged,
                parallel=parallel,
                curve=curve,
                threshold_hit=hit,
                samples_file=written,
            )
        )
    return EvaluationResult(results, scorer.baselines(num_samples, seed), threshold)


def _gather_chunk(local: Tensor, offset: int, step: int, ranks: Ranks, num_samples: int):
    """[(first index, rows)] of one chunk on every rank: this rank's alone in one process; under DDP every
    rank's (each padded to `step` rows for the all-gather), as (its share's start + offset, its rows)."""
    if ranks.world == 1:
        return [(offset, local)]
    padded = torch.cat([local, local.new_zeros(step - len(local), *local.shape[1:])])
    gathered = ranks.all_gather(padded)  # [world, step, *shape]
    parts = []
    for rank in range(ranks.world):
        share = rank_share(num_samples, rank, ranks.world)
        count = max(0, min(step, len(share) - offset))
        if count:
            parts.append((share.start + offset, gathered[rank, :count]))
    return parts


def write_outputs(result: EvaluationResult, output_dir: str | Path, step: int, reference: Tensor) -> dict:
    """The plots and curves of one evaluation at training step `step`, under output_dir: each sampler's
    samples over the held-out `reference` (plots/samples_<sampler>_step<N>.png) and each recorded
    per-pass curve (eval/<sampler>_passes_step<N>.json, plots/mmd_per_pass_<sampler>_step<N>.png, beside
    the sequential samplers' scores). Returns {metric-style key: path} of the plots written."""
    out, plots = Path(output_dir), {}
    for r in result.samplers:
        path = out / "plots" / f"samples_{r.name}_step{step:06d}.png"
        score = f"FID {r.scores['fid']:.1f}" if "fid" in r.scores else f"MMD^2 {r.scores['mmd']:.2e}"
        title = f"{r.name}, step {step}: {score}, NFE {r.nfe:.0f}, passes {r.passes}"
        if plot_samples(r.samples, reference, path, title) is not None:
            plots[f"eval/{r.name}/samples"] = path
    sequential = {r.name: r.scores["mmd"] for r in result.samplers if not r.parallel and "mmd" in r.scores}
    for r in (r for r in result.samplers if r.curve):
        file = out / "eval" / f"{r.name}_passes_step{step:06d}.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"sampler": r.name, "step": step, "threshold": result.threshold, "passes": r.curve}
        file.write_text(json.dumps(payload, indent=1))
        hit = r.threshold_hit
        reached = f"below threshold at pass {hit['pass']}" if hit else "never below threshold"
        title = f"{r.name}, step {step}: MMD^2 after each pass ({reached})"
        path = out / "plots" / f"mmd_per_pass_{r.name}_step{step:06d}.png"
        plots[f"eval/{r.name}/mmd_per_pass"] = plot_pass_curve(
            r.curve, path, title, result.threshold, sequential
        )
    return plots
