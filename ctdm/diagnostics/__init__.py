"""Diagnostics that need an exact law (Lightning-free): the denoiser's error against the exact one."""

from ctdm.diagnostics.ood_error import (
    QueryRecorder,
    denoiser_error,
    error_heatmap,
    measure_ood_error,
    path_states,
)

__all__ = [
    "QueryRecorder",
    "denoiser_error",
    "error_heatmap",
    "measure_ood_error",
    "path_states",
]
