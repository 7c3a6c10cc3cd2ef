"""Who a run is, for experiment trackers, and what W&B gets beside the metrics (no Lightning here).

A W&B dashboard compares runs by these: the name says what the run changed (under -m only the keys the
sweep varies: `loss.cdl.weight=0.1,seed=1`), the group gathers the jobs of one sweep or one experiment
(`loss.cdl.weight,seed/2026-01-02_03-04-05`, `paper_dino/authors`), the tags say which config options
were chosen, and the job type tells training (`train`) from evaluation (`eval`). An evaluation joins the
group of the run it scored and records that run's id. The hyperparameters themselves (the resolved
config) are logged by ctdm.build, with numbers of one type per key (`declared_floats`).
"""

import inspect
import typing
from collections.abc import Mapping
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

# Config groups whose chosen option becomes a tag `group=option`, in this order.
TAG_GROUPS = ("data", "model", "loss", "sampler", "experiment", "debug")
# Keys of a logger's config that, left null, are filled from `run_identity` (ctdm.build.build_loggers).
IDENTITY_KEYS = ("name", "group", "tags", "job_type")
# Hydra's job names (the entry points' modules) -> W&B job types.
JOB_TYPES = {"train": "train", "evaluate": "eval"}


def swept_keys(hydra_cfg: Mapping) -> list[str] | None:
    """The keys a multirun sweeps (those given several values on its command line), read from the sweep
    folder's multirun.yaml (Hydra's sweeper writes it before the jobs start); None outside a multirun."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    file = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if not file.is_file():
        return None
    task = list(OmegaConf.load(file).hydra.overrides.task)
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()]


def override_dirname(hydra_cfg: Mapping, keys: list[str] | None = None) -> str:
    """Hydra's `hydra.job.override_dirname` (the overrides without `hydra.job.config.override_dirname.
    exclude_keys`, sorted, joined by its item_sep and kv_sep), restricted to `keys` when given."""
    if keys is None:
        return str(hydra_cfg.job.override_dirname)
    settings = hydra_cfg.job.config.override_dirname
    overrides = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    kept = [o for o in overrides if o.key_or_group in keys and o.key_or_group not in settings.exclude_keys]
    lines = sorted(o.input_line for o in kept)
    return settings.item_sep.join(lines).replace("=", settings.kv_sep)


def run_identity(cfg: Mapping, hydra_cfg: Mapping | None = None) -> dict:
    """{name, group, tags, job_type} of a run from its config and Hydra's runtime config.

    name: Hydra's override_dirname, i.e. the command-line overrides less the keys about where and how the
      run logs (conf/hydra/default.yaml lists them); under -m only the swept keys (`loss.cdl.weight=0.1,
      seed=1`: the sweep's fixed overrides are its group's); a run without any is named by its data and
      loss choices.
    group: under -m `<what>/<sweep folder's name>`, what being the experiment option when set, else the
      swept keys (`loss.cdl.weight,seed/2026-01-02_03-04-05`); a single run of an experiment: the
      experiment's name; else null (a single run is a group of its own).
    tags: `group=option` for the chosen data, model, loss and sampler options, and the experiment and
      debug presets when chosen (so smoke runs can be filtered out).
    job_type: `train` or `eval` (the entry point).
    Without Hydra (hydra_cfg None): the task name, no group, no tags, job type `train`.
    """
    if hydra_cfg is None:
        return {"name": str(cfg.get("task_name", "train")), "group": None, "tags": [], "job_type": "train"}
    choices = {k: v for k, v in (hydra_cfg.runtime.choices or {}).items() if v is not None}
    swept = swept_keys(hydra_cfg)
    name = override_dirname(hydra_cfg, swept)
    name = name or ",".join(f"{g}={choices[g]}" for g in ("data", "loss") if g in choices)
    group = choices.get("experiment")
    if hydra_cfg.mode == RunMode.MULTIRUN:
        what = group or ",".join(swept or []) or "sweep"
        group = f"{what}/{Path(str(hydra_cfg.sweep.dir)).name}"
    return {
        "name": name or str(cfg.get("task_name", "train")),
        "group": None if group is None else str(group),
        "tags": [f"{g}={choices[g]}" for g in TAG_GROUPS if g in choices],
        "job_type": JOB_TYPES.get(str(hydra_cfg.job.name), str(hydra_cfg.job.name)),
    }


def evaluation_identity(own: dict, checkpoint: Mapping, ckpt_path: str, hydra_cfg: Mapping | None) -> dict:
    """An evaluation's identity (`own`: its run_identity) joined to the run it scored: that run's group, its
    name followed by `eval` and this command's own overrides (not the checkpoint's group choices, which
    ctdm.evaluate adds itself), job type `eval`, and `trained_run` (that run's W&B id, name, group, the
    checkpoint and its step) for the W&B config."""
    trained = checkpoint.get("ctdm_identity") or {}
    stored = checkpoint.get("ctdm_choices") or {}
    mine = []
    if hydra_cfg is not None:
        for o in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
            excluded = o.key_or_group in hydra_cfg.job.config.override_dirname.exclude_keys
            if not excluded and stored.get(o.key_or_group) != o.value():
                mine.append(o.input_line)
    trained_name = trained.get("name") or Path(ckpt_path).expanduser().resolve().parent.parent.name
    return {
        **own,
        "name": " ".join([trained_name, "eval", ",".join(sorted(mine))]).strip(),
        "group": trained.get("group"),
        "job_type": "eval",
        "trained_run": {
            "id": checkpoint.get("ctdm_wandb_id"),
            "name": trained.get("name"),
            "group": trained.get("group"),
            "ckpt_path": str(ckpt_path),
            "step": int(checkpoint.get("global_step", 0)),
        },
    }


def _declares_float(annotation) -> bool:
    """float, float | None, Optional[float]: an argument that takes a real number."""
    if annotation is float:
        return True
    args = typing.get_args(annotation)
    return bool(args) and float in args and all(a in (float, type(None)) for a in args)


def declared_floats(config):
    """The config with every int made a float where the class its node builds (`_target_`) declares the
    argument a float (`weight: float`), so `loss.cdl.weight=1` and `=0.1` reach W&B as numbers of one type
    (an int and a float make two columns that sort and group apart). Bools and other values are kept."""
    if isinstance(config, list):
        return [declared_floats(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {k: declared_floats(v) for k, v in config.items()}
    target = config.get("_target_")
    if isinstance(target, str):
        try:
            from hydra.utils import get_object

            obj = get_object(target)
            hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
        except Exception:  # a target that cannot be inspected keeps its values as they are
            hints = {}
        for key, value in out.items():
            if type(value) is int and _declares_float(hints.get(key)):
                out[key] = float(value)
    return out


def wandb_line(columns: list[str], rows: list[list], x: str, y: str, title: str):
    """A W&B line plot over a table (kept in the run's files). Logged under the same key by every run,
    so a workspace panel of that key overlays the runs, coloured by run (or grouped by their groups)."""
    import wandb

    return wandb.plot.line(wandb.Table(columns=columns, data=rows), x, y, title=title)


def wandb_pass_curve(name: str, curve: list[dict]):
    """A parallel sampler's metric after each Picard pass ([{"pass", "nfe", "mmd"}]) as a W&B line plot."""
    rows = [[c["pass"], c["nfe"], c["mmd"]] for c in curve]
    title = f"{name}: squared MMD after each Picard pass"
    return wandb_line(["pass", "nfe", "mmd"], rows, "pass", "mmd", title)


def offline_runs(loggers) -> list[Path]:
    """The folders of this run's offline W&B runs: what `wandb sync` uploads later."""
    from lightning.pytorch.loggers import WandbLogger

    folders = []
    for logger in loggers:
        if isinstance(logger, WandbLogger) and getattr(logger.experiment, "offline", False):
            folders.append(Path(logger.experiment.dir).parent)
    return folders


def record_summary(loggers, metrics: Mapping[str, float]) -> None:
    """Every final metric in each W&B run's summary (what the runs table and its columns show), not only the
    keys logged last."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and hasattr(logger.experiment, "summary"):  # not when disabled
            logger.experiment.summary.update(dict(metrics))
