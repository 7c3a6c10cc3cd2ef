"""Parallel Picard (ParaDiGMS) solver: agreement with the sequential samplers on the same noise."""

import re

import lightning as L
import pytest
import torch
from torch import nn

from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.samplers import DDIMSampler, DDPMSampler, HeunSampler, ParallelSampler, window_advance

LAW = eight_gaussians()


def _max_diff(base, seeds, **options):
    sequential, _ = base(LAW.eps, (2,), seeds)
    parallel, stats = ParallelSampler(base, **options)(LAW.eps, (2,), seeds)
    return float((parallel - sequential).abs().max()), stats


def test_agreement_with_sequential_shrinks_with_tolerance():
    base, seeds = DDPMSampler(steps=60), torch.arange(24)
    diffs = [_max_diff(base, seeds, tolerance=tol)[0] for tol in (0.3, 0.03, 1e-5)]
    assert diffs[0] > diffs[1] > diffs[2], diffs
    assert diffs[2] < 1e-4, diffs


@pytest.mark.parametrize(
    "base",
    [DDIMSampler(steps=50), DDIMSampler(steps=50, eta=0.7), HeunSampler(steps=12, S_churn=5)],
    ids=["ddim", "ddim-eta0.7", "heun-churn"],
)
def test_tiny_tolerance_reproduces_the_sequential_sampler(base):
    diff, stats = _max_diff(base, torch.arange(32), tolerance=1e-6)
    assert stats.converged and diff < 1e-4, diff


@pytest.mark.parametrize("base,nfe", [(DDPMSampler(steps=30), 30), (HeunSampler(steps=10), 19)])
def test_window_one_is_the_sequential_sampler(base, nfe):
    diff, stats = _max_diff(base, torch.arange(16), window=1, tolerance=0.1)
    assert stats.passes == base.steps and stats.nfe == nfe
    assert diff < 1e-5, diff


def test_full_window_converges_in_far_fewer_passes_and_matches_the_mixture():
    n, steps = 150, 200
    sampler = ParallelSampler(DDPMSampler(steps=steps), window=steps, tolerance=0.1)
    samples, stats = sampler(LAW.eps, (2,), torch.arange(n))
    assert stats.converged and stats.passes < steps / 5, stats
    assert steps <= stats.nfe < steps * stats.passes
    reference = LAW.sample(n, torch.Generator().manual_seed(1))
    floor = max(
        abs(float(mmd2(LAW.sample(n, torch.Generator().manual_seed(10 + k)), reference))) for k in range(4)
    )
    assert float(mmd2(samples, reference)) < 4 * floor + 1e-4


def test_sample_i_does_not_depend_on_the_batch():
    sampler = ParallelSampler(DDPMSampler(steps=60), window=20, tolerance=0.1)
    full, _ = sampler(LAW.eps, (2,), torch.arange(12))
    part, stats = sampler(LAW.eps, (2,), torch.arange(4, 7))
    torch.testing.assert_close(full[4:7], part, rtol=0, atol=1e-6)


def test_max_passes_bounds_the_work_and_says_so():
    sampler = ParallelSampler(DDPMSampler(steps=50), tolerance=1e-3, max_passes=2)
    _, stats = sampler(LAW.eps, (2,), torch.arange(4))
    assert stats.passes == 2 and not stats.converged


def test_hook_sees_every_pass():
    seen = []
    sampler = ParallelSampler(DDPMSampler(steps=40), tolerance=0.1)
    samples, stats = sampler(
        LAW.eps, (2,), torch.arange(8), hook=lambda p, x, info: seen.append((p, x.clone(), info))
    )
    assert [p for p, _, _ in seen] == list(range(1, stats.passes + 1))
    torch.testing.assert_close(seen[-1][1], samples)
    assert seen[-1][2]["active"] == 0 and seen[-1][2]["nfe"] == pytest.approx(stats.nfe)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def eps(self, z, logsnr):
        return self.lin(torch.cat([z, logsnr[:, None]], 1))


def test_window_batch_split_over_devices_gives_the_same_samples():
    net = _Net()
    # A plain function, a plain nn.Module and its method (replicated: torch counts "cpu:0" apart from "cpu").
    for eps_fn in (LAW.eps, net, net.eps):
        one, _ = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1)(eps_fn, (2,), torch.arange(6))
        split, _ = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1, devices=["cpu", "cpu:0", "cpu"])(
            eps_fn, (2,), torch.arange(6)
        )
        torch.testing.assert_close(one, split, rtol=0, atol=1e-6)


class _Lightning(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = _Net()

    def eps(self, z, logsnr):
        return self.net.eps(z, logsnr)


def test_split_over_devices_replicates_the_network_not_a_lightning_module():
    sampler = ParallelSampler(DDPMSampler(steps=5), devices=["cpu", "cpu:0"])
    with pytest.raises(ValueError, match="pass the plain nn.Module that holds the weights"):
        sampler(_Lightning().eps, (2,), torch.arange(2))
    samples, _ = sampler(_Lightning().net, (2,), torch.arange(2))
    assert samples.shape == (2, 2)


# (changes of the new states x_{b+1}.. [in units of tolerance^2 = 1], valid, steps the window moves)
WINDOW_ADVANCE = [
    ([0.5, 0.5, 0.5, 0.5], [1, 1, 1, 1], 4),  # all converged: past the whole window
    ([0.5, 0.5, 2.0, 0.5], [1, 1, 1, 1], 2),  # up to the state before the first one above
    ([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 1], 1),  # at least one step: x_{b+1} is exact once x_b is
    ([0.5, 1.0, 0.5, 0.5], [1, 1, 1, 1], 4),  # "above" is strictly above
    ([0.5, 0.5, 9.0, 9.0], [1, 1, 0, 0], 2),  # past the last step: not counted, the window ends there
]


def test_window_advance():
    change = torch.tensor([c for c, _, _ in WINDOW_ADVANCE], dtype=torch.float64)
    valid = torch.tensor([v for _, v, _ in WINDOW_ADVANCE], dtype=torch.bool)
    want = torch.tensor([n for _, _, n in WINDOW_ADVANCE])
    assert window_advance(change, valid, tolerance=1.0).tolist() == want.tolist()
    # The tolerance is on the root-mean-square change: change is compared with tolerance^2.
    assert window_advance(torch.tensor([[0.02, 0.02]]), torch.tensor([[True, True]]), 0.1).tolist() == [1]


def test_window_is_clipped_to_the_steps():
    assert ParallelSampler(DDPMSampler(steps=8), window=100).window == 8
    assert ParallelSampler(DDPMSampler(steps=8)).window == 8


BAD_SETTINGS = [  # (arguments, the message naming the argument)
    ({"window": 0}, "window must be an integer >= 1, got 0"),
    ({"window": 2.5}, "window must be an integer >= 1, got 2.5"),
    ({"tolerance": 0}, "tolerance must be a finite number > 0, got 0"),
    ({"tolerance": -0.1}, "tolerance must be a finite number > 0, got -0.1"),
    ({"tolerance": float("nan")}, "tolerance must be a finite number > 0, got nan"),
    ({"max_passes": 0}, "max_passes must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("options,message", BAD_SETTINGS)
def test_bad_settings_name_the_argument(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ParallelSampler(DDPMSampler(steps=10), **options)


@pytest.mark.parametrize(
    "base", [ParallelSampler(DDPMSampler(steps=4)), DDPMSampler], ids=["parallel", "class"]
)
def test_a_base_that_is_not_a_step_sampler_is_refused(base):
    with pytest.raises(ValueError, match="base must be a sequential step sampler"):
        ParallelSampler(base)
