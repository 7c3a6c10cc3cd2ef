"""The toy DataModule: fixed seeded sets, global batch size, data variances."""

import pytest
import torch

from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.data.datamodule import per_rank_batch_size


def _dm(**kw):
    args = dict(law=eight_gaussians(), shape=[2], train_size=1000, val_size=200, batch_size=64)
    return ToyDataModule(**{**args, **kw})


def test_sets_are_deterministic_and_distinct():
    a, b = _dm(), _dm()
    a.setup(), b.setup()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    assert a.x_train.shape == (1000, 2) and a.x_val.shape == (200, 2)
    assert not torch.allclose(a.x_train[:200], a.x_val)
    c = _dm(train_seed=7)
    c.setup()
    assert not torch.equal(a.x_train, c.x_train)


def test_loaders_give_whole_batches():
    dm = _dm()
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 1000 // 64 and all(b.shape == (64, 2) for b in batches)
    val = torch.cat(list(dm.val_dataloader()))
    assert torch.equal(val, dm.x_val)  # validation is ordered and complete


def test_data_var_is_over_the_whole_training_set():
    dm = _dm()
    torch.testing.assert_close(dm.data_var, dm.x_train.var(0))
    torch.testing.assert_close(dm.data_var, torch.ones(2), atol=0.1, rtol=0)


def test_global_batch_divides_over_ranks():
    assert per_rank_batch_size(256, 4) == 64
    with pytest.raises(ValueError, match=r"data.batch_size=250 .* world size \(4 ranks\)"):
        per_rank_batch_size(250, 4)
    with pytest.raises(ValueError, match="data.batch_size"):
        per_rank_batch_size(0, 1)


def test_bad_shape_or_size_names_the_key():
    with pytest.raises(ValueError, match=r"data.shape=\[3\]"):
        _dm(shape=[3])
    with pytest.raises(ValueError, match="data.val_size"):
        _dm(val_size=0)
