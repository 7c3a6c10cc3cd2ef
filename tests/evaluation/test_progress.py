"""Sampling progress: a sequential sampler's bar moves with every step, the Picard solver's with every pass
(counting the steps that converged, read off the NFE each pass adds), so the bar has a total and an ETA."""

import functools

import pytest
import torch

from ctdm.data.toy import eight_gaussians
from ctdm.evaluation import generate, progress, sample_seeds
from ctdm.evaluation.progress import SamplingProgress
from ctdm.samplers import DDPMSampler, HeunSampler, ParallelSampler

LAW = eight_gaussians()
SEEDS = sample_seeds(0, range(16))


def test_a_sequential_sampler_reports_every_step():
    seen = []
    sampler = DDPMSampler(steps=25)
    plain, _ = sampler(LAW.eps, (2,), SEEDS)
    hooked, _ = sampler(LAW.eps, (2,), SEEDS, hook=lambda k, x: seen.append((k, x.shape)))
    assert seen == [(k, (16, 2)) for k in range(1, 26)]
    torch.testing.assert_close(hooked, plain, rtol=0, atol=0)  # watching changes nothing


def _converged_before_each_pass(sampler):
    progress = SamplingProgress(sampler, "test", enabled=False)
    done = []

    def hook(index, x, info):
        progress.picard_pass(index, x, info)
        done.append(progress.done)

    _, stats = sampler(LAW.eps, (2,), SEEDS, hook=hook)
    assert progress.bar.total == sampler.steps and len(done) == stats.passes
    progress.close()
    assert progress.done == sampler.steps
    return done


@pytest.mark.parametrize("base", [DDPMSampler(steps=12), HeunSampler(steps=12)], ids=["ddpm", "heun"])
def test_the_picard_bar_counts_converged_steps_when_the_window_spans_them(base):
    # A tolerance no change meets: each pass makes exactly one more step exact, so pass p begins with
    # p - 1 steps converged (Heun's last step costs 1 evaluation, the others 2: within one step).
    done = _converged_before_each_pass(ParallelSampler(base, tolerance=1e-12))
    slack = 0 if isinstance(base, DDPMSampler) else 1
    assert all(abs(d - p) <= slack for p, d in enumerate(done)), done
    # A real tolerance: fewer passes, the count starts at 0 and only grows
    done = _converged_before_each_pass(ParallelSampler(DDPMSampler(steps=40), tolerance=0.1))
    assert done[0] == 0 and done == sorted(done) and len(done) < 40 and done[-1] > 20


def test_with_a_shorter_window_the_bar_counts_passes():
    sampler = ParallelSampler(DDPMSampler(steps=40), window=8, tolerance=0.1)
    progress = SamplingProgress(sampler, "test", enabled=False)
    _, stats = sampler(LAW.eps, (2,), SEEDS, hook=progress.hook)
    assert progress.bar.total is None and progress.done == stats.passes


def test_generate_drives_the_bars_and_keeps_its_results(capsys, monkeypatch):
    # tqdm redraws at most every 0.1 s, and these bars finish in less: redraw on every update instead
    # (the bars' content is under test, not tqdm's rate limit; leave=False clears them at the end).
    monkeypatch.setattr(progress, "tqdm", functools.partial(progress.tqdm, mininterval=0, miniters=1))
    for sampler in (DDPMSampler(steps=20), ParallelSampler(DDPMSampler(steps=20), tolerance=0.1)):
        quiet = generate(sampler, LAW.eps, (2,), SEEDS, batch_size=8)
        shown = generate(sampler, LAW.eps, (2,), SEEDS, batch_size=8, progress=True)
        torch.testing.assert_close(shown.samples, quiet.samples, rtol=0, atol=0)
        assert shown.passes == quiet.passes
    err = capsys.readouterr().err
    assert "sampling ddpm (batch 2/2)" in err and "sampling para_ddpm (batch 1/2)" in err
    assert "step" in err and "passes=" in err
