"""Parameterisations: what the network is trained to output, and how that is read as eps_hat.

Each class wraps a network F(input [N, *shape], logsnr [N]) and answers `eps(z, logsnr)`, the noise
prediction the losses, likelihoods and samplers use, and `x0(z, logsnr)`, the clean-data estimate.
With the channel z = scale_x x + scale_eps eps (scale_x = sqrt(s(a)), scale_eps = sqrt(s(-a))):

  EpsPrediction  F predicts eps:                     eps_hat = F(z, a)
  X0Prediction   F predicts x:                       eps_hat = (z - scale_x F(z, a)) / scale_eps
  VPrediction    F predicts v = scale_x eps - scale_eps x:  eps_hat = scale_eps z + scale_x F(z, a)
  EDMPrecond     Karras et al.'s preconditioning of the denoiser D(x; sigma), written with
                 c_skip, c_out, c_in, c_noise as in NVlabs/edm's EDMPrecond.forward.

The derivations are in docs/parameterizations.md.
"""

from torch import Tensor, nn

from ctdm.diffusion.channel import append_dims, channel_scales, predict_x0
from ctdm.diffusion.checks import check_number
from ctdm.diffusion.schedules import logsnr_to_sigma, sigma_to_logsnr


class Parameterization(nn.Module):
    """A network read as a noise predictor: subclasses define `eps(z, logsnr)`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """eps_hat for z [N, *shape] at continuous log-SNR levels [N]."""
        raise NotImplementedError

    def x0(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """The clean-data estimate x_hat = (z - scale_eps eps_hat) / scale_x."""
        return predict_x0(z, logsnr, self.eps(z, logsnr))


class EpsPrediction(Parameterization):
    """The network predicts the noise itself (DDPM)."""

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        return self.net(z, logsnr)


class X0Prediction(Parameterization):
    """The network predicts the clean data x."""

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        scale_x, scale_eps = channel_scales(logsnr, z)
        return (z - scale_x * self.net(z, logsnr)) / scale_eps

    def x0(self, z: Tensor, logsnr: Tensor) -> Tensor:
        return self.net(z, logsnr)


class VPrediction(Parameterization):
    """The network predicts v = scale_x eps - scale_eps x (Salimans & Ho 2022)."""

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        scale_x, scale_eps = channel_scales(logsnr, z)
        return scale_eps * z + scale_x * self.net(z, logsnr)


class EDMPrecond(Parameterization):
    """Karras et al. (2022)'s preconditioning, in EDM's variance-exploding view of the channel.

    x = z / scale_x = data + sigma eps carries EDM's noise level sigma = exp(-a/2), and the denoiser is
    D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2)
    (sd = sigma_data, the data's standard deviation). EDM uses c_noise = ln(sigma) / 4; ctdm's networks
    are conditioned on log-SNR, so c_noise = a = -2 ln(sigma), the same information.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__(net)
        self.sigma_data = check_number("sigma_data", sigma_data, positive=True)

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise for EDM noise levels sigma (any shape)."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma_to_logsnr(sigma)
        return c_skip, c_out, c_in, c_noise

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        """EDM's D(x; sigma) for x [N, *shape] = data + sigma noise and sigma [N] (EDMPrecond.forward)."""
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        c_skip, c_out, c_in = (append_dims(c, x.dim()) for c in (c_skip, c_out, c_in))
        return c_skip * x + c_out * self.net(c_in * x, c_noise)

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """eps_hat = (x - D(x; sigma)) / sigma, expanded so that 1 - c_skip does not cancel at small sigma."""
        scale_x, _ = channel_scales(logsnr, z)
        sigma = logsnr_to_sigma(logsnr)
        x = z / scale_x
        _, c_out, c_in, c_noise = self.scalings(sigma)
        sigma, c_out, c_in = (append_dims(c, z.dim()) for c in (sigma, c_out, c_in))
        # (1 - c_skip) / sigma = sigma / (sigma^2 + sd^2) and c_out / sigma = sd / sqrt(sigma^2 + sd^2)
        return sigma / (sigma**2 + self.sigma_data**2) * x - (c_out / sigma) * self.net(c_in * x, c_noise)
