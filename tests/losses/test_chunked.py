"""Memory-bounded Monte-Carlo losses: with max_batch, the CDL and ITD rows go through the network in
activation-checkpointed chunks (ctdm.diffusion.likelihood.point_errors). The gradient is the unchunked
one, a step's tensor peak stays flat as items x points grow, every row still goes through the eps function
the term is given, and a step that cannot fit is refused before training (ctdm.losses.memory)."""

import pytest
import torch

from ctdm.diffusion import Reference
from ctdm.losses import ContrastiveDiffusionLoss, DenoisingMSE, ITDLoss
from ctdm.losses import memory as loss_memory
from ctdm.nets import MLP, UNet
from ctdm.samplers.memory import TensorMemory


def _unet():
    torch.manual_seed(0)
    return UNet([1, 8, 8], width=8, mult=[1, 2], blocks=1, attn_resolutions=[], dropout=0.0, norm_groups=4)


def _mlp():
    torch.manual_seed(0)
    return MLP(2, width=32)


def _gradient(net, term, x, ref):
    net.zero_grad(set_to_none=True)
    loss, _ = term(net, x, torch.Generator().manual_seed(3), ref)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in net.parameters()])


TERMS = {
    "cdl shared": lambda chunk: ContrastiveDiffusionLoss(points=4, max_batch=chunk),
    "cdl independent": lambda chunk: ContrastiveDiffusionLoss(points=4, share_draws=False, max_batch=chunk),
    "itd points 5": lambda chunk: ITDLoss(points=5, max_batch=chunk),
}


@pytest.mark.parametrize("net_name", ["unet", "mlp"])
@pytest.mark.parametrize("term_name", sorted(TERMS))
def test_chunked_gradients_equal_the_unchunked_ones(net_name, term_name):
    net, x = (_unet(), torch.rand(3, 1, 8, 8) * 2 - 1) if net_name == "unet" else (_mlp(), torch.randn(3, 2))
    ref = Reference.standard(tuple(x.shape[1:]), 1.0, 3.0)
    rows = TERMS[term_name](None).network_rows(len(x))  # 24 for the CDL, 15 for the ITD
    loss, grad = _gradient(net, TERMS[term_name](None), x, ref)
    assert grad.abs().max() > 0
    for chunk in (1, 7, rows - 1):  # 7 and rows - 1 do not divide the rows: a short last chunk
        chunked_loss, chunked = _gradient(net, TERMS[term_name](chunk), x, ref)
        torch.testing.assert_close(chunked_loss, loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(chunked, grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))


def _step_peak(points: int, chunk: int | None) -> int:
    net, x = _unet(), torch.rand(4, 1, 8, 8) * 2 - 1
    ref = Reference.standard((1, 8, 8), 1.0, 3.0)
    term = ContrastiveDiffusionLoss(points=points, max_batch=chunk)
    with TensorMemory() as memory:
        loss, _ = term(net, x, torch.Generator().manual_seed(0), ref)
        loss.backward()
    return memory.peak


def test_a_cdl_step_peak_is_flat_in_the_points_at_a_fixed_chunk():
    flat = [_step_peak(points, chunk=16) for points in (4, 32)]  # 32 -> 256 rows, in calls of 16
    whole = [_step_peak(points, chunk=None) for points in (4, 32)]
    # Unchunked, every row's activations are held for the backward pass: 8x the rows, ~8x the peak.
    assert whole[1] > 5 * whole[0]
    # Chunked, only a chunk's; what grows is the per-row inputs and errors (2 x 256 x 64 floats), not the
    # activations of a UNet row (~25 KiB here): within 25% while the rows grow 8x.
    assert flat[1] < 1.25 * flat[0]
    assert flat[1] < whole[1] / 4


def _counting(net):
    """An eps function that counts its rows: those of the forward pass, and those run again while the
    backward pass runs (checkpoint recomputation; how the training cost counter tells them apart)."""
    counts = {"forward": 0, "recomputed": 0}

    def eps_fn(z, logsnr):
        in_backward = torch._C._current_graph_task_id() != -1
        counts["recomputed" if in_backward else "forward"] += len(z)
        return net(z, logsnr)

    return eps_fn, counts


def test_every_chunk_goes_through_the_eps_function_given_once_forward_and_once_recomputed():
    net, x = _unet(), torch.rand(3, 1, 8, 8) * 2 - 1
    ref = Reference.standard((1, 8, 8), 1.0, 3.0)
    term = ContrastiveDiffusionLoss(points=4, max_batch=5)
    eps_fn, counts = _counting(net)
    loss, _ = term(eps_fn, x, torch.Generator().manual_seed(0), ref)
    loss.backward()
    assert (
        counts
        == {"forward": term.network_rows(3), "recomputed": term.network_rows(3)}
        == {
            "forward": 24,
            "recomputed": 24,
        }
    )
    eps_fn, counts = _counting(net)
    ContrastiveDiffusionLoss(points=4, max_batch=None)(eps_fn, x, torch.Generator().manual_seed(0), ref)[
        0
    ].backward()
    assert counts == {"forward": 24, "recomputed": 0}  # unchunked: nothing is recomputed


def test_auto_chunks_only_what_does_not_fit_the_budget():
    net, x = _unet(), torch.rand(3, 1, 8, 8) * 2 - 1
    ref = Reference.standard((1, 8, 8), 1.0, 3.0)
    per_row = {grad: loss_memory.bytes_per_row(net, (1, 8, 8), backward=grad) for grad in (True, False)}
    assert per_row[True] > per_row[False] > 1000  # a UNet row's activations (and their gradients)
    _, grad = _gradient(net, ContrastiveDiffusionLoss(points=4, max_batch=None), x, ref)
    unplanned = ContrastiveDiffusionLoss(points=4)  # auto, called on its own: one call
    roomy = ContrastiveDiffusionLoss(points=4, memory_budget=1e12)
    tight = ContrastiveDiffusionLoss(points=4, memory_budget=5.9 * per_row[True])  # 0.9 x 5.9: 5 rows fit
    for term in (roomy, tight):
        term.auto_chunk.plan(per_row, "cpu")
    for term, chunk in ((unplanned, None), (roomy, None), (tight, 5)):
        eps_fn, counts = _counting(net)
        net.zero_grad(set_to_none=True)
        term(eps_fn, x, torch.Generator().manual_seed(3), ref)[0].backward()
        assert term.auto_chunk(24) == chunk
        assert counts == {"forward": 24, "recomputed": 0 if chunk is None else 24}
        chunked = torch.cat([p.grad.flatten() for p in net.parameters()])
        torch.testing.assert_close(chunked, grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
    with torch.no_grad():  # no graph is held: the chunk follows a forward's memory
        assert tight.auto_chunk(24) is None or tight.auto_chunk(24) > 5


def test_a_step_that_cannot_fit_is_refused_naming_the_keys_and_a_setting_that_fits():
    terms = {"itd": ITDLoss(), "cdl": ContrastiveDiffusionLoss(points=16, max_batch=None)}
    per_row, weights = 50 * 2**20, 4 * 35_700_000  # the CIFAR UNet's order of magnitude
    with pytest.raises(ValueError) as refused:
        loss_memory.check_step_fits(
            terms, 128, per_row, weights, available=24 * 2**30, where="free on cuda:0", budget=12 * 2**30
        )
    message = str(refused.value)
    assert "loss.cdl holds 4096 of its 4096 network rows" in message and "24.0 GiB free on cuda:0" in message
    suggested = int(message.split("loss.cdl.max_batch=")[1].split(" ")[0])
    assert "loss.cdl.samples=" in message and "data.batch_size" in message
    terms["cdl"] = ContrastiveDiffusionLoss(points=16, max_batch=suggested)
    fits = loss_memory.check_step_fits(
        terms, 128, per_row, weights, available=24 * 2**30, where="free on cuda:0", budget=12 * 2**30
    )
    assert fits.total <= 24 * 2**30
    # max_batch auto chooses a chunk from the budget: the same setting fits without a number
    terms["cdl"] = ContrastiveDiffusionLoss(points=16)
    loss_memory.check_step_fits(
        terms, 128, per_row, weights, available=24 * 2**30, where="", budget=12 * 2**30
    )
    # a term's own memory_budget is a limit too
    terms["cdl"] = ContrastiveDiffusionLoss(points=16, max_batch=None, memory_budget=2**30)
    with pytest.raises(ValueError, match=r"its loss.cdl.memory_budget=1.0 GiB.*loss.cdl.max_batch=18 "):
        loss_memory.check_step_fits(terms, 128, per_row, weights, available=1e15, where="", budget=1e15)


def test_the_cost_line_counts_the_rows_and_predicts_the_ratio():
    terms = {"itd": ITDLoss(), "cdl": ContrastiveDiffusionLoss(samples=8, points=16, max_batch=64)}
    line = loss_memory.describe_cost(terms, 128, per_row=1.0, budget=1e9)
    # 256 CDL rows, checkpointed (4 forward-equivalents each), beside 128 rows at 3: 1 + 1024/384
    assert "256 network rows per step beside the base loss's 128" in line and "3.7x" in line
    # a term every 4th step: its rows on its steps, the ratio averaged over steps (1 + 1024/384/4)
    terms["cdl"].every_n_steps = 4
    line = loss_memory.describe_cost(terms, 128, per_row=1.0, budget=1e9)
    assert "max_batch=64, once every 4 steps" in line and "1.7x the base loss's step on average (3.7x" in line
    assert loss_memory.describe_cost({"mse": DenoisingMSE()}, 128, 1.0, 1e9) is None


def test_image_data_takes_a_cdl_setting_a_24_gb_card_runs_at_about_twice_the_base_step(make_cfg):
    from hydra.utils import instantiate

    def cdl(*overrides):
        return make_cfg(["loss=contrastive", *overrides]).loss.cdl

    assert (cdl().samples, cdl().points, cdl().every_n_steps) == ("all", 16, 16)  # the 2-D default
    for data in ("digits", "mnist", "cifar10", "image_folder"):
        chosen = cdl(f"data={data}")
        assert (chosen.samples, chosen.points, chosen.every_n_steps) == (4, 16, 1), data
    assert cdl("data=digits", "loss.cdl.every_n_steps=4").every_n_steps == 4  # the command line still wins
    assert make_cfg(["loss=itd_cdl_paper", "data=cifar10"]).loss.cdl.samples == 2  # the authors' own
    # experiment=digits sets no loss.cdl key (it would be a stray node under loss=itd): the image setting
    assert (
        make_cfg(["experiment=digits"]).loss.cdl.samples,
        make_cfg(["experiment=digits"]).loss.cdl.points,
    ) == (4, 16)
    cfg = make_cfg(["loss=contrastive", "data=cifar10"])
    terms = instantiate(cfg.loss, _convert_="all")
    net = instantiate(cfg.model.net)  # the CIFAR UNet, 35.7M
    per_row = loss_memory.bytes_per_row(net, (3, 32, 32))
    card, weights = 24 * 2**30, loss_memory.parameter_bytes(net)
    fits = loss_memory.check_step_fits(
        terms, 128, per_row, weights, available=card, where="on a 24 GB card", budget=card / 2
    )
    assert fits.total < card
    line = loss_memory.describe_cost(terms, 128, per_row, budget=card / 2)
    assert "128 network rows per step beside the base loss's 128" in line and "max_batch=None" in line
    assert float(line.split("predicted step time ")[1].split("x")[0]) <= 3
    # the 2-D default on the same card: refused unchunked, chunked by auto
    terms["cdl"] = ContrastiveDiffusionLoss(points=16, max_batch=None)
    with pytest.raises(ValueError, match="loss.cdl holds 4096 of its 4096 network rows"):
        loss_memory.check_step_fits(terms, 128, per_row, weights, available=card, where="", budget=card / 2)
