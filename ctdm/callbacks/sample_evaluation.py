"""SampleEvaluation: run a list of samplers on the trained denoiser and score the samples.

Sample i is drawn with seed (seed << 32) + i whatever the rank or batch, so results do not depend
on the number of DDP ranks: each rank draws a contiguous share of the indices (each index exactly
once), image metrics are updated with each rank's own share and computed on every rank (torchmetrics
syncs their states), the shares are gathered for MMD and plots, and only rank 0 logs and writes.
Every sampler sees the same seeds, so sequential and parallel samplers are compared on the same noise.
Low-dimensional data are scored by MMD against the held-out points; images by FID and KID
(ctdm.metrics.ImageMetrics) against the training set or a reference-statistics file.
"""

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from tqdm.auto import tqdm

from ctdm.callbacks.ema import averaged_weights
from ctdm.data.images import to_model_range
from ctdm.logging import wandb_pass_curve
from ctdm.metrics import ImageMetrics, check_bandwidth, mmd2, real_stats_file
from ctdm.plotting import plot_samples
from ctdm.precision import autocast

log = logging.getLogger(__name__)


def shard(num_samples: int, rank: int, world: int) -> range:
    """The sample indices of one rank: contiguous shares of ceil(N / world), each index exactly once
    (the last ranks may get fewer, or none)."""
    share = math.ceil(num_samples / world)
    start = min(rank * share, num_samples)
    return range(start, min(start + share, num_samples))


def first_below(curve: list[dict], threshold: float) -> dict | None:
    return next((c for c in curve if c["mmd"] <= threshold), None)


def plot_pass_curve(curve: list[dict], path: Path, title: str, threshold, references: dict) -> Path:
    """MMD after each Picard pass (log scale), with the threshold and sequential samplers' MMD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    passes = [c["pass"] for c in curve]
    values = [max(c["mmd"], 1e-7) for c in curve]
    ax.plot(passes, values, marker=".", label="parallel sampler after each pass")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.1e}")
    for i, (name, value) in enumerate(references.items()):
        ax.axhline(max(value, 1e-7), color=f"C{i + 2}", ls=":", lw=1.5, label=f"{name}: {value:.1e}")
    ax.set_yscale("log")
    ax.set_xlabel("Picard pass")
    ax.set_ylabel("squared MMD vs held-out data (clipped at 1e-7)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class SampleEvaluation(L.Callback):
    """Evaluate every sampler at the end of training (and every `every_n_steps` steps if set), or once
    in `trainer.validate` (how `python -m ctdm.evaluate` scores a checkpoint).

    samplers: ready sampler objects, a list or a {name: sampler} mapping (Hydra builds them from
    eval.samplers); each is called as sampler(eps_fn, shape, seeds) and logged under its `name`.
    Metrics (logged at the current global step, kept in `self.results`):
      eval/<sampler>/mmd      low-dimensional data: unbiased squared MMD (Gaussian kernel,
                              `mmd_bandwidth`) against the held-out data
      eval/<sampler>/fid, kid, kid_std   images: FID and KID against the training set (or `fid.ref_stats`)
      eval/<sampler>/nfe      network evaluations per sample; eval/<sampler>/passes: sequential depth
      eval/<sampler>/seconds  wall time of sampling (the slowest rank's sum over batches)
      eval/<sampler>/num_samples   samples scored (each index once, whatever the number of ranks)
      eval/<sampler>/passes_to_threshold, nfe_to_threshold   parallel samplers: the first pass whose
                              samples have MMD <= `mmd_threshold` (only logged when one does)
      eval/normal_mmd         low-dimensional data: standard-normal points against the same data
    Parallel samplers also get their MMD after every pass (`self.curves`, a JSON file under
    <output_dir>/eval/ and a plot), when sampling runs in one process and one batch.
    batch_size: draw samples in batches of this many (memory only; sample i is unchanged).
    fid: conf/eval/fid (extractor factory, ref_stats, cache_dir, real_count, kid_subset_size,
    kid_subsets); used only for image data. `self.samples` keeps the last samples of every sampler.
    """

    def __init__(
        self,
        samplers: Mapping | Sequence,
        num_samples: int = 2000,
        seed: int = 0,
        mmd_bandwidth: float | str = 0.1,
        every_n_steps: int | None = None,
        output_dir: str | None = None,
        mmd_threshold: float | None = None,
        batch_size: int | None = None,
        fid: Mapping | None = None,
        progress_bar: bool = False,
        mmd_units: str = "sigma",
    ):
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"eval.num_samples must be an integer >= 2, got {num_samples!r}.")
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"eval.every_n_steps must be null or an integer >= 1, got {every_n_steps!r}.")
        check_bandwidth(mmd_bandwidth, mmd_units, prefix="eval.mmd_")  # a number or "median"; sigma|paper
        if mmd_threshold is not None and not (
            isinstance(mmd_threshold, (int, float)) and math.isfinite(mmd_threshold)
        ):
            raise ValueError(f"eval.mmd_threshold must be null or a finite number, got {mmd_threshold!r}.")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"eval.batch_size must be null or an integer >= 1, got {batch_size!r}.")
        self.samplers = list(samplers.values()) if isinstance(samplers, Mapping) else list(samplers)
        if not self.samplers:
            raise ValueError("eval.samplers is empty; select some, e.g. 'eval/samplers=[ddpm,para_ddpm]'.")
        names = [getattr(s, "name", None) for s in self.samplers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"eval.samplers has {repeated} more than once; each sampler's metrics need a unique name."
            )
        self.num_samples, self.seed = num_samples, seed
        self.mmd_bandwidth, self.every_n_steps = mmd_bandwidth, every_n_steps
        self.mmd_units = mmd_units  # ctdm.metrics.mmd2's units: sigma (ctdm's) or paper (the authors')
        self.mmd_threshold, self.batch_size = mmd_threshold, batch_size
        self.fid = dict(fid or {})
        self.progress_bar = progress_bar
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.image_metrics: ImageMetrics | None = None  # built at the first image evaluation
        self._extractor = None  # its feature network, built in setup for image data
        self.results: dict[str, float] = {}
        self.curves: dict[str, list[dict]] = {}
        self.plots: dict[str, Path] = {}
        self.samples: dict[str, Tensor] = {}
        self.step: int | None = None  # the training step to report (ctdm.evaluate: the checkpoint's)

    def mmd(self, samples: Tensor, reference: Tensor) -> float:
        """Squared MMD in the configured bandwidth and units (eval.mmd_bandwidth, eval.mmd_units)."""
        return float(mmd2(samples, reference, self.mmd_bandwidth, self.mmd_units))

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Image data: build the feature extractor now, so missing weights fail before training, not after.
        datamodule = getattr(trainer, "datamodule", None)
        x_val = getattr(datamodule, "x_val", None)
        if self.image_metrics is None and self._extractor is None and x_val is not None and x_val.dim() == 4:
            self._extractor = self._build_extractor()

    def _build_extractor(self):
        """eval.fid.extractor: Hydra gives a factory (`_partial_`), so 2-D runs never build one."""
        factory = self.fid.get("extractor")
        return factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step < (trainer.max_steps or math.inf):
            with averaged_weights(trainer, pl_module):  # the EMA weights, this step's update included
                self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        # Not on_fit_end: by then Lightning has moved the module to the CPU and closed the loggers.
        with averaged_weights(trainer, pl_module):
            self.evaluate(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # trainer.validate: score the loaded weights
            self.evaluate(trainer, pl_module)

    @torch.no_grad()
    def generate(self, trainer, pl_module, sampler, shape, reference: Tensor | None = None):
        """This rank's share of the `num_samples` samples, and all of them gathered in index order.

        Returns (local, gathered, stats, curve): for a parallel sampler in one process and one batch,
        curve is [{"pass", "nfe", "mmd"}] after every pass (against `reference`), else None.
        """
        world, rank = trainer.world_size, trainer.global_rank
        indices = shard(self.num_samples, rank, world)
        seeds = (self.seed << 32) + torch.tensor(list(indices), dtype=torch.long)
        chunks = seeds.split(self.batch_size or max(len(seeds), 1)) if len(seeds) else ()
        parallel = getattr(sampler, "parallel", False)
        curve = [] if parallel and world == 1 and len(chunks) == 1 and reference is not None else None
        bar = tqdm(
            total=len(seeds),
            desc=f"sampling {sampler.name}",
            unit="sample",
            disable=not (self.progress_bar and trainer.is_global_zero),
            leave=False,
        )

        def hook(pass_index, x_last, info):
            bar.set_postfix(passes=pass_index, active=info["active"], refresh=False)
            if curve is not None:
                value = self.mmd(x_last[: self.num_samples].cpu(), reference)
                curve.append({"pass": pass_index, "nfe": info["nfe"], "mmd": value})

        # The plain nn.Module answering eps(z, logsnr), which a sampler may replicate over devices.
        denoiser = pl_module.parameterization
        parts, nfe, passes, seconds, converged = [], 0.0, 0, 0.0, True
        for chunk in chunks:
            kwargs = {"hook": hook} if parallel else {}
            with autocast(getattr(trainer, "precision", None), pl_module.device):  # as in training (bf16)
                samples, stats = sampler(denoiser, shape, chunk, device=pl_module.device, **kwargs)
            parts.append(samples)
            nfe += stats.nfe * len(chunk) / len(seeds)
            passes, seconds = max(passes, stats.passes), seconds + stats.seconds
            converged = converged and stats.converged
            bar.update(len(chunk))
        bar.close()
        local = torch.cat(parts) if parts else torch.empty(0, *shape, device=pl_module.device)
        gathered = local
        summary = {"nfe": nfe, "passes": passes, "seconds": seconds, "converged": converged}
        if world > 1:
            share = math.ceil(self.num_samples / world)
            padded = torch.cat([local, local.new_zeros(share - len(local), *shape)])
            gathered = trainer.strategy.all_gather(padded).flatten(0, 1)[: self.num_samples]
            # NFE is a per-sample mean: weight each rank's by its share; depth and time: the slowest rank.
            per_rank = trainer.strategy.all_gather(
                torch.tensor([nfe * len(local), passes, seconds, float(converged)], device=local.device)
            ).reshape(world, 4)
            summary = {
                "nfe": float(per_rank[:, 0].sum()) / self.num_samples,
                "passes": int(per_rank[:, 1].max()),
                "seconds": float(per_rank[:, 2].max()),
                "converged": bool(per_rank[:, 3].min() > 0),
            }
        return local, gathered.cpu(), summary, curve

    def _image_metrics(self, trainer, pl_module) -> ImageMetrics:
        """FID/KID with the real side in place: ref_stats, the cached features of the training set, or
        those features computed now (each rank its share) and cached."""
        if self.image_metrics is not None:
            return self.image_metrics
        extractor = self._extractor if self._extractor is not None else self._build_extractor()
        metrics = ImageMetrics(
            extractor if extractor is not None else "inception",
            kid_subset_size=self.fid.get("kid_subset_size", 1000),
            kid_subsets=self.fid.get("kid_subsets", 100),
        ).to(pl_module.device)
        if self.fid.get("ref_stats"):
            metrics.load_ref_stats(self.fid["ref_stats"])
        else:
            datamodule = trainer.datamodule
            images = datamodule.images_train
            count = self.fid.get("real_count")
            if count is not None and count < len(images):  # a seeded subset, the same on every rank
                images = images[
                    torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
                ]
            cache = None
            if self.fid.get("cache_dir"):
                root = getattr(datamodule, "root", None)
                name = type(datamodule).__name__.removesuffix("DataModule").lower()
                if root is not None and name == "imagefolder":  # different folders, different sets
                    name += "-" + Path(str(root)).name
                cache = real_stats_file(
                    self.fid["cache_dir"],
                    name,
                    "train",
                    list(datamodule.shape[1:]),
                    metrics.name,
                    len(images),
                )
            mine = shard(len(images), trainer.global_rank, trainer.world_size)
            batch = self.batch_size or 64
            share = images[mine.start : mine.stop]
            batches = (
                to_model_range(share[i : i + batch], datamodule.max_value).to(pl_module.device)
                for i in range(0, len(share), batch)
            )
            metrics.load_or_compute_real(batches, cache)
        self.image_metrics = metrics
        return metrics

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        reference = trainer.datamodule.x_val
        shape = tuple(reference.shape[1:])
        images = reference.dim() == 4
        step = self.step if self.step is not None else trainer.global_step
        was_training = pl_module.training
        pl_module.eval()
        metrics: dict[str, float] = {}
        sequential_mmd: dict[str, float] = {}
        self.curves, self.plots, self.samples = {}, {}, {}
        try:
            image_metrics = self._image_metrics(trainer, pl_module) if images else None
            for sampler in self.samplers:
                name, prefix = sampler.name, f"eval/{sampler.name}"
                curve_reference = None if images else reference
                local, samples, stats, curve = self.generate(
                    trainer, pl_module, sampler, shape, curve_reference
                )
                self.samples[name] = samples
                if images:
                    image_metrics.reset()
                    for part in local.split(self.batch_size or 64):
                        image_metrics.update_fake(part)
                    scores = image_metrics.compute()  # collective: every rank, the same numbers
                    metrics.update({f"{prefix}/{k}": v for k, v in scores.items()})
                    with image_metrics.fid.sync_context(should_unsync=True):  # the count over all ranks
                        counted = int(image_metrics.fid.fake_features_num_samples)
                else:
                    metrics[f"{prefix}/mmd"] = self.mmd(samples, reference)
                    counted = len(samples)
                metrics[f"{prefix}/num_samples"] = counted
                metrics[f"{prefix}/nfe"] = stats["nfe"]
                metrics[f"{prefix}/passes"] = stats["passes"]
                metrics[f"{prefix}/seconds"] = stats["seconds"]
                if not stats["converged"]:
                    log.warning("%s stopped at max_passes=%d before converging", name, stats["passes"])
                if not getattr(sampler, "parallel", False) and not images:
                    sequential_mmd[name] = metrics[f"{prefix}/mmd"]
                if curve:
                    self.curves[name] = curve
                    if self.mmd_threshold is not None:
                        hit = first_below(curve, self.mmd_threshold)
                        if hit is not None:
                            metrics[f"{prefix}/passes_to_threshold"] = hit["pass"]
                            metrics[f"{prefix}/nfe_to_threshold"] = hit["nfe"]
                if trainer.is_global_zero and self.output_dir is not None:
                    path = self.output_dir / "plots" / f"samples_{name}_step{step:06d}.png"
                    score = (
                        f"FID {metrics[f'{prefix}/fid']:.1f}"
                        if images
                        else f"MMD^2 {metrics[f'{prefix}/mmd']:.2e}"
                    )
                    title = f"{name}, step {step}: {score}, NFE {stats['nfe']:.0f}, passes {stats['passes']}"
                    if plot_samples(samples, reference, path, title) is not None:
                        self.plots[f"{prefix}/samples"] = path
            if not images:
                normal = torch.randn(
                    self.num_samples, *shape, generator=torch.Generator().manual_seed(self.seed)
                )
                metrics["eval/normal_mmd"] = self.mmd(normal, reference)
        finally:
            pl_module.train(was_training)
        if trainer.is_global_zero and self.output_dir is not None:
            self._write_curves(step, sequential_mmd)
        self.results = metrics
        if trainer.is_global_zero:
            self._log(trainer, metrics)
        return metrics

    def _write_curves(self, step: int, sequential_mmd: dict[str, float]) -> None:
        for name, curve in self.curves.items():
            out = self.output_dir / "eval" / f"{name}_passes_step{step:06d}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            payload = {"sampler": name, "step": step, "threshold": self.mmd_threshold, "passes": curve}
            out.write_text(json.dumps(payload, indent=1))
            hit = first_below(curve, self.mmd_threshold) if self.mmd_threshold is not None else None
            reached = f"below threshold at pass {hit['pass']}" if hit else "never below threshold"
            title = f"{name}, step {step}: MMD^2 after each pass ({reached})"
            path = self.output_dir / "plots" / f"mmd_per_pass_{name}_step{step:06d}.png"
            self.plots[f"eval/{name}/mmd_per_pass"] = plot_pass_curve(
                curve, path, title, self.mmd_threshold, sequential_mmd
            )

    def _log(self, trainer, metrics: dict[str, float]) -> None:
        step = self.step if self.step is not None else trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if isinstance(logger, WandbLogger):  # plots as wandb.Image, pass curves as line plots
                for key, path in self.plots.items():
                    logger.log_image(key=key, images=[str(path)], step=step, caption=[path.stem])
                for name, curve in self.curves.items():
                    chart = wandb_pass_curve(name, curve)
                    logger.log_metrics({f"eval/{name}/mmd_per_pass_curve": chart}, step)
            logger.save()
        log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
