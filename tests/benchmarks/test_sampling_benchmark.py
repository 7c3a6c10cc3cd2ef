"""benchmarks/sampling.py --wallclock --small: the wall-clock comparison runs end to end on all three
trained models and prints every row it promises (its speed figures are for people, not asserts)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^(?P<model>\w+)\s+(?P<batch>\d+)\s+(?P<sampler>ddpm 20|para_ddpm \w+)\s+"
    r"(?P<window>\S+)\s+(?P<rows>\S+)\s+"
    r"(?P<passes>\d+)\s+(?P<nfe>\d+)\s+(?P<wall>[\d.]+)\s+(?P<speedup>[\d.]+)\s+(?P<bare>[\d.]+)\s+"
    r"(?P<overhead>[\d.]+)\s+(?P<diff>\S+)\s+(?P<mmd>\S+)$"
)


def test_wallclock_small_mode_prints_every_model_batch_and_sampler(tmp_path):
    env = {**os.environ, "CTDM_CACHE_DIR": str(tmp_path), "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "benchmarks/sampling.py", "--wallclock", "--small", "--threads", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [m.groupdict() for line in result.stdout.splitlines() if (m := ROW.match(line.strip()))]
    got = {(r["model"], int(r["batch"]), r["sampler"]) for r in rows}
    want = {
        (model, batch, sampler)
        for model in ("eight_gaussians", "dino", "digits")
        for batch in (1, 8)
        for sampler in ("ddpm 20", "para_ddpm full", "para_ddpm auto")
    }
    assert got == want, result.stdout
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
    assert result.stdout.count("window=auto picks (batch:window)") == 3, result.stdout
    assert not list(Path(tmp_path).glob("*.tmp")), "a half-written call-time cache"
