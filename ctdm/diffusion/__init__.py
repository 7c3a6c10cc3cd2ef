"""The variance-preserving diffusion channel in log-SNR, schedules, parameterisations and the
likelihood estimators (Lightning-free). The math is written out in docs/.

The names load on first use (PEP 562), so `ctdm.diffusion.settings` (the config schema's likelihood node)
imports without torch: the entry points compose and check a config before torch loads (ctdm.cli).
"""

from ctdm._lazy import lazy_exports

_MODULE_OF = {
    "append_dims": "channel",
    "channel_scales": "channel",
    "noise_data": "channel",
    "predict_x0": "channel",
    "Reference": "likelihood",
    "cdl_logit": "likelihood",
    "denoising_mse_curve": "likelihood",
    "nll": "likelihood",
    "truncated_logistic": "likelihood",
    "EDMPrecond": "parameterizations",
    "EpsPrediction": "parameterizations",
    "Parameterization": "parameterizations",
    "VPrediction": "parameterizations",
    "X0Prediction": "parameterizations",
    "DDPMSchedule": "schedules",
    "EDMLogNormal": "schedules",
    "ddpm_timestep": "schedules",
    "karras_logsnr": "schedules",
    "karras_sigmas": "schedules",
    "logsnr_to_sigma": "schedules",
    "sigma_to_logsnr": "schedules",
    "LikelihoodSettings": "settings",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _MODULE_OF)
