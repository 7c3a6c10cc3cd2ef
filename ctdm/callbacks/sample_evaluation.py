"""SampleEvaluation: run the configured samplers on the trained denoiser and score the samples.

Sample i is drawn with seed (seed << 32) + i whatever the rank or batch, so results do not depend
on the number of DDP ranks: each rank draws a contiguous share of indices, the shares are gathered,
and every rank computes the same metrics; only rank 0 writes logs and plots.
"""

import logging
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from ctdm.metrics import mmd2
from ctdm.plotting import plot_samples

log = logging.getLogger(__name__)


class SampleEvaluation(L.Callback):
    """Evaluate every sampler at the end of training (and every `every_n_steps` steps if set).

    Metrics (logged at the current global step, kept in `self.results`):
      eval/<sampler>/mmd      unbiased squared MMD (Gaussian kernel, `mmd_bandwidth`) against held-out data
      eval/<sampler>/nfe      network evaluations per sample; eval/<sampler>/passes: sequential depth
      eval/<sampler>/seconds  wall time of sampling
      eval/normal_mmd         the trivial baseline: standard-normal points against the same data
    """

    def __init__(
        self,
        samplers: list,
        num_samples: int = 2000,
        seed: int = 0,
        mmd_bandwidth: float = 0.1,
        every_n_steps: int | None = None,
        output_dir: str | None = None,
    ):
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"eval.num_samples must be an integer >= 2, got {num_samples!r}.")
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"eval.every_n_steps must be null or an integer >= 1, got {every_n_steps!r}.")
        if not (
            isinstance(mmd_bandwidth, (int, float)) and math.isfinite(mmd_bandwidth) and mmd_bandwidth > 0
        ):
            raise ValueError(f"eval.mmd_bandwidth must be a finite number > 0, got {mmd_bandwidth!r}.")
        self.samplers = list(samplers)
        self.num_samples, self.seed = num_samples, seed
        self.mmd_bandwidth, self.every_n_steps = mmd_bandwidth, every_n_steps
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.results: dict[str, float] = {}
        self.plots: dict[str, Path] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step < (trainer.max_steps or math.inf):
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.evaluate(trainer, pl_module)

    @torch.no_grad()
    def generate(self, trainer, pl_module, sampler, shape) -> Tensor:
        """All `num_samples` samples, drawn in per-rank shares and gathered in index order."""
        world, rank = trainer.world_size, trainer.global_rank
        share = math.ceil(self.num_samples / world)
        indices = torch.arange(rank * share, (rank + 1) * share)
        seeds = (self.seed << 32) + indices
        samples, stats = sampler(pl_module.eps, shape, seeds, device=pl_module.device)
        if world > 1:
            samples = trainer.strategy.all_gather(samples).flatten(0, 1)
        return samples[: self.num_samples].cpu(), stats

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        reference = trainer.datamodule.x_val
        shape = tuple(reference.shape[1:])
        was_training = pl_module.training
        pl_module.eval()
        metrics: dict[str, float] = {}
        try:
            for sampler in self.samplers:
                samples, stats = self.generate(trainer, pl_module, sampler, shape)
                prefix = f"eval/{sampler.name}"
                metrics[f"{prefix}/mmd"] = float(mmd2(samples, reference, self.mmd_bandwidth))
                metrics[f"{prefix}/nfe"] = stats.nfe
                metrics[f"{prefix}/passes"] = stats.passes
                metrics[f"{prefix}/seconds"] = stats.seconds
                if trainer.is_global_zero and self.output_dir is not None:
                    path = (
                        self.output_dir
                        / "plots"
                        / f"samples_{sampler.name}_step{trainer.global_step:06d}.png"
                    )
                    title = (
                        f"{sampler.name}, step {trainer.global_step}: MMD^2 {metrics[f'{prefix}/mmd']:.2e}"
                    )
                    if plot_samples(samples, reference, path, title) is not None:
                        self.plots[sampler.name] = path
            normal = torch.randn(self.num_samples, *shape, generator=torch.Generator().manual_seed(self.seed))
            metrics["eval/normal_mmd"] = float(mmd2(normal, reference, self.mmd_bandwidth))
        finally:
            pl_module.train(was_training)
        self.results = metrics
        if trainer.is_global_zero:
            self._log(trainer, metrics)
        return metrics

    def _log(self, trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                for name, path in self.plots.items():
                    logger.log_image(key=f"eval/{name}/samples", images=[str(path)], step=trainer.global_step)
            logger.save()
        log.info("step %d: %s", trainer.global_step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
