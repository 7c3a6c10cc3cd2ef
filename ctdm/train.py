"""Hydra entry point: `python -m ctdm.train [overrides]` trains, samples and evaluates one run.

Composes conf/config.yaml, instantiates every object from its `_target_`, fits, runs the sample
evaluation callback, writes `summary.json` into the run folder (only on success) and prints a
short summary.
"""

import json
import logging
import math
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ctdm.callbacks import SampleEvaluation
from ctdm.logging import instantiate_loggers

log = logging.getLogger(__name__)


def _fail(key: str, value, allowed: str) -> None:
    raise ValueError(f"Config key {key}={value!r} is not valid: {allowed}.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_config(cfg: DictConfig) -> None:
    """Type checks on the keys every run relies on, before anything is built or written."""
    if cfg.get("seed") is not None and not _is_int(cfg.seed):
        _fail("seed", cfg.seed, "it must be an integer or null")
    max_steps = cfg.trainer.get("max_steps", -1)
    if not _is_int(max_steps) or not (max_steps == -1 or max_steps >= 1):
        _fail("trainer.max_steps", max_steps, "it must be a positive integer (or -1 for no limit)")
    batch_size = cfg.data.get("batch_size")
    if not _is_int(batch_size) or batch_size < 1:
        _fail("data.batch_size", batch_size, "it must be a positive integer, the global batch size")
    for name, term in (cfg.get("loss") or {}).items():
        weight = term.get("weight")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            _fail(f"loss.{name}.weight", weight, "it must be a finite number >= 0")
    strategy = str(cfg.trainer.get("strategy", ""))
    if strategy.startswith("ddp") and "spawn" not in strategy and _is_multirun():
        raise ValueError(
            f"trainer.strategy={strategy!r} re-launches the script once per device, which under Hydra "
            "multirun (-m) would start nested sweeps. Use trainer=ddp_spawn for multirun sweeps on one "
            "machine, or a cluster launcher (hydra/launcher=submitit_slurm) that starts one job per run."
        )


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def train(cfg: DictConfig) -> dict:
    """Fit and evaluate one run; returns the summary that is also written to summary.json."""
    validate_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    loss = instantiate(cfg.loss, _convert_="all")
    model = instantiate(cfg.model, loss=loss, likelihood=OmegaConf.to_container(cfg.diffusion.likelihood))
    # The run's resolved config travels in every checkpoint (Hydra's own node stays out).
    model.run_config = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = instantiate_loggers(cfg)  # W&B's name, group, tags, job type from the run (ctdm.logging)
    for logger in loggers:  # the resolved config: W&B's run config, the CSV logger's hparams.yaml
        logger.log_hyperparams(model.run_config)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    log.info("Output folder: %s", cfg.paths.output_dir)
    model.set_data_var(datamodule.data_var)  # before fit: the EMA callback copies the module when fit starts
    # The training order and noise depend on (seed, step, rank) alone, so a resumed run replays them.
    seed = cfg.seed if cfg.get("seed") is not None else torch.initial_seed()
    model.noise_seed = datamodule.shuffle_seed = seed
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    for callback in callbacks:
        if isinstance(callback, SampleEvaluation):
            metrics.update(callback.results)
    plots = [str(p) for c in callbacks if isinstance(c, SampleEvaluation) for p in c.plots.values()]
    checkpoints = [c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)]
    summary = {
        "output_dir": str(cfg.paths.output_dir),
        "global_step": trainer.global_step,
        "metrics": metrics,
        "plots": plots,
        "last_checkpoint": checkpoints[0].last_model_path if checkpoints else None,
        "best_checkpoint": checkpoints[0].best_model_path if checkpoints else None,
    }
    if trainer.is_global_zero:
        _write_summary(summary)
    return summary


def _write_summary(summary: dict) -> None:
    out = Path(summary["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")  # atomic: a summary.json always means a finished run
    m = summary["metrics"]
    lines = [f"Run finished: {summary['output_dir']}", f"  steps: {summary['global_step']}"]
    if "train/loss" in m:
        lines.append(f"  final train loss (last step): {m['train/loss']:.4f}")
    if "val/loss" in m:
        lines.append(f"  validation loss: {m['val/loss']:.4f}")
    if "val/nll" in m:
        acc = m.get("val/cdl_acc", float("nan"))
        lines.append(f"  val/nll (nats per sample): {m['val/nll']:.4f}; val/cdl_acc: {acc:.3f}")
    for key, value in m.items():
        if key.endswith("/mmd"):
            lines.append(f"  {key} (squared MMD): {value:.3e}")
    if "eval/normal_mmd" in m:
        lines.append(f"  eval/normal_mmd (standard-normal baseline): {m['eval/normal_mmd']:.3e}")
    lines += [f"  plot: {p}" for p in summary["plots"]]
    lines.append(f"  checkpoints: {summary['last_checkpoint']} (last), {summary['best_checkpoint']} (best)")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    finally:
        import wandb  # multirun jobs share a process: close the run so the next job starts its own

        if wandb.run is not None:
            wandb.finish()
    # The value Hydra sweepers (e.g. Optuna) minimise, when `optimized_metric` names one.
    key = cfg.get("optimized_metric")
    return summary["metrics"].get(key) if key else None


if __name__ == "__main__":
    main()
