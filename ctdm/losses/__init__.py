"""Loss terms: small classes called as `term(eps_fn, x) -> (loss, logs)`; the module sums weight * term."""

from ctdm.losses.mse import LossTerm, MSELoss, check_weights

__all__ = ["LossTerm", "MSELoss", "check_weights"]
