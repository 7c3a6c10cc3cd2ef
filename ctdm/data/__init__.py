"""Data sets and the LightningDataModules that serve them.

The names load on first use (PEP 562): `ctdm.data.fake` and `ctdm.data.toy` import without Lightning and
torchvision, so `python -m ctdm.data.fake` and the entry points' early checks (ctdm.cli) start fast.
"""

from ctdm._lazy import lazy_exports

_MODULE_OF = {
    "BatchedDataModule": "datamodule",
    "DinoDataModule": "datamodule",
    "ToyDataModule": "datamodule",
    "per_rank_batch_size": "datamodule",
    "CIFAR10DataModule": "images",
    "DigitsDataModule": "images",
    "ImageDataModule": "images",
    "ImageFolderDataModule": "images",
    "MNISTDataModule": "images",
    "Checkerboard": "toy",
    "Circle": "toy",
    "GaussianMixture": "toy",
    "Moons": "toy",
    "SampledLaw": "toy",
    "Spirals": "toy",
    "SwissRoll": "toy",
    "dino": "toy",
    "eight_gaussians": "toy",
    "gauss1d_two_mode": "toy",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _MODULE_OF)
