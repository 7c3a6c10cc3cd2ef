"""Every option of every config group composes and instantiates: one test case per YAML file."""

import lightning as L
import pytest
import torch
from conftest import CONF, requires_gpu
from hydra.utils import get_object, instantiate

from ctdm.build import build_module
from ctdm.data import fake
from ctdm.data.toy import eight_gaussians
from ctdm.diffusion import Reference

GROUPS = [
    "data",
    "model",
    "loss",
    "sampler",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "debug",
    "experiment",
]
# Options whose name starts with "_" are bases that other options compose, not choices.
CASES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("[!_]*.yaml"))]


def test_every_group_has_options():
    for group in GROUPS[:-1]:  # experiment presets come with later work
        assert any(g == group for g, _ in CASES), f"conf/{group}/ has no options"


def fake_data(option: str, root) -> list[str]:
    """Data sets read from disk get tiny look-alikes in the real on-disk layout (nothing to download)."""
    extra = {"cifar10": ["data.check_integrity=false"], "image_folder": ["data.resolution=8"]}.get(option, [])
    getattr(fake, f"write_{option}")(root)
    return [f"data.root={root}", "data.batch_size=4", "data.val_size=4", *extra]


# Networks for images compose with an image data set.
MODEL_DATA = {"unet_small": "digits", "unet_cifar": "cifar10", "pretrained_ddpm": "cifar10"}
# Options that load pretrained weights (and read their data set's files): a tiny stand-in model.
PRETRAINED = {
    "pretrained_ddpm": "cifar10",
    "cifar10_ddpm_cdl_finetune": "cifar10",
    "cifar10_ddpm_mse_finetune": "cifar10",
}


def assert_optimizer_as_configured(model, model_cfg) -> None:
    """configure_optimizers builds the configured optimizer class over every parameter at the configured
    learning rate, and the configured schedule (class and each of its arguments), stepped per step."""
    configured = model.configure_optimizers()
    scheduler_cfg = model_cfg.get("lr_scheduler")
    if scheduler_cfg is None:  # e.g. model=pretrained_ddpm: a constant learning rate, no scheduler
        optimizer, scheduler = configured, None
    else:
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        assert configured["lr_scheduler"]["interval"] == "step"
    assert type(optimizer) is get_object(model_cfg.optimizer._target_)
    assert optimizer.defaults["lr"] == model_cfg.optimizer.lr  # (a warm-up lowers the groups' lr at once)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}
    if scheduler_cfg is None:
        return
    assert type(scheduler) is get_object(scheduler_cfg._target_)
    assert scheduler.base_lrs == [model_cfg.optimizer.lr]
    arguments = {k: v for k, v in scheduler_cfg.items() if not k.startswith("_")}
    assert arguments and {k: getattr(scheduler, k) for k in arguments} == arguments


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group, option, make_cfg, tmp_path):
    override = [] if group == "hydra" else [f"{group}={option}"]
    data = option if group == "data" else MODEL_DATA.get(option) if group == "model" else None
    if group == "model" and data:
        override.append(f"data={data}")
    if data and "root" in (CONF / "data" / f"{data}.yaml").read_text():
        override += fake_data(data, tmp_path / "data")
    if option in PRETRAINED:  # a saved UNet2DModel of the data's shape instead of a Hub download
        from ctdm.nets.pretrained import save_tiny_ddpm

        shape = make_cfg([f"data={PRETRAINED[option]}"]).data.shape
        override.append(f"model.net.path={save_tiny_ddpm(tmp_path / 'unet', list(shape))}")
        if group == "experiment":
            override += fake_data(PRETRAINED[option], tmp_path / "data")
    cfg = make_cfg(override)
    if group == "data":
        dm = instantiate(cfg.data)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        assert batch.shape == (cfg.data.batch_size, *cfg.data.shape)
        assert torch.isfinite(batch).all()
    elif group == "model":
        model = build_module(cfg)
        z, a = torch.randn(5, *cfg.data.shape), torch.linspace(-10, 10, 5)
        assert model.eps(z, a).shape == z.shape
        assert_optimizer_as_configured(model, cfg.model)
    elif group == "loss":
        terms = instantiate(cfg.loss, _convert_="all")
        law = eight_gaussians()
        x = law.sample(64, torch.Generator().manual_seed(0))
        for name, term in terms.items():
            assert term.weight == cfg.loss[name].weight
            reference = Reference.from_data_var(law.variance().float())
            value, logs = term(law.eps, x, torch.Generator().manual_seed(0), reference)
            assert value.ndim == 0 and torch.isfinite(value)
    elif group == "sampler":
        sampler = instantiate(cfg.sampler)
        law = eight_gaussians()
        samples, stats = sampler(law.eps, (2,), torch.arange(4))
        assert samples.shape == (4, 2) and torch.isfinite(samples).all()
        if getattr(sampler, "parallel", False):  # Picard: at most one pass per step, a window each
            assert 1 <= stats.passes <= sampler.steps and stats.nfe >= stats.passes
        else:  # sequential: one pass per step (Heun: two evaluations per step but the last)
            assert stats.passes == sampler.steps and stats.nfe in (stats.passes, 2 * stats.passes - 1)
    elif group == "trainer":
        overrides = {}
        if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
            # No GPU here: check everything else the option sets on CPU processes instead.
            overrides = {
                "accelerator": "cpu",
                "devices": 2 if "ddp" in str(cfg.trainer.get("strategy")) else 1,
            }
        trainer = instantiate(cfg.trainer, **overrides, logger=False)
        assert isinstance(trainer, L.Trainer)
        assert trainer.max_steps == cfg.trainer.max_steps
    elif group == "logger":
        loggers = [instantiate(c) for c in cfg.logger.values()]
        assert loggers and all(isinstance(lg, L.pytorch.loggers.Logger) for lg in loggers)
    elif group == "callbacks":
        callbacks = [instantiate(c) for c in cfg.callbacks.values()]
        assert callbacks and all(isinstance(c, L.Callback) for c in callbacks)
    elif group == "paths":
        assert cfg.paths.output_dir and cfg.paths.log_dir
    elif group == "hydra":
        assert cfg.hydra.job.chdir is False  # relative paths stay relative to the launch directory
        assert cfg.hydra.run.dir.startswith(f"{cfg.paths.log_dir}/{cfg.task_name}/runs/")
    else:  # presets: the whole config still builds
        instantiate(cfg.data)
        build_module(cfg)
        instantiate(cfg.sampler)


@requires_gpu
@pytest.mark.parametrize("option", ["gpu", "default"])
def test_trainer_options_use_the_gpu_where_there_is_one(option, make_cfg):
    """The CPU cases above swap trainer=gpu's accelerator; on a GPU machine it must find the GPU."""
    trainer = instantiate(make_cfg([f"trainer={option}"]).trainer, logger=False)
    assert isinstance(trainer.accelerator, L.pytorch.accelerators.CUDAAccelerator)
