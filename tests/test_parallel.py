"""Parallel Picard (ParaDiGMS) solver: agreement with the sequential samplers on the same noise."""

import pytest
import torch
from torch import nn

from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.samplers import DDIMSampler, DDPMSampler, HeunSampler, ParallelSampler

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
    # A plain function, and an nn.Module method (replicated: torch counts "cpu:0" apart from "cpu").
    for eps_fn in (LAW.eps, net.eps):
        one, _ = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1)(eps_fn, (2,), torch.arange(6))
        split, _ = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1, devices=["cpu", "cpu:0", "cpu"])(
            eps_fn, (2,), torch.arange(6)
        )
        torch.testing.assert_close(one, split, rtol=0, atol=1e-6)


def test_builds_its_base_from_a_factory():
    sampler = ParallelSampler(lambda steps: DDIMSampler(steps=steps, eta=0.2), steps=25, window=5)
    assert sampler.steps == 25 and sampler.window == 5 and sampler.base.eta == 0.2
    assert ParallelSampler(DDPMSampler(steps=8), window=100).window == 8  # clipped to the steps


@pytest.mark.parametrize(
    "options,key",
    [
        ({"window": 0}, "sampler.window"),
        ({"window": 2.5}, "sampler.window"),
        ({"tolerance": 0}, "sampler.tolerance"),
        ({"tolerance": -0.1}, "sampler.tolerance"),
        ({"tolerance": float("nan")}, "sampler.tolerance"),
        ({"max_passes": 0}, "sampler.max_passes"),
        ({"steps": 7}, "sampler.steps"),
    ],
)
def test_bad_settings_name_the_key(options, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ParallelSampler(DDPMSampler(steps=10), **options)


def test_a_base_that_is_not_a_step_sampler_is_refused():
    with pytest.raises(ValueError, match="sampler.base"):
        ParallelSampler(ParallelSampler(DDPMSampler(steps=4)))
    with pytest.raises(ValueError, match="sampler.steps"):
        ParallelSampler(DDPMSampler, steps=0)
