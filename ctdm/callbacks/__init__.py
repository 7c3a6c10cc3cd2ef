"""Lightning callbacks."""

from ctdm.callbacks.sample_evaluation import SampleEvaluation

__all__ = ["SampleEvaluation"]
