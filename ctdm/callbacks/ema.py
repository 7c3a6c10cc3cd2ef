"""EMA: an exponential moving average of the weights, the weights every evaluation uses.

Built on Lightning's WeightAveraging, which keeps the average in a copy of the module made when `fit`
starts, updates it after every optimizer step, swaps it in for validation, copies it into the module
when training ends and stores it in checkpoints: `state_dict` holds the average (what sampling and
evaluation load) and `current_model_state` the raw weights (what a resumed run trains on).
"""

from contextlib import contextmanager, nullcontext
from functools import partial

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor


def ema_update(average: Tensor, current: Tensor, num_averaged: Tensor, decay: float, warmup: bool) -> Tensor:
    """average <- d average + (1 - d) current, with d = min(decay, (1 + n) / (10 + n)) after n updates
    when `warmup` (so early averages are not dominated by the initial weights), else d = decay."""
    d = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay) if warmup else decay
    return average + (1 - d) * (current - average)


class EMA(WeightAveraging):
    """EMA of the weights (`decay` per optimizer step, updated every `every_n_steps` steps).

    Compared with Lightning's EMAWeightAveraging, this one also
    - swaps the average in for the whole validation (until `on_validation_end`), so every callback
      that evaluates at the end of a validation epoch sees it, whatever the callback order;
    - lends the average to evaluations during training (`swapped_in`, used by SampleEvaluation);
    - stores the right roles in a checkpoint written while the average is swapped in (a SIGTERM during
      validation);
    - fails clearly if a buffer is still empty when `fit` copies the module (set data_var first).
    Buffers are not averaged (ctdm's are constants: data variances, Fourier frequencies).
    """

    def __init__(self, decay: float = 0.9999, every_n_steps: int = 1, warmup: bool = True, device=None):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay must be a number in (0, 1), got {decay!r}.")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"callbacks.ema.every_n_steps must be an integer >= 1, got {every_n_steps!r}.")
        super().__init__(
            device=device, use_buffers=False, avg_fn=partial(ema_update, decay=float(decay), warmup=warmup)
        )
        self.decay, self.every_n_steps = float(decay), every_n_steps
        self._swapped = False  # the module holds the average, the averaged copy the raw weights
        self._final = False  # training ended: the average was copied into the module for good

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.every_n_steps == 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        # A stored tensor still empty is a placeholder filled later (data_var): the copy would keep it empty.
        empty = [name for name, value in pl_module.state_dict().items() if value.numel() == 0]
        if stage == "fit" and empty:
            raise ValueError(
                f"EMA copies the module when fit starts, but its buffers {empty} are still empty; set them "
                "first (for data_var: model.set_data_var(datamodule.data_var), as ctdm.train does)."
            )
        super().setup(trainer, pl_module, stage)
        self._swapped = self._final = False

    def _swap(self, pl_module) -> None:
        self._swap_models(pl_module)
        self._swapped = not self._swapped

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self._average_model is not None and not self._swapped and not self._final:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pass  # swapped back in on_validation_end, after every callback's epoch-end evaluation

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._swapped:
            self._swap(pl_module)  # before ModelCheckpoint (Lightning runs it last) saves

    def on_train_end(self, trainer, pl_module) -> None:
        if self._swapped:
            self._swap(pl_module)
        super().on_train_end(trainer, pl_module)
        self._final = True

    @contextmanager
    def swapped_in(self, trainer, pl_module):
        """The average in the module for the duration (this step's update included); a no-op outside fit,
        after training (it is already there) or when it is already swapped in."""
        if self._average_model is None or self._swapped or self._final:
            yield
            return
        # Bring the average up to this step even if this callback's own batch-end hook runs later.
        self.on_train_batch_end(trainer, pl_module, None, None, 0)
        self._swap(pl_module)
        try:
            yield
        finally:
            self._swap(pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._swapped and "current_model_state" in checkpoint:  # the module held the average
            checkpoint["state_dict"], checkpoint["current_model_state"] = (
                checkpoint["current_model_state"],
                checkpoint["state_dict"],
            )


def averaged_weights(trainer, pl_module):
    """Context manager: the EMA callback's average in `pl_module`, or nothing without an EMA callback."""
    ema = next((c for c in trainer.callbacks if isinstance(c, EMA)), None)
    return ema.swapped_in(trainer, pl_module) if ema is not None else nullcontext()
