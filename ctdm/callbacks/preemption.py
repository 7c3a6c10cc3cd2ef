"""A run's latest state on disk, whatever ends it: `last.ckpt` at every validation, at the final step and
when a signal stops the run; every checkpoint written all-or-nothing.

- `LastCheckpoint` writes `<dirpath>/last.ckpt` at every validation, at the final step of fit (before
  the final sample evaluation, which may take long or fail) and when a signal stops the run.
- `Preemption` turns SIGUSR1 (SLURM's `--signal=USR1@90` warning ahead of a time limit) into Lightning's
  SIGTERM stop when nothing else handles it. Lightning's own signal connector does the SIGTERM part: it
  sets `trainer.received_sigterm` (and tells the other DDP ranks), and the fit loop raises
  SIGTERMException (a SystemExit) at the end of the current step. Under SLURM with auto-requeue
  (Lightning's SLURMEnvironment, detected from the job's variables) SIGUSR1 stays Lightning's: it
  saves `hpc_ckpt_<n>.ckpt` in the run folder and requeues the job with `scontrol requeue`; SLURM then
  stops the job with SIGTERM, and the requeued job resumes from the newer of the two checkpoints
  (ctdm.checkpoint.requeued_checkpoint).
- `AtomicCheckpointIO` is kept beside Lightning's TorchCheckpointIO because that one serialises the
  whole checkpoint into memory first (a second copy of weights, EMA and Adam state) and writes it into
  the system temp folder before moving it, which is a copy when /tmp is another file system (common on
  clusters, and often small); it does not fsync either. Ours streams torch.save into a hidden file
  beside the target, fsyncs it and renames it over the target.
"""

import logging
import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

# The exit status of a run stopped by a signal after saving a checkpoint to resume from (EX_TEMPFAIL in
# sysexits.h: "a temporary failure; the user is invited to retry"). Not 0, so Hydra multirun, shells and
# schedulers do not count the run as finished; not 1 (an error) or 128 + n (killed before it could save).
PREEMPTED_EXIT_CODE = 75


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file and the cause."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a hidden temporary file in the target's folder, fsync, then `os.replace` over the
    target: a kill at any moment leaves the previous file or the new one, never part of one. A write that
    fails (no space, no permission, a path through a file) raises CheckpointWriteError naming the file
    and the first cause, and leaves the previous checkpoint. Remote paths (`s3://...`) go through
    Lightning's fsspec writer unchanged."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a crash of the machine
            finally:
                os.close(folder)
        except OSError as err:
            raise CheckpointWriteError(
                f"Could not write the checkpoint {path}: {err.strerror or err} ({type(err).__name__}). The "
                "previous checkpoint, if any, is unchanged. Free space, or point the checkpoint folder "
                "(callbacks.model_checkpoint.dirpath, paths.output_dir) somewhere writable."
            ) from err
        finally:
            try:
                tmp.unlink(missing_ok=True)  # only left when the write failed
            except OSError:
                pass  # the cause above is what the user needs, not a second error about its debris


class LastCheckpoint(Checkpoint):
    """`<dirpath>/<filename>` (last.ckpt): the run's latest state, for resuming and for ctdm.evaluate.

    Written at every validation and at the end of fit (at its final step, before the final sample
    evaluation, also for a resumed run that ends between validations); `Preemption` writes the same file
    when a signal stops the run.
    A `Checkpoint` callback, so Lightning calls it after the others (the EMA has its final update).
    `saved` is the file once this run wrote it, None before.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.saved: Path | None = None
        self._saved_step: int | None = None

    def save(self, trainer) -> None:
        if self._saved_step == trainer.global_step:
            return
        trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes
        self.saved, self._saved_step = self.path, trainer.global_step

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._saved_step = None  # a validation at a saved step changes the callbacks' state: again
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Fit ends at max_steps: everything of the final step is done (its validation included), and
        # SampleEvaluation's on_train_end has not started yet.
        if trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)  # a fit that ended otherwise (max_epochs, should_stop)


class CheckpointAtSteps(L.Callback):
    """`<dirpath>/step_<N>.ckpt` when the run reaches each global step N of `steps` (after its update): the
    points of a cost curve that one run passes through (experiments/equal_compute.py scores each), kept
    whatever the validation loss says. A step already on disk (a resumed run) is not written again."""

    def __init__(self, dirpath: str, steps: list[int]):
        self.dirpath, self.steps = Path(dirpath), {int(s) for s in steps}
        if not self.steps or min(self.steps) < 1:
            raise ValueError(f"steps must be global steps >= 1, got {sorted(self.steps)}.")

    def path(self, step: int) -> Path:
        return self.dirpath / f"step_{step:06d}.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step in self.steps and not self.path(step).is_file():
            trainer.save_checkpoint(self.path(step))


class Preemption(L.Callback):
    """Stop after the current step on SIGTERM (Lightning's) or a signal in `signals` (default SIGUSR1),
    saving `<dirpath>/<filename>`; `stopped_at` is the step, for the entry point's message and its exit
    status (PREEMPTED_EXIT_CODE). A run stopped so has no summary.json: it did not finish.

    Under DDP every rank stops at the same step (Lightning broadcasts the flag) and rank 0 writes the
    file. Under SLURM with auto-requeue, Lightning's requeue handler keeps its signal (see the module).
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple[str, ...] = ("SIGUSR1",)):
        unknown = [s for s in signals if not isinstance(getattr(signal, str(s), None), signal.Signals)]
        if unknown:
            raise ValueError(f"callbacks.preemption.signals: unknown signals {unknown}; e.g. [SIGUSR1].")
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, s) for s in signals]
        self.saved: Path | None = None
        self.stopped_at: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its handlers (and kept the ones before fit, which it puts back when
        # fit ends or fails).
        if threading.current_thread() is not threading.main_thread():
            return
        requeue = _slurm_requeue_signal(trainer)
        for s in self.signals:
            if s != requeue:
                signal.signal(s, _as_sigterm)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.path)
        self.saved, self.stopped_at = self.path, trainer.global_step
        if trainer.is_global_zero:
            log.warning("Stopped by a signal after step %d; saved %s", trainer.global_step, self.path)


def _slurm_requeue_signal(trainer) -> signal.Signals | None:
    """The signal Lightning's SLURM auto-requeue handles in this run, None when it does not."""
    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
        return environment.requeue_signal
    return None


def _as_sigterm(signum, frame) -> None:
    signal.raise_signal(signal.SIGTERM)  # Lightning's SIGTERM path: flag, tell the other ranks, stop


class Preempted(SystemExit):
    """A run stopped by a signal with a checkpoint to resume from: exit status PREEMPTED_EXIT_CODE, and
    `message` says how to resume."""

    def __init__(self, step: int, checkpoint: Path | None, command: str):
        super().__init__(PREEMPTED_EXIT_CODE)
        if checkpoint is None:
            self.message = (
                f"Stopped by a signal after step {step}, with no checkpoint (no Preemption callback)."
            )
        else:
            self.message = (
                f"Stopped by a signal after step {step}; saved {checkpoint}. The run did not finish (no "
                f"summary.json; exit status {PREEMPTED_EXIT_CODE}). Resume it with:\n"
                f"  {command} ckpt_path={checkpoint}"
            )


def checkpoint_paths(callbacks: list, output_dir: str | Path) -> tuple[str | None, str | None]:
    """(last, best) checkpoints this run wrote into its own folder (None where it wrote none): a resumed
    run's ModelCheckpoint remembers the parent run's best, which is not this run's."""
    out = Path(output_dir).absolute()

    def own(path) -> str | None:
        if not path:
            return None
        path = Path(path).absolute()
        return str(path) if path.is_file() and path.is_relative_to(out) else None

    last = next((own(c.saved) for c in callbacks if isinstance(c, LastCheckpoint) and c.saved), None)
    best = next(
        (own(c.best_model_path) for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    return last, best
