"""Sample-quality metrics (Lightning-free): MMD for low-dimensional data, FID and KID for images.

The names load on first use (PEP 562), so `ctdm.metrics.weights` (where the FID weights are found) imports
without torch: the entry points check a named weights file before any heavy library loads (ctdm.cli).
"""

from ctdm._lazy import lazy_exports

_MODULE_OF = {
    "InceptionV3": "features",
    "RandomConvFeatures": "features",
    "TorchScriptInception": "features",
    "ImageMetrics": "image",
    "load_ref_stats": "image",
    "real_stats_file": "image",
    "check_bandwidth": "mmd",
    "median_heuristic": "mmd",
    "mmd2": "mmd",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _MODULE_OF)
