"""FID and KID with the small deterministic extractor: oracles, hand-written references, caching, bad input.

The real Inception network is exercised in test_inception.py (slow).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.datasets import load_digits

from ctdm.metrics import ImageMetrics, RandomConvFeatures, features, real_stats_file, weights
from ctdm.metrics.convert_inception import main as convert_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 1,797 8x8 digits in [-1, 1], [N, 1, 8, 8], in a fixed random order."""
    x = torch.from_numpy(load_digits().images).float()[:, None] / 8 - 1
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]


def noise_like(x, seed=1):
    return torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def score(real, fake, extractor=None, **kwargs):
    m = ImageMetrics(extractor or RandomConvFeatures(), **kwargs)
    m.update_real(real)
    m.update_fake(fake)
    return m.compute()


def frechet_reference(f_real: np.ndarray, f_fake: np.ndarray) -> float:
    """The Frechet distance of two feature sets, written from the formula with scipy's sqrtm."""
    mu1, mu2 = f_real.mean(0), f_fake.mean(0)
    s1, s2 = np.cov(f_real, rowvar=False), np.cov(f_fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def kid_reference(f_real: np.ndarray, f_fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 on whole, equal-size sets."""
    d, m = f_real.shape[1], len(f_real)
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(f_real, f_real), k(f_fake, f_fake), k(f_real, f_fake)
    off = lambda kk: (kk.sum() - np.trace(kk)) / (m * (m - 1))
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_same_law_near_zero_noise_large(digits):
    a, b = digits[:800], digits[800:1600]
    same, noise = score(a, b), score(a, noise_like(b))
    assert abs(score(a, a)["fid"]) < 1e-8 * noise["fid"]  # identical sets: FID is 0 up to rounding
    assert 0 <= same["fid"] < 0.02 * noise["fid"]
    assert abs(same["kid"]) < 0.01 * noise["kid"]
    # KID's spread needs subsets that differ: 200 of the 800 (whole sets give one subset, std 0). The
    # noise's KID stands far above its spread; the same law's sits within it.
    noise, same = score(a, noise_like(b), kid_subset_size=200), score(a, b, kid_subset_size=200)
    assert noise["kid_std"] > 0 and noise["kid"] > 20 * noise["kid_std"]
    assert 0 < same["kid_std"] and abs(same["kid"]) < 3 * same["kid_std"]


def test_fid_and_kid_agree_with_hand_written_formulas(digits):
    extractor = RandomConvFeatures(num_features=16, seed=3)
    real, fake = digits[:300], noise_like(digits[:300]) * 0.5 + digits[300:600] * 0.5
    out = score(real, fake, extractor)
    with torch.no_grad():
        f_real, f_fake = extractor(real).double().numpy(), extractor(fake).double().numpy()
    assert out["fid"] == pytest.approx(frechet_reference(f_real, f_fake), rel=1e-6)
    assert out["kid"] == pytest.approx(kid_reference(f_real, f_fake), rel=1e-6)
    assert out["kid_std"] == 0.0  # whole sets: one subset


def test_unequal_counts_and_batches(digits):
    """Batched updates accumulate to the one-shot numbers; unequal counts use clipped KID subsets."""
    real, fake = digits[:200], digits[200:330]
    one = score(real, fake, kid_subsets=10)
    m = ImageMetrics(RandomConvFeatures(), kid_subsets=10)
    for chunk in real.split(64):
        m.update_real(chunk)
    for chunk in fake.split(50):
        m.update_fake(chunk)
    batched = m.compute()
    assert batched["fid"] == pytest.approx(one["fid"], rel=1e-9)
    assert batched["kid"] == pytest.approx(one["kid"], rel=1e-9)  # same seeded subsets
    assert batched["kid_std"] > 0  # 130 of 200 real per subset: the subsets differ


def test_small_counts_work(digits):
    out = score(digits[:5], digits[5:8])
    assert np.isfinite([out["fid"], out["kid"], out["kid_std"]]).all()


def test_reset_keeps_the_real_side(digits):
    m = ImageMetrics(RandomConvFeatures())
    m.update_real(digits[:100])
    m.update_fake(noise_like(digits[:100]))
    first = m.compute()
    m.reset()
    m.update_fake(digits[100:200])
    second = m.compute()
    assert second == score(digits[:100], digits[100:200])
    assert second["fid"] < first["fid"]


def test_grey_is_repeated_to_rgb(digits):
    ex = RandomConvFeatures()
    x = digits[:4]
    assert torch.equal(ex(x), ex(x.repeat(1, 3, 1, 1)))


def test_real_features_cached_on_disk(digits, tmp_path):
    path = real_stats_file(tmp_path, "digits", "train", 8, RandomConvFeatures().name, 400)
    assert path.name == "digits_train_8px_randconv64-seed0-32px_n400.npz"
    m = ImageMetrics(RandomConvFeatures())
    assert m.load_or_compute_real(digits[:400].split(100), path) is False
    m.update_fake(digits[400:700])
    computed = m.compute()
    with np.load(path) as data:
        assert data["features"].shape == (400, 64) and data["sigma"].shape == (64, 64)

    def no_images():
        raise AssertionError("the cache should have been used")
        yield

    cached = ImageMetrics(RandomConvFeatures())
    assert cached.load_or_compute_real(no_images(), path) is True
    cached.update_fake(digits[400:700])
    assert cached.compute() == pytest.approx(computed, rel=1e-6)


def test_ref_stats_give_the_same_fid_and_no_kid(digits, tmp_path):
    ex = RandomConvFeatures()
    f = ex(digits[:500]).double().numpy()
    np.savez(tmp_path / "ref.npz", mu=f.mean(0), sigma=np.cov(f, rowvar=False))
    m = ImageMetrics(ex)
    m.load_ref_stats(tmp_path / "ref.npz")
    m.update_fake(digits[500:800])
    out = m.compute()
    assert set(out) == {"fid"}  # KID needs the real features themselves
    assert out["fid"] == pytest.approx(score(digits[:500], digits[500:800])["fid"], rel=1e-8)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"mu": np.zeros(64)}, r"no key 'sigma'.*expected mu of shape \(64,\) and sigma of shape \(64, 64\)"),
        ({"mu": np.zeros(63), "sigma": np.eye(64)}, r"'mu' has shape \(63,\), expected \(64,\)"),
        (
            {"mu": np.zeros(64), "sigma": np.eye(2048)},
            r"'sigma' has shape \(2048, 2048\), expected \(64, 64\)",
        ),
        ({"mu": np.full(64, np.nan), "sigma": np.eye(64)}, "non-finite"),
    ],
)
def test_malformed_ref_stats(tmp_path, arrays, match):
    path = tmp_path / "ref.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        ImageMetrics(RandomConvFeatures()).load_ref_stats(path)
    assert str(path) in str(err.value)


def test_missing_or_unreadable_ref_stats(tmp_path):
    m = ImageMetrics(RandomConvFeatures())
    with pytest.raises(ValueError, match="is not a file"):
        m.load_ref_stats(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(ValueError, match="not a readable .npz"):
        m.load_ref_stats(tmp_path / "text.npz")


def test_fewer_than_two_samples(digits):
    m = ImageMetrics(RandomConvFeatures())
    m.update_real(digits[:10])
    m.update_fake(digits[10:11])
    with pytest.raises(ValueError, match="FID needs at least 2 real and 2 generated images.*1 generated"):
        m.compute()


def test_unknown_extractor():
    with pytest.raises(ValueError, match=r"Unknown FID feature extractor 'vgg'.*'inception', 'random'"):
        ImageMetrics("vgg")
    with pytest.raises(ValueError, match="nn.Module with `num_features` and `name`"):
        ImageMetrics(torch.nn.Identity())


def test_bad_images():
    m = ImageMetrics(RandomConvFeatures())
    with pytest.raises(ValueError, match=r"C = 1 or 3.*\(2, 2, 8, 8\)"):
        m.update_fake(torch.zeros(2, 2, 8, 8))


def test_no_inception_weights_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(ValueError) as err:
        features.InceptionV3()
    text = str(err.value)
    assert "eval.fid.weights_path=<file>" in text and "python -m ctdm.metrics.convert_inception" in text
    assert "eval/fid/extractor=torchscript" in text and "_target_" not in text  # README's own syntax
    assert str(tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth") in text
    with pytest.raises(ValueError, match="'/nowhere.pth' is not a file"):
        features.InceptionV3(weights_path="/nowhere.pth")


def test_offline_probe_does_not_hang():
    import time

    start = time.perf_counter()
    weights._reachable("https://unresolvable.invalid/x", timeout=1.0)
    assert time.perf_counter() - start < 2.0


def test_weights_from_the_hub_cache_are_found(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert weights.resolve_inception_weights() == cached


def test_converter_reports_a_missing_file(capsys):
    assert convert_main(["/tmp/out.pth", "--torchscript", "/nowhere/default_1.pt"]) == 1


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, torch.distributed as dist
    from sklearn.datasets import load_digits
    from ctdm.metrics import ImageMetrics, RandomConvFeatures
    rank, world, init, cache = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    x = torch.from_numpy(load_digits().images).float()[:, None] / 8 - 1
    real, fake = x[:300], x[300:500]
    m = ImageMetrics(RandomConvFeatures(), kid_subset_size=150, kid_subsets=5)
    m.load_or_compute_real(real[rank::world].split(64), cache)  # each rank its share, uneven batches
    m.update_fake(fake[rank::world][: 97 if rank else None])  # ranks with different counts
    first = m.compute()
    cached = ImageMetrics(RandomConvFeatures(), kid_subset_size=150, kid_subsets=5)
    cached.load_real(cache)  # every rank loads it; it must count once
    cached.update_fake(fake[rank::world][: 97 if rank else None])
    print(json.dumps({"rank": rank, "computed": first, "cached": cached.compute()}))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_ranks_give_the_single_process_numbers(tmp_path, digits):
    """Two gloo ranks, each with its share: both ranks report the numbers of one process on all images."""
    import json

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), "2", init, str(tmp_path / "real.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for r in range(2)
    ]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    x = torch.from_numpy(load_digits().images).float()[:, None] / 8 - 1
    fake = torch.cat([x[300:500][0::2], x[300:500][1::2][:97]])
    single = score(x[:300], fake, kid_subset_size=150, kid_subsets=5)
    for r in results:
        assert r["computed"]["fid"] == pytest.approx(single["fid"], rel=1e-6)
        assert r["cached"]["fid"] == pytest.approx(single["fid"], rel=1e-6)
        # KID subsets index the gathered order, which differs from one process: compare loosely
        for key in ("computed", "cached"):
            assert r[key]["kid"] == pytest.approx(single["kid"], abs=4 * single["kid_std"] + 1e-6)
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["computed"] == results[1]["computed"]  # every rank computes the same numbers
    assert results[0]["cached"] == results[1]["cached"]
