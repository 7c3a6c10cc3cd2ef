"""Samplers (Lightning-free): each is called as `sampler(eps_fn, shape, seeds)` -> (samples, stats).

Sequential samplers are step functions x_next = x + drift(x, k) + noise_k over a log-SNR grid
(ctdm.samplers.base) on counter-based per-sample noise (ctdm.samplers.noise); ParallelSampler solves
any of them by Picard iteration (ParaDiGMS) with memory that grows with its window, not its steps.
"sigma" means EDM's noise level exp(-logsnr/2) only; the VP samplers' per-step noise std is `noise_std`.
"""

from ctdm.samplers.base import SamplerStats, StepSampler
from ctdm.samplers.ddpm import DDIMSampler, DDPMSampler, ddim_coefficients, ddpm_coefficients, ddpm_levels
from ctdm.samplers.edm import EDMSampler, EulerSampler, HeunSampler
from ctdm.samplers.noise import per_sample_normal
from ctdm.samplers.parallel import (
    TOLERANCE_RULES,
    ParallelSampler,
    change_scale,
    split_over_devices,
    window_advance,
)

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "EDMSampler",
    "EulerSampler",
    "HeunSampler",
    "ParallelSampler",
    "SamplerStats",
    "StepSampler",
    "TOLERANCE_RULES",
    "change_scale",
    "ddim_coefficients",
    "ddpm_coefficients",
    "ddpm_levels",
    "per_sample_normal",
    "split_over_devices",
    "window_advance",
]
