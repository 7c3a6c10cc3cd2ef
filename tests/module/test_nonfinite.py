"""NaN guard: a non-finite loss stops the run naming its step and term, or is skipped and counted."""

import lightning as L
import pytest
import torch
from conftest import cpu_trainer, tiny_data, tiny_module
from helpers import NaNAtCall

from ctdm.objective import NonFiniteLossError, TooManySkippedSteps


class Weights(L.Callback):
    def __init__(self):
        self.after_step = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step[batch_idx] = torch.cat([p.detach().flatten() for p in pl_module.parameters()]).clone()


def _fit(tmp_path, nan_call: int, steps: int, **module_kwargs):
    dm = tiny_data(train_size=512, val_size=16, batch_size=16)
    model = tiny_module({"mse": NaNAtCall(nan_call)}, width=8, lr=0.01, **module_kwargs)
    weights = Weights()
    trainer = cpu_trainer(tmp_path, max_steps=steps, callbacks=[weights])
    trainer.fit(model, datamodule=dm)
    return trainer, model, weights


def test_a_nan_stops_the_run_at_its_step_naming_the_term(tmp_path):
    with pytest.raises(NonFiniteLossError) as caught:
        _fit(tmp_path, nan_call=3, steps=10)
    error = caught.value
    assert isinstance(error, ValueError)  # ctdm.train renders ValueErrors as one paragraph
    assert error.step == 3 and list(error.terms) == ["mse"]
    assert "step 3" in str(error) and "mse = nan" in str(error) and "model.skip_nonfinite=true" in str(error)


def test_skip_nonfinite_skips_the_update_and_counts_it(tmp_path):
    trainer, model, weights = _fit(
        tmp_path, nan_call=3, steps=6, skip_nonfinite=True, max_skipped_fraction=0.2
    )
    assert model.skipped_steps == 1
    assert trainer.callback_metrics["train/skipped_steps"] == 1
    torch.testing.assert_close(weights.after_step[3], weights.after_step[2], rtol=0, atol=0)  # no update
    assert not torch.equal(weights.after_step[4], weights.after_step[3])  # training goes on
    assert all(torch.isfinite(w).all() for w in weights.after_step.values())
    adam_steps = {float(s["step"]) for s in trainer.optimizers[0].state_dict()["state"].values()}
    assert adam_steps == {len(weights.after_step) - 1}  # Adam counted only the real updates


def test_more_skipped_steps_than_allowed_stop_the_run(tmp_path):
    # 1 skip in 6 steps is more than 0.1 x 6 = 0.6 allows: the run stops at that step, naming the key
    with pytest.raises(TooManySkippedSteps) as caught:
        _fit(tmp_path, nan_call=3, steps=6, skip_nonfinite=True, max_skipped_fraction=0.1)
    assert isinstance(caught.value, ValueError) and "model.max_skipped_fraction=0.1" in str(caught.value)
    assert "step 3" in str(caught.value)
