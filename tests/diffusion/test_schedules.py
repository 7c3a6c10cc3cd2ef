"""The DDPM schedules against DDPM's own formulas, the Karras grid and EDM's log-normal levels."""

import numpy as np
import pytest
import torch

from ctdm.diffusion import (
    DDPMSchedule,
    EDMLogNormal,
    ddpm_timestep,
    karras_logsnr,
    logsnr_to_sigma,
)


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
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        karras_logsnr(10, 1.0, 0.5)


def test_edm_lognormal_levels():
    a = EDMLogNormal(-1.2, 1.2).sample_logsnr(100_000, torch.Generator().manual_seed(0))
    log_sigma = -a / 2
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.02)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.02)
