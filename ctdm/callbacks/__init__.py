"""Lightning callbacks."""

from ctdm.callbacks.ema import EMA, averaged_weights
from ctdm.callbacks.mse_curve import DenoisingMSECurve
from ctdm.callbacks.preemption import (
    PREEMPTED_EXIT_CODE,
    AtomicCheckpointIO,
    CheckpointAtSteps,
    CheckpointWriteError,
    LastCheckpoint,
    Preempted,
    Preemption,
    checkpoint_paths,
)
from ctdm.callbacks.progress import StepProgressBar
from ctdm.callbacks.sample_evaluation import SampleEvaluation

__all__ = [
    "EMA",
    "PREEMPTED_EXIT_CODE",
    "AtomicCheckpointIO",
    "CheckpointAtSteps",
    "CheckpointWriteError",
    "DenoisingMSECurve",
    "LastCheckpoint",
    "Preempted",
    "Preemption",
    "SampleEvaluation",
    "StepProgressBar",
    "averaged_weights",
    "checkpoint_paths",
]
