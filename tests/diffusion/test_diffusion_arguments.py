"""Calling a core function with a bad argument names that argument (never a config key).

One row per (call, argument): the message must start with the argument's name and show the value.
"""

import pytest
import torch
from conftest import assert_names_argument

from ctdm.diffusion import (
    DDPMSchedule,
    EDMLogNormal,
    EDMPrecond,
    Reference,
    cdl_logit,
    karras_sigmas,
    nll,
)

X = torch.zeros(3, 2)
REF = Reference.standard((2,), loc=0.0, scale=3.0)


def eps_fn(z, a):
    return torch.zeros_like(z)


BAD_CALLS = [
    ("n_points", lambda: nll(eps_fn, X, REF, n_points=0), "0"),
    ("n_points", lambda: cdl_logit(eps_fn, X, 1.0, REF, n_points=2.5), "2.5"),
    ("max_batch", lambda: nll(eps_fn, X, REF, n_points=2, max_batch=0), "0"),
    ("zeta", lambda: cdl_logit(eps_fn, X, float("inf"), REF, n_points=2), "inf"),
    ("zeta", lambda: nll(eps_fn, X, REF, n_points=2, zeta=torch.zeros(5)), r"\[5\]"),
    ("ref", lambda: nll(eps_fn, X, {"loc": 0.0}, n_points=2), "dict"),
    ("ref.log_var", lambda: nll(eps_fn, X, Reference.standard((3,), 0.0, 3.0), n_points=2), r"\[3\]"),
    ("x", lambda: nll(eps_fn, torch.zeros(3), REF, n_points=2), r"\[3\]"),
    ("scale", lambda: Reference.standard((2,), loc=0.0, scale=0.0), "0.0"),
    ("scale", lambda: Reference.standard((2,), loc=0.0, scale=float("inf")), "inf"),
    ("clip", lambda: Reference.standard((2,), loc=0.0, scale=3.0, clip=-1.0), "-1.0"),
    ("loc", lambda: Reference.standard((2,), loc=float("nan"), scale=3.0), "nan"),
    ("num_steps", lambda: DDPMSchedule(num_steps=0), "0"),
    ("beta_start and beta_end", lambda: DDPMSchedule(beta_start=0.0), "beta_start=0.0"),
    ("beta_start and beta_end", lambda: DDPMSchedule(beta_end=1.5), "beta_end=1.5"),
    ("kind", lambda: DDPMSchedule(kind="quadratic"), "quadratic"),
    ("p_std", lambda: EDMLogNormal(p_std=0.0), "0.0"),
    ("steps", lambda: karras_sigmas(0), "0"),
    ("sigma_min", lambda: karras_sigmas(10, 1.0, 0.5), "sigma_max=0.5"),
    ("rho", lambda: karras_sigmas(10, rho=-1.0), "-1.0"),
    ("sigma_data", lambda: EDMPrecond(torch.nn.Identity(), sigma_data=0.0), "0.0"),
]


@pytest.mark.parametrize(
    "argument,call,value", BAD_CALLS, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BAD_CALLS)]
)
def test_bad_argument_is_named(argument, call, value):
    assert_names_argument(call, argument, value, verbs=("must", "has"))
