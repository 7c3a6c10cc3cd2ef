"""DiffusionModule: the likelihood reference from the data, in checkpoints, and CDL training."""

import math

import pytest
import torch
from conftest import cpu_trainer, tiny_data, tiny_module

from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.diffusion import LikelihoodSettings, Reference
from ctdm.losses import ContrastiveDiffusionLoss
from ctdm.train import train


def _fit(model, dm, tmp_path, steps=3, ckpt_path=None):
    trainer = cpu_trainer(
        tmp_path, max_steps=steps, limit_val_batches=1, val_check_interval=steps, check_val_every_n_epoch=None
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_reference_comes_from_the_whole_training_set_and_travels_in_checkpoints(tmp_path):
    dm = tiny_data(train_size=4000, val_size=200, batch_size=64)
    model = tiny_module()
    trainer = _fit(model, dm, tmp_path)
    torch.testing.assert_close(model.data_var, dm.x_train.var(0))
    assert not torch.allclose(model.data_var, dm.x_train[:64].var(0))  # not the first batch
    log_var = dm.x_train.var(0).double().log()
    assert model.reference.loc == pytest.approx(-float(log_var.mean()), rel=1e-5)
    assert model.reference.scale == pytest.approx(
        3 * math.sqrt(1 + 3 / math.pi**2 * float(log_var.var(unbiased=False)))
    )
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["state_dict"]["data_var"]
    torch.testing.assert_close(saved, model.data_var)

    # A resumed run restores the stored variances, even if the data it now sees differ.
    other = ToyDataModule(eight_gaussians(radius=2.0), [2], train_size=4000, val_size=200, batch_size=64)
    resumed = tiny_module()
    _fit(resumed, other, tmp_path, steps=4, ckpt_path=path)
    torch.testing.assert_close(resumed.data_var, model.data_var)


@pytest.mark.parametrize("as_settings", [False, True], ids=["mapping", "settings"])
def test_reference_is_overridable(as_settings):
    settings = {"loc": 1.5, "scale": 2.0, "clip": 2.5, "ref_var": 0.5}
    model = tiny_module(likelihood=LikelihoodSettings(**settings) if as_settings else settings)
    model.set_data_var(torch.tensor([1.0, 4.0]))
    ref = model.reference
    assert (ref.loc, ref.scale, ref.clip) == (1.5, 2.0, 2.5)
    torch.testing.assert_close(ref.log_var, torch.full((2,), 0.5).log())


def test_the_likelihood_defaults_are_the_configs(make_cfg):
    """One place: the composed diffusion.likelihood node is LikelihoodSettings's defaults, and a module
    built without settings has the same."""
    composed = make_cfg().diffusion.likelihood
    assert dict(composed) == vars(LikelihoodSettings()) == vars(tiny_module().likelihood)
    assert vars(LikelihoodSettings()) == {
        "loc": None,
        "scale": None,
        "clip": 3.0,
        "ref_var": None,
        "val_points": 16,
    }
    assert (
        LikelihoodSettings().clip == Reference.clip
    )  # the estimator's own default (settings.py imports no torch)


def test_unknown_likelihood_key_is_refused():
    with pytest.raises(ValueError, match="Unknown diffusion.likelihood keys \\['points'\\]"):
        tiny_module(likelihood={"points": 3})


def test_cdl_every_n_steps_skips_the_term():
    model = tiny_module()
    model.loss_terms["cdl"] = ContrastiveDiffusionLoss(points=2, every_n_steps=3)
    model.set_data_var(torch.ones(2))
    x = eight_gaussians().sample(8)
    assert "cdl" in model.objective(x, step=3)[1] and "cdl" not in model.objective(x, step=4)[1]


@pytest.mark.slow
def test_contrastive_training_makes_a_noise_classifier(make_cfg):
    cfg = make_cfg(
        [
            "loss=itd_cdl",  # CDL on every step (loss=contrastive: every 16th)
            "loss.cdl.weight=1",  # strong enough to train the classifier in 600 steps
            "loss.cdl.samples=64",
            "loss.cdl.points=4",
            "trainer.max_steps=600",
            "trainer.val_check_interval=600",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "eval.num_samples=200",
            "sampler.steps=100",
        ]
    )
    metrics = train(cfg)["metrics"]
    # At initialisation eps_hat = 0, the logit is 0 and accuracy is chance; the exact denoiser of
    # this law reaches about 0.70 with 16 points.
    assert metrics["val/cdl_acc"] > 0.58, metrics
    assert metrics["val/cdl"] < 0.69  # below log 2, the loss of a chance-level classifier
    assert 1.3 < metrics["val/nll"] < 2.5  # exact: 1.42 nats
