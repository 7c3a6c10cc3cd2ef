"""GPU speed options, shown on CPUs: model.channels_last, model.compile and trainer.precision=bf16-mixed each
keep the network's function and its checkpoints, and compose in a real run."""

import copy
import json
from functools import partial

import pytest
import torch
from conftest import run_cli
from hydra.utils import instantiate

from ctdm.checkpoint import load_checkpoint
from ctdm.diffusion import DDPMSchedule
from ctdm.losses import DenoisingMSE
from ctdm.module import DiffusionModule
from ctdm.nets import ResidualMLP, UNet
from ctdm.precision import autocast
from ctdm.samplers import DDPMSampler

SHAPE = (1, 8, 8)


def tiny_module(seed: int = 0, net: str = "unet", **options) -> DiffusionModule:
    torch.manual_seed(seed)
    if net == "unet":
        network = UNet(list(SHAPE), width=8, mult=[1, 2], blocks=1, attn_resolutions=[], dropout=0.0)
    else:
        network = ResidualMLP(dim=[2], width=16, blocks=1)
    # Random output layers: the UNet's zero-initialised ones would answer 0 whatever the layout.
    for p in network.parameters():
        torch.nn.init.normal_(p, std=0.2)
    loss = {"mse": DenoisingMSE(schedule=DDPMSchedule())}
    module = DiffusionModule(network, loss, partial(torch.optim.Adam, lr=1e-3), **options)
    module.set_data_var(torch.ones(SHAPE if net == "unet" else (2,)))
    return module.eval()


def inputs(n: int = 4, shape=SHAPE):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.linspace(-8, 8, n)


def test_channels_last_keeps_the_function_and_the_checkpoint():
    plain, nhwc = tiny_module(), tiny_module(channels_last=True)
    convs = [p for p in nhwc.net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not all(p.is_contiguous() for p in convs)
    z, a = inputs()
    with torch.no_grad():
        out = nhwc.eps(z, a)
        torch.testing.assert_close(out, plain.eps(z, a), atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the convolutions ran in NHWC
    fresh = tiny_module(seed=1)
    fresh.load_state_dict(nhwc.state_dict())  # a channels_last checkpoint loads into a plain module
    with torch.no_grad():
        torch.testing.assert_close(fresh.eps(z, a), plain.eps(z, a), atol=1e-5, rtol=1e-5)


def test_compile_is_in_place_so_checkpoints_keep_their_names():
    """nn.Module.compile: the state dict has the plain names (no `_orig_mod.`), loads both ways, the
    compiled network answers the same, and EMA's deep copy of the module works. The eager backend
    checks the wiring in a second; the inductor test below compiles for real."""
    plain, compiled = tiny_module(), tiny_module(compile={"backend": "eager"})
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    z, a = inputs()
    with torch.no_grad():
        torch.testing.assert_close(compiled.eps(z, a), plain.eps(z, a))
    other = tiny_module(seed=1)
    other.load_state_dict(compiled.state_dict())
    compiled.load_state_dict(other.state_dict())
    copied = copy.deepcopy(compiled)
    with torch.no_grad():
        torch.testing.assert_close(copied.eps(z, a), plain.eps(z, a))


@pytest.mark.parametrize("bad", [{"compile": "yes"}, {"channels_last": 1}])
def test_bad_option_values(bad):
    with pytest.raises(ValueError, match=r"model.compile=.*compile is true, false or a mapping"):
        tiny_module(**bad)


@pytest.mark.slow
def test_inductor_compile_on_cpu_trains_and_matches():
    """torch.compile's default backend (inductor: needs a C compiler, gcc here) on a tiny MLP: the same
    eps as the plain network, and a gradient step through the compiled network."""
    plain, compiled = tiny_module(net="mlp"), tiny_module(net="mlp", compile=True)
    z, a = inputs(8, (2,))
    with torch.no_grad():
        torch.testing.assert_close(compiled.eps(z, a), plain.eps(z, a), atol=1e-5, rtol=1e-5)
    for module in (plain, compiled):
        module.train()
        loss, _ = module.objective(z, torch.Generator().manual_seed(0))
        loss.backward()
    grads = [(p.grad, q.grad) for p, q in zip(plain.parameters(), compiled.parameters(), strict=True)]
    assert all(torch.allclose(g, h, atol=1e-5, rtol=1e-4) for g, h in grads)


def test_autocast_follows_the_trainer_precision():
    module = tiny_module()
    z, a = inputs()
    with torch.no_grad():
        full = module.eps(z, a)
        with autocast("32-true", "cpu"):
            torch.testing.assert_close(module.eps(z, a), full, atol=0, rtol=0)
        with autocast("bf16-mixed", torch.device("cpu")):
            half = module.eps(z, a)
    assert full.dtype == torch.float32 and half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05 * full.abs().max()  # bf16: ~3 significant digits
    with pytest.raises(ValueError, match="trainer.precision='bf17-mixed' is not a precision ctdm knows"):
        autocast("bf17-mixed", "cpu")


def test_sampling_under_bf16_autocast_keeps_float32_states():
    """The sampler's updates stay float32 while the network runs in bf16: samples close to full precision."""
    module = tiny_module()
    sampler = DDPMSampler(steps=20, schedule=DDPMSchedule())
    seeds = torch.arange(8)
    with torch.no_grad():
        full, _ = sampler(module.parameterization, SHAPE, seeds)
        with autocast("bf16-mixed", "cpu"):
            mixed, _ = sampler(module.parameterization, SHAPE, seeds)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert (mixed - full).abs().max() < 0.1 * full.abs().max(), (mixed - full).abs().max()


@pytest.mark.slow
def test_options_compose_in_a_real_run(tmp_path):
    """trainer.precision=bf16-mixed, model.channels_last=true and model.compile (eager backend: inductor
    would compile for minutes here) together in a digits run; its checkpoint loads into a plain module."""
    out = tmp_path / "run"
    args = [
        "data=digits",
        "debug=smoke",
        "trainer=cpu",
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "model.compile={backend: eager}",
        "logger=csv",
        f"hydra.run.dir={out}",
    ]
    result = run_cli(args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 4 and torch.isfinite(torch.tensor(summary["metrics"]["val/loss"]))
    checkpoint = load_checkpoint(summary["last_checkpoint"])
    cfg = checkpoint["ctdm_config"]
    assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["model"]["channels_last"] is True
    plain_cfg = {**cfg["model"], "compile": False, "channels_last": False}
    model = instantiate(plain_cfg, loss=instantiate(cfg["loss"], _convert_="all"))
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 weights
