"""Test doubles for the training tests, importable by Hydra's `_target_` (pytest puts this folder on
sys.path)."""

import signal
import time

import lightning as L
import torch

from ctdm.losses import DenoisingMSE


class SignalAtStep(L.Callback):
    """Sends this process `signal` right after optimizer step `step`, as a scheduler or SLURM would."""

    def __init__(self, step: int, signal: str = "SIGTERM"):
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            signal.raise_signal(getattr(signal, self.signal))


class NaNAtCall(DenoisingMSE):
    """The DDPM MSE term, except that its `nan_call`-th call (0-based) returns NaN."""

    name = "mse"

    def __init__(self, nan_call: int, **kwargs):
        super().__init__(**kwargs)
        self.nan_call, self.calls = nan_call, 0

    def __call__(self, eps_fn, x, generator=None, reference=None):
        loss, logs = super().__call__(eps_fn, x, generator, reference)
        if self.calls == self.nan_call:
            loss = loss * torch.nan
            logs = {**logs, self.name: loss.detach()}
        self.calls += 1
        return loss, logs


class OutOfMemoryAtStep(DenoisingMSE):
    """The DDPM MSE term, except that its training call (autograd on) at `oom_step` raises the error a
    CUDA device raises when it runs out of memory."""

    name = "mse"

    def __init__(self, oom_step: int, **kwargs):
        super().__init__(**kwargs)
        self.oom_step, self.training_calls = oom_step, 0

    def __call__(self, eps_fn, x, generator=None, reference=None):
        if torch.is_grad_enabled():
            if self.training_calls == self.oom_step:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (fake)")
            self.training_calls += 1
        return super().__call__(eps_fn, x, generator, reference)


class SlowSteps(L.Callback):
    """Sleeps `seconds` after every step and touches `marker` after step `mark_step`, so a test can signal
    a CLI run in the middle of its training."""

    def __init__(self, seconds: float, marker: str, mark_step: int = 3):
        self.seconds, self.marker, self.mark_step = seconds, marker, mark_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.mark_step:
            open(self.marker, "w").close()
        time.sleep(self.seconds)


class RowNoiseMSE(DenoisingMSE):
    """The DDPM MSE with each row's level and noise fixed by the row's values instead of drawn: the loss
    of a batch is then a plain mean over its rows, the same however the batch is split over ranks."""

    def __call__(self, eps_fn, x, generator=None, reference=None):
        flat = x.flatten(1)
        logsnr = 4 * torch.sin(3 * flat.sum(1) + 0.5)
        eps = (2**0.5 * torch.sin(13 * x + 1)).to(x.dtype)
        loss = self.per_sample(eps_fn, x, logsnr, eps).mean()
        return loss, {self.name: loss.detach()}
