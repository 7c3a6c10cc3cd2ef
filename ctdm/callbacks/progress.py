"""StepProgressBar: training progress in optimizer steps, the unit ctdm trains for.

ctdm runs train for `trainer.max_steps` steps with `max_epochs=-1`, so Lightning's bars count batches of
an epoch and read `Epoch 51/-2`; this one counts steps of max_steps across epochs, with Lightning's ETA,
the logged training loss, and no logger version (`v_num`). A resumed run starts at its step.
"""

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # once per fit: the bar spans every epoch
            bar.reset(total=trainer.max_steps)
            bar.initial = bar.n = trainer.global_step
            bar.set_description("training")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self._should_update(step, trainer.max_steps) and not self.train_progress_bar.disable:
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        pass  # the bar goes on into the next epoch

    def get_metrics(self, trainer: L.Trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
