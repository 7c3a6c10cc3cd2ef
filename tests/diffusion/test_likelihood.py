"""The ITD likelihood, the noised law's likelihood and the noise classifier against exact answers.

Oracles: Gaussian data N(0, diag(l)) has the optimal denoiser eps_hat = sqrt(s(-a)) z / (s(a) l + s(-a))
and p_zeta = N(0, s(zeta) l + s(-zeta)); a Gaussian mixture has an exact denoiser and density too.
Each estimate is repeated R times (one vectorised call) so the test knows its standard error.
"""

import math

import pytest
import torch
from torch.distributions import Normal

from ctdm.data.toy import eight_gaussians
from ctdm.diffusion import Reference, cdl_logit, denoising_mse_curve, nll, truncated_logistic
from ctdm.diffusion.channel import append_dims
from ctdm.diffusion.likelihood import shifted_level

s = torch.sigmoid
R, M = 200, 64  # repeats x Monte-Carlo points per estimate


def gaussian_eps(var: torch.Tensor):
    def eps_fn(z, a):
        a = append_dims(a, z.dim())
        return s(-a).sqrt() * z / (s(a) * var + s(-a))

    return eps_fn


def repeated(fn, x: torch.Tensor):
    """R independent estimates for every row of x -> (mean [B], standard error [B])."""
    values = fn(x.repeat_interleave(R, 0)).view(len(x), R).double()
    return values.mean(1), values.std(1) / math.sqrt(R)


def within(estimate, error, truth, n_se=4.0):
    gap = (estimate - truth.double()).abs()
    assert (gap <= n_se * error + 1e-6).all(), f"estimate {estimate} +- {error} vs truth {truth}"


CASES = [(1, 0.5), (2, 2.0), (16, 0.3), (16, "spread")]


def _case(d, var_kind):
    """Variances, 4 points, and the data's log-SNR range around a standard-normal reference Gaussian."""
    var = torch.linspace(0.1, 3.0, d) if var_kind == "spread" else torch.full((d,), float(var_kind))
    x = torch.randn(4, d, generator=torch.Generator().manual_seed(d)) * var.sqrt() * 1.3
    data_ref = Reference.from_data_var(var)
    return var, x, Reference.standard((d,), data_ref.loc, data_ref.scale)


@pytest.mark.parametrize("d,var_kind", CASES)
def test_nll_matches_gaussian_density(d, var_kind):
    var, x, ref = _case(d, var_kind)
    g = torch.Generator().manual_seed(0)
    est, se = repeated(lambda xs: nll(gaussian_eps(var), xs, ref, n_points=M, generator=g), x)
    within(est, se, -Normal(0, var.sqrt()).log_prob(x).sum(1))


@pytest.mark.parametrize("d,var_kind", CASES)
@pytest.mark.parametrize("zeta", [-1.0, 2.0])
def test_noised_nll_matches_gaussian_density(d, var_kind, zeta):
    var, x, ref = _case(d, var_kind)
    g = torch.Generator().manual_seed(1)
    var_zeta = s(torch.tensor(zeta)) * var + s(torch.tensor(-zeta))
    est, se = repeated(
        lambda xs: nll(gaussian_eps(var), xs, ref, n_points=M, zeta=zeta, generator=g),
        x,
    )
    within(est, se, -Normal(0, var_zeta.sqrt()).log_prob(x).sum(1))


@pytest.mark.parametrize("d,var_kind", CASES)
@pytest.mark.parametrize("share_draws", [True, False])
def test_cdl_logit_matches_gaussian_log_ratio(d, var_kind, share_draws):
    var, x, ref = _case(d, var_kind)
    zeta = torch.tensor([0.0, 1.0, 2.0, 4.0])  # one level per sample
    g = torch.Generator().manual_seed(2)
    var_zeta = s(zeta)[:, None] * var + s(-zeta)[:, None]
    truth = Normal(0, var.sqrt()).log_prob(x).sum(1) - Normal(0, var_zeta.sqrt()).log_prob(x).sum(1)
    est, se = repeated(
        lambda zs: cdl_logit(
            gaussian_eps(var),
            zs,
            zeta.repeat_interleave(R),
            Reference(var.log(), ref.loc, ref.scale),
            n_points=M,
            generator=g,
            share_draws=share_draws,
        ),
        x,
    )
    within(est, se, truth)


def test_shared_draws_are_less_noisy():
    var, x, ref = _case(2, 2.0)
    kwargs = dict(n_points=M, generator=torch.Generator().manual_seed(3))
    _, se_shared = repeated(
        lambda zs: cdl_logit(gaussian_eps(var), zs, 2.0, ref, **kwargs, share_draws=True), x
    )
    _, se_indep = repeated(
        lambda zs: cdl_logit(gaussian_eps(var), zs, 2.0, ref, **kwargs, share_draws=False), x
    )
    assert (se_shared < se_indep / 2).all()


def test_nll_matches_mixture_density():
    law = eight_gaussians()
    x = law.sample(4, torch.Generator().manual_seed(5))
    x = torch.cat([x, torch.tensor([[0.0, 0.0], [2.0, -1.0]])])  # off the modes too
    data_ref = Reference.from_data_var(law.variance().float())
    ref = Reference.standard((2,), data_ref.loc, data_ref.scale)
    g = torch.Generator().manual_seed(6)
    est, se = repeated(lambda xs: nll(law.eps, xs, ref, n_points=M, generator=g), x)
    within(est, se, -law.log_prob(x))


def test_max_batch_gives_the_same_estimate():
    var, x, _ = _case(2, 2.0)
    ref = Reference.standard((2,), loc=0.0, scale=3.0)
    a = nll(gaussian_eps(var), x, ref, n_points=50, generator=torch.Generator().manual_seed(7))
    b = nll(gaussian_eps(var), x, ref, n_points=50, generator=torch.Generator().manual_seed(7), max_batch=33)
    torch.testing.assert_close(a, b)


def test_vectorised_call_is_one_network_batch():
    var, x, ref = _case(2, 2.0)
    sizes = []

    def counting(z, a):
        sizes.append(len(z))
        return gaussian_eps(var)(z, a)

    cdl_logit(counting, x, 1.0, Reference.standard((2,), loc=0.0, scale=3.0), n_points=32)
    assert sizes == [2 * len(x) * 32]


def test_truncated_logistic_weights_integrate_the_range():
    # E_q[w(a) f(a)] = integral of f over the truncated range; f = 1 gives its length.
    a, w = truncated_logistic((200_000,), 1.0, 2.0, 3.0, generator=torch.Generator().manual_seed(8))
    assert a.min() >= 1.0 - 6.0 and a.max() <= 1.0 + 6.0
    assert float(w.mean()) == pytest.approx(12.0, rel=0.02)


def test_shifted_level_is_the_composed_channel():
    a, zeta = torch.linspace(-8, 8, 17, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64)
    shifted, factor = shifted_level(a, zeta.expand(17))
    torch.testing.assert_close(s(shifted), s(a) * s(zeta))
    torch.testing.assert_close(factor, (s(-a) / s(-shifted)).sqrt())
    same, one = shifted_level(a, torch.full((17,), torch.inf, dtype=torch.float64))
    torch.testing.assert_close(same, a)
    torch.testing.assert_close(one, torch.ones_like(a))


def test_mse_curve_matches_the_gaussian_mmse():
    var = torch.tensor([0.5, 2.0])
    x = torch.randn(20000, 2) * var.sqrt()
    levels = torch.tensor([-4.0, 0.0, 4.0])
    curve = denoising_mse_curve(gaussian_eps(var), x, levels, generator=torch.Generator().manual_seed(9))
    expected = s(levels[:, None] + var.log()).sum(1)
    torch.testing.assert_close(curve, expected, atol=0.03, rtol=0.03)
