"""The log-SNR channel: round trip, variance preservation, and EDM's sigma as a map of log-SNR."""

import pytest
import torch

from ctdm.diffusion import logsnr_to_sigma, noise_data, predict_x0, sigma_to_logsnr
from ctdm.diffusion.channel import append_dims, channel_scales


def test_channel_round_trip_and_variance_preserving():
    x = torch.randn(4096, 3) * 2.0
    eps = torch.randn_like(x)
    logsnr = torch.full((4096,), 0.7)
    z = noise_data(x, logsnr, eps)
    torch.testing.assert_close(predict_x0(z, logsnr, eps), x, atol=1e-5, rtol=1e-5)
    # Var z = s(a) Var x + s(-a)
    expected = torch.sigmoid(torch.tensor(0.7)) * 4.0 + torch.sigmoid(torch.tensor(-0.7))
    assert z.var(0).mean() == pytest.approx(float(expected), rel=0.05)


def test_sigma_logsnr_maps_round_trip():
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    torch.testing.assert_close(logsnr_to_sigma(sigma_to_logsnr(sigma)), sigma)
    # x_edm = z / scale_x carries noise scale_eps / scale_x = exp(-a / 2), EDM's sigma
    a = torch.tensor([-3.0, 0.0, 5.0], dtype=torch.float64)
    scale_x, scale_eps = channel_scales(a, a)
    torch.testing.assert_close(scale_eps / scale_x, logsnr_to_sigma(a))


def test_append_dims_broadcasts_one_value_per_row():
    v = torch.arange(3.0)
    assert append_dims(v, 4).shape == (3, 1, 1, 1)
    torch.testing.assert_close(
        append_dims(v, 4) * torch.ones(3, 2, 2, 2), v[:, None, None, None].expand(3, 2, 2, 2)
    )
