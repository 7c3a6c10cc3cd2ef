"""Loss terms: small classes called as `term(eps_fn, x, generator, reference) -> (loss, logs)`;
the module sums weight * term."""

from ctdm.losses.base import LossTerm, check_weights
from ctdm.losses.cdl import ContrastiveDiffusionLoss, ZetaDistribution
from ctdm.losses.edm import EDMLoss
from ctdm.losses.itd import ITDLoss
from ctdm.losses.mse import DenoisingMSE

__all__ = [
    "ContrastiveDiffusionLoss",
    "EDMLoss",
    "ITDLoss",
    "LossTerm",
    "DenoisingMSE",
    "ZetaDistribution",
    "check_weights",
]
