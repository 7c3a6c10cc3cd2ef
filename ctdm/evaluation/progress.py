"""Sampling progress on rank 0: one bar per sampler call that moves with every step of a sequential
sampler and every pass of the Picard solver, with an ETA.

A sequential sampler reports each step through its `hook` (ctdm.samplers.base), so its bar counts steps.
The Picard solver reports each pass (ctdm.samplers.parallel); its bar counts the steps that have
converged. The hook sees NFE per sample so far, and when the window spans every step each pass
evaluates exactly the steps each sample has left, so the NFE a pass adds, over the sampler's NFE per
step, is the mean number of steps still open. With a shorter window that reads at most the window, so
the bar then counts passes, without a total.
"""

from tqdm.auto import tqdm


class SamplingProgress:
    """The bar of one sampler call (`sampler(..., hook=progress.hook)`); `label` names it, e.g.
    "sampling para_ddpm (batch 2/4)". Disabled: hooks that do nothing, no bar."""

    def __init__(self, sampler, label: str, enabled: bool = True):
        self.steps = int(getattr(sampler, "steps", 0) or 0)
        self.parallel = bool(getattr(sampler, "parallel", False))
        window = getattr(sampler, "window", None)
        base = getattr(sampler, "base", sampler)
        nfe_per_step = getattr(base, "nfe_per_step", None)
        self.nfe_per_step = float(nfe_per_step.float().mean()) if nfe_per_step is not None else 1.0
        # Converged steps can be read off the NFE only when every pass spans every open step.
        self.counts_steps = not self.parallel or (isinstance(window, int) and window >= self.steps > 0)
        self.bar = tqdm(
            total=self.steps if self.counts_steps and self.steps else None,
            desc=label,
            unit="step" if self.counts_steps else "pass",
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
        )
        self._nfe = 0.0
        self.done = 0  # steps done (converged), or passes when steps cannot be counted

    def _advance(self, to: int) -> None:
        self.bar.update(to - self.done)
        self.done = to

    def step(self, index: int, x=None) -> None:
        """A sequential sampler's hook: step `index` (1-based) is done."""
        self._advance(index)

    def picard_pass(self, index: int, x_last, info: dict) -> None:
        """The Picard solver's hook: pass `index` is done; info {"nfe": per sample so far, "active": ...}."""
        added, self._nfe = info["nfe"] - self._nfe, info["nfe"]
        if self.counts_steps:  # the steps still open when this pass began: NFE it added / NFE per step
            self._advance(max(self.done, round(self.steps - added / self.nfe_per_step)))
        else:
            self._advance(self.done + 1)
        self.bar.set_postfix(passes=index, active=info["active"], nfe=f"{info['nfe']:.0f}", refresh=False)

    @property
    def hook(self):
        return self.picard_pass if self.parallel else self.step

    def close(self) -> None:
        if self.counts_steps and self.steps:  # converged: every step
            self._advance(self.steps)
        self.bar.close()
