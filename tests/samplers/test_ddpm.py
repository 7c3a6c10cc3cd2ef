"""DDPM ancestral sampling: coefficients against DDPM's formulas, samples against the exact law."""

import re

import pytest
import torch

from ctdm.data.toy import eight_gaussians
from ctdm.diffusion import DDPMSchedule
from ctdm.metrics import mmd2
from ctdm.samplers import DDPMSampler, ddpm_coefficients


def test_full_schedule_step_is_ddpm_algorithm_2():
    # x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - ab_t) eps) + sqrt(beta_tilde_t) n
    schedule = DDPMSchedule()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    sampler = DDPMSampler(steps=1000, schedule=schedule)
    t = torch.arange(2, 1001)  # transitions t -> t-1 for t = 1000..2 (index i = 1000 - t)
    i = 1000 - t
    c_z = 1 / (1 - betas[t - 1]).sqrt()
    c_eps = -c_z * betas[t - 1] / (1 - alpha_bar[t - 1]).sqrt()
    beta_tilde = (1 - alpha_bar[t - 2]) / (1 - alpha_bar[t - 1]) * betas[t - 1]
    torch.testing.assert_close(sampler.c_z[i], c_z, rtol=1e-9, atol=0)
    torch.testing.assert_close(sampler.c_eps[i], c_eps, rtol=1e-9, atol=0)
    torch.testing.assert_close(sampler.noise_std[i], beta_tilde.sqrt(), rtol=1e-9, atol=0)
    # The last step (t = 1) returns the x0 estimate without noise.
    assert sampler.noise_std[-1] == 0
    torch.testing.assert_close(sampler.c_z[-1], 1 / alpha_bar[0].sqrt(), rtol=1e-9, atol=0)


def test_beta_variance_option():
    _, _, noise_std = ddpm_coefficients(torch.tensor([-1.0]).double(), torch.tensor([0.5]).double(), "beta")
    beta = 1 - torch.sigmoid(torch.tensor(-1.0)).double() / torch.sigmoid(torch.tensor(0.5)).double()
    torch.testing.assert_close(noise_std, beta.sqrt().reshape(1))


@pytest.mark.parametrize("steps", [1000, 100])
def test_exact_denoiser_samples_match_the_mixture(steps):
    law = eight_gaussians()
    n = 1500
    reference = law.sample(n, torch.Generator().manual_seed(1))
    samples, stats = DDPMSampler(steps=steps)(law.eps, (2,), torch.arange(n))
    assert stats.nfe == steps and stats.passes == steps
    # Bound from the spread of mixture-vs-mixture MMD at this sample size.
    floor = [
        abs(float(mmd2(law.sample(n, torch.Generator().manual_seed(10 + k)), reference))) for k in range(5)
    ]
    far = float(mmd2(torch.randn(n, 2), reference))
    value = float(mmd2(samples, reference))
    assert value < 4 * max(floor) + 1e-4, (value, floor)
    assert value < far / 20


def test_sample_i_does_not_depend_on_the_batch():
    law = eight_gaussians()
    sampler = DDPMSampler(steps=50)
    full, _ = sampler(law.eps, (2,), torch.arange(10))
    part, _ = sampler(law.eps, (2,), torch.arange(3, 6))
    torch.testing.assert_close(full[3:6], part, rtol=0, atol=1e-6)
    assert not torch.allclose(full[0], full[1])


BAD_SETTINGS = [  # (arguments, the message naming the argument)
    ({"steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
    ({"steps": True}, "steps must be an integer >= 1, got True"),
    ({"steps": 1001}, "steps must be at most the schedule's 1000 timesteps, got 1001"),
    ({"steps": 10, "variance": "large"}, "variance must be 'posterior' or 'beta', got 'large'"),
    ({"steps": 10, "schedule": "cosine"}, "schedule must be a discrete DDPMSchedule"),
]


@pytest.mark.parametrize("kwargs,message", BAD_SETTINGS, ids=[m.split(" ")[0] for _, m in BAD_SETTINGS])
def test_bad_settings_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DDPMSampler(**kwargs)
