"""Data sets and the LightningDataModules that serve them."""

from ctdm.data.datamodule import BatchedDataModule, DinoDataModule, ToyDataModule, per_rank_batch_size
from ctdm.data.images import (
    CIFAR10DataModule,
    DigitsDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from ctdm.data.toy import (
    Checkerboard,
    Circle,
    GaussianMixture,
    Moons,
    SampledLaw,
    Spirals,
    SwissRoll,
    dino,
    eight_gaussians,
    gauss1d_two_mode,
)

__all__ = [
    "BatchedDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "Checkerboard",
    "Circle",
    "DinoDataModule",
    "GaussianMixture",
    "Moons",
    "SampledLaw",
    "Spirals",
    "SwissRoll",
    "ToyDataModule",
    "dino",
    "eight_gaussians",
    "gauss1d_two_mode",
    "per_rank_batch_size",
]
