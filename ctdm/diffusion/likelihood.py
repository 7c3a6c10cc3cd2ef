"""Pointwise log-likelihoods from a noise predictor (ITD, Kong et al. 2023) and the noise classifier.

For any reference Gaussian G = N(0, diag(l)):

    -log p(x) = h_G + 1/2 Integral_a [ mmse(x, a) - mmse_G(a) ] da,
    mmse(x, a) = E_eps |eps - eps_hat(z_a, a)|^2,   mmse_G(a) = sum_i s(a + log l_i),
    h_G = d/2 log(2 pi e) + 1/2 sum_i log l_i,

estimated by importance sampling a from a logistic(loc, scale) truncated to loc +- clip * scale.
The law p_zeta of z_zeta (x noised at log-SNR zeta) has the optimal noise predictor
eps_hat_zeta(w, a) = sqrt(s(-a) / s(-a')) eps_hat(w, a') with s(a') = s(a) s(zeta): noising z_zeta at a
is noising x at a'. So -log p_zeta uses the same formula with eps_hat_zeta, and the noise
classifier's logit log p(z) - log p_zeta(z) is the difference of the two estimates.

Everything is batched: B samples x M points are one call of the network (or `max_batch`-sized
chunks of it, each activation-checkpointed under autograd, so a training step's memory follows the
chunk), with no Python loop over samples or points.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ctdm.diffusion.channel import append_dims, noise_data
from ctdm.diffusion.checks import check_int, check_number

EpsFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Reference:
    """The reference Gaussian G = N(0, diag(exp(log_var))) and the log-SNR integration range.

    log_var: [*shape] (or a scalar, the same in every dimension) log variances of G; loc, scale, clip:
    the importance distribution over log-SNR a, a logistic(loc, scale) truncated to loc +- clip * scale.
    Build one from plain numbers with `Reference.standard` or from data variances with `from_data_var`.
    """

    log_var: Tensor
    loc: float
    scale: float
    clip: float = 3.0

    def __post_init__(self):
        self.log_var = torch.as_tensor(self.log_var, dtype=torch.float32)
        self.loc = check_number("loc", self.loc)
        self.scale = check_number("scale", self.scale, positive=True)
        self.clip = check_number("clip", self.clip, positive=True)

    @classmethod
    def standard(cls, shape: tuple[int, ...], loc: float, scale: float, clip: float = 3.0) -> "Reference":
        """G = N(0, I) over samples of `shape`, with the given log-SNR range."""
        return cls(torch.zeros(tuple(shape)), loc, scale, clip)

    @classmethod
    def from_data_var(
        cls, data_var: Tensor, loc: float | None = None, scale: float | None = None, clip: float = 3.0
    ) -> "Reference":
        """G = N(0, diag(l)) with the data's per-dimension variances l_i, and the range loc = -mean log l_i,
        scale = 3 sqrt(1 + 3/pi^2 var(log l_i)); explicit loc / scale override either.

        For Gaussian data the integrand of dimension i is a logistic bump of unit scale centred at
        -log l_i, so the mixture over dimensions has logistic scale sqrt(1 + 3/pi^2 var(log l_i)).
        Truncating at clip=3 of *that* scale drops about 2 s(-3) = 9.5% of the integral; three times
        wider keeps the truncation error near 2 exp(-9), at some cost in variance (docs/likelihood.md).
        """
        log_var = data_var.double().clamp_min(1e-12).log()
        if loc is None:
            loc = float(-log_var.mean())
        if scale is None:
            scale = 3 * math.sqrt(1 + 3 / math.pi**2 * float(log_var.var(unbiased=False)))
        return cls(log_var.float(), loc, scale, clip)


def truncated_logistic(
    shape: tuple[int, ...], loc: float, scale: float, clip: float, generator=None, device=None
) -> tuple[Tensor, Tensor]:
    """Levels a ~ logistic(loc, scale) truncated to loc +- clip*scale, and importance weights 1/q(a)."""
    return truncated_logistic_at(torch.rand(shape, generator=generator, device=device), loc, scale, clip)


def truncated_logistic_at(quantile: Tensor, loc: float, scale: float, clip: float) -> tuple[Tensor, Tensor]:
    """The truncated logistic's levels at the given quantiles in [0, 1), and their weights 1/q(a).

    With u = (a - loc)/scale: q(a) = s(u) s(-u) / (scale tanh(clip/2)),
    so w = scale tanh(clip/2) / (s(u) s(-u)).
    """
    lo, hi = torch.sigmoid(torch.tensor(-clip)), torch.sigmoid(torch.tensor(clip))
    u = torch.logit(lo + (hi - lo) * quantile)
    weight = scale * math.tanh(clip / 2) / (torch.sigmoid(u) * torch.sigmoid(-u))
    return loc + scale * u, weight


def focused_levels(quantile: Tensor, zeta: Tensor, ref: "Reference", margin: float, floor: float):
    """Levels for the log ratio log p - log p_zeta on the reference's range [lo, hi], and weights 1/q(a).

    With shared draws the two estimates' integrands differ only at a >~ zeta (below it, noising z at a
    swamps the zeta noise and the two channels agree), so q puts 1 - floor of its mass uniformly on
    [b, hi], b = zeta - margin, and `floor` uniformly on [lo, b): every level keeps a positive density,
    so the estimate stays unbiased for the same truncated integral. quantile [B, M], zeta [B].
    """
    lo, hi = ref.loc - ref.clip * ref.scale, ref.loc + ref.clip * ref.scale
    b = (zeta.double() - margin).clamp(lo, hi)[:, None]
    # floor mass below b, all of it when b = hi (nothing above), none when b = lo (nothing below)
    low_mass = torch.where(b >= hi, 1.0, torch.where(b <= lo, 0.0, floor))
    q = quantile.double()
    below = q < low_mass
    low_len, high_len = (b - lo).clamp_min(1e-12), (hi - b).clamp_min(1e-12)
    level = torch.where(
        below, lo + low_len * q / low_mass.clamp_min(1e-12), b + high_len * (q - low_mass) / (1 - low_mass)
    )
    weight = torch.where(
        below, low_len / low_mass.clamp_min(1e-12), high_len / (1 - low_mass).clamp_min(1e-12)
    )
    return level.to(quantile.dtype), weight.to(quantile.dtype)


@dataclass(frozen=True)
class Draws:
    """How the Monte-Carlo points (log-SNR a, noise eps) of a likelihood estimate are drawn; every
    option keeps the estimate unbiased (docs/likelihood.md, "Lower-variance draws").

    stratified: the B x M level quantiles of a call are (u0 + j / (B M)) mod 1 with one uniform u0
        (VDM's low-discrepancy sampler): each item's M points are evenly spaced, one per stratum of the
        importance distribution, and with M = 1 the batch's levels cover it evenly.
    antithetic: points come in pairs (a, eps) and (a, -eps): M/2 levels, each with both signs.
    focused: (cdl_logit with shared draws only) levels drawn from `focused_levels` instead of the
        reference's logistic, with `margin` and `floor`.
    """

    stratified: bool = False
    antithetic: bool = False
    focused: bool = False
    margin: float = 2.0
    floor: float = 0.05

    def __post_init__(self):
        for name in ("stratified", "antithetic", "focused"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        check_number("margin", self.margin, non_negative=True)
        if not 0 < check_number("floor", self.floor) < 1:
            raise ValueError(f"floor must be in (0, 1), got {self.floor!r}.")


def shifted_level(logsnr: Tensor, zeta: Tensor) -> tuple[Tensor, Tensor]:
    """a' with s(a') = s(a) s(zeta), and the factor sqrt(s(-a) / s(-a')); zeta = +inf gives (a, 1)."""
    log_s = F.logsigmoid(logsnr.double()) + F.logsigmoid(zeta.double())  # log s(a')
    log_one_minus = torch.log(-torch.expm1(log_s))  # log s(-a')
    shifted = log_s - log_one_minus
    factor = torch.exp(0.5 * (F.logsigmoid(-logsnr.double()) - log_one_minus))
    return shifted.to(logsnr.dtype), factor.to(logsnr.dtype)


def point_errors(
    eps_fn: EpsFn, x: Tensor, logsnr: Tensor, eps: Tensor, zeta: Tensor, max_batch: int | None = None
) -> Tensor:
    """|eps - eps_hat_zeta(z_a(x), a)|^2 summed over dimensions, for N points in one batched call.

    x, eps: [N, *shape]; logsnr, zeta: [N] (zeta = +inf for the data law itself). max_batch: the rows of
    a network call; when gradients are on, each call is also activation-checkpointed (torch.utils.checkpoint):
    its activations are freed after the forward pass and recomputed, one call at a time, in the backward
    pass, so memory follows max_batch, not N (one forward more; the gradient is the same).
    """
    if max_batch is None or len(x) <= max_batch:
        return _point_errors(eps_fn, x, logsnr, eps, zeta)
    chunks = zip(*(t.split(max_batch) for t in (x, logsnr, eps, zeta)), strict=True)
    if torch.is_grad_enabled():
        return torch.cat([checkpoint(_point_errors, eps_fn, *c, use_reentrant=False) for c in chunks])
    return torch.cat([_point_errors(eps_fn, *c) for c in chunks])


def _point_errors(eps_fn: EpsFn, x: Tensor, logsnr: Tensor, eps: Tensor, zeta: Tensor) -> Tensor:
    # Everything from the inputs to the per-row errors, so a checkpointed chunk keeps only N numbers.
    z = noise_data(x, logsnr, eps)
    shifted, factor = shifted_level(logsnr, zeta)
    eps_hat = append_dims(factor, x.dim()) * eps_fn(z, shifted)
    return (eps - eps_hat).pow(2).flatten(1).sum(1)


def check_draws(draws: Draws, n_points: int, *, shared_ratio: bool) -> Draws:
    """`draws` if it suits an estimate with `n_points` points; shared_ratio: the estimate is a log ratio
    with shared draws (cdl_logit with share_draws), the only one that focused levels suit."""
    if not isinstance(draws, Draws):
        raise ValueError(f"draws must be a Draws (e.g. Draws(stratified=True)), got {type(draws).__name__}.")
    if draws.antithetic and n_points % 2:
        raise ValueError(
            f"draws.antithetic needs an even number of points (they come in (eps, -eps) pairs), got "
            f"points={n_points}."
        )
    if draws.focused and not shared_ratio:
        raise ValueError(
            "draws.focused puts the levels where log p and log p_zeta differ, so it suits only their ratio "
            "with shared draws (the CDL with share_draws: true); -log p alone, or each likelihood on its "
            "own draws, needs the whole log-SNR range."
        )
    return draws


def _check_call(x: Tensor, ref: Reference, n_points: int, max_batch: int | None) -> None:
    """The arguments `nll` and `cdl_logit` share, checked once per call, before any network call."""
    if not isinstance(ref, Reference):
        raise ValueError(
            f"ref must be a Reference (build one with Reference.standard(shape, loc, scale) or "
            f"Reference.from_data_var(var)), got {type(ref).__name__}."
        )
    if x.dim() < 2:
        raise ValueError(
            f"x must be a batch [B, *shape] with at least 2 dimensions, got shape {list(x.shape)}."
        )
    try:
        torch.broadcast_shapes(ref.log_var.shape, x.shape[1:])
    except RuntimeError:
        raise ValueError(
            f"ref.log_var has shape {list(ref.log_var.shape)}, which does not fit samples of shape "
            f"{list(x.shape[1:])}."
        ) from None
    check_int("n_points", n_points)
    if max_batch is not None:
        check_int("max_batch", max_batch)


def _quantiles(batch: int, levels: int, stratified: bool, generator, device) -> Tensor:
    """[B, L] quantiles in [0, 1) of the importance distribution: independent uniforms, or evenly spaced
    (u0 + (k B + i) / (B L)) mod 1 for item i, level k, with one uniform u0, so each is still uniform."""
    if not stratified:
        return torch.rand((batch, levels), generator=generator, device=device)
    offset = torch.rand((), generator=generator, device=device)
    grid = torch.arange(levels, device=device)[None] * batch + torch.arange(batch, device=device)[:, None]
    return (offset + grid / (batch * levels)) % 1


def _draws(
    x: Tensor, n_points: int, ref: Reference, generator, draws: Draws, zeta: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each sample repeated M times, with its levels, weights and noise: [B*M, ...] and [B, M].
    `zeta` [B]: the levels of the noised law, for `draws.focused`."""
    batch, shape = x.shape[0], x.shape[1:]
    levels = n_points // 2 if draws.antithetic else n_points
    quantile = _quantiles(batch, levels, draws.stratified, generator, x.device)
    if draws.focused:
        logsnr, weight = focused_levels(quantile, zeta, ref, draws.margin, draws.floor)
    else:
        logsnr, weight = truncated_logistic_at(quantile, ref.loc, ref.scale, ref.clip)
    eps = torch.randn((batch, levels, *shape), generator=generator, device=x.device, dtype=x.dtype)
    if draws.antithetic:  # point k and k + M/2 share a level, with opposite noise
        logsnr, weight, eps = logsnr.repeat(1, 2), weight.repeat(1, 2), torch.cat([eps, -eps], 1)
    return x.repeat_interleave(n_points, 0), logsnr.to(x.dtype), weight.to(x.dtype), eps.flatten(0, 1)


def _per_sample_zeta(zeta, batch: int, like: Tensor) -> Tensor:
    """zeta (a number, or one level per sample) as a [B] tensor of finite log-SNR levels."""
    zeta = torch.as_tensor(zeta, dtype=like.dtype, device=like.device)
    if zeta.dim() > 1 or zeta.numel() not in (1, batch):
        raise ValueError(
            f"zeta must be a number or one level per sample ([{batch}]), got shape {list(zeta.shape)}."
        )
    if not torch.isfinite(zeta).all():
        raise ValueError(f"zeta must be finite log-SNR values, got {zeta.flatten().tolist()[:8]}.")
    return zeta.expand(batch)


def _reference_terms(ref: Reference, logsnr: Tensor, shape: tuple[int, ...]) -> tuple[float, Tensor]:
    """h_G and mmse_G(a) for levels [B, M]."""
    log_var = ref.log_var.to(logsnr.device, logsnr.dtype).expand(shape).flatten()
    d = log_var.numel()
    h_g = 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * float(log_var.sum())
    mmse_g = torch.sigmoid(logsnr[..., None] + log_var).sum(-1)
    return h_g, mmse_g


def nll(
    eps_fn: EpsFn,
    x: Tensor,
    ref: Reference,
    *,
    n_points: int,
    zeta: float | Tensor | None = None,
    generator: torch.Generator | None = None,
    max_batch: int | None = None,
    draws: Draws = Draws(),
) -> Tensor:
    """-log p(x) in nats per sample, [B], for x [B, *shape] (with `zeta`: -log p_zeta(x)).

    eps_fn(z [N, *shape], logsnr [N]) -> eps_hat; ref: the reference Gaussian and the log-SNR range
    (`Reference`); n_points: Monte-Carlo points per sample; zeta: a number or [B] log-SNR levels of
    the noised law; max_batch: largest network batch (None = all B * n_points points at once);
    draws: how the points are drawn (`Draws`; not `focused`, which only suits a log ratio).
    """
    _check_call(x, ref, n_points, max_batch)
    check_draws(draws, n_points, shared_ratio=False)
    zeta_b = (
        torch.full((len(x),), torch.inf, device=x.device)
        if zeta is None
        else _per_sample_zeta(zeta, len(x), x)
    )
    xs, logsnr, weight, eps = _draws(x, n_points, ref, generator, draws)
    errors = point_errors(eps_fn, xs, logsnr.flatten(), eps, zeta_b.repeat_interleave(n_points), max_batch)
    h_g, mmse_g = _reference_terms(ref, logsnr, tuple(x.shape[1:]))
    return h_g + 0.5 * (weight * (errors.view_as(logsnr) - mmse_g)).mean(1)


def cdl_logit(
    eps_fn: EpsFn,
    z: Tensor,
    zeta: float | Tensor,
    ref: Reference,
    *,
    n_points: int,
    share_draws: bool = True,
    generator: torch.Generator | None = None,
    max_batch: int | None = None,
    draws: Draws = Draws(),
) -> Tensor:
    """The noise classifier's logit log p(z) - log p_zeta(z) in nats, [B], for z [B, *shape].

    Positive means "clean" (drawn from the data), negative "noised at zeta". Both likelihoods are
    estimated in one batched network call of 2 * B * n_points points. With `share_draws` both use
    the same (a, eps), so the reference-Gaussian terms cancel and the logit is
    1/2 mean_k w_k (|eps_k - eps_hat_zeta|^2 - |eps_k - eps_hat|^2), a far less noisy estimate
    (docs/cdl.md). `draws.focused` (shared draws only) puts the levels where that difference lives.
    Other arguments as for `nll`.
    """
    _check_call(z, ref, n_points, max_batch)
    check_draws(draws, n_points, shared_ratio=share_draws)
    batch, inf = len(z), torch.full((len(z) * n_points,), torch.inf, device=z.device)
    zeta_b = _per_sample_zeta(zeta, batch, z)
    zeta_p = zeta_b.repeat_interleave(n_points)
    zs, logsnr, weight, eps = _draws(z, n_points, ref, generator, draws, zeta_b)
    if share_draws:
        logsnr2, weight2, eps2 = logsnr, weight, eps
    else:
        _, logsnr2, weight2, eps2 = _draws(z, n_points, ref, generator, draws)
    errors = point_errors(
        eps_fn,
        torch.cat([zs, zs]),
        torch.cat([logsnr.flatten(), logsnr2.flatten()]),
        torch.cat([eps, eps2]),
        torch.cat([inf, zeta_p]),
        max_batch,
    )
    err_p, err_zeta = errors.view(2, batch, n_points)
    if share_draws:  # the reference terms are identical and cancel
        return 0.5 * (weight * (err_zeta - err_p)).mean(1)
    _, mmse_g = _reference_terms(ref, logsnr, tuple(z.shape[1:]))
    _, mmse_g2 = _reference_terms(ref, logsnr2, tuple(z.shape[1:]))
    return 0.5 * ((weight2 * (err_zeta - mmse_g2)).mean(1) - (weight * (err_p - mmse_g)).mean(1))


def denoising_mse_curve(
    eps_fn: EpsFn, x: Tensor, logsnrs: Tensor, generator=None, max_batch: int | None = None
) -> Tensor:
    """E_{x, eps} |eps - eps_hat(z_a, a)|^2 (summed over dimensions) at each level of `logsnrs` [L].

    One batched call over L * B points; the paper's diagnostic against the reference mmse_G(a).
    Every level reuses the same noise draws, so the curve is smooth in a.
    """
    levels = logsnrs.to(x.device, x.dtype).repeat_interleave(len(x))
    repeat = (len(logsnrs), *([1] * (x.dim() - 1)))
    xs = x.repeat(repeat)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).repeat(repeat)
    inf = torch.full_like(levels, torch.inf)
    return point_errors(eps_fn, xs, levels, eps, inf, max_batch).view(len(logsnrs), len(x)).mean(1)
