"""Who a run is, for experiment trackers: its name, group, tags and job type (no Lightning here).

A W&B dashboard compares runs by these: the name says what the command line changed
(`loss=contrastive,loss.cdl.weight=0.1,seed=1`), the group gathers the jobs of one sweep or one
experiment, the tags say which config options were chosen, and the job type tells training from
evaluation. The hyperparameters themselves (the resolved config) are logged by the entry points.
"""

from collections.abc import Mapping
from pathlib import Path

from hydra.types import RunMode

# Config groups whose chosen option becomes a tag `group=option`, in this order.
TAG_GROUPS = ("data", "model", "loss", "sampler", "experiment", "debug")
# Overrides that say where a run writes or what it resumes, not what it is: left out of its name.
NOT_IN_NAME = ("hydra", "paths", "logger", "ckpt_path", "task_name")
# Keys of a logger's config that, left null, are filled from `run_identity` (ctdm.build.build_loggers).
IDENTITY_KEYS = ("name", "group", "tags", "job_type")


def _override_key(override: str) -> str:
    """`+loss.cdl.weight=0.1` -> `loss.cdl.weight`; `hydra/launcher=x` -> `hydra/launcher`."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0]


def run_identity(cfg: Mapping, hydra_cfg: Mapping | None = None) -> dict:
    """{name, group, tags, job_type} of a run from its config and Hydra's runtime config.

    name: the command-line overrides that are not about paths or logging, in the order given
      (under -m, each job's own values); a run without any is named by its data and loss choices.
    group: the experiment option when `experiment=` is set, else the sweep folder's name under -m
      (all jobs of one sweep together); null for a single run, which stays a group of its own.
    tags: `group=option` for the chosen data, model, loss and sampler options, and the experiment
      and debug presets when chosen (so smoke runs can be filtered out).
    job_type: Hydra's job name, the entry point's module name (`train`, `evaluate`).
    Without Hydra (hydra_cfg None): the task name, no group, no tags, job type `train`.
    """
    if hydra_cfg is None:
        return {"name": str(cfg.get("task_name", "train")), "group": None, "tags": [], "job_type": "train"}
    choices = {k: v for k, v in (hydra_cfg.runtime.choices or {}).items() if v is not None}
    overrides = [
        o
        for o in hydra_cfg.overrides.task
        if _override_key(o).replace("/", ".").split(".")[0] not in NOT_IN_NAME
    ]
    name = ",".join(overrides) or ",".join(f"{g}={choices[g]}" for g in ("data", "loss") if g in choices)
    group = None
    if "experiment" in choices:
        group = str(choices["experiment"])
    elif hydra_cfg.mode == RunMode.MULTIRUN:
        group = Path(str(hydra_cfg.sweep.dir)).name
    tags = [f"{g}={choices[g]}" for g in TAG_GROUPS if g in choices]
    return {
        "name": name or str(cfg.get("task_name", "train")),
        "group": group,
        "tags": tags,
        "job_type": str(hydra_cfg.job.name),
    }


def wandb_pass_curve(name: str, curve: list[dict]):
    """A parallel sampler's metric after each Picard pass ([{"pass", "nfe", "mmd"}]) as a W&B line
    plot over its table (the table is kept too: the run's files hold every pass's numbers)."""
    import wandb

    table = wandb.Table(columns=["pass", "nfe", "mmd"], data=[[c["pass"], c["nfe"], c["mmd"]] for c in curve])
    return wandb.plot.line(table, "pass", "mmd", title=f"{name}: squared MMD after each Picard pass")
