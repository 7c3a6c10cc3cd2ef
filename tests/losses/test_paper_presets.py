"""The loss presets against what they claim to be: loss=itd_cdl_paper against the authors' per-item
loop (one backward pass per item), loss=mse_sum against the per-dimension sum, ctdm's own presets."""

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from ctdm.data.toy import eight_gaussians
from ctdm.diffusion import Reference
from ctdm.losses import ContrastiveDiffusionLoss, DenoisingMSE, ITDLoss
from ctdm.nets import ResidualMLP

B, D = 8, 2  # batch size (= the authors' Monte-Carlo points per likelihood), data dimension
REF = Reference(torch.tensor([0.3, -0.2]), loc=1.0, scale=3.0, clip=3.0)  # log variances of G


def _net():
    torch.manual_seed(0)
    net = ResidualMLP(D, width=32, blocks=1)
    torch.nn.init.normal_(net.out[-1].weight, std=0.3)  # not the zero start: a non-trivial denoiser
    return net


def _logistic(shape, g):
    """The authors' utils.logistic_integrate: truncated logistic levels and weights 1/q(a)."""
    lo, hi = 1 / (1 + math.exp(REF.clip)), 1 / (1 + math.exp(-REF.clip))
    u = torch.logit(lo + (hi - lo) * torch.rand(shape, generator=g).double())
    weight = REF.scale * math.tanh(REF.clip / 2) / (torch.sigmoid(u) * torch.sigmoid(-u))
    return REF.loc + REF.scale * u, weight


def _their_nll(net, x, logsnr, weight, eps, zeta=None):
    """Their CDL_DiffusionModel.nll: h_G + 1/2 mean_k w_k (|eps_k - eps_hat|^2 - mmse_G(a_k)), with
    their level shift logsnr' = logit(s(a) / (1 + exp(-zeta))) and scale sqrt(s(-a) / s(-a'))."""
    s = torch.sigmoid
    z = s(logsnr).sqrt()[:, None] * x + s(-logsnr).sqrt()[:, None] * eps
    if zeta is None:
        level, scale = logsnr, torch.ones_like(logsnr)
    else:
        level = torch.logit(s(logsnr) / (1 + torch.exp(-zeta)))
        scale = (s(-logsnr) / s(-level)).sqrt()
    eps_hat = scale[:, None].float() * net(z.float(), level.float())
    mse = (eps - eps_hat).pow(2).sum(1)  # their einsum('ij,ij->i'): summed over dimensions
    log_var = REF.log_var.double()
    h_g = 0.5 * D * math.log(2 * math.pi * math.e) + 0.5 * float(log_var.sum())
    mmse_g = torch.sigmoid(logsnr[:, None] + log_var).sum(1)
    return h_g + 0.5 * (weight * (mse - mmse_g)).mean()


def _their_gradients(net, x, seed):
    """The authors' training step, one backward pass per term and per item, on ctdm's draws: the same
    generator replayed in the order ctdm's terms consume it (ITD, then CDL: zeta, labels, the noise of
    z, then the points of log p and of log p_zeta)."""
    g = torch.Generator().manual_seed(seed)
    net.zero_grad()
    logsnr, weight = _logistic((B, 1), g)
    eps = torch.randn((B, D), generator=g)
    _their_nll(net, x, logsnr[:, 0], weight[:, 0], eps).backward()  # std_loss, std_loss_weight 1
    after_itd = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()  # the CDL part in its own buffer (their buffer sums both, up to rounding)
    zeta = _logistic((2,), g)[0]
    clean = torch.rand(2, generator=g) < 0.5
    eps0 = torch.randn((2, D), generator=g)
    draws_p = [(*_logistic((2, B), g), torch.randn((2 * B, D), generator=g).view(2, B, D))]
    draws_z = [(*_logistic((2, B), g), torch.randn((2 * B, D), generator=g).view(2, B, D))]
    (a_p, w_p, e_p), (a_z, w_z, e_z) = draws_p[0], draws_z[0]
    for i in range(2):  # for i, xi in enumerate(batch[0]): ... if i >= self.flag: break
        s_z = torch.sigmoid(zeta[i])
        z = x[i] if clean[i] else (s_z.sqrt() * x[i] + (1 - s_z).sqrt() * eps0[i]).float()
        zs = z.expand(B, D)  # their nll_x: the item repeated over B points
        log_p_zeta = -_their_nll(net, zs, a_z[i], w_z[i], e_z[i], zeta=zeta[i])
        log_p = -_their_nll(net, zs, a_p[i], w_p[i], e_p[i])
        y = -1.0 if not clean[i] else 1.0  # y = -1: noised
        cdl = F.softplus(y * (log_p_zeta - log_p)) / B  # cdl_loss / len(batch[0])
        (cdl * 1.0).backward()  # cdl_loss_weight 1
    cdl_part = [p.grad.clone() for p in net.parameters()]
    return [i + c for i, c in zip(after_itd, cdl_part, strict=True)], cdl_part


def _objective_gradients(net, terms, x, seed, only=None):
    """What DiffusionModule.objective computes: sum_k weight_k term_k, the terms in config order (all
    of them draw from the generator; `only` names the one term that is differentiated)."""
    g = torch.Generator().manual_seed(seed)
    net.zero_grad()
    values = {name: term.weight * term(net, x, g, REF)[0] for name, term in terms.items()}
    sum(v for name, v in values.items() if only in (None, name)).backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_itd_cdl_paper_gradient_equals_the_authors_loop(make_cfg, seed):
    cfg = make_cfg(["loss=itd_cdl_paper", f"data.batch_size={B}"])
    terms = instantiate(cfg.loss, _convert_="all")
    assert list(terms) == ["itd", "cdl"]
    assert isinstance(terms["itd"], ITDLoss) and terms["itd"].points == 1
    cdl = terms["cdl"]
    assert (cdl.weight, cdl.samples, cdl.points, cdl.per_item_divisor, cdl.share_draws) == (
        1.0,
        2,
        B,
        B,
        False,
    )
    net = _net()
    x = eight_gaussians().sample(B, torch.Generator().manual_seed(seed + 10))
    theirs, their_cdl = _their_gradients(net, x, seed)
    # The whole step, then the CDL part alone: at weight 2/B it is a faint part of the whole (the
    # point of the protocol), so it gets its own comparison at its own scale.
    pairs = [(_objective_gradients(net, terms, x, seed), theirs)]
    pairs.append((_objective_gradients(net, terms, x, seed, only="cdl"), their_cdl))
    for ours, reference in pairs:
        scale = max(float(b.abs().max()) for b in reference)
        assert scale > 0
        for a, b in zip(ours, reference, strict=True):  # float32 networks, importance weights up to ~60
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * scale)


def test_per_item_divisor_is_the_authors_weight_2_over_b():
    """sum of the 2 items' softplus / B = (2 / B) x their mean, on the same draws."""
    net, x = _net(), eight_gaussians().sample(B, torch.Generator().manual_seed(0))
    kwargs = dict(samples=2, points=4, share_draws=False)
    summed = ContrastiveDiffusionLoss(per_item_divisor=B, **kwargs)(
        net, x, torch.Generator().manual_seed(1), REF
    )
    mean = ContrastiveDiffusionLoss(**kwargs)(net, x, torch.Generator().manual_seed(1), REF)
    torch.testing.assert_close(summed[0], 2 / B * mean[0])
    torch.testing.assert_close(summed[1]["cdl"], mean[1]["cdl"])  # the logged loss compares across presets


def test_mse_sum_is_the_sum_over_dimensions(make_cfg):
    terms = instantiate(make_cfg(["loss=mse_sum"]).loss, _convert_="all")
    assert terms["mse"].reduction == "sum"
    net, x = _net(), eight_gaussians().sample(16, torch.Generator().manual_seed(0))
    summed = terms["mse"](net, x, torch.Generator().manual_seed(4))[0]
    mean = DenoisingMSE()(net, x, torch.Generator().manual_seed(4))[0]
    torch.testing.assert_close(summed, D * mean)


@pytest.mark.parametrize(
    "option,names,share,samples,every",
    [
        ("mse_cdl", ["mse", "cdl"], True, "all", 1),
        # itd_cdl on every 16th step: the best CDL setting at equal training time on the dino
        ("contrastive", ["itd", "cdl"], True, "all", 16),
        ("itd_cdl", ["itd", "cdl"], True, "all", 1),  # the best at equal steps (the sweep)
    ],
)
def test_ctdm_presets_put_cdl_on_every_item_with_shared_draws(make_cfg, option, names, share, samples, every):
    terms = instantiate(make_cfg([f"loss={option}"]).loss, _convert_="all")
    assert list(terms) == names
    assert (terms["cdl"].share_draws, terms["cdl"].samples, terms["cdl"].per_item_divisor) == (
        share,
        samples,
        None,
    )
    assert terms["cdl"].every_n_steps == every and terms[names[0]].every_n_steps == 1
    # the CDL default from the sweep (experiments/results/cdl_sweep): 16 shared points at weight 1
    assert (terms["cdl"].points, terms["cdl"].weight) == (16, 1.0)


def test_bad_reduction_and_divisor_are_named():
    with pytest.raises(ValueError, match="reduction.*'mean' or 'sum'.*'max'"):
        DenoisingMSE(reduction="max")
    with pytest.raises(ValueError, match="per_item_divisor.*> 0.*0"):
        ContrastiveDiffusionLoss(per_item_divisor=0)
