"""Hydra entry point: `python -m ctdm.train [overrides]` trains, samples and evaluates one run.

Composes conf/config.yaml, instantiates every object from its `_target_`, fits, runs the sample
evaluation callback, writes `summary.json` into the run folder (only on success) and prints a
short summary.
"""

import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from ctdm.build import build_callbacks, build_module, build_run
from ctdm.callbacks import SampleEvaluation
from ctdm.checkpoint import check_network, load_checkpoint
from ctdm.config import check_config, check_optimized_metric, user_errors

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit and evaluate one run; returns the summary that is also written to summary.json.

    Everything a user can get wrong is checked first, in this order, before any data is read:
    the config's values, the objects built from it (each class checks its own arguments), the
    checkpoint to resume from.
    """
    (Path(cfg.paths.output_dir) / "summary.json").unlink(missing_ok=True)  # only this run's may exist
    check_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    model = build_module(cfg)
    if cfg.get("ckpt_path") is not None:
        checkpoint = load_checkpoint(cfg.ckpt_path)
        check_network(checkpoint, model, OmegaConf.to_container(cfg.model, resolve=True), cfg.ckpt_path)
        _continue_wandb_run(cfg, checkpoint)
        del checkpoint  # Lightning reads it again in fit
    callbacks = build_callbacks(cfg)
    # The data is read before fit, as the EMA callback copies the module when fit starts.
    run = build_run(cfg, model, callbacks)
    trainer, datamodule = run.trainer, run.datamodule

    log.info("Output folder: %s", cfg.paths.output_dir)
    # The training order and noise depend on (seed, step, rank) alone, so a resumed run replays them.
    seed = cfg.seed if cfg.get("seed") is not None else torch.initial_seed()
    model.noise_seed = datamodule.shuffle_seed = seed
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    for callback in callbacks:
        if isinstance(callback, SampleEvaluation):
            metrics.update(callback.results)
    check_optimized_metric(cfg.get("optimized_metric"), metrics)
    plots = [str(p) for c in callbacks if isinstance(c, SampleEvaluation) for p in c.plots.values()]
    checkpoints = [c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)]
    # The one that monitors a metric keeps the best; the one that does not, the latest (callbacks/).
    best = next((c.best_model_path for c in checkpoints if c.monitor), None)
    last = next((c.best_model_path or c.last_model_path for c in checkpoints if not c.monitor), None)
    summary = {
        "output_dir": str(cfg.paths.output_dir),
        "global_step": trainer.global_step,
        "metrics": metrics,
        "plots": plots,
        "last_checkpoint": last or next((c.last_model_path for c in checkpoints if c.last_model_path), None),
        "best_checkpoint": best,
    }
    if trainer.is_global_zero:
        _write_summary(summary)
    return summary


def _continue_wandb_run(cfg: DictConfig, checkpoint: dict) -> None:
    """Resuming: log to the W&B run the checkpoint came from (its id, resume="allow"), so the dashboard
    shows one run, unless logger.wandb.id is set."""
    run_id = checkpoint.get("ctdm_wandb_id")
    wandb = (cfg.get("logger") or {}).get("wandb")
    if run_id and wandb is not None and "id" in wandb and wandb.id is None:
        wandb.id = run_id


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
    with user_errors(cfg):
        summary = train(cfg)
    # The value Hydra sweepers (e.g. Optuna) minimise, when `optimized_metric` names one.
    key = cfg.get("optimized_metric")
    return summary["metrics"][key] if key else None


if __name__ == "__main__":
    main()
