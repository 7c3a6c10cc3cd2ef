"""The training cost: the rows counted are the rows the network saw in training steps, for every loss; the
seconds are the training steps' own; a checkpoint from before costs were recorded counts as zero."""

import time

import lightning as L
import pytest
import torch
from conftest import compose_config, cpu_trainer, tiny_data, tiny_module
from torch.utils.checkpoint import checkpoint

from ctdm.build import build_module
from ctdm.losses import DenoisingMSE
from ctdm.training_cost import CHECKPOINT_KEY, CountedEps, TrainingCost, summary_block

BATCH = 8


class NetworkRows(L.Callback):
    """A forward hook on the network: rows it saw inside training batches (between Lightning's
    on_train_batch_start and on_train_batch_end, so the module's memory-per-row probe at fit start is not
    a training row), and those with gradient on outside a backward pass (what the counter calls forward
    and backward rows), counted independently."""

    def __init__(self, net: torch.nn.Module):
        self.forward = self.backward = 0
        self.in_batch = False
        net.register_forward_hook(self.hook)

    def on_train_batch_start(self, *args) -> None:
        self.in_batch = True

    def on_train_batch_end(self, *args) -> None:
        self.in_batch = False

    def hook(self, net, inputs, output) -> None:
        if net.training and self.in_batch:
            self.forward += len(inputs[0])
            self.backward += len(inputs[0]) * (
                torch.is_grad_enabled() and torch._C._current_graph_task_id() == -1
            )


def fit(module, steps: int, **trainer_options) -> None:
    cpu_trainer(max_steps=steps, **trainer_options).fit(module, datamodule=tiny_data(batch_size=BATCH))


# Every conf/loss option, and CDL on a subset of the items and every other step. Expected rows per run of
# 3 steps where an analytic count is simple: the MSE and ITD (1 point) send each item once; CDL on 3
# items with 16 shared points sends 2 x 3 x 16 rows (log p and log p_zeta) at steps 0 and 2.
CASES = {
    "mse": ([], 3 * BATCH),
    "mse_sum": ([], 3 * BATCH),
    "itd": ([], 3 * BATCH),
    "edm": ([], 3 * BATCH),
    "mse_cdl": ([], None),
    "itd_cdl": ([], None),
    "itd_cdl_paper": ([], None),
    "itd_cdl samples=3 every 2": (
        ["loss.cdl.samples=3", "loss.cdl.every_n_steps=2"],
        3 * BATCH + 2 * (2 * 3 * 16),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_counted_rows_are_the_rows_the_network_saw(case, tmp_path):
    overrides, expected = CASES[case]
    loss = case.split()[0]
    cfg = compose_config([f"loss={loss}", "debug=smoke", f"data.batch_size={BATCH}", *overrides], tmp_path)
    module = build_module(cfg)
    seen = NetworkRows(module.net)
    fit(module, steps=3, callbacks=[seen])
    cost = module.cost_this_run
    assert (cost.rows_forward, cost.rows_backward) == (seen.forward, seen.backward) != (0, 0)
    assert cost.rows_backward == cost.rows_forward  # nothing re-run, everything back-propagated
    assert cost.steps == 3 and module.training_cost == cost  # from scratch: nothing before this run
    if expected is not None:
        assert cost.rows_forward == expected


def test_a_forward_rerun_by_activation_checkpointing_is_counted_as_forward_only():
    net = torch.nn.Linear(3, 3)
    cost = TrainingCost()
    counted = CountedEps(lambda z, a: net(z) * a[:, None], cost, scale=2)  # as on 2 ranks
    z, a = torch.randn(5, 3), torch.ones(5)
    checkpoint(counted, z, a, use_reentrant=False).sum().backward()  # forward, then a re-run in backward
    assert (cost.rows_forward, cost.rows_backward) == (2 * 2 * 5, 2 * 5)
    with torch.no_grad():
        counted(z, a)
    assert (cost.rows_forward, cost.rows_backward) == (3 * 2 * 5, 2 * 5)


class SleepingMSE(DenoisingMSE):
    """The MSE, 0.1 s slower per training call: time spent in the step that the clock must see."""

    def __call__(self, eps_fn, x, generator=None, reference=None):
        if torch.is_grad_enabled():
            time.sleep(0.1)
        return super().__call__(eps_fn, x, generator, reference)


class SlowAfterSteps(L.Callback):
    """0.5 s after each step (as a checkpoint or a sample evaluation) and after each validation."""

    def on_train_batch_end(self, *args) -> None:
        time.sleep(0.5)

    def on_validation_end(self, *args) -> None:
        time.sleep(0.5)


def test_the_seconds_are_those_of_the_training_steps_alone():
    module = tiny_module({"mse": SleepingMSE()})
    fit(module, steps=3, callbacks=[SlowAfterSteps()], limit_val_batches=1, val_check_interval=1)
    # 3 x 0.1 s inside the steps; the 3 x 0.5 s after them and the validations' 0.5 s are not training
    assert 0.3 <= module.cost_this_run.seconds < 0.8


def test_the_cost_travels_in_checkpoints_and_an_old_checkpoint_counts_as_zero(tmp_path):
    module = tiny_module()
    fit(module, steps=2)
    saved = {"global_step": 2}
    module.on_save_checkpoint(saved)
    assert saved[CHECKPOINT_KEY] == {**module.cost_this_run.counters(), "uncounted_steps": 0}

    resumed = tiny_module()
    resumed.on_load_checkpoint({"state_dict": {}, **saved})
    this_run = TrainingCost(seconds=1.5, steps=3, rows_forward=24, rows_backward=24)
    block = summary_block(resumed.cost_base, this_run)
    assert block["steps"] == 5 and block["rows_forward"] == 2 * BATCH + 24
    assert block["seconds"] == pytest.approx(module.cost_this_run.seconds + 1.5)
    assert block["rows_per_step"] == pytest.approx(2 * (2 * BATCH + 24) / 5)
    assert block["this_run"] == this_run.counters() and block["uncounted_steps"] == 0

    old = TrainingCost.from_checkpoint({"global_step": 400})  # written before costs were recorded
    block = summary_block(old, this_run)
    assert block["uncounted_steps"] == 400 and block["steps"] == 3 and block["seconds"] == 1.5
