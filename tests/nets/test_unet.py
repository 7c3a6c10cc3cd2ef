"""The DDPM-style UNet: presets keep the data's shape, sizes match DDPM, log-SNR reaches the output."""

import pytest
import torch
from hydra.utils import instantiate

from ctdm.nets import UNet


@pytest.fixture(autouse=True)
def one_thread():
    # Small convolutions on a shared 2-core machine: one intra-op thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "preset,data,shape,params",
    [
        ("unet_small", "digits", (1, 8, 8), (1.0e6, 2.5e6)),
        ("unet_small", "mnist", (1, 28, 28), (1.0e6, 2.5e6)),
        ("unet_cifar", "cifar10", (3, 32, 32), (35.5e6, 36.0e6)),  # DDPM CIFAR-10: 35.7M
        ("unet_cifar", "image_folder", (3, 64, 64), (35.5e6, 36.0e6)),
    ],
)
def test_presets_keep_the_shape_and_have_the_expected_size(make_cfg, preset, data, shape, params):
    cfg = make_cfg([f"model={preset}", f"data={data}"])
    assert tuple(cfg.data.shape) == shape  # channels and resolution come from the data config
    net = instantiate(cfg.model.net)
    n = sum(p.numel() for p in net.parameters())
    assert params[0] < n < params[1], n
    z = torch.randn(2, *shape)
    with torch.no_grad():
        out = net(z, torch.tensor([-5.0, 5.0]))
    assert out.shape == z.shape
    assert torch.equal(out, torch.zeros_like(z))  # zero-initialised head: eps_hat starts at 0


def test_unet_cifar_is_the_ddpm_architecture(make_cfg):
    net_cfg = make_cfg(["model=unet_cifar"]).model.net
    assert (net_cfg.width, list(net_cfg.mult), net_cfg.blocks) == (128, [1, 2, 2, 2], 2)
    assert list(net_cfg.attn_resolutions) == [16] and net_cfg.dropout == 0.1


def test_image_data_picks_its_network(make_cfg):
    # `python -m ctdm.train data=cifar10` must train the DDPM UNet, not the 2-D MLP.
    assert make_cfg(["data=cifar10"]).model.net._target_ == "ctdm.nets.UNet"
    assert make_cfg(["data=cifar10"]).model.net.width == 128
    assert make_cfg(["data=digits"]).model.net.width == 32
    assert make_cfg(["data=mnist"]).model.net.width == 32
    assert make_cfg(["data=cifar10", "model=unet_small"]).model.net.width == 32  # an explicit model= wins
    assert make_cfg([]).model.net._target_ == "ctdm.nets.ResidualMLP"


def _trained_looking(net):
    """Random weights in the zero-initialised layers, so the output depends on the input."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.1)
    return net.eval()


def test_output_depends_on_logsnr_and_input_and_grads_flow():
    net = _trained_looking(
        UNet([3, 16, 16], width=16, mult=[1, 2], blocks=1, attn_resolutions=[8], dropout=0.0)
    )
    z = torch.randn(1, 3, 16, 16).expand(3, -1, -1, -1).clone().requires_grad_()
    out = net(z, torch.tensor([0.0, 0.01, 5.0]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    out.sum().backward()
    assert z.grad.abs().sum() > 0 and all(p.grad is not None for p in net.parameters())
    other = net(torch.randn(1, 3, 16, 16), torch.zeros(1))
    assert not torch.allclose(other, out[:1])


def test_batch_entries_are_independent():
    net = _trained_looking(
        UNet([1, 8, 8], width=16, mult=[1, 2], blocks=1, attn_resolutions=[4], dropout=0.0)
    )
    z, a = torch.randn(4, 1, 8, 8), torch.linspace(-3, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(z, a)[1:2], net(z[1:2], a[1:2]), atol=1e-5, rtol=1e-5)


def test_bad_configurations_name_the_problem():
    with pytest.raises(ValueError, match=r"image data of shape \[C, H, W\]; got data.shape=\[2\]"):
        UNet([2])
    with pytest.raises(ValueError, match=r"divisible by 8; data.shape=\[1, 28, 28\]"):
        UNet([1, 28, 28], mult=[1, 2, 2, 2])
    with pytest.raises(ValueError, match=r"attn_resolutions=\[16\]: \[16\] not among .* \[28, 14, 7\]"):
        UNet([1, 28, 28], mult=[1, 2, 2], attn_resolutions=[16])
    with pytest.raises(ValueError, match="dropout"):
        UNet([1, 8, 8], mult=[1, 2], attn_resolutions=[], dropout=1.5)
