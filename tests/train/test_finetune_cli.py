"""Fine-tuning a saved diffusers model with `ctdm.train`, scoring it with `ctdm.evaluate`, bad inputs."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from hydra.utils import instantiate

from ctdm.checkpoint import check_network, load_checkpoint
from ctdm.data import fake
from ctdm.diffusion import DDPMSchedule, EpsPrediction
from ctdm.nets import PretrainedUNet
from ctdm.nets.pretrained import save_tiny_ddpm
from ctdm.samplers import DDPMSampler

diffusers = pytest.importorskip("diffusers")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["cdl", "mse"])
def test_paper_preset_fine_tunes_a_saved_model_and_its_checkpoint_loads(tmp_path, arm):
    """experiment=cifar10_ddpm_<arm>_finetune on fake CIFAR-10 files with a tiny saved UNet2DModel: 2 steps
    (ITD + CDL, or MSE), DDPM and ParaDDPM scored, then last.ckpt rebuilds the fine-tuned network from
    its stored config alone, and its weights moved away from the folder's."""
    folder = save_tiny_ddpm(tmp_path / "unet", [3, 32, 32])
    fake.write_cifar10(tmp_path / "cifar")
    out = tmp_path / "run"
    args = [
        f"experiment=cifar10_ddpm_{arm}_finetune",
        f"model.net.path={folder}",
        f"data.root={tmp_path / 'cifar'}",
        "data.check_integrity=false",
        "trainer=cpu",  # the preset's 2 GPUs: one CPU process here
        "trainer.devices=1",
        "debug=smoke",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "eval.num_samples=8",
        # max_batch=auto would first time the UNet's calls (~30 s here); the auto path has its own tests
        "eval.samplers.para_ddpm.max_batch=64",
        "logger=csv",
        f"hydra.run.dir={out}",
    ]
    result = run_cli(args, cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 2
    metrics = summary["metrics"]
    terms = {"train/itd", "train/cdl"} if arm == "cdl" else {"train/mse"}
    assert terms <= set(metrics) and not {"train/itd", "train/mse"} <= set(metrics)
    for sampler in ("ddpm", "para_ddpm"):  # 20 steps under debug=smoke; para_ddpm's window is 32
        assert metrics[f"eval/{sampler}/num_samples"] == 8 and torch.isfinite(
            torch.tensor(metrics[f"eval/{sampler}/fid"])
        )

    checkpoint = load_checkpoint(summary["last_checkpoint"])
    cfg = checkpoint["ctdm_config"]
    assert cfg["model"]["net"]["_target_"] == "ctdm.nets.PretrainedUNet"
    model = instantiate(cfg["model"], loss=instantiate(cfg["loss"], _convert_="all"))
    check_network(checkpoint, model, cfg["model"], summary["last_checkpoint"])
    model.on_load_checkpoint(checkpoint)  # shapes the data_var buffer, as Lightning's restore does
    model.load_state_dict(checkpoint["state_dict"])  # strict: every key, no `_orig_mod.` prefixes
    pretrained = diffusers.UNet2DModel.from_pretrained(folder)
    moved = [
        not torch.equal(p, q)
        for p, q in zip(model.net.unet.parameters(), pretrained.parameters(), strict=True)
    ]
    assert sum(moved) > len(moved) // 2  # fine-tuned (the EMA average after 2 steps is mostly the weights)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,expected",
    [
        ("not_a_model", r"is not a diffusers model folder: it has no config.json"),
        (
            "hub_offline",
            r"no such local folder, and it could not be fetched from the Hugging Face Hub \(HF_HUB_OFFLINE",
        ),
        (
            "wrong_shape",
            r"UNet2DModel for 3-channel images of size 32x32 .* but the data is \[1, 8, 8\] \(data.shape\)",
        ),
    ],
)
def test_bad_pretrained_inputs_fail_in_one_paragraph(tmp_path, case, expected):
    if case == "not_a_model":
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "ddpm.ckpt").write_bytes(b"")
        path = tmp_path / "model"
    elif case == "hub_offline":
        path = "nobody-here/no-such-ddpm"
    else:
        path = save_tiny_ddpm(tmp_path / "model", [3, 32, 32])
    env = {**ONE_THREAD, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HYDRA_FULL_ERROR": "0"}
    out = tmp_path / "run"
    args = [
        "model=pretrained_ddpm",
        f"model.net.path={path}",
        "data=digits",
        "debug=smoke",
        f"hydra.run.dir={out}",
    ]
    result = run_cli(args, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert f"model.net.path={str(path)!r}" in error
    assert re.search(expected, error), error
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_evaluate_scores_a_pretrained_folder_without_a_checkpoint(tmp_path):
    """`python -m ctdm.evaluate model=pretrained_ddpm model.net.path=<folder>`: no training, no ckpt_path;
    its samples are the folder's model sampled directly (20-step DDPM on the same per-sample seeds), so the
    built model carries the pretrained weights."""
    folder = save_tiny_ddpm(tmp_path / "unet", [1, 8, 8])
    out = tmp_path / "eval"
    args = ["model=pretrained_ddpm", f"model.net.path={folder}", "data=digits", "debug=smoke", "logger=csv"]
    result = subprocess.run(
        [sys.executable, "-m", "ctdm.evaluate", *args, f"hydra.run.dir={out}"],
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled", **ONE_THREAD},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = torch.from_numpy(np.load(out / "samples_ddpm.npy"))
    net = PretrainedUNet(str(folder), [1, 8, 8]).eval()
    seeds = torch.arange(len(samples))  # eval.seed=0: sample i draws from seed (0 << 32) + i
    with torch.no_grad():
        expected, _ = DDPMSampler(steps=20, schedule=DDPMSchedule())(EpsPrediction(net), (1, 8, 8), seeds)
    torch.testing.assert_close(samples, expected, atol=1e-4, rtol=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval/ddpm/num_samples"] == len(samples) == 16
