"""Hydra entry point: `python -m ctdm.train [overrides]` trains, samples and evaluates one run.

Composes conf/config.yaml, instantiates every object from its `_target_`, fits, runs the sample
evaluation callback, writes `summary.json` into the run folder (only on success) and prints a
short summary. Lightning and the libraries under it are imported after the config passed
ctdm.cli.preflight, so a config error is refused in seconds.
"""

import json
import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ctdm import run_folder
from ctdm.cli import preflight, quiet_libraries
from ctdm.config import check_finite_metrics, check_optimized_metric, user_errors
from ctdm.config_dir import CONFIG_DIR
from ctdm.finetune import resolve_finetune

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit and evaluate one run; returns the summary that is also written to summary.json.

    Everything a user can get wrong is checked first, in this order, before any data is read:
    before Lightning is imported, the config's values, the files it names and the arguments of the
    loss terms and samplers (ctdm.cli.preflight), and the checkpoint to resume from is read; then the
    module (each class checks its own arguments) and the checkpoint's network against it. The run folder
    is locked for the run (ctdm.run_folder).
    """
    with run_folder.held(cfg.paths.output_dir, run_folder.output_dir_key()):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict:
    (Path(cfg.paths.output_dir) / "summary.json").unlink(missing_ok=True)  # only this run's may exist
    resolve_finetune(cfg)  # a fine-tuning preset's finetune.base and .steps: ckpt_path, trainer.max_steps
    preflight(cfg)  # before the heavy imports below
    from ctdm.checkpoint import load_checkpoint, requeued_checkpoint

    if cfg.get("ckpt_path") is None and (requeued := requeued_checkpoint(cfg.paths.output_dir)):
        log.warning("Requeued SLURM job %s: resuming from %s", os.environ.get("SLURM_JOB_ID"), requeued)
        cfg.ckpt_path = str(requeued)
    checkpoint = None
    if cfg.get("ckpt_path") is not None:
        checkpoint = load_checkpoint(cfg.ckpt_path)
    quiet_libraries()
    import lightning as L
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from ctdm.build import build_callbacks, build_module, build_run, check_before_fit, resolved_config
    from ctdm.callbacks import Preempted, Preemption, SampleEvaluation, checkpoint_paths
    from ctdm.checkpoint import check_network, check_resume
    from ctdm.tracking import offline_runs, record_summary
    from ctdm.training_cost import summary_block

    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    model = build_module(cfg)
    if checkpoint is not None:
        check_network(checkpoint, model, OmegaConf.to_container(cfg.model, resolve=True), cfg.ckpt_path)
        check_resume(checkpoint, resolved_config(cfg), _choices(), cfg.ckpt_path, cfg.resume_changes)
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
    check_before_fit(cfg, run)  # the optimizer and the evaluation's memory, before any step
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:
        saved = next((c.saved for c in callbacks if isinstance(c, Preemption)), None)
        raise Preempted(trainer.global_step, saved, _resume_command()) from None
    except torch.OutOfMemoryError as error:  # one paragraph naming the keys; the run folder is kept
        from ctdm.losses.memory import StepOutOfMemory

        last, _ = checkpoint_paths(callbacks, cfg.paths.output_dir)
        batch = -(-int(cfg.data.batch_size) // max(1, trainer.world_size))
        raise StepOutOfMemory(error, model.loss_terms, batch, trainer.global_step, last) from None

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    for callback in callbacks:
        if isinstance(callback, SampleEvaluation):
            metrics.update(callback.results)
    metrics.update(model.training_cost.metrics())  # exact (the logged values are float32)
    check_finite_metrics(metrics, cfg.paths.output_dir)
    check_optimized_metric(cfg.get("optimized_metric"), metrics)
    record_summary(run.loggers, metrics)
    plots = [str(p) for c in callbacks if isinstance(c, SampleEvaluation) for p in c.plots.values()]
    last, best = checkpoint_paths(callbacks, cfg.paths.output_dir)  # this run's own files only
    summary = {
        "output_dir": str(cfg.paths.output_dir),
        "global_step": trainer.global_step,
        "metrics": metrics,
        "training": summary_block(model.cost_base, model.cost_this_run),
        "plots": plots,
        "last_checkpoint": last,
        "best_checkpoint": best,
        "wandb_offline": [str(p) for p in offline_runs(run.loggers)],  # to `wandb sync` later
    }
    if trainer.is_global_zero:
        _write_summary(summary)
    return summary


def _choices() -> dict | None:
    return OmegaConf.to_container(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else None


def _resume_command() -> str:
    """`python -m ctdm.train <this run's overrides>` without its ckpt_path: the command that resumes it."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in overrides if not o.startswith("ckpt_path=")]
    return " ".join(["python -m ctdm.train", *kept])


def _continue_wandb_run(cfg: DictConfig, checkpoint: dict) -> None:
    """Resuming: log to the W&B run the checkpoint came from (its id, resume="allow"), so the dashboard
    shows one run, unless logger.wandb.id is set."""
    run_id = checkpoint.get("ctdm_wandb_id")
    wandb = (cfg.get("logger") or {}).get("wandb")
    if run_id and wandb is not None and "id" in wandb and wandb.id is None:
        wandb.id = run_id


def _write_summary(summary: dict) -> None:
    from ctdm.evaluation import sampler_table

    out = Path(summary["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")  # atomic: a summary.json always means a finished run
    m = summary["metrics"]
    lines = [f"Run finished: {summary['output_dir']}", f"  steps: {summary['global_step']}"]
    cost = summary.get("training")
    if cost:
        run = cost["this_run"]
        chain = (
            f" ({cost['seconds']:.1f} s over the checkpoint chain)" if cost["steps"] != run["steps"] else ""
        )
        lines.append(
            f"  training: {run['seconds']:.1f} s in {run['steps']} steps{chain}, "
            f"{cost['rows_per_step']:.0f} network rows per step (forward + backward)"
        )
    if "train/loss" in m:
        lines.append(f"  final train loss (last step): {m['train/loss']:.4f}")
    if "val/loss" in m:
        lines.append(f"  validation loss: {m['val/loss']:.4f}")
    if "val/nll" in m:
        acc = m.get("val/cdl_acc", float("nan"))
        lines.append(f"  val/nll (nats per sample): {m['val/nll']:.4f}; val/cdl_acc: {acc:.3f}")
    lines += sampler_table(m)  # every sampler: FID, KID, MMD^2, passes, NFE, seconds
    if "eval/normal_mmd" in m:
        lines.append(f"  eval/normal_mmd (standard-normal baseline): {m['eval/normal_mmd']:.3e}")
    lines += [f"  plot: {p}" for p in summary["plots"]]
    best = summary["best_checkpoint"] or "none written by this run"
    lines.append(f"  checkpoints: {summary['last_checkpoint']} (last), {best} (best)")
    lines += [f"  W&B, offline: wandb sync {p}" for p in summary.get("wandb_offline", [])]
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    with user_errors(cfg):
        summary = train(cfg)
    # The value Hydra sweepers (e.g. Optuna) minimise, when `optimized_metric` names one.
    key = cfg.get("optimized_metric")
    return summary["metrics"][key] if key else None


if __name__ == "__main__":
    main()
