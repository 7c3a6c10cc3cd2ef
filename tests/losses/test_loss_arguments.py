"""Building a loss term with a bad argument names that argument (never a config key)."""

import re

import pytest
import torch
from conftest import assert_names_argument

from ctdm.losses import (
    ContrastiveDiffusionLoss,
    DenoisingMSE,
    EDMLoss,
    ITDLoss,
    ZetaDistribution,
)

BAD_CALLS = [
    ("points", lambda: ContrastiveDiffusionLoss(points=0), "0"),
    ("samples", lambda: ContrastiveDiffusionLoss(samples=0), "0"),
    ("samples", lambda: ContrastiveDiffusionLoss(samples="some"), "some"),
    ("max_batch", lambda: ContrastiveDiffusionLoss(max_batch=0), "0"),
    ("weight", lambda: ContrastiveDiffusionLoss(weight=-1.0), "-1.0"),
    ("every_n_steps", lambda: ContrastiveDiffusionLoss(every_n_steps=0), "0"),
    ("scale", lambda: ZetaDistribution(scale=0.0), "0.0"),
    ("clip", lambda: ZetaDistribution(clip=float("inf")), "inf"),
    ("loc", lambda: ZetaDistribution(loc=float("nan")), "nan"),
    ("low", lambda: ZetaDistribution("uniform", low=3.0, high=1.0), "low=3.0, high=1.0"),
    ("low", lambda: ZetaDistribution("uniform", low=None, high=1.0), "None"),
    ("kind", lambda: ZetaDistribution("beta"), "beta"),
    ("weight", lambda: DenoisingMSE(weight=float("nan")), "nan"),
    ("points", lambda: ITDLoss(points=0), "0"),
    ("sigma_data", lambda: EDMLoss(sigma_data=0.0), "0.0"),
    ("p_std", lambda: EDMLoss(p_std=-1.0), "-1.0"),
    ("reference", lambda: ITDLoss()(lambda z, a: z, torch.zeros(2, 2)), "None"),
    ("reference", lambda: ContrastiveDiffusionLoss()(lambda z, a: z, torch.zeros(2, 2)), "None"),
]


@pytest.mark.parametrize(
    "argument,call,value", BAD_CALLS, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BAD_CALLS)]
)
def test_bad_argument_is_named(argument, call, value):
    assert_names_argument(call, argument, re.escape(value), verbs=("must", "is"))
