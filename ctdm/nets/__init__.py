"""Denoiser networks. Each maps (z [N, *shape], logsnr [N]) -> a prediction shaped like z."""

from ctdm.nets.mlp import LogSNREmbedding, ResidualMLP

__all__ = ["LogSNREmbedding", "ResidualMLP"]
