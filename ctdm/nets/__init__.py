"""Denoiser networks. Each maps (z [N, *shape], logsnr [N]) -> a prediction shaped like z."""

from ctdm.nets.mlp import MLP, LogSNREmbedding, ResidualMLP
from ctdm.nets.pretrained import PretrainedUNet
from ctdm.nets.unet import UNet

__all__ = ["MLP", "LogSNREmbedding", "PretrainedUNet", "ResidualMLP", "UNet"]
