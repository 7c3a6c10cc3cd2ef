"""Sample-quality metrics (Lightning-free): MMD for low-dimensional data, FID and KID for images."""

from ctdm.metrics.features import InceptionV3, RandomConvFeatures, TorchScriptInception
from ctdm.metrics.image import ImageMetrics, load_ref_stats, real_stats_file
from ctdm.metrics.mmd import check_bandwidth, median_heuristic, mmd2

__all__ = [
    "ImageMetrics",
    "InceptionV3",
    "RandomConvFeatures",
    "TorchScriptInception",
    "load_ref_stats",
    "check_bandwidth",
    "median_heuristic",
    "mmd2",
    "real_stats_file",
]
