"""The log-SNR channel and the DDPM schedule against DDPM's own formulas."""

import numpy as np
import pytest
import torch

from ctdm.diffusion import DDPMSchedule, noise_data, predict_x0


def test_linear_schedule_matches_ddpm_alpha_bar():
    schedule = DDPMSchedule(1000, 1e-4, 0.02)
    alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(torch.sigmoid(schedule.logsnr).numpy(), alpha_bar, rtol=1e-10)
    assert (schedule.logsnr.diff() < 0).all(), "log-SNR must fall with t"
    assert schedule.logsnr[0] == pytest.approx(np.log(1e-4**-1 - 1) * 1, rel=1e-6)  # ab_1 = 1 - beta_1


def test_cosine_schedule_is_decreasing_and_bounded():
    logsnr = DDPMSchedule(1000, kind="cosine").logsnr
    assert (logsnr.diff() < 0).all() and torch.isfinite(logsnr).all()


def test_sample_logsnr_uses_schedule_levels():
    schedule = DDPMSchedule(50)
    levels = schedule.sample_logsnr(10000, torch.Generator().manual_seed(0))
    assert set(levels.tolist()) <= set(schedule.logsnr.float().tolist())
    assert len(set(levels.tolist())) == 50  # every timestep drawn


def test_channel_round_trip_and_variance_preserving():
    x = torch.randn(4096, 3) * 2.0
    eps = torch.randn_like(x)
    logsnr = torch.full((4096,), 0.7)
    z = noise_data(x, logsnr, eps)
    torch.testing.assert_close(predict_x0(z, logsnr, eps), x, atol=1e-5, rtol=1e-5)
    # Var z = s(a) Var x + s(-a)
    expected = torch.sigmoid(torch.tensor(0.7)) * 4.0 + torch.sigmoid(torch.tensor(-0.7))
    assert z.var(0).mean() == pytest.approx(float(expected), rel=0.05)


@pytest.mark.parametrize(
    "kwargs", [{"num_steps": 0}, {"beta_start": 0.0}, {"beta_end": 1.5}, {"kind": "quadratic"}]
)
def test_bad_schedule_names_the_value(kwargs):
    with pytest.raises(ValueError, match="schedule"):
        DDPMSchedule(**kwargs)
