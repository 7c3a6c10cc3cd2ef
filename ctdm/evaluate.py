"""`python -m ctdm.evaluate ckpt_path=<ckpt> [overrides]`: score a trained model without training.

The network, data, diffusion and loss settings come from the checkpoint's stored config (its
`ctdm_config`, the config groups it was composed from in `ctdm_choices`); the evaluation settings
(`sampler`, `eval/samplers`, `eval.*`, `trainer`, `logger`) from this command; a command-line override
of any key wins over both (e.g. `data.root=/elsewhere`). Without `ckpt_path` the model is built from
the config alone: a pretrained network (`model=pretrained_ddpm`) scored before any fine-tuning.

It runs the same SampleEvaluation a training run ends with, inside `trainer.validate` (so
`trainer=ddp_cpu` or `trainer=ddp` shard the samples over ranks and the held-out metrics
val/nll, val/cdl_acc come along), and writes into its own run folder (logs/evaluate/runs/...):
`metrics.json` (flat `eval/<sampler>/<metric>` and `val/*` keys, and the checkpoint's training cost as
`train/seconds`, `train/steps`, `train/rows_forward`, `train/rows_backward`: ctdm.training_cost),
`samples_<sampler>.npy` (every sample, written as it is drawn: memory follows eval.batch_size, not
eval.num_samples) and the sample plots. Its W&B run joins the group of the run it scores
(ctdm.tracking.evaluation_identity).

Why the checkpoint's group choices are added to the command line before Hydra parses it, rather than the
config being composed from the run's own .hydra folder: Hydra composes before any of ctdm's code runs, and
an override of a key of those groups (`data.root=...`) composes only when the groups are chosen; Hydra
cannot choose groups from a file at composition (defaults-list interpolation reads other choices only, and
--experimental-rerun takes no overrides). The checkpoint, not .hydra/, is the source: it travels alone
and holds the resolved config the weights were trained with (today's conf/ defaults may differ).
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ctdm import run_folder
from ctdm.cli import preflight, quiet_libraries
from ctdm.config import user_errors
from ctdm.config_dir import CONFIG_DIR

log = logging.getLogger(__name__)

# What a checkpoint decides: the network and what it was trained on and for.
FROM_CHECKPOINT = ("model", "data", "diffusion", "loss")


def stored_group_choices(argv: list[str]) -> list[str]:
    """Group overrides (`data=cifar10`, `model=unet_cifar`, ...) that recompose the checkpoint's config
    groups, for the groups of FROM_CHECKPOINT that the command line does not choose itself; [] when
    there is no readable checkpoint (evaluate() then reports what is wrong with it)."""
    paths = [a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")]
    if not paths or not Path(paths[-1]).is_file():
        return []
    import torch

    try:
        choices = torch.load(paths[-1], map_location="cpu", weights_only=False, mmap=True).get("ctdm_choices")
    except Exception:  # unreadable: load_checkpoint names the problem inside the run
        return []
    given = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}
    return [
        f"{group}={choice}"
        for group, choice in (choices or {}).items()
        if group.split("/")[0] in FROM_CHECKPOINT
        and group not in given
        and isinstance(choice, str)
        and not _derived(group)
    ]


def _derived(group: str) -> bool:
    """A private nested group (`loss/_data@loss.cdl`, chosen by `${data}` inside conf/loss/_cdl.yaml): its
    choice follows from the groups that are re-chosen, so it is not put on the command line."""
    return any(part.startswith("_") for part in group.split("@")[0].split("/"))


def evaluation_config(
    cfg: DictConfig, stored: dict, overrides: list[str], stored_choices: dict | None = None
) -> DictConfig:
    """`cfg` (this command's composition) with the FROM_CHECKPOINT nodes replaced by the checkpoint's
    stored (resolved) ones, then this command's overrides of those nodes applied again on top (a group
    override that re-chooses the checkpoint's own option, as `stored_group_choices` adds, changes
    nothing)."""
    merged = cfg.copy()
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    with open_dict(merged):
        for key in FROM_CHECKPOINT:
            if key in stored:  # typed nodes (the schema's diffusion) take a merge, open ones the value
                typed = OmegaConf.get_type(merged, key) not in (dict, None)
                merged[key] = OmegaConf.merge(merged[key], stored[key]) if typed else stored[key]
        for override in OverridesParser.create().parse_overrides(overrides):
            key = override.key_or_group
            if key in choices and (stored_choices or {}).get(key) == override.value():
                continue
            path = key.replace("/", ".") if key in choices else key  # a group's package is its path
            if path.split(".")[0] in FROM_CHECKPOINT and not override.is_delete():
                OmegaConf.update(merged, path, OmegaConf.select(cfg, path), merge=False, force_add=True)
    return merged


def evaluate(cfg: DictConfig) -> dict:
    """Build the model (from the checkpoint, or the config alone), validate and sample; returns the
    metrics, also written to metrics.json. The run folder is locked meanwhile (ctdm.run_folder)."""
    with run_folder.held(cfg.paths.output_dir, run_folder.output_dir_key()):
        return _evaluate(cfg)


def _evaluate(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    (out / "metrics.json").unlink(missing_ok=True)  # only this run's may exist
    checkpoint = None
    if cfg.get("ckpt_path") is not None:
        from ctdm.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(cfg.ckpt_path)
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = evaluation_config(cfg, checkpoint["ctdm_config"], overrides, checkpoint.get("ctdm_choices"))
    preflight(cfg)  # before the heavy imports below
    quiet_libraries()
    from ctdm.build import build_module, build_run, load_module
    from ctdm.callbacks import SampleEvaluation
    from ctdm.tracking import evaluation_identity, offline_runs, record_summary, run_identity
    from ctdm.training_cost import CHECKPOINT_KEY, TrainingCost

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    identity = run_identity(cfg, hydra_cfg)
    if checkpoint is not None:
        identity = evaluation_identity(identity, checkpoint, cfg.ckpt_path, hydra_cfg)

    if checkpoint is not None:  # the EMA weights when the run had EMA (ctdm.callbacks.ema)
        model = load_module(cfg.ckpt_path, cfg)
        step = int(checkpoint.get("global_step", 0))
    else:
        model, step = build_module(cfg), 0
    evaluation = instantiate(cfg.callbacks.sample_evaluation)
    if not isinstance(evaluation, SampleEvaluation):
        raise ValueError(
            f"callbacks.sample_evaluation builds {type(evaluation).__name__}; ctdm.evaluate needs "
            "ctdm.callbacks.SampleEvaluation."
        )
    evaluation.step = step  # plots and logs carry the checkpoint's step
    evaluation.samples_dir = out  # samples_<sampler>.npy, written as they come
    # (no checkpoint: the likelihood reference comes from the data)
    run = build_run(cfg, model, [evaluation], identity)
    evaluation.check_memory(model, run.datamodule, run.trainer)  # refused with the estimate, before sampling
    log.info("Evaluating %s into %s", cfg.get("ckpt_path") or "the config's model", out)
    validation = run.trainer.validate(model, datamodule=run.datamodule, verbose=False)
    metrics = {k: float(v) for k, v in (validation[0] if validation else {}).items()}
    metrics.update(evaluation.results)
    metrics["global_step"] = step
    if checkpoint is not None and CHECKPOINT_KEY in checkpoint:  # a point on a cost curve: the totals there
        metrics.update(TrainingCost.from_checkpoint(checkpoint).metrics())
    record_summary(run.loggers, metrics)
    if run.trainer.is_global_zero:
        write_outputs(out, metrics, evaluation)
        for folder in offline_runs(run.loggers):
            print(f"  W&B, offline: wandb sync {folder}", flush=True)
    return metrics


def write_outputs(out: Path, metrics: dict, evaluation) -> None:
    """metrics.json (atomically: it exists only for a finished evaluation); the samples are already in
    samples_<sampler>.npy (written as they came)."""
    import json

    from ctdm.evaluation import sampler_table

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    tmp.replace(out / "metrics.json")
    lines = [f"Evaluation finished: {out}", *sampler_table(metrics)]
    lines += [f"  {k}: {v:.6g}" for k, v in sorted(metrics.items()) if len(k.split("/")) != 3]
    lines += [f"  plot: {p}" for p in evaluation.plots.values()]
    lines += [f"  samples: {r.samples_file}" for r in evaluation.result.samplers if r.samples_file]
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def _main(cfg: DictConfig) -> None:
    with user_errors(cfg):
        evaluate(cfg)


def main() -> None:
    # Recompose the checkpoint's config groups before Hydra parses the command line, so overrides of
    # their keys (data.root=...) apply to the groups the model was trained with. Through argv rather than
    # Hydra's compose API on the run's .hydra folder: the choices travel inside the checkpoint (a copied or
    # downloaded checkpoint has no run folder), and @hydra.main reads overrides only from the command line,
    # while composing outside it would lose -m sweeps over checkpoints, the run folder and its logging.
    sys.argv[1:] = stored_group_choices(sys.argv[1:]) + sys.argv[1:]
    _main()


if __name__ == "__main__":
    main()
