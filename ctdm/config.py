"""The config layer: a schema for the keys ctdm owns, value checks before anything is built, and
one-paragraph errors that name the config key.

Hydra composes conf/config.yaml on top of `CtdmConfig` (stored in Hydra's ConfigStore as
`ctdm_schema`, the first entry of the defaults list), so a wrong type or an unknown key under the
top level, `eval` or `diffusion.likelihood` fails at composition with its full key path. The
groups built by `_target_` (data, model, loss, trainer, ...) stay open: their arguments belong to
the classes they build, which check their own values and name their own arguments; `render_error`
adds the key path Hydra's instantiate error carries (`full_key`). The few keys of those groups that
the run itself relies on (`data.batch_size`, `loss.<term>.weight`, `trainer.max_steps`) are typed
by `SharedKeys` and range-checked by `check_config`, before any data is read.
"""

import os
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ctdm.diffusion.settings import LikelihoodSettings

# -- the schema: types; every value is set once, in conf/ (diffusion.likelihood: in its dataclass) ----


@dataclass
class DiffusionConfig:
    schedule: Any = MISSING  # built by _target_
    sigma_data: float = MISSING
    # Types and defaults both: ctdm.diffusion.LikelihoodSettings is what the module builds from this node.
    likelihood: LikelihoodSettings = field(default_factory=LikelihoodSettings)


@dataclass
class EvalConfig:
    samplers: Any = MISSING  # sampler options (a list or a config group): shaped by the evaluation work
    steps: int | None = MISSING
    num_samples: int = MISSING
    seed: int = MISSING
    mmd_bandwidth: Any = MISSING  # a number > 0 or "median" (checked by ctdm.metrics.check_bandwidth)
    mmd_units: str = MISSING  # sigma | paper
    mmd_threshold: float | None = MISSING
    batch_size: int | None = MISSING
    every_n_steps: int | None = MISSING
    fid: Any = None  # conf/eval/fid: FID / KID settings for image data (ctdm.metrics.ImageMetrics)
    progress_bar: bool = MISSING


@dataclass
class CtdmConfig:
    task_name: str = MISSING
    seed: int | None = MISSING
    ckpt_path: str | None = MISSING
    optimized_metric: str | None = MISSING
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Groups whose nodes are built by `_target_`: open here, checked by the classes they build.
    model: Any = None
    data: Any = None
    loss: Any = None
    sampler: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    paths: Any = None


ConfigStore.instance().store(name="ctdm_schema", node=CtdmConfig)

# Every option of the `sampler` group is also an option of `eval/samplers`, placed at
# eval.samplers.<option> ('eval/samplers=[ddpm,para_ddpm]'), so a new file in conf/sampler/ is all a
# new sampler needs (conf/eval/samplers/ itself holds only `selected`, the `sampler` choice).
for _option in sorted((Path(__file__).resolve().parents[1] / "conf" / "sampler").glob("[!_]*.yaml")):
    ConfigStore.instance().store(
        group="eval/samplers",
        name=_option.stem,
        node={"defaults": [{f"/sampler@{_option.stem}": _option.stem}]},
    )


# -- keys of the open groups that the run relies on ----------------------------------------------


@dataclass
class DataKeys:
    batch_size: int = MISSING


@dataclass
class LossTermKeys:
    weight: float = MISSING


@dataclass
class TrainerKeys:
    max_steps: int = MISSING
    devices: Any = 1
    num_nodes: int = 1


@dataclass
class SharedKeys:
    data: DataKeys = field(default_factory=DataKeys)
    loss: dict[str, LossTermKeys] = field(default_factory=dict)
    trainer: TrainerKeys = field(default_factory=TrainerKeys)


def _shared_keys(cfg: DictConfig) -> SharedKeys:
    """The keys above, read from the composed config into their types (errors carry the key path)."""
    subset = {
        "data": {"batch_size": cfg.data.get("batch_size")},
        "loss": {name: {"weight": term.get("weight")} for name, term in (cfg.get("loss") or {}).items()},
        "trainer": {k: cfg.trainer[k] for k in ("max_steps", "devices", "num_nodes") if k in cfg.trainer},
    }
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SharedKeys), subset))


def check_config(cfg: DictConfig) -> None:
    """Value checks on what the run itself relies on; nothing is built, read or written here."""
    keys = _shared_keys(cfg)
    if keys.trainer.max_steps < 1:
        raise ValueError(
            f"trainer.max_steps={keys.trainer.max_steps}: ctdm trains for a fixed number of optimizer "
            "steps (the cosine LR schedule's T_max and the evaluation schedule follow it), so it must be "
            "an integer >= 1; Lightning's -1 (no limit) is not supported."
        )
    batch = keys.data.batch_size
    if batch < 1:
        raise ValueError(f"data.batch_size={batch}: the global batch size must be an integer >= 1.")
    devices = keys.trainer.devices
    if isinstance(devices, int) and devices >= 1 and "ddp" in str(cfg.trainer.get("strategy", "")):
        ranks = devices * keys.trainer.num_nodes
        if batch % ranks:
            raise ValueError(
                f"data.batch_size={batch} is the global batch size and must be divisible by the number of "
                f"DDP ranks ({ranks} = trainer.devices x trainer.num_nodes); choose a multiple of {ranks}."
            )
    strategy = str(cfg.trainer.get("strategy", ""))
    if strategy.startswith("ddp") and "spawn" not in strategy and _is_multirun():
        raise ValueError(
            f"trainer.strategy={strategy!r} re-launches the script once per device, which under Hydra "
            "multirun (-m) would start nested sweeps. For a sweep, give each job one device "
            "(trainer=default, cpu or gpu), run each job as its own command without -m (e.g. a shell "
            "loop), or use a launcher that starts every job as its own process (pip install "
            "hydra-submitit-launcher, then hydra/launcher=submitit_slurm)."
        )


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_optimized_metric(name: str | None, metrics: dict) -> None:
    """A sweeper optimises `optimized_metric`: a name this run did not produce is an error, not None."""
    if name is not None and name not in metrics:
        raise ValueError(
            f"optimized_metric={name!r} is not a metric of this run; available: {', '.join(sorted(metrics))}."
        )


# -- one-paragraph errors ------------------------------------------------------------------------

# What a user can fix in the config, a data file or a checkpoint; anything else is a bug and keeps
# its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, InstantiationException, OmegaConfBaseException)


def render_error(err: BaseException, cfg: DictConfig | None = None) -> str:
    """One paragraph for a user error, with the config key path in front.

    Hydra's instantiate error carries the node's `full_key` (e.g. `loss.cdl`) and wraps the class's
    own error ("points must be an integer >= 1, got 0."): when that message starts with one of the
    node's keys, the paragraph names it in full ("loss.cdl.points: points must be ...").
    """
    if isinstance(err, InstantiationException):
        match = re.search(r"^full_key: (\S+)$", str(err), re.MULTILINE)
        full_key = match.group(1) if match else None
        cause = err.__cause__
        if cause is None:  # Hydra's own complaint (e.g. a target it cannot locate): its first line
            message = str(err).splitlines()[0]
        else:
            message = str(cause) if isinstance(cause, (ValueError, FileNotFoundError)) else repr(cause)
        if full_key is None or re.match(r"[A-Za-z_]\w*\.\w", message):  # already names a key path
            return message
        first = re.match(r"[A-Za-z_]\w*", message)
        node = OmegaConf.select(cfg, full_key) if cfg is not None else None
        if first and isinstance(node, DictConfig) and first.group() in node:
            return f"{full_key}.{first.group()}: {message}"
        return f"{full_key}: {message}"
    if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
        return f"{err.full_key}: {str(err).splitlines()[0]}"
    return str(err)


@contextmanager
def user_errors(cfg: DictConfig):
    """The CLI entry points' frame: a config, data file or checkpoint the user can fix prints one
    paragraph, no traceback, exit 1, and no run folder is left behind if nothing was written yet
    (HYDRA_FULL_ERROR=1 keeps the whole trace). W&B runs are closed whatever happens, since multirun
    jobs share a process and the next job starts its own."""
    try:
        yield
    except USER_ERRORS as err:
        remove_failed_run_folder(cfg.paths.output_dir)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {render_error(err, cfg)}\n(HYDRA_FULL_ERROR=1 prints the trace.)", file=sys.stderr)
        sys.exit(1)
    finally:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def remove_failed_run_folder(output_dir: str | Path) -> None:
    """Hydra makes the run folder before the task starts; a run that fails before writing anything
    of its own leaves nothing but Hydra's files there, so the folder goes."""
    out = Path(output_dir)
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"} if HydraConfig.initialized() else {".hydra"}
    if out.is_dir() and {p.name for p in out.iterdir()} <= hydra_files:
        shutil.rmtree(out, ignore_errors=True)
