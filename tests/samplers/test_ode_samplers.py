"""DDIM and EDM Heun / Euler: coefficients, exactness on a point mass, samples against the exact mixture."""

import math
import re

import pytest
import torch

from ctdm.data.toy import GaussianMixture, eight_gaussians
from ctdm.diffusion import DDPMSchedule, karras_sigmas
from ctdm.metrics import mmd2
from ctdm.samplers import (
    DDIMSampler,
    DDPMSampler,
    EDMSampler,
    EulerSampler,
    HeunSampler,
    ddim_coefficients,
    ddpm_coefficients,
)

N = 600


@pytest.fixture(scope="module")
def law():
    return eight_gaussians()


@pytest.fixture(scope="module")
def reference_and_floor(law):
    reference = law.sample(N, torch.Generator().manual_seed(1))
    floor = [
        abs(float(mmd2(law.sample(N, torch.Generator().manual_seed(10 + k)), reference))) for k in range(4)
    ]
    return reference, max(floor)


def test_ddim_with_eta_one_is_the_ddpm_posterior_step():
    levels = DDPMSchedule().logsnr[[999, 700, 300, 10, 0]]
    t, s = levels, torch.cat([levels[1:], torch.tensor([math.inf], dtype=torch.float64)])
    for got, want in zip(ddim_coefficients(t, s, eta=1.0), ddpm_coefficients(t, s), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "sampler",
    [DDIMSampler(steps=7), EulerSampler(steps=5), HeunSampler(steps=4), HeunSampler(steps=1)],
    ids=["ddim", "euler", "heun", "heun-1-step"],
)
def test_ode_samplers_are_exact_for_a_point_mass(sampler):
    # Data = a point m: the probability-flow ODE is x_sigma = m + sigma eps, linear in sigma, so DDIM's
    # step and EDM's Euler/Heun steps are exact and every start lands on m.
    m = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    point = GaussianMixture(m, torch.full_like(m, 1e-12))
    x, _ = sampler(point.eps, (2,), torch.arange(5))
    torch.testing.assert_close(x, m.float().expand(5, 2), rtol=0, atol=2e-4)


@pytest.mark.parametrize(
    "sampler,nfe",
    [
        (DDIMSampler(steps=50), 50),
        (DDIMSampler(steps=50, eta=0.5), 50),
        (HeunSampler(steps=18), 35),
        (EulerSampler(steps=100), 100),
        (HeunSampler(steps=40, S_churn=20, S_tmin=0.01, S_tmax=10), 79),
    ],
    ids=["ddim", "ddim-eta0.5", "heun", "euler", "heun-churn"],
)
def test_samples_match_the_mixture(sampler, nfe, law, reference_and_floor):
    reference, floor = reference_and_floor
    samples, stats = sampler(law.eps, (2,), torch.arange(N))
    assert stats.nfe == nfe and stats.passes == sampler.steps
    value = float(mmd2(samples, reference))
    assert value < 4 * floor + 1e-4, (value, floor)


def test_karras_grid():
    sigmas = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert len(sigmas) == 19 and sigmas[-1] == 0
    torch.testing.assert_close(sigmas[[0, 17]], torch.tensor([80.0, 0.002], dtype=torch.float64))
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]


def test_churn_noise_keeps_sample_i_independent_of_the_batch(law):
    sampler = HeunSampler(steps=10, S_churn=5)
    full, _ = sampler(law.eps, (2,), torch.arange(8))
    part, _ = sampler(law.eps, (2,), torch.arange(2, 5))
    torch.testing.assert_close(full[2:5], part, rtol=0, atol=1e-6)
    plain, _ = HeunSampler(steps=10)(law.eps, (2,), torch.arange(8))
    assert not torch.allclose(full, plain)  # churn does add noise


BAD_SETTINGS = [  # (sampler class, arguments, the message naming the argument)
    (DDIMSampler, {"steps": 0}, "steps must be an integer >= 1, got 0"),
    (DDIMSampler, {"steps": 10, "eta": 1.5}, "eta must be in [0, 1]"),
    (DDIMSampler, {"steps": 10, "eta": -0.1}, "eta must be a finite number >= 0, got -0.1"),
    (HeunSampler, {"steps": 0}, "steps must be an integer >= 1, got 0"),
    (HeunSampler, {"steps": 5, "sigma_min": 1.0, "sigma_max": 0.5}, "sigma_min must be < sigma_max"),
    (HeunSampler, {"steps": 5, "sigma_min": 0.0}, "sigma_min must be a finite number > 0, got 0.0"),
    (HeunSampler, {"steps": 5, "S_churn": -1}, "S_churn must be a finite number >= 0, got -1"),
    (HeunSampler, {"steps": 5, "S_tmin": 2.0, "S_tmax": 1.0}, "S_tmin must be <= S_tmax"),
    (EDMSampler, {"steps": 5, "order": 3}, "order must be 1 (Euler) or 2 (Heun), got 3"),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD_SETTINGS)
def test_bad_settings_name_the_argument(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


@pytest.mark.parametrize("sampler", [DDPMSampler(steps=3), HeunSampler(steps=3)], ids=["ddpm", "heun"])
def test_a_denoiser_that_is_not_a_noise_predictor_is_refused(sampler):
    with pytest.raises(ValueError, match="epsilon parameterisation"):
        sampler(lambda z, a: z.sum(1), (2,), torch.arange(3))
