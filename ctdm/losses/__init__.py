"""Loss terms: small classes called as `term(eps_fn, x, generator, reference) -> (loss, logs)`;
the module sums weight * term."""

from ctdm.losses.base import LossTerm, check_weights
from ctdm.losses.cdl import CDLLoss, ZetaDistribution
from ctdm.losses.edm import EDMLoss
from ctdm.losses.itd import ITDLoss
from ctdm.losses.mse import MSELoss

__all__ = ["CDLLoss", "EDMLoss", "ITDLoss", "LossTerm", "MSELoss", "ZetaDistribution", "check_weights"]
