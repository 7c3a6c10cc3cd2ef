"""Gaussian mixtures: the exact law, density and denoiser that tests and evaluation rely on."""

import math

import pytest
import torch
from torch import distributions as D

from ctdm.data.toy import GaussianMixture, eight_gaussians


def _torch_mixture(law: GaussianMixture) -> D.MixtureSameFamily:
    comps = D.Independent(D.Normal(law.means, law.variances.sqrt()), 1)
    return D.MixtureSameFamily(D.Categorical(probs=law.weights), comps)


def test_eight_gaussians_standardised_moments_match_samples():
    law = eight_gaussians()
    x = law.sample(200_000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(law.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(law.variance(), torch.ones(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.mean(0), law.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(x.var(0), law.variance(), atol=0.01, rtol=0)
    # Eight modes at one radius: the distance of a sample from the origin clusters there.
    radius = law.means.norm(dim=1)
    assert torch.allclose(radius, radius[0].expand(8))


def test_log_prob_matches_torch_distributions():
    law = GaussianMixture(
        torch.tensor([[0.0, 1.0], [2.0, -1.0]]), torch.tensor([[0.5, 0.2], [1.0, 2.0]]), [0.3, 0.7]
    )
    x = torch.randn(100, 2, dtype=torch.float64) * 2
    torch.testing.assert_close(law.log_prob(x), _torch_mixture(law).log_prob(x), atol=1e-10, rtol=1e-10)


def test_eps_of_a_single_gaussian_is_the_closed_form():
    # Gaussian data N(0, diag(l)): eps_hat = sqrt(s(-a)) z / (s(a) l + s(-a)).
    var = torch.tensor([0.3, 4.0])
    law = GaussianMixture(torch.zeros(1, 2), var[None])
    z, a = torch.randn(50, 2) * 3, torch.linspace(-8, 8, 50)
    s = torch.sigmoid
    expected = s(-a)[:, None].sqrt() * z / (s(a)[:, None] * var + s(-a)[:, None])
    torch.testing.assert_close(law.eps(z, a), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("logsnr", [-6.0, 0.0, 3.0])
def test_mixture_eps_is_tweedie_from_the_noised_density(logsnr):
    # E[eps | z] = -sigma * grad_z log p_a(z), with p_a the mixture pushed through the channel.
    law = eight_gaussians()
    alpha, sigma = (
        math.sqrt(torch.sigmoid(torch.tensor(logsnr))),
        math.sqrt(torch.sigmoid(torch.tensor(-logsnr))),
    )
    noised = GaussianMixture(alpha * law.means, alpha**2 * law.variances + sigma**2, law.weights)
    z = (torch.randn(64, 2, dtype=torch.float64) * 1.5).requires_grad_(True)
    (score,) = torch.autograd.grad(_torch_mixture(noised).log_prob(z).sum(), z)
    eps = law.eps(z.detach(), torch.full((64,), logsnr, dtype=torch.float64))
    torch.testing.assert_close(eps, -sigma * score, atol=1e-8, rtol=1e-6)


def test_bad_mixture_is_refused():
    with pytest.raises(ValueError, match="positive variances"):
        GaussianMixture(torch.zeros(2, 2), torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
