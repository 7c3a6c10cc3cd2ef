"""The variance-preserving diffusion channel in log-SNR, schedules, parameterisations and the
likelihood estimators (Lightning-free). The math is written out in docs/."""

from ctdm.diffusion.channel import append_dims, channel_scales, noise_data, predict_x0
from ctdm.diffusion.likelihood import Reference, cdl_logit, denoising_mse_curve, nll, truncated_logistic
from ctdm.diffusion.parameterizations import (
    EDMPrecond,
    EpsPrediction,
    Parameterization,
    VPrediction,
    X0Prediction,
)
from ctdm.diffusion.schedules import (
    DDPMSchedule,
    EDMLogNormal,
    ddpm_timestep,
    karras_logsnr,
    karras_sigmas,
    logsnr_to_sigma,
    sigma_to_logsnr,
)
from ctdm.diffusion.settings import LikelihoodSettings

__all__ = [
    "DDPMSchedule",
    "EDMLogNormal",
    "EDMPrecond",
    "EpsPrediction",
    "LikelihoodSettings",
    "Parameterization",
    "Reference",
    "VPrediction",
    "X0Prediction",
    "append_dims",
    "cdl_logit",
    "channel_scales",
    "ddpm_timestep",
    "denoising_mse_curve",
    "karras_logsnr",
    "karras_sigmas",
    "logsnr_to_sigma",
    "nll",
    "noise_data",
    "predict_x0",
    "sigma_to_logsnr",
    "truncated_logistic",
]
