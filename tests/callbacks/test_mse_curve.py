"""The denoising-MSE callback draws the exact law's curve for mixtures, on the model's points and noise."""

from types import SimpleNamespace

import torch
from PIL import Image

from ctdm.callbacks import DenoisingMSECurve
from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.diffusion import Reference


def _run_callback(tmp_path, eps_fn, law, num_points=256, num_levels=24):
    """One validation end of the callback, with a trainer/module of just the attributes it reads."""
    datamodule = ToyDataModule(law, shape=[2], train_size=512, val_size=num_points)
    datamodule.setup()
    reference = Reference(log_var=datamodule.data_var.log(), loc=0.0, scale=3.0, clip=3.0)
    module = SimpleNamespace(eps=eps_fn, reference=reference, device=torch.device("cpu"))
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, datamodule=datamodule, loggers=[], global_step=7
    )
    callback = DenoisingMSECurve(num_points=num_points, num_levels=num_levels, output_dir=str(tmp_path))
    callback.on_validation_epoch_end(trainer, module)
    return callback, trainer, module


def test_exact_law_as_model_gives_the_exact_curve(tmp_path):
    law = eight_gaussians()
    callback, *_ = _run_callback(tmp_path, law.eps, law)
    curves = callback.last_curves
    assert set(curves) == {"levels", "model", "reference", "exact"}
    torch.testing.assert_close(curves["model"], curves["exact"], rtol=0, atol=0)  # same points, noise, levels
    # eps MMSE goes from 0 (low SNR: z is the noise) to d = 2 (high SNR: z is the data). The mixture's
    # optimum matches the reference Gaussian's mmse_G (the best linear denoiser) at low SNR and beats
    # it clearly at log-SNR 1.5 to 5, where z tells the modes apart but not the point within a mode.
    levels, exact, gaussian = curves["levels"], curves["exact"], curves["reference"]
    assert exact[0] < 1e-3 and abs(exact[-1] - 2) < 0.2
    torch.testing.assert_close(exact[levels < -2], gaussian[levels < -2], rtol=0.05, atol=1e-3)
    separable = (levels > 1.5) & (levels < 5)
    assert (exact[separable] < 0.85 * gaussian[separable]).all()
    assert callback.last_path == tmp_path / "plots" / "mse_logsnr.png"
    assert Image.open(callback.last_path).size == (550, 400)


def test_a_worse_model_sits_above_the_exact_curve(tmp_path):
    law = eight_gaussians()
    # The best linear denoiser for unit-variance data: eps_hat = sigma z (mmse_G in expectation).
    callback, *_ = _run_callback(tmp_path, lambda z, a: torch.sigmoid(-a)[:, None].sqrt() * z, law)
    curves = callback.last_curves
    separable = (curves["levels"] > 1) & (curves["levels"] < 5)
    assert (curves["model"][separable] > curves["exact"][separable] + 0.2).all()
    torch.testing.assert_close(curves["model"], curves["reference"], rtol=0.1, atol=0.02)


def test_no_exact_curve_without_a_law(tmp_path):
    law = eight_gaussians()
    datamodule_law = SimpleNamespace(dim=2, sample=law.sample)  # samples only: ToyDataModule.law is None
    callback, *_ = _run_callback(tmp_path, law.eps, datamodule_law)
    assert "exact" not in callback.last_curves and callback.last_path.is_file()


def test_the_exact_curve_is_computed_once_per_run(tmp_path):
    law = eight_gaussians()
    calls = []

    def counted_eps(z, a):
        calls.append(len(z))
        return law.eps(z, a)

    counting_law = SimpleNamespace(dim=2, sample=law.sample, log_prob=law.log_prob, eps=counted_eps)
    callback, trainer, module = _run_callback(tmp_path, law.eps, counting_law)
    first = callback.last_curves["exact"]
    assert sum(calls) == 256 * 24  # every point at every level, once
    trainer.global_step = 8
    callback.on_validation_epoch_end(trainer, module)
    assert sum(calls) == 256 * 24 and callback.last_curves["exact"] is first
