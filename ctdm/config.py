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

import inspect
import math
import os
import re
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

from ctdm.config_dir import CONFIG_DIR
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
class FinetuneConfig:
    """The fine-tuning presets' keys (experiment=paper_dino_finetune; ctdm.finetune resolves them)."""

    base: str = MISSING  # the base checkpoint: becomes ckpt_path
    steps: int = MISSING  # steps after the base's step: trainer.max_steps = its step + steps


@dataclass
class CtdmConfig:
    task_name: str = MISSING
    seed: int | None = MISSING
    ckpt_path: str | None = MISSING
    # What a resume (ckpt_path=...) may change on purpose among data, model, loss (ctdm.checkpoint).
    resume_changes: list[str] = field(default_factory=list)
    optimized_metric: str | None = MISSING
    finetune: FinetuneConfig | None = None  # set by the fine-tuning presets only
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
for _option in sorted((CONFIG_DIR / "sampler").glob("[!_]*.yaml")):
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
    try:  # the likelihood settings check their values when built (names: their own fields)
        OmegaConf.to_object(cfg.diffusion.likelihood)
    except ValueError as err:
        raise ValueError(f"diffusion.likelihood.{err}") from None
    keys = _shared_keys(cfg)
    if keys.trainer.max_steps < 1:
        raise ValueError(
            f"trainer.max_steps={keys.trainer.max_steps}: ctdm trains for a fixed number of optimizer "
            "steps (the cosine LR schedule's T_max and the evaluation schedule follow it), so it must be "
            "an integer >= 1; Lightning's -1 (no limit) is not supported."
        )
    interval = cfg.trainer.get("val_check_interval")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval < math.inf
    ):
        raise ValueError(
            f"trainer.val_check_interval={interval!r}: validate (and checkpoint) every this many steps, an "
            "integer >= 1, or a fraction of an epoch in (0, 1]; null validates once per epoch."
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
            "loop), or use a launcher that starts every job as its own process: hydra/launcher=slurm "
            "(conf/hydra/launcher/slurm.yaml, with hydra.launcher.partition=<yours>; its plugin comes "
            "with the sweep extra, pip install 'ctdm[sweep]', which make install includes)."
        )


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_finite_metrics(metrics: dict, output_dir: str | Path) -> None:
    """A run whose final metrics are NaN or infinite did not produce a result: an error, no summary.json
    (its checkpoints stay, for a look at what went wrong)."""
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        listed = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise ValueError(
            f"The run finished with non-finite metrics ({listed}), so it has no result: no summary.json is "
            f"written. Its checkpoints are kept in {output_dir}; look at train/loss and "
            "train/skipped_steps in its logs (model.skip_nonfinite, model.optimizer.lr, the data)."
        )


def check_optimized_metric(name: str | None, metrics: dict) -> None:
    """A sweeper optimises `optimized_metric`: a name this run did not produce is an error, not None."""
    if name is not None and name not in metrics:
        raise ValueError(
            f"optimized_metric={name!r} is not a metric of this run; available: {', '.join(sorted(metrics))}."
        )


# -- one-paragraph errors ------------------------------------------------------------------------

# What a user can fix in the config, a data file, a checkpoint or the output folder; anything else is
# a bug and keeps its traceback. (CheckpointWriteError: a checkpoint that could not be written.)
USER_ERRORS = (ValueError, FileNotFoundError, InstantiationException, OmegaConfBaseException)


def _user_errors() -> tuple:
    # CheckpointWriteError lives beside Lightning: only a run that imported it can have raised it, and a
    # config error must not import Lightning to find out (ctdm.cli: the checks before heavy imports).
    preemption = sys.modules.get("ctdm.callbacks.preemption")
    return (*USER_ERRORS, preemption.CheckpointWriteError) if preemption is not None else USER_ERRORS


def render_error(err: BaseException, cfg: DictConfig | None = None) -> str:
    """One paragraph for a user error, with the config key path in front.

    Hydra's instantiate error carries the node's `full_key` (e.g. `loss.cdl`) and wraps the class's
    own error ("points must be an integer >= 1, got 0."): when that message starts with one of the
    node's keys, the paragraph names it in full ("loss.cdl.points: points must be ..."). A key the
    chosen class does not take is named with the arguments it does take.
    """
    if isinstance(err, InstantiationException):
        match = re.search(r"^full_key: (\S+)$", str(err), re.MULTILINE)
        full_key = _user_key(cfg, match.group(1)) if match else None
        cause = err.__cause__
        node = OmegaConf.select(cfg, full_key) if cfg is not None and full_key else None
        if isinstance(cause, TypeError) and isinstance(node, DictConfig):
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
            if unexpected:
                return _not_applicable(full_key, node, unexpected.group(1))
        if cause is None:  # Hydra's own complaint (e.g. a target it cannot locate): its first line
            message = str(err).splitlines()[0]
        else:
            message = str(cause) if isinstance(cause, (ValueError, FileNotFoundError)) else repr(cause)
        if full_key is None or re.match(r"[A-Za-z_]\w*\.\w", message):  # already names a key path
            return message
        first = re.match(r"[A-Za-z_]\w*", message)
        if first and isinstance(node, DictConfig) and first.group() in node:
            return f"{full_key}.{first.group()}: {message}"
        return f"{full_key}: {message}"
    if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
        return f"{err.full_key}: {str(err).splitlines()[0]}"
    return str(err)


def _user_key(cfg: DictConfig | None, full_key: str) -> str:
    """The key a user sets for `full_key`, following interpolations: Hydra names the sampler by where it
    is built (callbacks.sample_evaluation.samplers.selected), the user sets it as `sampler`."""
    if cfg is None:
        return full_key
    path, node = [], cfg
    for part in full_key.split("."):
        child = node._get_node(part) if isinstance(node, DictConfig) else None
        if child is None:
            return full_key
        path.append(part)
        raw = child._value() if child._is_interpolation() else None
        target = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
        if target:
            path = target.group(1).split(".")
            child = OmegaConf.select(cfg, target.group(1))
        node = child
    return ".".join(path)


def _not_applicable(full_key: str, node: DictConfig, key: str) -> str:
    """`<node>.<key>` is set but the class the node chose takes no such argument."""
    target = node.get("_target_", "?")
    try:
        from hydra.utils import get_object

        parameters = inspect.signature(get_object(target)).parameters
        takes = [n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        allowed = f"; it takes: {', '.join(takes)}"
    except Exception:  # noqa: BLE001 (the list is a courtesy; the key is the message)
        allowed = ""
    return (
        f"{full_key}.{key} does not apply to the chosen option ({target}), which has no argument {key!r}"
        f"{allowed}. Remove the key, or choose an option it applies to."
    )


@contextmanager
def user_errors(cfg: DictConfig):
    """The CLI entry points' frame: a config, data file, checkpoint or folder the user can fix prints
    one paragraph, no traceback, exit 1, and the run folder goes unless the run wrote a checkpoint into
    it (ctdm.run_folder.remove_failed_run; HYDRA_FULL_ERROR=1 keeps the whole trace). A run stopped by a
    signal says how to resume and exits with PREEMPTED_EXIT_CODE. W&B runs are closed whatever happens,
    since multirun jobs share a process and the next job starts its own."""
    from ctdm import run_folder

    pristine = cfg.copy()  # Hydra's instantiate resolves interpolations in place; keys are named by these
    try:
        yield
    except SystemExit as stop:
        # ctdm.callbacks.Preempted (a SystemExit with a message), recognised without importing Lightning
        if getattr(stop, "message", None) is not None:
            print(stop.message, file=sys.stderr)
            run_folder.release_all(cfg.paths.output_dir)
        raise
    except _user_errors() as err:
        if not run_folder.remove_failed_run(cfg.paths.output_dir):
            run_folder.release_all(cfg.paths.output_dir)
        else:
            run_folder.remove_failed_sweep()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            f"Error: {render_error(err, pristine)}\n(HYDRA_FULL_ERROR=1 prints the trace.)", file=sys.stderr
        )
        sys.exit(1)
    finally:
        wandb = sys.modules.get("wandb")  # a run that failed before importing it has none to close
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()
