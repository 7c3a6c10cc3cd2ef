"""Parallel Picard (ParaDiGMS) solver: agreement with the sequential samplers on the same noise."""

import re

import lightning as L
import pytest
import torch
from torch import nn

from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.samplers import (
    DDIMSampler,
    DDPMSampler,
    HeunSampler,
    ParallelSampler,
    change_scale,
    parallel,
    per_sample_normal,
    window_advance,
)
from ctdm.samplers.memory import TensorMemory

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


@pytest.mark.parametrize("window", [7, 20, 60])
def test_sample_i_does_not_depend_on_the_batch(window):
    sampler = ParallelSampler(DDPMSampler(steps=60), window=window, tolerance=0.1)
    full, _ = sampler(LAW.eps, (2,), torch.arange(12))
    part, _ = sampler(LAW.eps, (2,), torch.arange(4, 7))
    torch.testing.assert_close(full[4:7], part, rtol=0, atol=1e-6)


def test_at_tiny_tolerance_sample_i_is_the_sequential_one_whatever_the_window_and_batch():
    base = DDPMSampler(steps=40)
    sequential, _ = base(LAW.eps, (2,), torch.arange(10))
    for window, seeds in ((3, torch.arange(10)), (16, torch.arange(10)), (40, torch.arange(2, 5))):
        parallel, stats = ParallelSampler(base, window=window, tolerance=1e-6)(LAW.eps, (2,), seeds)
        assert stats.converged
        torch.testing.assert_close(parallel, sequential[seeds], rtol=0, atol=1e-5)


def _full_trajectory_picard(sampler, eps_fn, shape, seeds):
    """The solver as it was before the ring buffer: the whole trajectory and every step's noise held."""
    base, K, W = sampler.base.on("cpu", torch.float32), sampler.steps, sampler.window
    noise = per_sample_normal(seeds[:, None], torch.arange(K + 1)[None, :], shape)  # [N, K+1, *shape]
    traj = base.prior(noise[:, 0]).unsqueeze(1).repeat(1, K + 1, *([1] * len(shape)))
    scale = sampler.change_scale.clamp(min=torch.finfo(torch.float64).tiny) * noise[0, 0].numel()
    begin, passes = torch.zeros(len(seeds), dtype=torch.long), 0
    while (begin < K).any():
        passes += 1
        for i in (begin < K).nonzero().squeeze(1).tolist():  # one sample at a time: plainly right
            b = int(begin[i])
            steps = torch.arange(b, min(b + W, K))
            x, n = traj[i, steps], noise[i, steps + 1]
            new = traj[i, b] + (base.drift(eps_fn, x, steps, n) + base.noise(n, steps)).cumsum(0)
            change = (new - traj[i, steps + 1]).flatten(1).pow(2).sum(-1).double() / scale[steps]
            traj[i, steps + 1] = new
            all_valid = torch.ones(1, len(steps), dtype=torch.bool)
            begin[i] = b + window_advance(change[None], all_valid, sampler.tolerance)[0]
    return traj[:, K], passes


@pytest.mark.parametrize("window", [1, 6, 25, 50])
@pytest.mark.parametrize("rule", ["same_step", "next_step"])
def test_the_ring_buffer_solver_is_the_full_trajectory_solver(window, rule):
    sampler = ParallelSampler(DDPMSampler(steps=50), window=window, tolerance=0.05, tolerance_rule=rule)
    seeds = torch.arange(5)
    want, want_passes = _full_trajectory_picard(sampler, LAW.eps, (2,), seeds)
    got, stats = sampler(LAW.eps, (2,), seeds)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert stats.passes == want_passes


def _peak_bytes(steps, window, shape, n):
    # max_batch=None: no probe of the network (its inputs would count), one call per pass as before.
    sampler = ParallelSampler(DDPMSampler(steps=steps), window=window, max_passes=3, max_batch=None)
    with TensorMemory() as memory:
        sampler(lambda z, logsnr: 0.1 * z, shape, torch.arange(n))
    return memory.peak


def test_memory_grows_with_the_window_not_the_steps(monkeypatch):
    # The noise drawn ahead of the windows is bounded apart (NOISE_AHEAD_ELEMENTS, 16 MB, far more than
    # these samples' whole noise): without it, what is left grows with the window.
    monkeypatch.setattr(parallel, "NOISE_AHEAD_ELEMENTS", 1)
    shape, n = (3, 16, 16), 3
    state = n * 3 * 16 * 16 * 4  # bytes of one state of every sample
    short, long = _peak_bytes(60, 6, shape, n), _peak_bytes(480, 6, shape, n)
    wide = _peak_bytes(480, 48, shape, n)
    assert long < 1.2 * short, (short, long)  # 8x the steps: the same memory (the full trajectory: 5.6x)
    assert wide > 4 * long, (long, wide)  # 8x the window: about 8x the memory
    assert long < 20 * 6 * state  # a few states per window step, not the 480-step trajectory


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
        # An untrained net drives samples to ~1e2, where splitting the batch moves the last float bit.
        torch.testing.assert_close(one, split, rtol=1e-6, atol=1e-6)


def test_max_batch_bounds_each_network_call_and_changes_nothing_else():
    sizes = []

    def eps(z, logsnr):
        sizes.append(len(z))
        return LAW.eps(z, logsnr)

    whole, stats = ParallelSampler(DDPMSampler(steps=30), window=10)(LAW.eps, (2,), torch.arange(5))
    chunked_sampler = ParallelSampler(DDPMSampler(steps=30), window=10, max_batch=7)
    chunked, chunked_stats = chunked_sampler(eps, (2,), torch.arange(5))
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    assert max(sizes) == 7 and chunked_stats.nfe == stats.nfe


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
    ({"window": 0}, "window must be an integer >= 1, 'auto' (chosen from the network's measured"),
    ({"window": 2.5}, "or None (every step), got 2.5"),
    ({"window": "fast"}, "window must be an integer >= 1, 'auto' (chosen from the network's measured"),
    ({"tolerance": 0}, "tolerance must be a finite number > 0, got 0"),
    ({"tolerance": -0.1}, "tolerance must be a finite number > 0, got -0.1"),
    ({"tolerance": float("nan")}, "tolerance must be a finite number > 0, got nan"),
    ({"max_passes": 0}, "max_passes must be an integer >= 1, got 0"),
    ({"max_batch": 0}, "max_batch must be an integer >= 1, 'auto' (chosen from the network's measured"),
    ({"max_batch": "Auto"}, "or None (a whole pass in one call), got 'Auto'"),
    ({"memory_budget": 0}, "memory_budget must be a finite number > 0, got 0"),
    ({"tolerance_rule": "next"}, "tolerance_rule must be one of same_step, next_step (same_step: each"),
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


def test_tolerance_rules_scale_each_state_by_its_own_or_the_next_steps_variance():
    variance = torch.tensor([5.0, 4.0, 3.0, 2.0], dtype=torch.float64)
    assert change_scale(variance, "same_step").tolist() == [5.0, 4.0, 3.0, 2.0]
    # x_1 by step 1's variance, x_2 by step 2's; the last step's variance (clean end) and x_4's are 0.
    assert change_scale(variance, "next_step").tolist() == [4.0, 3.0, 0.0, 0.0]
    assert change_scale(variance[:1], "next_step").tolist() == [0.0]
    sampler = ParallelSampler(DDPMSampler(steps=10), tolerance_rule="next_step")
    torch.testing.assert_close(sampler.change_scale[:8], DDPMSampler(steps=10).step_variance[1:9])


@pytest.mark.parametrize("base", [DDPMSampler(steps=100), DDIMSampler(steps=60)], ids=["ddpm", "ddim"])
@pytest.mark.parametrize("window,tolerance", [(100, 0.1), (100, 0.3), (16, 0.1)])
def test_the_next_step_rule_never_takes_fewer_passes(base, window, tolerance):
    passes = {
        rule: ParallelSampler(base, window=window, tolerance=tolerance, tolerance_rule=rule)(
            LAW.eps, (2,), torch.arange(32)
        )[1].passes
        for rule in ("same_step", "next_step")
    }
    assert passes["next_step"] >= passes["same_step"], passes
