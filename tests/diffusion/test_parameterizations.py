"""Parameterisations: each, fed its own optimal target, gives the same optimal noise prediction."""

import pytest
import torch

from ctdm.diffusion import (
    PARAMETERIZATIONS,
    DDPMSchedule,
    Denoiser,
    EDMLogNormal,
    ddpm_timestep,
    karras_logsnr,
    logsnr_to_sigma,
    sigma_to_logsnr,
)
from ctdm.diffusion.channel import channel_scales

VAR = torch.tensor([0.3, 2.0])


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
        alpha, sigma = channel_scales(a, net_input)
        if self.kind == "edm":  # the input is c_in x_edm; F = (D - c_skip x_edm) / c_out
            sigma_e, sd2 = sigma / alpha, self.sigma_data**2
            norm = torch.sqrt(sigma_e**2 + sd2)
            x_edm = net_input * norm
            z = x_edm * alpha
            x0 = (z - sigma * optimal_eps(z, a)) / alpha
            return (x0 - sd2 / norm**2 * x_edm) / (sigma_e * self.sigma_data / norm)
        z = net_input
        eps = optimal_eps(z, a)
        x0 = (z - sigma * eps) / alpha
        return {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[self.kind]


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_every_parameterisation_gives_the_optimal_eps(kind):
    z = torch.randn(64, 2, dtype=torch.float64) * 1.5
    a = torch.linspace(-6, 6, 64, dtype=torch.float64)
    eps = Denoiser(OptimalTarget(kind), kind)(z, a)
    torch.testing.assert_close(eps, optimal_eps(z, a), rtol=1e-7, atol=1e-9)


def test_unknown_parameterisation_is_refused():
    with pytest.raises(ValueError, match="model.parameterization='score'.*eps"):
        Denoiser(torch.nn.Identity(), "score")


def test_sigma_logsnr_maps_round_trip():
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    torch.testing.assert_close(logsnr_to_sigma(sigma_to_logsnr(sigma)), sigma)
    # x_edm = z / alpha carries noise sigma / alpha = exp(-a / 2)
    a = torch.tensor([-3.0, 0.0, 5.0], dtype=torch.float64)
    alpha, sig = channel_scales(a, a)
    torch.testing.assert_close(sig / alpha, logsnr_to_sigma(a))


def test_ddpm_timestep_inverts_the_schedule():
    schedule = DDPMSchedule()
    t = torch.tensor([1, 10, 500, 1000])
    torch.testing.assert_close(ddpm_timestep(schedule, schedule.logsnr[t - 1]), t.double())
    mid = (schedule.logsnr[9] + schedule.logsnr[10]) / 2
    assert 10 < float(ddpm_timestep(schedule, mid.reshape(1))) < 11


def test_karras_grid_endpoints_and_order():
    levels = karras_logsnr(18, 0.002, 80.0, 7.0)
    torch.testing.assert_close(
        logsnr_to_sigma(levels[[0, -1]]), torch.tensor([80.0, 0.002], dtype=torch.float64)
    )
    assert (levels.diff() > 0).all()
    with pytest.raises(ValueError, match="Karras"):
        karras_logsnr(10, 1.0, 0.5)


def test_edm_lognormal_levels():
    a = EDMLogNormal(-1.2, 1.2).sample_logsnr(100_000, torch.Generator().manual_seed(0))
    log_sigma = -a / 2
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.02)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.02)
