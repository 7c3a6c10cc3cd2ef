"""Lightning callbacks."""

from ctdm.callbacks.mse_curve import DenoisingMSECurve
from ctdm.callbacks.sample_evaluation import SampleEvaluation

__all__ = ["DenoisingMSECurve", "SampleEvaluation"]
