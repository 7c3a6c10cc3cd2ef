"""Preemption: stop on SIGTERM / SIGUSR1 with a checkpoint to resume from, and write checkpoints atomically.

Lightning's signal connector already turns SIGTERM into a clean stop: it sets `trainer.received_sigterm`
(and, under DDP, tells the other ranks), and the fit loop raises SIGTERMException (a SystemExit) at the
end of the current training step. `Preemption` saves `last.ckpt` when that exception passes through
`on_exception`, and treats SIGUSR1 (what SLURM sends ahead of a time limit with `--signal=USR1@90`) the
same way. `AtomicCheckpointIO` makes every checkpoint write all-or-nothing.
"""

import logging
import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a hidden temporary file in the target's folder, fsync, then `os.replace` over the
    target: a kill at any moment leaves the previous file or the new one, never part of one. (Lightning's
    own save renames from the system temp folder, which is a copy when that is another file system.)
    Remote paths (`s3://...`) go through Lightning's fsspec writer unchanged."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # only left when the write failed
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash of the machine
        finally:
            os.close(folder)


class Preemption(L.Callback):
    """On SIGTERM (or a signal in `signals`, default SIGUSR1) finish the current step, save
    `<dirpath>/<filename>` and exit without a traceback; resume with `ckpt_path=<that file>`.

    The run then has no summary.json: it did not finish. Under DDP every rank stops at the same step
    (Lightning broadcasts the flag) and rank 0 writes the file.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple[str, ...] = ("SIGUSR1",)):
        unknown = [s for s in signals if not isinstance(getattr(signal, str(s), None), signal.Signals)]
        if unknown:
            raise ValueError(f"callbacks.preemption.signals: unknown signals {unknown}; e.g. [SIGUSR1].")
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, s) for s in signals]
        self.saved: Path | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its handlers (and kept the ones before fit, which it puts back when
        # fit ends or fails); under SLURM this replaces its requeue-on-SIGUSR1 handler.
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                signal.signal(s, _as_sigterm)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.path)
        self.saved = self.path
        if trainer.is_global_zero:
            log.warning(
                "Stopped by a signal after step %d; saved %s. Resume with ckpt_path=%s",
                trainer.global_step,
                self.path,
                self.path,
            )


def _as_sigterm(signum, frame) -> None:
    signal.raise_signal(signal.SIGTERM)  # Lightning's SIGTERM path: flag, tell the other ranks, stop
