"""The variance-preserving channel written in log-SNR a:  z_a = sqrt(s(a)) x + sqrt(s(-a)) eps.

s is the sigmoid, so s(a) is DDPM's alpha_bar and s(-a) = 1 - alpha_bar. Every function takes
`logsnr` as a tensor of shape [N] (one level per sample) and broadcasts it over the sample's shape.
"""

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """v [N] -> [N, 1, ..., 1] with `ndim` dimensions, to broadcast one value per row (k-diffusion's name)."""
    return v.reshape(-1, *([1] * (ndim - 1)))


def alpha_sigma(logsnr: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales sqrt(s(a)), sqrt(s(-a)) shaped to broadcast against `like`."""
    a = append_dims(logsnr, like.dim())
    return torch.sigmoid(a).sqrt(), torch.sigmoid(-a).sqrt()


def noise_data(x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
    """z_a for data x [N, *shape], levels logsnr [N] and standard normal eps shaped like x."""
    alpha, sigma = alpha_sigma(logsnr, x)
    return alpha * x + sigma * eps


def predict_x0(z: Tensor, logsnr: Tensor, eps_hat: Tensor) -> Tensor:
    """The clean-data estimate implied by a noise prediction: (z - sqrt(s(-a)) eps_hat) / sqrt(s(a))."""
    alpha, sigma = alpha_sigma(logsnr, z)
    return (z - sigma * eps_hat) / alpha
