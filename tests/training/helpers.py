"""Test doubles for the training tests, importable by Hydra's `_target_` (pytest puts this folder on
sys.path)."""

import signal

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
