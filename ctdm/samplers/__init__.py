"""Samplers (Lightning-free): each is called as `sampler(eps_fn, shape, seeds)` -> (samples, stats)."""

from ctdm.samplers.ddpm import DDPMSampler, SamplerStats, ddpm_coefficients
from ctdm.samplers.noise import per_sample_normal

__all__ = ["DDPMSampler", "SamplerStats", "ddpm_coefficients", "per_sample_normal"]
