"""SampleEvaluation: the Lightning adapter of ctdm.evaluation.

The callback decides when to evaluate (at the end of training, every `every_n_steps` steps, or once in
`trainer.validate`: how `python -m ctdm.evaluate` scores a checkpoint), with which weights (the EMA
average when the run has one), on which ranks and device. ctdm.evaluation draws and scores the samples
(each rank its share of the per-sample seeds; MMD for low-dimensional data, FID/KID for images); rank 0
writes the plots and per-pass curves into the run folder and logs the metrics to the trainer's loggers
(W&B also gets the plots as images and the per-pass curves as line plots).
"""

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from ctdm.callbacks.ema import averaged_weights
from ctdm.evaluation import (
    EvaluationResult,
    ImageScorer,
    MMDScorer,
    Ranks,
    budget,
    evaluate_samplers,
    image_scorer,
    is_image_data,
    write_outputs,
)
from ctdm.metrics import check_bandwidth
from ctdm.metrics.image import build_extractor
from ctdm.tracking import wandb_pass_curve

log = logging.getLogger(__name__)

IMAGE_PREVIEW = 64  # generated images an evaluation keeps in memory (the plot's grid); the rest stream


class SampleEvaluation(L.Callback):
    """Evaluate every sampler at the end of training (and every `every_n_steps` steps if set), or once
    in `trainer.validate`.

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
    kid_subsets); used only for image data. `self.result` keeps the last evaluation (its samples too).
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
        kid_max = self.fid.get("kid_max_samples", 10_000)
        if kid_max is not None and (isinstance(kid_max, bool) or not isinstance(kid_max, int) or kid_max < 2):
            raise ValueError(f"eval.fid.kid_max_samples must be null or an integer >= 2, got {kid_max!r}.")
        self.progress_bar = progress_bar
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.image_scorer: ImageScorer | None = None  # built at the first image evaluation (real side once)
        self._extractor = None  # its feature network, built in setup for image data
        self.result: EvaluationResult | None = None
        self.plots: dict[str, Path] = {}
        self.step: int | None = None  # the training step to report (ctdm.evaluate: the checkpoint's)
        self.samples_dir: Path | None = None  # where every sample is written as it comes (ctdm.evaluate)

    @property
    def results(self) -> dict[str, float]:
        return self.result.metrics if self.result is not None else {}

    @property
    def curves(self) -> dict[str, list[dict]]:
        return self.result.curves if self.result is not None else {}

    @property
    def samples(self) -> dict[str, Tensor]:
        return self.result.samples if self.result is not None else {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Image data: build the feature extractor now, so missing weights fail before training, not after.
        datamodule = getattr(trainer, "datamodule", None)
        x_val = getattr(datamodule, "x_val", None)
        if self.image_scorer is None and self._extractor is None and x_val is not None and x_val.dim() == 4:
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

    def scorer(self, trainer, pl_module, ranks: Ranks) -> MMDScorer | ImageScorer:
        """MMD against the held-out points, or FID/KID with the real side computed (or read) once."""
        datamodule = trainer.datamodule
        if not is_image_data(datamodule):
            return MMDScorer(datamodule.x_val, self.mmd_bandwidth, self.mmd_units)
        if self.image_scorer is None:
            extractor = self._extractor if self._extractor is not None else self._build_extractor()
            self.image_scorer = image_scorer(
                datamodule,
                extractor,
                ref_stats=self.fid.get("ref_stats"),
                cache_dir=self.fid.get("cache_dir"),
                real_count=self.fid.get("real_count"),
                kid_subset_size=self.fid.get("kid_subset_size", 1000),
                kid_subsets=self.fid.get("kid_subsets", 100),
                kid_max_samples=self.fid.get("kid_max_samples", 10_000),
                batch_size=self.batch_size or 64,
                ranks=ranks,
                device=pl_module.device,
            )
        return self.image_scorer

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        reference = trainer.datamodule.x_val
        step = self.step if self.step is not None else trainer.global_step
        world = trainer.world_size
        ranks = Ranks(trainer.global_rank, world, trainer.strategy.all_gather if world > 1 else None)
        was_training = pl_module.training
        pl_module.eval()
        self.plots = {}
        try:
            self.result = evaluate_samplers(
                self.samplers,
                pl_module.parameterization,  # the plain nn.Module answering eps(z, logsnr)
                self.scorer(trainer, pl_module, ranks),
                tuple(reference.shape[1:]),
                num_samples=self.num_samples,
                seed=self.seed,
                batch_size=self.batch_size,
                threshold=self.mmd_threshold,
                ranks=ranks,
                device=pl_module.device,
                precision=getattr(trainer, "precision", None),  # as in training (bf16)
                progress=self.progress_bar,
                samples_dir=self.samples_dir,  # streamed to disk; only a preview of images is kept
                keep=IMAGE_PREVIEW if is_image_data(trainer.datamodule) else None,
            )
        finally:
            pl_module.train(was_training)
        if trainer.is_global_zero and self.output_dir is not None:
            self.plots = write_outputs(self.result, self.output_dir, step, reference)
        if trainer.is_global_zero:
            self._log(trainer, step)
        return self.results

    def check_memory(self, module, datamodule, trainer) -> None:
        """Refuse, before any training step, an evaluation that cannot fit in memory, with the estimate
        (ctdm.evaluation.budget), on the device and number of ranks of `trainer`; for images, the FID
        feature extractor is built now, so an unknown one fails before training, not after it."""
        datamodule.setup("fit")
        if is_image_data(datamodule) and self.image_scorer is None and self._extractor is None:
            try:
                self._extractor = build_extractor(self._build_extractor() or "inception")
            except ValueError as err:
                raise ValueError(f"eval.fid.extractor: {err}") from None
        shape = tuple(datamodule.x_val.shape[1:])
        train_images = getattr(datamodule, "images_train", None)
        options = dict(
            num_samples=self.num_samples,
            world=max(1, trainer.num_nodes * trainer.num_devices),  # each rank draws its share
            per_row=budget.forward_bytes_per_row(module.parameterization, shape),
            images=is_image_data(datamodule),
            reference_points=len(datamodule.x_val),
            real_images=self.fid.get("real_count") or (len(train_images) if train_images is not None else 0),
            kid_max_samples=self.fid.get("kid_max_samples", 10_000),
        )
        needed = budget.estimate(self.samplers, shape, batch_size=self.batch_size, **options)
        one_row = budget.estimate(self.samplers, shape, batch_size=1, **options)
        rows_cost = one_row.parts["sampling"] + one_row.parts["chunk gathered and written"]
        available, where = budget.available_bytes(trainer.strategy.root_device)
        budget.check_fits(
            needed,
            available,
            where,
            num_samples=self.num_samples,
            batch_size=self.batch_size,
            rows_cost=rows_cost,
        )

    def _log(self, trainer, step: int) -> None:
        metrics = self.results
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
