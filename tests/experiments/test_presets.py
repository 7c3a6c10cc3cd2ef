"""Every experiment preset composes and runs end to end with debug=smoke (one case per file of
conf/experiment/, so a new preset is tested without touching this file)."""

import json

import pytest
from conftest import CONF, compose_config

from ctdm.data import fake
from ctdm.train import train

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("[!_]*.yaml"))
# Presets for image sets on disk, for GPUs or from pretrained weights: small look-alikes here.
IMAGE_DATA = {
    "cifar10_gpu": "cifar10",
    "cifar10_ddpm_cdl_finetune": "cifar10",
    "cifar10_ddpm_mse_finetune": "cifar10",
}
PRETRAINED = {"cifar10_ddpm_cdl_finetune", "cifar10_ddpm_mse_finetune"}


def test_the_paper_presets_exist():
    assert {"paper_dino", "paper_1d", "eight_gaussians", "digits", "cifar10_gpu"} <= set(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_smoke_runs(preset, tmp_path):
    overrides = [f"experiment={preset}", "debug=smoke", "logger=csv", "trainer=cpu", "trainer.devices=1"]
    overrides += ["eval/fid/extractor=random", "data.num_workers=0", "data.pin_memory=false"]
    if preset in IMAGE_DATA:
        getattr(fake, f"write_{IMAGE_DATA[preset]}")(tmp_path / "data")
        overrides += [f"data.root={tmp_path / 'data'}", "data.check_integrity=false", "data.val_size=8"]
    if preset in PRETRAINED:  # a tiny saved diffusers UNet instead of the Hub's
        pytest.importorskip("diffusers")
        from ctdm.nets.pretrained import save_tiny_ddpm

        overrides.append(f"model.net.path={save_tiny_ddpm(tmp_path / 'unet', [3, 32, 32])}")
    cfg = compose_config(overrides, tmp_path / "run")
    summary = train(cfg)
    assert (
        json.loads((tmp_path / "run" / "summary.json").read_text())["global_step"] == summary["global_step"]
    )
    samplers = list(cfg.eval.samplers)
    assert samplers and all(f"eval/{name}/nfe" in summary["metrics"] for name in samplers)
    quality = "mmd" if len(cfg.data.shape) == 1 else "fid"
    assert all(f"eval/{name}/{quality}" in summary["metrics"] for name in samplers), sorted(
        summary["metrics"]
    )


@pytest.mark.parametrize("preset", ["paper_dino", "paper_1d", "eight_gaussians", "digits"])
@pytest.mark.parametrize("recipe", ["authors", "decay"])
def test_every_sweep_recipe_composes_with_the_preset_and_builds_its_schedule(preset, recipe, tmp_path):
    # experiments.compare_arms adds each recipe's overrides to the preset; a preset that sets keys of
    # one schedule (e.g. LinearLR's start_factor) would break the other (CosineAnnealingLR).
    import torch
    from hydra.utils import instantiate

    from experiments.compare_arms import RECIPES

    cfg = compose_config([f"experiment={preset}", *RECIPES[recipe]], tmp_path / "run")
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    scheduler = instantiate(cfg.model.lr_scheduler)(optimizer=optimizer)
    expected = "CosineAnnealingLR" if recipe == "decay" else type(scheduler).__name__
    assert type(scheduler).__name__ == expected
    if preset.startswith("paper_"):  # the authors' recipe is their constant learning rate
        for _ in range(3):
            optimizer.step()
            scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert (lr == 1e-3) == (recipe == "authors"), lr
