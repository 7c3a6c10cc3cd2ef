"""Network parameterisations, all exposed as one noise predictor eps_hat(z, logsnr).

With z = alpha x + sigma eps (alpha = sqrt(s(a)), sigma = sqrt(s(-a))):
  eps: the network predicts eps.
  x0:  the network predicts x;        eps_hat = (z - alpha x_hat) / sigma.
  v:   the network predicts v = alpha eps - sigma x;  eps_hat = sigma z + alpha v_hat.
  edm: Karras et al.'s preconditioning in the variance-exploding view x_edm = z / alpha,
       sigma_e = sigma / alpha:  D = c_skip x_edm + c_out F(c_in x_edm, a),
       eps_hat = (x_edm - D) / sigma_e,  with c_skip = sd^2 / (sigma_e^2 + sd^2),
       c_out = sigma_e sd / sqrt(sigma_e^2 + sd^2), c_in = 1 / sqrt(sigma_e^2 + sd^2).
The network is always conditioned on the continuous log-SNR a itself (EDM's c_noise = -a/4 carries
the same information).
"""

import torch
from torch import Tensor, nn

from ctdm.diffusion.channel import channel_scales

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")


class Denoiser(nn.Module):
    def __init__(self, net: nn.Module, parameterization: str = "eps", sigma_data: float = 0.5):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"model.parameterization={parameterization!r} is not known; "
                f"choose one of {list(PARAMETERIZATIONS)}."
            )
        if not sigma_data > 0:
            raise ValueError(f"model.sigma_data must be > 0, got {sigma_data!r}.")
        self.net, self.parameterization, self.sigma_data = net, parameterization, float(sigma_data)

    def forward(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """eps_hat for z [N, *shape] at continuous log-SNR levels [N]."""
        alpha, sigma = channel_scales(logsnr, z)
        if self.parameterization == "eps":
            return self.net(z, logsnr)
        if self.parameterization == "x0":
            return (z - alpha * self.net(z, logsnr)) / sigma
        if self.parameterization == "v":
            return sigma * z + alpha * self.net(z, logsnr)
        sd2 = self.sigma_data**2
        x_edm, sigma_e = z / alpha, sigma / alpha
        norm = torch.sqrt(sigma_e**2 + sd2)
        denoised = (sd2 / norm**2) * x_edm + (sigma_e * self.sigma_data / norm) * self.net(
            x_edm / norm, logsnr
        )
        return (x_edm - denoised) / sigma_e
