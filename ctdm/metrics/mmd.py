"""Maximum mean discrepancy with a Gaussian kernel."""

import torch
from torch import Tensor


def mmd2(x: Tensor, y: Tensor, bandwidth: float = 0.1) -> Tensor:
    """Unbiased estimate of the squared MMD between samples x [n, d] and y [m, d] (n, m >= 2).

    Kernel k(u, v) = exp(-|u - v|^2 / (2 bandwidth^2)). The estimate is zero in expectation when x
    and y share a law, so it can come out slightly negative; computed in float64.
    """
    if not bandwidth > 0:
        raise ValueError(f"MMD bandwidth must be > 0, got {bandwidth!r}.")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"MMD needs at least 2 points on each side, got {len(x)} and {len(y)}.")
    x, y = x.flatten(1).double(), y.flatten(1).double()
    gamma = 1.0 / (2 * bandwidth**2)

    def mean_kernel(a: Tensor, b: Tensor, same: bool) -> Tensor:
        k = torch.exp(-gamma * torch.cdist(a, b).pow(2))
        if same:  # drop the diagonal k(a_i, a_i) = 1
            return (k.sum() - len(a)) / (len(a) * (len(a) - 1))
        return k.mean()

    return mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False)
