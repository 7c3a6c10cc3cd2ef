"""The exact-error measure: 0 for the exact denoiser, the known amount for a known perturbation, every
Picard query recorded, and the Figure-1 heat map from the same numbers."""

import math

import pytest
import torch
from PIL import Image

from ctdm.data.toy import eight_gaussians, gauss1d_two_mode
from ctdm.diagnostics import QueryRecorder, denoiser_error, error_heatmap, measure_ood_error
from ctdm.diffusion import DDPMSchedule
from ctdm.samplers import DDPMSampler, ParallelSampler


def _samplers():
    base = DDPMSampler(steps=40, schedule=DDPMSchedule())
    return {"ddpm": base, "para_ddpm": ParallelSampler(base=base, window=None, tolerance=0.1, name="para")}


@pytest.mark.parametrize("sampler", ["ddpm", "para_ddpm"])
@pytest.mark.parametrize("law", [gauss1d_two_mode(), eight_gaussians()], ids=["1d", "8g"])
def test_exact_denoiser_has_zero_error(law, sampler):
    result = measure_ood_error(law.eps, law, _samplers()[sampler], num_samples=64)
    assert result["error_on_paths"] == 0 and result["error_at_queries"] == 0
    assert result["queries"] >= 64 * 40 if sampler == "ddpm" else result["queries"] > 64


def test_known_perturbation_gives_its_squared_size():
    """eps* + c h(z, a) with h = (1, ..., 1) * (1 + a^2 / 10): the error at every state is
    c^2 d (1 + a^2/10)^2, so both means are c^2 times a known average and grow as c^2."""
    law = eight_gaussians()
    sampler = _samplers()["para_ddpm"]
    results = {}
    for c in (0.0, 0.1, 0.3):
        bumped = lambda z, a, c=c: law.eps(z, a) + c * (1 + a[:, None] ** 2 / 10).to(z.dtype)
        results[c] = measure_ood_error(bumped, law, sampler, num_samples=32, seed=1)
        recorder = QueryRecorder(bumped)  # the levels this sampler run queried (passes depend on c)
        sampler(recorder, (2,), (1 << 32) + torch.arange(32))
        z, a = recorder.states()
        expected = (c**2 * 2 * (1 + a.double() ** 2 / 10) ** 2).mean()
        assert results[c]["queries"] == len(a)
        assert results[c]["error_at_queries"] == pytest.approx(float(expected), rel=1e-4, abs=1e-12)
        assert results[c]["error_on_paths"] == pytest.approx(float(expected), rel=1e-4, abs=1e-12)
    assert results[0.0]["error_at_queries"] == 0
    assert results[0.3]["error_at_queries"] > results[0.1]["error_at_queries"] > 0


def test_off_path_perturbation_shows_at_queries_only():
    """An error placed where the data's noised paths never go (between the 1-D modes, at high log-SNR):
    on-path states barely see it; the ratio says where the error lives."""
    law = gauss1d_two_mode()
    off_path = lambda z, a: ((z.abs() < 1.5) & (a[:, None] > 2)).to(z.dtype)
    z = torch.tensor([[0.0], [5.0], [0.0]])
    a = torch.tensor([4.0, 4.0, -2.0])
    err = denoiser_error(lambda z, a: law.eps(z, a) + off_path(z, a), law.eps, z, a)
    assert err.tolist() == [1.0, 0.0, 0.0]


def test_recorder_sees_every_picard_pass():
    law = gauss1d_two_mode()
    sampler = _samplers()["para_ddpm"]
    recorder = QueryRecorder(law.eps)
    _, stats = sampler(recorder, (1,), torch.arange(16))
    z, a = recorder.states()
    assert recorder.calls == stats.passes  # DDPM: one batched call per Picard pass
    assert len(z) == len(a) == round(stats.nfe * 16)  # every queried state of every sample


def test_heatmap_png_is_the_error_grid(tmp_path):
    law = gauss1d_two_mode()
    bumped = lambda z, a: law.eps(z, a) + 0.5 * torch.tanh(z)  # error 0.25 tanh(z)^2, whatever a is
    path, grid = error_heatmap(bumped, law, tmp_path / "fig1.png", resolution=40, z_range=(-3.0, 3.0))
    zs = torch.linspace(-3, 3, 40, dtype=torch.float64)
    expected = (0.25 * torch.tanh(zs.float()).double() ** 2)[:, None].expand(40, 40)
    torch.testing.assert_close(grid, expected, rtol=1e-5, atol=1e-7)
    with Image.open(path) as image:
        assert image.size[0] > 400 and image.size[1] > 300
    with pytest.raises(ValueError, match="1-D"):
        error_heatmap(law.eps, eight_gaussians(), tmp_path / "no.png")
    assert math.isfinite(float(grid.sum()))
