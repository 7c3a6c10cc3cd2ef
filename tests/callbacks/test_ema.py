"""EMA of the weights: the average itself, and that validation, sample evaluation and checkpoints see
the right weights whatever the order of the callbacks."""

import lightning as L
import pytest
import torch
from conftest import cpu_trainer, tiny_data, tiny_module

from ctdm.callbacks import EMA, averaged_weights
from ctdm.callbacks.ema import ema_update

STEPS = 6


def _weights(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


class Recorder(L.Callback):
    """What the module holds at each hook, and inside `averaged_weights`."""

    def __init__(self):
        self.raw, self.in_context, self.validation, self.at_train_end = [], [], [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw.append(_weights(pl_module))
        with averaged_weights(trainer, pl_module):
            self.in_context.append(_weights(pl_module))
        assert torch.equal(_weights(pl_module), self.raw[-1])  # swapped back

    def on_validation_epoch_end(self, trainer, pl_module):
        self.validation.append(_weights(pl_module))
        trainer.save_checkpoint(trainer.default_root_dir + f"/in_validation_{trainer.global_step}.ckpt")

    def on_train_end(self, trainer, pl_module):
        with averaged_weights(trainer, pl_module):
            self.at_train_end = _weights(pl_module)


def _fit(tmp_path, ema, recorder, ema_first: bool):
    torch.manual_seed(0)
    dm = tiny_data(train_size=256, val_size=32, batch_size=32)
    model = tiny_module(lr=0.05)
    model.set_data_var(dm.data_var)
    trainer = cpu_trainer(
        str(tmp_path),
        max_steps=STEPS,
        callbacks=[ema, recorder] if ema_first else [recorder, ema],
        limit_val_batches=1,
        val_check_interval=3,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    return model


@pytest.mark.parametrize("ema_first", [False, True])
def test_every_evaluation_sees_the_average_of_the_steps_so_far(tmp_path, ema_first):
    recorder = Recorder()
    model = _fit(tmp_path, EMA(decay=0.5, warmup=False), recorder, ema_first)
    expected, average = [], None
    for w in recorder.raw:  # the first update copies, then average <- 0.5 average + 0.5 w
        average = w if average is None else 0.5 * average + 0.5 * w
        expected.append(average)
    assert not torch.allclose(expected[-1], recorder.raw[-1])  # the average is not the raw weights
    # Periodic sample evaluation: this step's update included, though EMA's own hook runs later.
    for got, want in zip(recorder.in_context, expected, strict=True):
        torch.testing.assert_close(got, want)
    # Validation at steps 3 and 6, whether its epoch-end hooks run before or after EMA's.
    torch.testing.assert_close(recorder.validation[0], expected[2])
    torch.testing.assert_close(recorder.validation[1], expected[5])
    # The final evaluation and the module after fit hold the average.
    torch.testing.assert_close(recorder.at_train_end, expected[-1])
    torch.testing.assert_close(_weights(model), expected[-1])

    # A checkpoint written while validation holds the average keeps the roles: state_dict is the
    # average (what sampling loads), current_model_state the raw weights (what a resume trains on).
    ckpt = torch.load(tmp_path / "in_validation_3.ckpt", weights_only=False)
    names = [n for n, _ in model.named_parameters()]
    saved_average = torch.cat([ckpt["state_dict"][n].flatten() for n in names])
    saved_raw = torch.cat([ckpt["current_model_state"][n].flatten() for n in names])
    torch.testing.assert_close(saved_average, expected[2])
    torch.testing.assert_close(saved_raw, recorder.raw[2])


def test_warmup_decay_and_update_rule():
    avg, cur = torch.tensor([1.0]), torch.tensor([3.0])
    # n = 0 updates so far: d = 1/10; late: d = decay.
    assert ema_update(avg, cur, torch.tensor(0), decay=0.999, warmup=True) == pytest.approx(1 + 0.9 * 2)
    assert ema_update(avg, cur, torch.tensor(10**6), decay=0.9, warmup=True) == pytest.approx(1 + 0.1 * 2)
    assert ema_update(avg, cur, torch.tensor(0), decay=0.9, warmup=False) == pytest.approx(1 + 0.1 * 2)


def test_empty_buffer_at_fit_start_is_refused(tmp_path):
    dm = tiny_data(train_size=64, val_size=16, batch_size=16)
    model = tiny_module(width=8)
    trainer = cpu_trainer(tmp_path, max_steps=1, callbacks=[EMA()])
    with pytest.raises(ValueError, match=r"data_var.*set_data_var"):
        trainer.fit(model, datamodule=dm)


@pytest.mark.parametrize("bad", [{"decay": 1.0}, {"decay": 0}, {"every_n_steps": 0}])
def test_bad_options(bad):
    with pytest.raises(ValueError, match="callbacks.ema"):
        EMA(**bad)
