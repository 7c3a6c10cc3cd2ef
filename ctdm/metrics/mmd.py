"""Maximum mean discrepancy with a Gaussian kernel, in ctdm's units or in the authors'.

units="sigma" (ctdm's): k(u, v) = exp(-|u - v|^2 / (2 h^2)), `bandwidth` h a standard deviation.
units="paper" (Wu et al.'s utils.kernel): k(u, v) = exp(-|u - v|^2 / (2 v)) / sqrt(2 pi v), `bandwidth`
v a variance. Their dino bandwidth 0.03 is sigma = sqrt(0.03) = 0.1732, and their MMD^2 is
1/sqrt(2 pi 0.03) = 2.303 times the plain kernel's at that sigma.
bandwidth="median" (their 1-D runs): the kernel variance is the median squared distance between
reference points (y), i.e. h^2 in sigma units, v in paper units.
"""

import math
import weakref

import torch
from torch import Tensor

UNITS = ("sigma", "paper")
MEDIAN_POINTS = 2000  # the median heuristic reads the first this-many reference points (memory)
# The reference's own kernel mean (m^2 kernel values: 64M for 8,000 points) for the last reference
# scored: the evaluation scores the same held-out points after every Picard pass. Keyed on the tensor
# object itself (a weak reference, so a freed tensor never matches) and its in-place version.
_reference_cache: dict = {}


def check_bandwidth(bandwidth, units: str = "sigma", prefix: str = "") -> None:
    """A ValueError unless bandwidth is a finite number > 0 or "median" and units is sigma or paper;
    the message names `<prefix>bandwidth` / `<prefix>units` (the callback passes "eval.mmd_")."""
    number = not isinstance(bandwidth, bool) and isinstance(bandwidth, (int, float))
    if not (bandwidth == "median" or (number and math.isfinite(bandwidth) and bandwidth > 0)):
        raise ValueError(f"{prefix}bandwidth must be a finite number > 0 or 'median', got {bandwidth!r}.")
    if units not in UNITS:
        raise ValueError(
            f"{prefix}units must be 'sigma' (bandwidth a standard deviation) or 'paper' (a variance, with "
            f"the authors' 1/sqrt(2 pi variance) factor), got {units!r}."
        )


def median_heuristic(y: Tensor) -> float:
    """The median squared distance between distinct points of y [m, d] (at most MEDIAN_POINTS of them).

    The authors' utils.median_heuristic takes the median over all m^2 pairs, the m zeros of the
    diagonal included: a shift of the quantile by 1/(2m), which distinct pairs leave out.
    """
    y = y[:MEDIAN_POINTS].flatten(1).double()
    i, j = torch.triu_indices(len(y), len(y), 1)
    return float(torch.cdist(y, y).pow(2)[i, j].median())


BLOCK = 1024  # rows of a kernel block: BLOCK^2 float64 values (8 MiB) at once, whatever the counts


def kernel_sum(a: Tensor, b: Tensor | None, variance: float, block: int = BLOCK) -> Tensor:
    """sum_ij exp(-|a_i - b_j|^2 / (2 variance)) over a [n, d] and b [m, d], computed in blocks of
    `block` rows so that no n x m matrix is ever held; b None: the pairs i != j of a with itself (the
    upper blocks, counted twice)."""
    total = a.new_zeros(())
    for i in range(0, len(a), block):
        left = a[i : i + block]
        if b is None:
            for j in range(i, len(a), block):
                k = torch.exp(-torch.cdist(left, a[j : j + block]).pow(2) / (2 * variance)).sum()
                total += k if j == i else 2 * k
        else:
            for j in range(0, len(b), block):
                total += torch.exp(-torch.cdist(left, b[j : j + block]).pow(2) / (2 * variance)).sum()
    return total - len(a) if b is None else total  # without the diagonal k(a_i, a_i) = 1


def mmd2(x: Tensor, y: Tensor, bandwidth: float | str = 0.1, units: str = "sigma") -> Tensor:
    """Unbiased estimate of the squared MMD between samples x [n, d] and y [m, d] (n, m >= 2).

    bandwidth: a number (a standard deviation for units="sigma", a variance for units="paper") or
    "median" (see the module). The estimate is zero in expectation when x and y share a law, so it can
    come out slightly negative; computed in float64, in kernel blocks (`kernel_sum`): memory grows with
    n and m only through the points themselves. y is the reference (held-out data).
    """
    check_bandwidth(bandwidth, units)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"MMD needs at least 2 points on each side, got {len(x)} and {len(y)}.")
    key = (bandwidth, units, y._version, y.shape, y.dtype, y.device)
    cached = _reference_cache.get("entry")
    hit = cached is not None and cached[0]() is y and cached[1] == key
    x, y_flat = x.flatten(1).double(), y.flatten(1).double()
    if hit:
        variance, yy = cached[2], cached[3]
    elif bandwidth == "median":
        variance = median_heuristic(y_flat)
    else:
        variance = bandwidth if units == "paper" else bandwidth**2
    scale = 1 / math.sqrt(2 * math.pi * variance) if units == "paper" else 1.0

    def mean_kernel(a: Tensor, b: Tensor, same: bool) -> Tensor:
        total = kernel_sum(a, None if same else b, variance)
        return total / (len(a) * (len(a) - 1)) if same else total / (len(a) * len(b))

    if not hit:
        yy = mean_kernel(y_flat, y_flat, True)
        _reference_cache["entry"] = (weakref.ref(y), key, variance, yy)
    return scale * (mean_kernel(x, x, True) + yy - 2 * mean_kernel(x, y_flat, False))
