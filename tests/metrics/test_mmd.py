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


def _paper_mmd_numpy(x, y, variance):
    """The authors' utils.kernel + mmd_ci_kernel written out in numpy: broadcast distances, their
    1/sqrt(2 pi v) factor, the reference's upper triangle, the samples' off-diagonal row means."""
    import numpy as np

    def kernel(a, b):
        dist = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * dist / variance) / np.sqrt(2 * np.pi * variance)

    kxx, kxy, kyy = kernel(x, x), kernel(x, y), kernel(y, y)
    upper = np.triu_indices(len(y), 1)
    rows = (kxx.sum(1) - np.diag(kxx)) / (len(x) - 1)
    return kyy[upper].mean() + rows.mean() - 2 * kxy.mean(1).mean()


def test_paper_units_equal_the_authors_formula():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64) * 0.8
    y = torch.randn(30, 2, generator=g, dtype=torch.float64) + 0.2
    expected = _paper_mmd_numpy(x.numpy(), y.numpy(), 0.03)
    assert float(mmd2(x, y, 0.03, units="paper")) == pytest.approx(expected, rel=1e-9)
    # the same kernel as ctdm's sigma units at sigma = sqrt(0.03), times 1/sqrt(2 pi 0.03) = 2.303
    plain = float(mmd2(x, y, math.sqrt(0.03)))
    assert float(mmd2(x, y, 0.03, units="paper")) == pytest.approx(plain / math.sqrt(2 * math.pi * 0.03))
    assert 1 / math.sqrt(2 * math.pi * 0.03) == pytest.approx(2.303, abs=1e-3)


def test_median_bandwidth_is_the_median_squared_distance_of_the_reference():
    import numpy as np

    from ctdm.metrics import median_heuristic

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(25, 1, generator=g, dtype=torch.float64), torch.randn(31, 1, generator=g) * 3
    yn = y.double().numpy()
    d2 = (yn - yn.T) ** 2
    med = np.median(d2[np.triu_indices(len(yn), 1)])  # 465 pairs: odd, so no averaging question
    assert median_heuristic(y) == pytest.approx(med, rel=1e-12)
    for units in ("paper", "sigma"):
        direct = mmd2(x, y, med if units == "paper" else math.sqrt(med), units=units)
        assert float(mmd2(x, y, "median", units=units)) == pytest.approx(float(direct), rel=1e-12)
    assert float(mmd2(x, y, "median", "paper")) == pytest.approx(
        _paper_mmd_numpy(x.numpy(), yn, med), rel=1e-9
    )


@pytest.mark.parametrize("bandwidth,units,match", [("wide", "sigma", "'median'"), (0.1, "variance", "units")])
def test_bad_bandwidth_or_units_are_named(bandwidth, units, match):
    with pytest.raises(ValueError, match=match):
        mmd2(torch.zeros(3, 2), torch.ones(3, 2), bandwidth, units)


def test_reference_term_is_reused_only_for_the_same_unchanged_reference():
    """The reference's own term is cached for the same tensor; a new tensor or an in-place change
    (or another bandwidth) recomputes it, so every answer equals a fresh computation."""
    from ctdm.metrics import mmd as mmd_module

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 2, generator=g), torch.randn(30, 2, generator=g)
    fresh = lambda y_: _mmd2_loop(x.double(), y_.double(), 0.5)
    assert float(mmd2(x, y, 0.5)) == pytest.approx(fresh(y), rel=1e-9)
    assert mmd_module._reference_cache["entry"][0]() is y
    assert float(mmd2(x + 1, y, 0.5)) == pytest.approx(
        _mmd2_loop((x + 1).double(), y.double(), 0.5), rel=1e-9
    )
    y.mul_(2)  # in place: the cached term is stale
    assert float(mmd2(x, y, 0.5)) == pytest.approx(fresh(y), rel=1e-9)
    z = y.clone()  # equal values, another tensor
    assert float(mmd2(x, z, 0.7)) == pytest.approx(_mmd2_loop(x.double(), z.double(), 0.7), rel=1e-9)
