"""Drawing samples: a sample does not depend on the batch it is drawn in, nor on the number of ranks, nor
on the device; a parallel sampler's per-pass curve is recorded when it runs in one batch."""

import pytest
import torch
from conftest import requires_gpu
from threaded_ranks import ThreadedRanks

from ctdm.data.toy import eight_gaussians
from ctdm.evaluation import Generation, gather, generate, sample_seeds
from ctdm.nets import ResidualMLP
from ctdm.samplers import DDPMSampler, ParallelSampler

LAW = eight_gaussians()
SEEDS = sample_seeds(0, range(12))


def _sampler(parallel: bool):
    base = DDPMSampler(steps=30)
    return ParallelSampler(base, tolerance=0.1) if parallel else base


@pytest.mark.parametrize("parallel", [False, True], ids=["ddpm", "para_ddpm"])
def test_batches_change_nothing_but_the_curve(parallel):
    score = ("mmd", lambda x: float(x.pow(2).mean()))
    whole = generate(_sampler(parallel), LAW.eps, (2,), SEEDS, pass_score=score)
    batched = generate(_sampler(parallel), LAW.eps, (2,), SEEDS, batch_size=5, pass_score=score)
    torch.testing.assert_close(batched.samples, whole.samples, rtol=0, atol=0)
    assert isinstance(whole, Generation) and whole.converged and batched.converged
    if parallel:  # NFE is a mean over samples: the batches' means, weighted by their sizes
        assert batched.nfe == pytest.approx(whole.nfe, rel=1e-12) and 1 < whole.passes < 30
        assert [c["pass"] for c in whole.curve] == list(range(1, whole.passes + 1))
        assert whole.curve[-1]["mmd"] == pytest.approx(float(whole.samples.pow(2).mean()))
        assert batched.curve is None  # a pass then holds one batch, not every sample
    else:
        assert (whole.nfe, whole.passes, whole.curve) == (30, 30, None)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_draw_their_shares_of_the_same_samples(world):
    one = generate(_sampler(True), LAW.eps, (2,), SEEDS)

    def on_rank(ranks):
        share = ranks.share(len(SEEDS))
        mine = generate(_sampler(True), LAW.eps, (2,), SEEDS[share.start : share.stop])
        return gather(mine, ranks, len(SEEDS))

    for together in ThreadedRanks(world).run(on_rank):
        torch.testing.assert_close(together.samples, one.samples, rtol=0, atol=0)
        assert together.nfe == pytest.approx(one.nfe, rel=1e-12)
        assert together.passes <= one.passes and together.converged  # the slowest share's depth


@requires_gpu
def test_samples_do_not_depend_on_the_device():
    torch.manual_seed(0)
    net = ResidualMLP(2, width=32, blocks=1)
    for module in net.modules():  # the zero-initialised output layer: redrawn so eps depends on z
        if isinstance(module, torch.nn.Linear) and not module.weight.any():
            module.reset_parameters()
    on_cpu = generate(_sampler(True), net.eval(), (2,), SEEDS)
    on_gpu = generate(_sampler(True), net.cuda(), (2,), SEEDS, device="cuda")
    assert on_gpu.samples.device.type == "cuda" and on_gpu.passes == on_cpu.passes
    torch.testing.assert_close(on_gpu.samples.cpu(), on_cpu.samples, rtol=1e-4, atol=1e-4)
