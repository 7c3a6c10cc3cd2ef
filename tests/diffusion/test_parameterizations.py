"""Parameterisations: each, fed its own optimal target for Gaussian data, gives the exact eps."""

import pytest
import torch

from ctdm.build import build_module
from ctdm.diffusion import EDMPrecond, EpsPrediction, VPrediction, X0Prediction
from ctdm.diffusion.channel import channel_scales

VAR = torch.tensor([0.3, 2.0])
CLASSES = {"eps": EpsPrediction, "x0": X0Prediction, "v": VPrediction, "edm": EDMPrecond}


def optimal_eps(z, a):
    s = torch.sigmoid
    a = a[:, None]
    return s(-a).sqrt() * z / (s(a) * VAR + s(-a))


class OptimalTarget(torch.nn.Module):
    """What each parameterisation's network should output for Gaussian data N(0, diag(VAR))."""

    def __init__(self, kind, sigma_data=0.5):
        super().__init__()
        self.kind, self.sigma_data = kind, sigma_data

    def forward(self, net_input, a):
        scale_x, scale_eps = channel_scales(a, net_input)
        if self.kind == "edm":  # the input is c_in x_edm; F = (D - c_skip x_edm) / c_out
            sigma_e, sd2 = scale_eps / scale_x, self.sigma_data**2
            norm = torch.sqrt(sigma_e**2 + sd2)
            x_edm = net_input * norm
            z = x_edm * scale_x
            x0 = (z - scale_eps * optimal_eps(z, a)) / scale_x
            return (x0 - sd2 / norm**2 * x_edm) / (sigma_e * self.sigma_data / norm)
        z = net_input
        eps = optimal_eps(z, a)
        x0 = (z - scale_eps * eps) / scale_x
        return {"eps": eps, "x0": x0, "v": scale_x * eps - scale_eps * x0}[self.kind]


def _wrap(kind, sigma_data=0.5):
    target = OptimalTarget(kind, sigma_data)
    return EDMPrecond(target, sigma_data) if kind == "edm" else CLASSES[kind](target)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_every_parameterisation_gives_the_optimal_eps(kind):
    z = torch.randn(64, 2, dtype=torch.float64) * 1.5
    a = torch.linspace(-6, 6, 64, dtype=torch.float64)
    eps = _wrap(kind).eps(z, a)
    torch.testing.assert_close(eps, optimal_eps(z, a), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_every_parameterisation_gives_the_optimal_x0(kind):
    z = torch.randn(64, 2, dtype=torch.float64) * 1.5
    a = torch.linspace(-6, 6, 64, dtype=torch.float64)
    scale_x, scale_eps = channel_scales(a, z)
    torch.testing.assert_close(
        _wrap(kind).x0(z, a), (z - scale_eps * optimal_eps(z, a)) / scale_x, rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_edm_denoiser_is_the_posterior_mean_in_the_variance_exploding_view(sigma_data):
    # D(x; sigma) with x = data + sigma n is E[data | x]; for N(0, VAR) that is VAR x / (VAR + sigma^2).
    precond = EDMPrecond(OptimalTarget("edm", sigma_data), sigma_data)
    x = torch.randn(64, 2, dtype=torch.float64) * 3
    sigma = torch.logspace(-2, 1.5, 64, dtype=torch.float64)
    denoised = precond.denoise(x, sigma)
    torch.testing.assert_close(denoised, VAR * x / (VAR + sigma[:, None] ** 2), rtol=1e-7, atol=1e-9)
    c_skip, c_out, c_in, c_noise = precond.scalings(sigma)  # EDM's Table 1
    sd2 = sigma_data**2
    torch.testing.assert_close(c_skip, sd2 / (sigma**2 + sd2))
    torch.testing.assert_close(c_out * c_in, sigma * sigma_data / (sigma**2 + sd2))
    torch.testing.assert_close(c_noise, -2 * sigma.log())  # ctdm's nets read log-SNR


@pytest.mark.parametrize("option", sorted(CLASSES))
def test_every_parameterisation_option_builds_its_class(option, make_cfg):
    cfg = make_cfg([f"model/parameterization={option}"])
    model = build_module(cfg)
    assert type(model.parameterization) is CLASSES[option]
    z, a = torch.randn(5, *cfg.data.shape), torch.linspace(-10, 10, 5)
    assert model.eps(z, a).shape == z.shape and torch.isfinite(model.eps(z, a)).all()
    if option == "edm":
        assert model.parameterization.sigma_data == cfg.diffusion.sigma_data
