"""The real entry point, `python -m ctdm.train`, run as a subprocess the way users run it (bad input:
test_bad_inputs.py)."""

import csv
import json
import math

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

SHORT = [
    "trainer.max_steps=30",
    "trainer.val_check_interval=15",
    "trainer.log_every_n_steps=10",
    "trainer.enable_progress_bar=false",
    "eval.num_samples=200",
    "sampler.steps=100",
]


def _finite_metrics(csv_path):
    rows = list(csv.DictReader(csv_path.open()))
    values = {k: float(v) for row in rows for k, v in row.items() if v not in ("", None)}
    assert values and all(math.isfinite(v) for v in values.values()), values
    return values


def test_short_run_writes_checkpoints_metrics_plot_and_summary(tmp_path):
    out = tmp_path / "run"
    result = run_cli([*SHORT, f"hydra.run.dir={out}", "logger=csv"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "checkpoints").glob("step_*.ckpt")), "best checkpoint missing"
    values = _finite_metrics(out / "csv" / "metrics.csv")
    for key in ["train/loss", "val/loss", "eval/ddpm/mmd", "eval/normal_mmd", "eval/ddpm/nfe"]:
        assert key in values, key
    assert values["eval/ddpm/nfe"] == 100
    png = out / "plots" / "samples_ddpm_step000030.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 30 and summary["plots"] == [str(png)]
    assert f"Run finished: {out}" in result.stdout and "eval/ddpm/mmd" in result.stdout
    import torch

    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["ctdm_config"]["loss"]["mse"]["weight"] == 1.0  # the run's config travels with it


def test_wandb_offline_run_is_written_for_later_sync(tmp_path):
    out = tmp_path / "run"
    result = run_cli([*SHORT, f"hydra.run.dir={out}"], cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (out / "csv" / "metrics.csv").is_file()


def test_multirun_gives_one_folder_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", "loss.mse.weight=0.5,1.0", *SHORT, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, weight in [("0", 0.5), ("1", 1.0)]:
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["global_step"] == 30
        assert f"loss.mse.weight={weight}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1  # each job its own W&B run
