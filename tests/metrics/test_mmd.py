"""MMD against a straightforward double loop, and its behaviour on equal and different laws."""

import itertools
import math

import pytest
import torch

from ctdm.metrics import mmd2


def _mmd2_loop(x, y, h):
    k = lambda u, v: math.exp(-float(((u - v) ** 2).sum()) / (2 * h * h))
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd2_equals_the_reference_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64)
    y = torch.randn(9, 2, generator=g, dtype=torch.float64) + 0.3
    assert float(mmd2(x, y, 0.7)) == pytest.approx(_mmd2_loop(x, y, 0.7), rel=1e-9)


def test_mmd2_separates_laws():
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(1000, 2, generator=g) for _ in range(3))
    same = float(mmd2(x, y, 0.5))
    shifted = float(mmd2(x, z + 0.5, 0.5))
    assert abs(same) < 0.1 * shifted


@pytest.mark.parametrize("bandwidth", [0.0, -1.0])
def test_bad_bandwidth(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(torch.zeros(3, 2), torch.ones(3, 2), bandwidth)
