"""Loss terms: CDL against a per-sample reference loop, gradients, the EDM identity, bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from ctdm.data.toy import eight_gaussians
from ctdm.diffusion import Reference
from ctdm.diffusion.likelihood import truncated_logistic
from ctdm.losses import (
    ContrastiveDiffusionLoss,
    DenoisingMSE,
    EDMLoss,
    ITDLoss,
    ZetaDistribution,
    check_weights,
)
from ctdm.nets import ResidualMLP

s = torch.sigmoid
REF = Reference(torch.zeros(2), loc=0.0, scale=3.0, clip=3.0)


def _net(seed=0):
    torch.manual_seed(seed)
    net = ResidualMLP(2, width=32, blocks=1)
    torch.nn.init.normal_(net.out[-1].weight, std=0.3)  # not the zero start: a non-trivial denoiser
    return net


def _reference_cdl(eps_fn, x, term, seed):
    """CDL written the straightforward way: per sample, per Monte-Carlo point, float64 level algebra.

    Replays the vectorised term's random draws from the same generator, in the same order.
    """
    g = torch.Generator().manual_seed(seed)
    count, m = len(x), term.points
    zeta = term.zeta.sample(count, g, None, REF)
    clean = torch.rand(count, generator=g) < 0.5
    eps0 = torch.randn(x.shape, generator=g)
    a, w = truncated_logistic((count, m), REF.loc, REF.scale, REF.clip, generator=g)
    eps = torch.randn((count * m, 2), generator=g).view(count, m, 2)
    if term.share_draws:
        a2, w2, eps2 = a, w, eps
    else:
        a2, w2 = truncated_logistic((count, m), REF.loc, REF.scale, REF.clip, generator=g)
        eps2 = torch.randn((count * m, 2), generator=g).view(count, m, 2)
    losses = []
    for i in range(count):
        zi = x[i] if clean[i] else s(zeta[i]).sqrt() * x[i] + s(-zeta[i]).sqrt() * eps0[i]
        log_p, log_pz = 0.0, 0.0
        for k in range(m):
            ak, ek = float(a[i, k]), eps[i, k]
            zk = math.sqrt(s(torch.tensor(ak))) * zi + math.sqrt(s(torch.tensor(-ak))) * ek
            err = (ek - eps_fn(zk[None], torch.tensor([ak]))[0]).pow(2).sum()
            mmse_g = 2 * s(torch.tensor(ak))
            log_p = log_p - 0.5 * w[i, k] * (err - mmse_g) / m
            # p_zeta: the same input, queried at a' with s(a') = s(a) s(zeta), rescaled.
            ak2, ek2 = float(a2[i, k]), eps2[i, k]
            zk2 = math.sqrt(s(torch.tensor(ak2))) * zi + math.sqrt(s(torch.tensor(-ak2))) * ek2
            sa = float(s(torch.tensor(ak2, dtype=torch.float64)) * s(zeta[i].double()))
            shifted = math.log(sa / (1 - sa))
            scale = math.sqrt(float(s(torch.tensor(-ak2, dtype=torch.float64))) / (1 - sa))
            err2 = (
                (ek2 - scale * eps_fn(zk2[None], torch.tensor([shifted], dtype=torch.float32))[0])
                .pow(2)
                .sum()
            )
            log_pz = log_pz - 0.5 * w2[i, k] * (err2 - 2 * s(torch.tensor(ak2))) / m
        logit = log_p - log_pz
        y = 1.0 if clean[i] else -1.0
        losses.append(F.softplus(-y * logit))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("share_draws", [True, False])
@pytest.mark.parametrize("zeta", [ZetaDistribution(), ZetaDistribution("uniform", low=-2.0, high=5.0)])
def test_vectorised_cdl_equals_the_reference_loop(share_draws, zeta):
    net = _net()
    x = eight_gaussians().sample(6, torch.Generator().manual_seed(1))
    term = ContrastiveDiffusionLoss(points=5, zeta=zeta, share_draws=share_draws)
    value, logs = term(net, x, torch.Generator().manual_seed(3), REF)
    with torch.no_grad():
        expected = _reference_cdl(net, x, term, 3)
    torch.testing.assert_close(value.detach(), expected.float(), rtol=1e-4, atol=1e-5)
    assert 0 <= float(logs["cdl_acc"]) <= 1


def test_cdl_gradient_reaches_the_network_through_both_likelihoods():
    net = _net()
    outputs = []

    def eps_fn(z, a):
        out = net(z, a)
        out.retain_grad()
        outputs.append((a, out))
        return out

    x = eight_gaussians().sample(8, torch.Generator().manual_seed(2))
    value, _ = ContrastiveDiffusionLoss(points=4)(eps_fn, x, torch.Generator().manual_seed(0), REF)
    value.backward()
    ((levels, out),) = outputs
    half = len(out) // 2
    assert torch.all(levels[half:] < levels[:half])  # second half: the shifted levels a' of p_zeta
    assert out.grad[:half].abs().sum() > 0 and out.grad[half:].abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_cdl_samples_option_limits_the_work():
    sizes = []
    net = _net()

    def eps_fn(z, a):
        sizes.append(len(z))
        return net(z, a)

    x = eight_gaussians().sample(32, torch.Generator().manual_seed(2))
    ContrastiveDiffusionLoss(samples=2, points=16)(eps_fn, x, None, REF)
    ContrastiveDiffusionLoss(samples="all", points=3)(eps_fn, x, None, REF)
    assert sizes == [2 * 2 * 16, 2 * 32 * 3]


def test_edm_loss_is_the_x_space_loss():
    # lambda(sigma) |D - x|^2 with D = x_edm - sigma eps_hat, computed in x-space by hand.
    net, x = _net(), eight_gaussians().sample(64, torch.Generator().manual_seed(4))
    term = EDMLoss(sigma_data=0.5)
    value, _ = term(net, x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    a = term.distribution.sample_logsnr(64, g)
    n = torch.randn(x.shape, generator=g)
    sigma = torch.exp(-a / 2)[:, None]
    x_noisy = x + sigma * n  # x_edm
    z = x_noisy / (1 + sigma**2).sqrt()
    denoised = x_noisy - sigma * net(z, a)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    expected = (weight * (denoised - x) ** 2).mean()
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)


def test_itd_loss_is_the_mean_nll_and_has_gradient():
    net, x = _net(), eight_gaussians().sample(16, torch.Generator().manual_seed(6))
    value, logs = ITDLoss(points=2)(net, x, torch.Generator().manual_seed(0), REF)
    value.backward()
    assert torch.isfinite(value) and logs["itd"] == value.detach()
    assert net.out[-1].weight.grad.abs().sum() > 0


def test_all_zero_weights_are_refused():
    with pytest.raises(ValueError, match="All loss weights are zero"):
        check_weights({"mse": DenoisingMSE(weight=0.0), "cdl": ContrastiveDiffusionLoss(weight=0.0)})
