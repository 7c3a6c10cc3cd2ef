"""model=pretrained_ddpm: a saved diffusers UNet2DModel answers ctdm's eps(z, logsnr) on its own schedule."""

import json
import sys

import pytest
import torch

from ctdm.build import build_module
from ctdm.diffusion import DDPMSchedule, EpsPrediction
from ctdm.nets.pretrained import MissingExtraError, PretrainedUNet, logsnr_to_timestep, save_tiny_ddpm

diffusers = pytest.importorskip("diffusers")  # the `pretrained` extra (in `dev`, so CI runs these)
SHAPE = [1, 8, 8]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_ddpm(tmp_path_factory.mktemp("unet"), SHAPE)


@pytest.fixture(scope="module")
def net(folder):
    return PretrainedUNet(str(folder), SHAPE).eval()


def test_eps_equals_the_raw_model_at_the_schedule_levels(net):
    """A level of the training schedule is the model's integer timestep: the same output as calling the
    diffusers model with that timestep (ends included); one timestep off is far from it."""
    timesteps = torch.tensor([0, 1, 2, 10, 250, 500, 998, 999])
    logsnr = DDPMSchedule().logsnr[timesteps].float()  # diffusers' t is ctdm's level t + 1
    z = torch.randn(len(timesteps), *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eps = net(z, logsnr)
        raw = net.unet(z, timesteps).sample
        off_by_one = net.unet(z, (timesteps + 1).clamp(max=999)).sample
    # float32 levels place t within ~3e-5 of the integer: the embedding's own float32 rounding at t ~ 500
    torch.testing.assert_close(eps, raw, rtol=0, atol=2e-6)
    assert (off_by_one - raw)[:-1].abs().amax() > 1e3 * 2e-6


def test_plugs_into_the_module_as_a_noise_predictor(folder, make_cfg):
    """model=pretrained_ddpm with a local folder: the built module's eps is the model's output and its
    weights are the folder's (no checkpoint needed to evaluate the pretrained model)."""
    cfg = make_cfg(["model=pretrained_ddpm", f"model.net.path={folder}", "data=digits"])
    module = build_module(cfg)
    assert isinstance(module.parameterization, EpsPrediction)
    raw = diffusers.UNet2DModel.from_pretrained(folder).eval()
    assert all(torch.equal(p, q) for p, q in zip(module.net.unet.parameters(), raw.parameters(), strict=True))
    assert module.net.unet.training  # dropout on while fine-tuning (from_pretrained returns eval mode)
    module.eval()
    z, t = torch.randn(3, *SHAPE), torch.tensor([3, 100, 700])
    with torch.no_grad():
        torch.testing.assert_close(
            module.eps(z, DDPMSchedule().logsnr[t].float()), raw(z, t).sample, atol=2e-6, rtol=0
        )


def test_timestep_interpolates_in_logsnr_and_clamps_outside_the_schedule(net):
    grid = DDPMSchedule().logsnr
    middle = (grid[[10, 500]] + grid[[11, 501]]) / 2  # half-way in log-SNR between t and t + 1
    torch.testing.assert_close(net.timestep(middle), torch.tensor([10.5, 500.5]), atol=1e-4, rtol=0)
    a = torch.linspace(-9, 9, 200)
    assert (net.timestep(a).diff() < 0).all()  # higher log-SNR: an earlier (cleaner) timestep
    # Outside [log-SNR of t=999, log-SNR of t=0] = [-10.1, 9.2]: the end timesteps, and their outputs.
    outside = torch.tensor([9.3, 30.0, float(grid[0]) + 1e-3, -10.2, -40.0])
    torch.testing.assert_close(net.timestep(outside), torch.tensor([0.0, 0.0, 0.0, 999.0, 999.0]))
    z = torch.randn(1, *SHAPE).expand(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(
            net(z, torch.tensor([25.0, -25.0])), net.unet(z, torch.tensor([0, 999])).sample
        )


def test_schedule_comes_from_the_scheduler_config(tmp_path):
    """A cosine-schedule model maps levels of the cosine grid to integers; without scheduler_config.json
    the `schedule` argument is used, and a missing one is an error that says so."""
    folder = save_tiny_ddpm(tmp_path / "cos", SHAPE)
    config = json.loads((folder / "scheduler_config.json").read_text())
    config.update(beta_schedule="squaredcos_cap_v2", num_train_timesteps=100)
    (folder / "scheduler_config.json").write_text(json.dumps(config))
    cosine = DDPMSchedule(num_steps=100, kind="cosine")
    net = PretrainedUNet(str(folder), SHAPE, schedule=DDPMSchedule())  # the file wins over the argument
    torch.testing.assert_close(net.timestep(cosine.logsnr[[0, 40, 99]].float()), torch.tensor([0.0, 40, 99]))

    bare = save_tiny_ddpm(tmp_path / "bare", SHAPE, scheduler=False)
    linear = DDPMSchedule(num_steps=50, beta_start=1e-3, beta_end=0.05)
    net = PretrainedUNet(str(bare), SHAPE, schedule=linear)
    torch.testing.assert_close(net.timestep(linear.logsnr[[0, 20, 49]].float()), torch.tensor([0.0, 20, 49]))
    with pytest.raises(ValueError, match="no scheduler_config.json.*model.net.schedule"):
        PretrainedUNet(str(bare), SHAPE)


def test_pipeline_folder_with_unet_and_scheduler_subfolders(tmp_path, folder):
    """A DDPMPipeline's save_pretrained layout (model_index.json, unet/, scheduler/) loads too."""
    unet = diffusers.UNet2DModel.from_pretrained(folder)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=200)
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    net = PretrainedUNet(str(tmp_path / "pipe"), SHAPE)
    assert net.schedule.num_steps == 200
    assert all(torch.equal(p, q) for p, q in zip(net.unet.parameters(), unet.parameters(), strict=True))


def test_logsnr_to_timestep_matches_ddpm_timestep():
    """The same interpolation as ctdm's 1-based ddpm_timestep, shifted to diffusers' 0-based timesteps."""
    from ctdm.diffusion import ddpm_timestep

    schedule = DDPMSchedule()
    a = torch.linspace(-12, 12, 301, dtype=torch.float64)
    expected = (ddpm_timestep(schedule, a) - 1).float()
    torch.testing.assert_close(logsnr_to_timestep(schedule.logsnr, a), expected, atol=1e-5, rtol=0)


# -- bad input: one paragraph naming the path or the extra -----------------------------------------


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"model.net.path=.* is not a diffusers model folder: it has no config"
    ):
        PretrainedUNet(str(tmp_path), SHAPE)


def test_folder_of_another_diffusers_class(tmp_path, folder):
    diffusers.DDPMScheduler().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="holds a 'AutoencoderKL'.*not a UNet2DModel"):
        PretrainedUNet(str(tmp_path), SHAPE)


def test_folder_without_weights(tmp_path, folder):
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ValueError, match=r"model.net.path=.*the folder's weights could not be read"):
        PretrainedUNet(str(tmp_path), SHAPE)


@pytest.mark.parametrize("shape", [[3, 8, 8], [1, 16, 16], [2]])
def test_data_of_another_shape(folder, shape):
    with pytest.raises(
        ValueError, match=r"UNet2DModel for 1-channel images of size 8x8 .* data is " + rf"\{shape}"
    ):
        PretrainedUNet(str(folder), shape)


def test_missing_local_folder_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="no such folder .* not a Hugging Face Hub id"):
        PretrainedUNet(str(tmp_path / "nowhere"), SHAPE)


def test_missing_diffusers_names_the_extra(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[pretrained\]'") as err:
        PretrainedUNet(str(folder), SHAPE)
    assert isinstance(err.value, ValueError)  # printed as one paragraph by the CLI
