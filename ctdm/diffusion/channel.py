"""The variance-preserving channel written in log-SNR a:  z_a = sqrt(s(a)) x + sqrt(s(-a)) eps.

s is the sigmoid, so s(a) is DDPM's alpha_bar and s(-a) = 1 - alpha_bar. Every function takes
`logsnr` as a tensor of shape [N] (one level per sample) and broadcasts it over the sample's shape.
The channel's two scales are called scale_x = sqrt(s(a)) and scale_eps = sqrt(s(-a)); the name
`sigma` is kept for EDM's noise level exp(-a/2) = scale_eps / scale_x (docs/channel.md).
"""

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """v [N] -> [N, 1, ..., 1] with `ndim` dimensions, to broadcast one value per row (k-diffusion's name)."""
    return v.reshape(-1, *([1] * (ndim - 1)))


def channel_scales(logsnr: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """(scale_x, scale_eps) = (sqrt(s(a)), sqrt(s(-a))), shaped to broadcast against `like`.

    DDPM calls them sqrt(alpha_bar) and sqrt(1 - alpha_bar); VDM calls them alpha_a and sigma_a.
    """
    a = append_dims(logsnr, like.dim())
    return torch.sigmoid(a).sqrt(), torch.sigmoid(-a).sqrt()


def noise_data(x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
    """z_a for data x [N, *shape], levels logsnr [N] and standard normal eps shaped like x."""
    scale_x, scale_eps = channel_scales(logsnr, x)
    return scale_x * x + scale_eps * eps


def predict_x0(z: Tensor, logsnr: Tensor, eps_hat: Tensor) -> Tensor:
    """The clean-data estimate implied by a noise prediction: (z - sqrt(s(-a)) eps_hat) / sqrt(s(a))."""
    scale_x, scale_eps = channel_scales(logsnr, z)
    return (z - scale_eps * eps_hat) / scale_x
