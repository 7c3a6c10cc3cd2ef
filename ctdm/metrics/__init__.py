"""Sample-quality metrics (Lightning-free)."""

from ctdm.metrics.mmd import mmd2

__all__ = ["mmd2"]
