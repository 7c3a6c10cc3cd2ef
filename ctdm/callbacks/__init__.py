"""Lightning callbacks."""

from ctdm.callbacks.ema import EMA, averaged_weights
from ctdm.callbacks.mse_curve import DenoisingMSECurve
from ctdm.callbacks.preemption import AtomicCheckpointIO, Preemption
from ctdm.callbacks.progress import StepProgressBar
from ctdm.callbacks.sample_evaluation import SampleEvaluation

__all__ = [
    "EMA",
    "AtomicCheckpointIO",
    "DenoisingMSECurve",
    "Preemption",
    "SampleEvaluation",
    "StepProgressBar",
    "averaged_weights",
]
