"""The variance-preserving diffusion channel in log-SNR, schedules and denoisers (Lightning-free)."""

from ctdm.diffusion.channel import alpha_sigma, noise_data, predict_x0
from ctdm.diffusion.schedules import DDPMSchedule

__all__ = ["DDPMSchedule", "alpha_sigma", "noise_data", "predict_x0"]
