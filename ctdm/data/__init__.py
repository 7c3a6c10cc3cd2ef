"""Data sets and the LightningDataModule that serves them."""

from ctdm.data.datamodule import ToyDataModule
from ctdm.data.toy import GaussianMixture, eight_gaussians

__all__ = ["GaussianMixture", "ToyDataModule", "eight_gaussians"]
