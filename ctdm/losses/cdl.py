"""The Contrastive Diffusion Loss (Wu et al. 2024): train the denoiser's own noise classifier.

For a batch item x draw zeta from a noise-level distribution and, with probability 1/2, keep z = x
(label "clean", y = +1) or use z = z_zeta(x) (label "noised", y = -1). The classifier's logit is the
log-likelihood ratio log p(z) - log p_zeta(z) estimated from the denoiser (ctdm.diffusion.cdl_logit),
and the loss is softplus(-y * logit). Its gradient reaches the network through both likelihoods,
including the off-level queries eps_hat(z_a, a') that the MSE loss never makes.
"""

import torch
import torch.nn.functional as F

from ctdm.diffusion.channel import append_dims, noise_data
from ctdm.diffusion.checks import check_int, check_number
from ctdm.diffusion.likelihood import Draws, cdl_logit, check_draws, truncated_logistic
from ctdm.losses.base import EpsFn, LossTerm
from ctdm.losses.memory import AUTO, AutoChunk, check_max_batch


class ZetaDistribution:
    """Noise levels of the "noised" class, in log-SNR.

    kind="logistic": truncated logistic(loc, scale) on loc +- clip * scale; loc / scale null take the
    likelihood reference's integration range (the data's). kind="uniform": uniform on [low, high].
    """

    def __init__(
        self,
        kind: str = "logistic",
        loc: float | None = None,
        scale: float | None = None,
        clip: float = 3.0,
        low: float | None = None,
        high: float | None = None,
    ):
        # A key of the other kind would be ignored: refused, so that a setting is never silently dropped.
        other = {"logistic": {"low": low, "high": high}, "uniform": {"loc": loc, "scale": scale}}
        unused = other.get(kind, {})
        for name, value in unused.items():
            if value is not None:
                raise ValueError(
                    f"{name}={value!r} does not apply to kind={kind!r} (logistic takes loc, scale, clip; "
                    f"uniform takes low, high). Remove {name}, or set kind to the distribution it belongs to."
                )
        if kind == "logistic":
            loc = None if loc is None else check_number("loc", loc)
            scale = None if scale is None else check_number("scale", scale, positive=True)
            clip = check_number("clip", clip, positive=True)
        elif kind == "uniform":
            low, high = check_number("low", low), check_number("high", high)
            if not low < high:
                raise ValueError(f"low must be < high, got low={low!r}, high={high!r}.")
        else:
            raise ValueError(f"kind must be 'logistic' or 'uniform', got {kind!r}.")
        self.kind, self.loc, self.scale, self.clip, self.low, self.high = kind, loc, scale, clip, low, high

    def sample(self, n: int, generator=None, device=None, reference=None) -> torch.Tensor:
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * torch.rand(n, generator=generator, device=device)
        loc = self.loc if self.loc is not None else reference.loc
        scale = self.scale if self.scale is not None else reference.scale
        return truncated_logistic((n,), loc, scale, self.clip, generator=generator, device=device)[0]


class ContrastiveDiffusionLoss(LossTerm):
    """softplus(-y * logit(z)) averaged over `samples` items of the batch (an int, or "all").

    points: Monte-Carlo points per likelihood estimate; share_draws: log p and log p_zeta use the
    same (a, eps) draws (far less noisy, docs/cdl.md); draws: how the points are drawn (`Draws`:
    stratified levels, antithetic noise, levels focused above zeta); max_batch: rows per network call of
    the 2 x samples x points, each call activation-checkpointed so that a step's memory follows it, not
    items x points (an integer; "auto": all rows in one call when they fit `memory_budget` bytes, else
    as many as fit; None: one call); memory_budget: None is the samplers' default (half the free GPU
    memory, a quarter of the RAM; ctdm.losses.memory).
    per_item_divisor: null averages the items' losses; a number D instead sums them, each divided by
    D: the authors' loop, where each item's loss is divided by the batch size before its own
    backward pass (`loss=itd_cdl_paper`: weight 1, D = B, so 2/B times the mean over 2 items).
    logs: cdl (mean softplus over the items, whatever per_item_divisor), cdl_acc (classifier
    accuracy), cdl_logit_clean / cdl_logit_noised (mean logits).
    """

    name = "cdl"

    def __init__(
        self,
        weight: float = 1.0,
        samples: int | str = "all",
        points: int = 16,  # conf/loss/_cdl.yaml: 2 points at weight 1 hurt both bases (the sweep)
        zeta: ZetaDistribution | None = None,
        share_draws: bool = True,
        every_n_steps: int = 1,
        max_batch: int | str | None = AUTO,
        per_item_divisor: float | None = None,
        draws: Draws | None = None,
        memory_budget: float | None = None,
    ):
        super().__init__(weight, every_n_steps)
        if per_item_divisor is not None:
            check_number("per_item_divisor", per_item_divisor, positive=True)
        self.per_item_divisor = per_item_divisor
        if samples != "all" and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise ValueError(f"samples must be an integer >= 1 or 'all', got {samples!r}.")
        check_int("points", points)
        self.samples, self.points, self.share_draws = samples, points, share_draws
        self.max_batch = check_max_batch(max_batch)
        self.memory_budget = (
            None if memory_budget is None else check_number("memory_budget", memory_budget, positive=True)
        )
        self.auto_chunk = AutoChunk(self.memory_budget)
        self.draws = check_draws(Draws() if draws is None else draws, points, shared_ratio=share_draws)
        self.zeta = zeta if zeta is not None else ZetaDistribution()

    def __call__(self, eps_fn: EpsFn, x, generator: torch.Generator | None = None, reference=None):
        if reference is None:
            raise ValueError(
                "reference is None: the CDL needs the likelihood Reference (DiffusionModule passes its own)."
            )
        count = self.items(len(x))
        x = x[:count]  # batches arrive shuffled, so the first items are a random subset
        zeta = self.zeta.sample(count, generator, x.device, reference).to(x.dtype)
        clean = torch.rand(count, generator=generator, device=x.device) < 0.5
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        z = torch.where(append_dims(clean, x.dim()), x, noise_data(x, zeta, eps))
        logit = cdl_logit(
            eps_fn,
            z,
            zeta,
            reference,
            n_points=self.points,
            share_draws=self.share_draws,
            generator=generator,
            max_batch=self.auto_chunk(self.network_rows(len(x)))
            if self.max_batch == AUTO
            else self.max_batch,
            draws=self.draws,
        )
        sign = clean.to(x.dtype) * 2 - 1
        per_item = F.softplus(-sign * logit)
        loss = per_item.mean() if self.per_item_divisor is None else per_item.sum() / self.per_item_divisor
        logs = {
            self.name: per_item.detach().mean(),  # the classifier's mean loss, comparable across presets
            f"{self.name}_acc": ((logit > 0) == clean).float().mean(),
            f"{self.name}_logit_clean": logit[clean].detach().mean()
            if clean.any()
            else logit.new_tensor(0.0),
            f"{self.name}_logit_noised": logit[~clean].detach().mean()
            if (~clean).any()
            else logit.new_tensor(0.0),
        }
        return loss, logs

    def items(self, batch: int) -> int:
        """Items of a batch of `batch` that get the loss."""
        return batch if self.samples == "all" else min(self.samples, batch)

    def network_rows(self, batch: int) -> int:
        return 2 * self.items(batch) * self.points  # log p and log p_zeta
