"""The training objective and what validation reports, without Lightning: DiffusionModule's steps call
these with its noise predictor and likelihood reference.

`Objective` holds the loss terms ({name: LossTerm}) and the likelihood settings: it sums weight * term
over the terms due at a step, and validation adds the noise classifier on every held-out sample and the
NLL. `NonFiniteGuard` decides what a step with a non-finite loss does; `step_seed` seeds a step's
training noise.
"""

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from ctdm.diffusion import LikelihoodSettings, Reference, nll
from ctdm.diffusion.likelihood import EpsFn
from ctdm.losses import ContrastiveDiffusionLoss, LossTerm, check_weights
from ctdm.losses.memory import AutoChunk, bytes_per_row


class Objective:
    """sum_k weight_k term_k(x), every term's logs, and the validation metrics.

    terms: {name: LossTerm}; every term is evaluated and logged, the objective uses their weights.
    likelihood: the ITD reference and validation points (LikelihoodSettings, or a mapping of its fields).
    """

    def __init__(self, terms: Mapping[str, LossTerm], likelihood: LikelihoodSettings | Mapping | None = None):
        check_weights(terms)
        self.terms = dict(terms)
        self.likelihood = likelihood_settings(likelihood)
        # Validation always reports the noise classifier on every held-out sample with val_points
        # points, so val/cdl_acc compares across runs; zeta follows the CDL term if there is one.
        cdl = next((t for t in self.terms.values() if isinstance(t, ContrastiveDiffusionLoss)), None)
        zeta = cdl.zeta if cdl is not None else None
        self.val_cdl = ContrastiveDiffusionLoss(weight=0.0, points=self.likelihood.val_points, zeta=zeta)
        self.val_chunk = AutoChunk()  # val/nll's B x val_points rows, in calls that fit (as val_cdl's)
        self._planned = None  # (device, shape) the auto chunks were planned for

    def __call__(
        self,
        eps_fn: EpsFn,
        x: Tensor,
        generator: torch.Generator | None,
        reference: Reference,
        step: int | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(sum_k weight_k term_k(x), every term's logs); terms not due at `step` are skipped."""
        total, logs = x.new_zeros(()), {}
        for term in self.terms.values():
            if step is not None and step % term.every_n_steps:
                continue
            value, term_logs = term(eps_fn, x, generator, reference)
            total = total + term.weight * value
            logs.update(term_logs)
        return total, logs

    def validation(
        self, eps_fn: EpsFn, x: Tensor, generator: torch.Generator, reference: Reference
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(the objective, its logs with the noise classifier's and the NLL in nats: `nll`, and for images
        in bits per dimension: `nll_bpd`)."""
        loss, logs = self(eps_fn, x, generator, reference)
        logs.update(self.val_cdl(eps_fn, x, generator, reference)[1])
        points = self.likelihood.val_points
        chunk = self.val_chunk(len(x) * points)
        nats = nll(eps_fn, x, reference, n_points=points, generator=generator, max_batch=chunk).mean()
        logs["nll"] = nats
        if x.dim() == 4:  # 8-bit images scaled to [-1, 1]: bins of width 2/255 per dimension
            logs["nll_bpd"] = (nats / x[0].numel() + math.log(127.5)) / math.log(2)
        return loss, logs

    def plan_chunks(self, eps_fn: EpsFn, shape: tuple[int, ...], device: torch.device) -> None:
        """Rows per network call for the terms with max_batch "auto" (and val/nll, val/cdl) on `device`,
        from the memory per row of `eps_fn` measured there (ctdm.losses.memory.AutoChunk); once per
        device and shape."""
        key = (str(device), tuple(shape))
        if self._planned == key:
            return
        per_row = {grad: bytes_per_row(eps_fn, shape, device, backward=grad) for grad in (True, False)}
        terms = [*self.terms.values(), self.val_cdl]
        auto = [t.auto_chunk for t in terms if getattr(t, "max_batch", None) == "auto"]
        for chunk in [self.val_chunk, *auto]:
            chunk.plan(per_row, device)
        self._planned = key


def likelihood_settings(likelihood: LikelihoodSettings | Mapping | None) -> LikelihoodSettings:
    """diffusion.likelihood as LikelihoodSettings; a mapping may set any of its fields, and no other key."""
    if isinstance(likelihood, LikelihoodSettings):
        return likelihood
    allowed = sorted(LikelihoodSettings.__dataclass_fields__)
    unknown = set(likelihood or {}) - set(allowed)
    if unknown:
        raise ValueError(f"Unknown diffusion.likelihood keys {sorted(unknown)}; allowed: {allowed}.")
    return LikelihoodSettings(**(likelihood or {}))


def step_seed(seed: int, step: int, rank: int) -> int:
    """A well-mixed seed for (run seed, global step, rank): the training noise of that step on that rank."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)


class NonFiniteGuard:
    """What a training step with a non-finite loss does: stop the run naming its step and terms, or
    (`skip`) skip it and count it in `skipped`, stopping the run once more than `max_fraction` of its
    steps were skipped (it could then no longer end within its budget)."""

    def __init__(self, skip: bool = False, max_fraction: float = 0.01):
        if isinstance(max_fraction, bool) or not (
            isinstance(max_fraction, (int, float)) and 0 <= max_fraction <= 1
        ):
            raise ValueError(f"max_skipped_fraction must be a number in [0, 1], got {max_fraction!r}.")
        self.skip, self.max_fraction = skip, max_fraction
        self.skipped = 0

    def admits(self, step: int, loss: Tensor, terms: Mapping[str, Tensor], max_steps: int) -> bool:
        """Whether step `step` may update the weights: its `loss` (and `terms`, {name: value}; the means
        over the global batch, so every rank decides the same) is finite. A non-finite one raises
        NonFiniteLossError, or (skip) is counted, raising TooManySkippedSteps past the allowed share of
        `max_steps`."""
        if bool(torch.isfinite(loss)):
            return True
        if not self.skip:
            raise NonFiniteLossError(step, loss, terms)
        self.skipped += 1
        if self.skipped > self.max_fraction * max_steps:
            raise TooManySkippedSteps(step, self.skipped, self.max_fraction, max_steps)
        return False


class TooManySkippedSteps(ValueError):
    """More steps were skipped for a non-finite loss than model.max_skipped_fraction allows."""

    def __init__(self, step: int, skipped: int, fraction: float, max_steps: int):
        super().__init__(
            f"model.max_skipped_fraction={fraction}: {skipped} of the steps up to step {step} had a "
            f"non-finite loss and were skipped (model.skip_nonfinite=true), more than {fraction:g} x "
            f"trainer.max_steps={max_steps} allows, so the run cannot give a trustworthy model. Lower the "
            "learning rate (model.optimizer.lr), check the data for NaN or inf, or raise "
            "model.max_skipped_fraction."
        )


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; `step` and `terms` ({name: value}) say where."""

    def __init__(self, step: int, loss: Tensor, logs: Mapping[str, Tensor]):
        self.step = step
        self.terms = {k: float(v) for k, v in logs.items() if not math.isfinite(float(v))}
        named = ", ".join(f"{k} = {v}" for k, v in self.terms.items()) or "none of the logged terms"
        super().__init__(
            f"The training loss is not finite at step {step}: {float(loss)} (non-finite loss terms: "
            f"{named}). Lower the learning rate (model.optimizer.lr), check the data for NaN or inf, or set "
            "model.skip_nonfinite=true to skip such steps and count them (train/skipped_steps)."
        )
