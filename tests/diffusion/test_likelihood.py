"""The ITD likelihood, the noised law's likelihood and the noise classifier against exact answers.

Oracles: Gaussian data N(0, diag(l)) has the optimal denoiser eps_hat = sqrt(s(-a)) z / (s(a) l + s(-a))
and p_zeta = N(0, s(zeta) l + s(-zeta)); a Gaussian mixture has an exact denoiser and density too.
Each estimate is repeated R times (one vectorised call) so the test knows its standard error.
"""

import math

import pytest
import torch
from torch.distributions import Normal

from ctdm.data.toy import GaussianMixture, dino, eight_gaussians
from ctdm.diffusion import (
    Draws,
    Reference,
    cdl_logit,
    denoising_mse_curve,
    focused_levels,
    nll,
    truncated_logistic,
)
from ctdm.diffusion.channel import append_dims, noise_data
from ctdm.diffusion.likelihood import shifted_level
from ctdm.losses import ContrastiveDiffusionLoss

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


# -- lower-variance draws (Draws): unbiased, and less noisy where each is meant to help ----------------

OPTIONS = {
    "stratified": Draws(stratified=True),
    "antithetic": Draws(antithetic=True),
    "stratified+antithetic": Draws(stratified=True, antithetic=True),
}
RATIO_OPTIONS = {
    **OPTIONS,
    "focused": Draws(focused=True),
    "stratified+focused": Draws(stratified=True, focused=True),
}


def independent(fn, repeats=R):
    """`repeats` calls of fn (each call its own draws: a stratified call shares one offset across its
    batch) -> mean and standard error per row."""
    values = torch.stack([fn() for _ in range(repeats)]).double()
    return values.mean(0), values.std(0) / math.sqrt(repeats)


def noised_mixture(law: GaussianMixture, zeta: float) -> GaussianMixture:
    """The law of z_zeta = sqrt(s(zeta)) x + sqrt(s(-zeta)) eps for a mixture x: again a mixture."""
    sz = s(torch.tensor(zeta, dtype=torch.float64))
    return GaussianMixture(law.means * sz.sqrt(), law.variances * sz + (1 - sz), law.weights)


@pytest.mark.parametrize("d,var_kind", [(2, 2.0), (16, "spread")])
@pytest.mark.parametrize("option", OPTIONS)
def test_nll_draws_are_unbiased_on_gaussian_data(d, var_kind, option):
    var, x, ref = _case(d, var_kind)
    g = torch.Generator().manual_seed(10)
    est, se = independent(
        lambda: nll(gaussian_eps(var), x, ref, n_points=16, generator=g, draws=OPTIONS[option])
    )
    within(est, se, -Normal(0, var.sqrt()).log_prob(x).sum(1))


@pytest.mark.parametrize("d,var_kind", [(2, 2.0), (16, "spread")])
@pytest.mark.parametrize("option", RATIO_OPTIONS)
def test_logit_draws_are_unbiased_on_gaussian_data(d, var_kind, option):
    var, x, ref = _case(d, var_kind)
    zeta = torch.tensor([-2.0, 1.0, 2.0, 4.0])
    var_zeta = s(zeta)[:, None] * var + s(-zeta)[:, None]
    truth = Normal(0, var.sqrt()).log_prob(x).sum(1) - Normal(0, var_zeta.sqrt()).log_prob(x).sum(1)
    g = torch.Generator().manual_seed(11)
    ref = Reference(var.log(), ref.loc, ref.scale)
    est, se = independent(
        lambda: cdl_logit(
            gaussian_eps(var), x, zeta, ref, n_points=8, generator=g, draws=RATIO_OPTIONS[option]
        )
    )
    within(est, se, truth)


# A range wide enough that truncating the integral costs nothing measurable, even for the dino's thin
# components (variance ~1e-4 after standardising: their integrand reaches a ~ 14).
WIDE = dict(loc=0.0, scale=3.0, clip=6.0)


@pytest.mark.parametrize("law", [eight_gaussians(), dino()], ids=["eight_gaussians", "dino"])
@pytest.mark.parametrize("option", RATIO_OPTIONS)
def test_logit_draws_match_the_exact_mixture_log_ratio(law, option):
    g = torch.Generator().manual_seed(12)
    x = law.sample(4, g)
    zeta = torch.tensor([1.0, 3.0, 5.0, 8.0])
    noised = noise_data(x, zeta, torch.randn(x.shape, generator=g))
    z = torch.cat([x, noised])  # clean points, and the same noised at zeta (log ratios of -1 to -300)
    zetas = torch.cat([zeta, zeta])
    truth = torch.stack(
        [
            law.log_prob(zi[None])[0] - noised_mixture(law, float(ze)).log_prob(zi[None])[0]
            for zi, ze in zip(z, zetas, strict=True)
        ]
    )
    ref = Reference.standard((2,), **WIDE)
    est, se = independent(
        lambda: cdl_logit(law.eps, z, zetas, ref, n_points=16, generator=g, draws=RATIO_OPTIONS[option])
    )
    within(est, se, truth)


@pytest.mark.parametrize("option", OPTIONS)
def test_nll_draws_match_the_exact_mixture_density(option):
    law = dino()
    x = law.sample(6, torch.Generator().manual_seed(13))
    g = torch.Generator().manual_seed(14)
    ref = Reference.standard((2,), **WIDE)
    est, se = independent(lambda: nll(law.eps, x, ref, n_points=16, generator=g, draws=OPTIONS[option]))
    within(est, se, -law.log_prob(x))


def logit_spread(law_eps, z, zeta, ref, points, draws, repeats=128):
    """Per-point standard deviation of the logit over `repeats` independent calls (one per redraw)."""
    g = torch.Generator().manual_seed(15)
    return torch.stack(
        [cdl_logit(law_eps, z, zeta, ref, n_points=points, generator=g, draws=draws) for _ in range(repeats)]
    ).std(0)


def _classifier_points(law, count=64):
    """Held-out points half clean, half noised at zetas from the CDL's default law (the data's range)."""
    g = torch.Generator().manual_seed(16)
    ref = Reference.from_data_var(law.variance().float())
    x = law.sample(count, g)
    zeta = ContrastiveDiffusionLoss().zeta.sample(count, g, reference=ref)
    z = torch.where(
        torch.arange(count)[:, None] % 2 == 0, x, noise_data(x, zeta, torch.randn(x.shape, generator=g))
    )
    return z, zeta, ref


def test_stratified_levels_lower_the_logit_noise():
    # eight Gaussians, exact denoiser, 8 shared points: measured 2.27 -> 1.86 nats (benchmarks/cdl_step.py)
    law = eight_gaussians()
    z, zeta, ref = _classifier_points(law)
    plain = logit_spread(law.eps, z, zeta, ref, 8, Draws())
    stratified = logit_spread(law.eps, z, zeta, ref, 8, Draws(stratified=True))
    assert stratified.mean() < 0.9 * plain.mean()


@pytest.mark.parametrize(
    "law,margin", [(eight_gaussians(), 0.9), (dino(), 0.7)], ids=["eight_gaussians", "dino"]
)
def test_focused_levels_lower_the_logit_noise(law, margin):
    # 2 shared points, the authors' work per step: measured 4.44 -> 3.51 (8g), 401 -> 182 (dino) nats
    z, zeta, ref = _classifier_points(law)
    plain = logit_spread(law.eps, z, zeta, ref, 2, Draws())
    focused = logit_spread(law.eps, z, zeta, ref, 2, Draws(stratified=True, focused=True))
    assert focused.mean() < margin * plain.mean()


def test_antithetic_pairs_lower_the_logit_noise_in_the_tails():
    # Far from the mode the noise term linear in eps dominates, and (eps, -eps) pairs cancel it:
    # 16-D Gaussian, points at 3 standard deviations, 8 shared points: measured 1.37 -> 0.67 nats.
    var = torch.full((16,), 0.3)
    x = 3 * var.sqrt() * torch.randn(32, 16, generator=torch.Generator().manual_seed(17))
    ref = Reference.from_data_var(var)
    zeta = torch.full((32,), 2.0)
    stratified = logit_spread(gaussian_eps(var), x, zeta, ref, 8, Draws(stratified=True))
    antithetic = logit_spread(gaussian_eps(var), x, zeta, ref, 8, Draws(stratified=True, antithetic=True))
    assert antithetic.mean() < 0.75 * stratified.mean()


def test_default_draws_are_the_plain_estimator():
    # Draws() consumes the generator exactly as the estimator did before the options existed: one uniform
    # per point for the levels, then the noise (so existing runs reproduce).
    var, x, ref = _case(2, 2.0)
    g1, g2 = torch.Generator().manual_seed(18), torch.Generator().manual_seed(18)
    a = nll(gaussian_eps(var), x, ref, n_points=3, generator=g1, draws=Draws())
    levels, weight = truncated_logistic((4, 3), ref.loc, ref.scale, ref.clip, generator=g2)
    eps = torch.randn((12, 2), generator=g2)
    z = noise_data(x.repeat_interleave(3, 0), levels.flatten(), eps)
    errors = (eps - gaussian_eps(var)(z, levels.flatten())).pow(2).sum(1).view(4, 3)
    h_g = math.log(2 * math.pi * math.e) + 0.5 * float(ref.log_var.expand(2).sum())
    mmse_g = s(levels[..., None] + ref.log_var).sum(-1)
    torch.testing.assert_close(a, h_g + 0.5 * (weight * (errors - mmse_g)).mean(1))


def test_focused_levels_cover_the_range_with_the_right_density():
    # q puts 1 - floor uniformly on [zeta - margin, hi] and floor on [lo, zeta - margin); weights are 1/q.
    ref = Reference.standard((1,), loc=0.0, scale=2.0, clip=3.0)  # range [-6, 6]
    quantile = torch.rand(1, 100_000, generator=torch.Generator().manual_seed(19))
    for zeta, below in [(1.0, 0.05), (-10.0, 0.0), (20.0, 1.0)]:  # inside, below and above the range
        level, weight = focused_levels(quantile, torch.tensor([zeta]), ref, margin=2.0, floor=0.05)
        assert level.min() >= -6 and level.max() <= 6
        assert float((level < zeta - 2).float().mean()) == pytest.approx(below, abs=0.005)
        assert float(weight.mean()) == pytest.approx(12.0, rel=0.01)  # E_q[1/q] = the range's length
