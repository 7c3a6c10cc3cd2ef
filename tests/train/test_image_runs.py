"""Image and file-backed data through the real entry point, and a short digits run that learns."""

import json
import re

import lightning as L
import pytest
import torch
from conftest import cpu_trainer, run_cli
from hydra.utils import instantiate

from ctdm.build import build_module
from ctdm.data import fake
from ctdm.diffusion import DDPMSchedule
from ctdm.diffusion.channel import noise_data

pytestmark = pytest.mark.slow
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny nets on a shared 2-core machine: threads only contend


def _smoke(tmp_path, args, stdout=None):
    out = tmp_path / "run"
    result = run_cli(
        [*args, "debug=smoke", "logger=csv", f"hydra.run.dir={out}"], cwd=tmp_path, env=ONE_THREAD
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 4
    assert summary["plots"] and all(p.endswith(".png") for p in summary["plots"])
    if stdout is not None:
        stdout.append(result.stdout)
    return summary


def test_cifar10_smoke_on_fake_files(tmp_path):
    fake.write_cifar10(tmp_path / "cifar")
    args = [
        "loss=contrastive",
        "data=cifar10",
        f"data.root={tmp_path / 'cifar'}",
        "data.check_integrity=false",
    ]
    summary = _smoke(tmp_path, args)
    assert "train/cdl" in summary["metrics"]  # the contrastive term trained
    assert {"eval/ddpm/fid", "eval/ddpm/kid"} <= set(summary["metrics"])


def test_digits_smoke_with_the_small_unet_ends_with_a_table_of_fid_and_kid(tmp_path):
    printed = []
    metrics = _smoke(tmp_path, ["model=unet_small", "data=digits"], printed)["metrics"]
    lines = printed[0].splitlines()
    header = next(line for line in lines if line.split()[:1] == ["sampler"])
    assert header.split() == ["sampler", "samples", "FID", "KID", "passes", "NFE", "seconds"]
    row = re.match(r"\s+ddpm\s+16\s+(\S+)\s+(\S+) ± (\S+)\s+20\s+20\s+(\S+)$", lines[lines.index(header) + 1])
    assert row, lines[lines.index(header) + 1]
    fid, kid, kid_std, _seconds = map(float, row.groups())
    assert fid == pytest.approx(metrics["eval/ddpm/fid"], rel=1e-3)
    assert kid == pytest.approx(metrics["eval/ddpm/kid"], rel=1e-3, abs=1e-4)
    assert kid_std == pytest.approx(metrics["eval/ddpm/kid_std"], rel=0.05)


def test_dino_smoke(tmp_path):
    _smoke(tmp_path, ["data=dino"])  # the packaged points: nothing beside the checkout


def test_short_digits_run_lowers_the_validation_loss(make_cfg):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = make_cfg(["data=digits", "data.batch_size=64"])  # digits picks model=unet_small
        L.seed_everything(0)
        dm = instantiate(cfg.data)
        dm.setup()
        model = build_module(cfg)

        def val_mse() -> float:
            """Denoising MSE on the held-out digits at fixed levels and noise."""
            g = torch.Generator().manual_seed(0)
            a = DDPMSchedule().sample_logsnr(len(dm.x_val), g)
            eps = torch.randn(dm.x_val.shape, generator=g)
            model.eval()
            with torch.no_grad():
                return (model.eps(noise_data(dm.x_val, a, eps), a) - eps).pow(2).mean().item()

        before = val_mse()
        trainer = cpu_trainer(max_steps=40)
        trainer.fit(model, dm)
        after = val_mse()
    finally:
        torch.set_num_threads(threads)
    assert before == pytest.approx(1.0, abs=0.05)  # eps_hat starts at 0
    assert after < 0.4 * before, (before, after)
