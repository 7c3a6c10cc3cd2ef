"""ctdm: contrastive training of diffusion models (Wu et al., NeurIPS 2024)."""

__version__ = "0.1.0"
