"""The likelihood settings of a run (`diffusion.likelihood`), defined once.

This dataclass is at the same time the config schema of the `diffusion.likelihood` node (ctdm.config:
types and defaults; a misspelt key fails at composition) and the object the DiffusionModule builds its
ITD `Reference` from. A new setting is one more field here.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at import: ctdm.config composes and checks configs before torch loads
    from torch import Tensor

    from ctdm.diffusion.likelihood import Reference

from ctdm.diffusion.checks import check_int, check_number


@dataclass
class LikelihoodSettings:
    """The ITD likelihood's reference Gaussian N(0, diag(l)) and log-SNR range, for loss.itd, loss.cdl,
    val/nll and val/cdl.

    loc, scale: the logistic importance distribution over log-SNR; None: from the training data's
        per-dimension variances l_i (loc = -mean log l_i, scale = 3 sqrt(1 + 3/pi^2 var log l_i)).
    clip: the range is truncated at loc +- clip * scale.
    ref_var: a number: the same reference variance in every dimension; None: the data's l_i.
    val_points: Monte-Carlo points per held-out sample for val/nll and val/cdl.
    """

    loc: float | None = None
    scale: float | None = None
    clip: float = 3.0  # the estimator's own default, Reference.clip (tests/module/test_module.py)
    ref_var: float | None = None
    val_points: int = 16

    def __post_init__(self):  # checked when built, not at the first validation
        if self.loc is not None:
            check_number("loc", self.loc)
        if self.scale is not None:
            check_number("scale", self.scale, positive=True)
        check_number("clip", self.clip, positive=True)
        if self.ref_var is not None:
            check_number("ref_var", self.ref_var, positive=True)
        check_int("val_points", self.val_points)

    def reference(self, data_var: "Tensor") -> "Reference":
        """The Reference for training data with per-dimension variances `data_var` [*shape]."""
        import torch

        from ctdm.diffusion.likelihood import Reference

        if self.ref_var is not None:
            data_var = torch.full_like(data_var, self.ref_var)
        return Reference.from_data_var(data_var, self.loc, self.scale, self.clip)
