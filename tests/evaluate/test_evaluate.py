"""`python -m ctdm.evaluate`: scores checkpoints of real (smoke) runs, 1 vs 2 ranks agree, the issue's
exact commands work, and bad input fails with one paragraph and no metrics.json."""

import json
import runpy
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from hydra.core.global_hydra import GlobalHydra

from ctdm.data import fake

pytestmark = pytest.mark.slow
ENV = {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}  # tiny nets on 2 cores: threads only contend


def train(folder, args):
    """A smoke training run in `folder`; returns its last checkpoint and summary."""
    out = folder / "train"
    result = run_cli([*args, "debug=smoke", "logger=csv", f"hydra.run.dir={out}"], cwd=folder, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "checkpoints" / "last.ckpt", json.loads((out / "summary.json").read_text())


def evaluate(folder, args, name="eval"):
    """`python -m ctdm.evaluate ARGS` into folder/name; returns (process, run folder)."""
    out = folder / name
    result = run_cli(
        [*args, "logger=csv", f"hydra.run.dir={out}"], cwd=folder, env=ENV, module="ctdm.evaluate"
    )
    return result, out


def metrics_of(result, out) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_d")
    return folder, *train(folder, [])  # the embedded default (eight Gaussians), smoke-sized


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return folder, *train(folder, ["data=digits"])


def test_two_d_checkpoint_with_the_parallel_sampler(two_d):
    folder, ckpt, summary = two_d
    result, out = evaluate(folder, [f"ckpt_path={ckpt}", "sampler=para_ddpm", "eval.num_samples=64"])
    metrics = metrics_of(result, out)
    assert np.isfinite(metrics["eval/para_ddpm/mmd"]) and metrics["eval/para_ddpm/num_samples"] == 64
    assert 1 <= metrics["eval/para_ddpm/passes"] < 1000 and metrics["global_step"] == 4
    # The checkpoint's weights and validation draws: the held-out loss is the training run's own.
    assert metrics["val/loss"] == pytest.approx(summary["metrics"]["val/loss"], rel=1e-6)
    samples = np.load(out / "samples_para_ddpm.npy")
    assert samples.shape == (64, 2) and np.isfinite(samples).all()
    assert (out / "plots" / "samples_para_ddpm_step000004.png").is_file()  # the checkpoint's step
    assert not list(out.rglob("summary.json"))
    # The checkpoint's training cost: a point on a cost curve, in the training run's own keys.
    for key in ("train/seconds", "train/steps", "train/rows_forward", "train/rows_backward"):
        assert metrics[key] == summary["metrics"][key], key
    assert metrics["train/steps"] == 4 and metrics["train/rows_forward"] > 0


def test_digits_checkpoint_scored_by_fid_and_kid(digits):
    folder, ckpt, _ = digits
    args = [f"ckpt_path={ckpt}", "eval/fid/extractor=random", "eval.num_samples=15", "eval.steps=10"]
    metrics = metrics_of(*evaluate(folder, args))
    assert np.isfinite(metrics["eval/ddpm/fid"]) and np.isfinite(metrics["eval/ddpm/kid"])
    assert metrics["eval/ddpm/num_samples"] == 15 and "eval/ddpm/mmd" not in metrics  # MMD: low-dim only
    assert np.load(folder / "eval" / "samples_ddpm.npy").shape == (15, 1, 8, 8)
    # Two CPU ranks (gloo): each draws its share of the same per-sample seeds (8 + 7), every index
    # exactly once, and the metric states sync: the same numbers.
    ddp = metrics_of(*evaluate(folder, [*args, "trainer=ddp_cpu"], name="eval_ddp"))
    assert ddp["eval/ddpm/num_samples"] == 15
    for key in ("eval/ddpm/fid", "eval/ddpm/kid", "eval/ddpm/nfe"):
        assert ddp[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-7), key
    samples_ddp = np.load(folder / "eval_ddp" / "samples_ddpm.npy")
    np.testing.assert_allclose(samples_ddp, np.load(folder / "eval" / "samples_ddpm.npy"), atol=1e-5)
    assert not list((folder / "eval_ddp").parent.glob("eval_ddp*/**/metrics.json"))[1:]  # one folder


def test_cifar10_command_with_the_real_inception(tmp_path, weights_file):
    """The issue's command: a CIFAR-10 smoke run (files in torchvision's layout at the stored data.root),
    scored by the standard FID Inception from a weights file."""
    fake.write_cifar10(tmp_path / "cifar")
    ckpt, _ = train(
        tmp_path, ["data=cifar10", f"data.root={tmp_path / 'cifar'}", "data.check_integrity=false"]
    )
    args = [
        f"ckpt_path={ckpt}",
        "eval.num_samples=12",
        "eval.steps=20",
        "eval.fid.real_count=16",  # a seeded subset of the 40 training images: Inception is 0.2 s an image
        f"eval.fid.weights_path={weights_file}",
    ]
    metrics = metrics_of(*evaluate(tmp_path, args))
    assert metrics["eval/ddpm/num_samples"] == 12
    assert np.isfinite(metrics["eval/ddpm/fid"]) and metrics["eval/ddpm/fid"] > 0
    cached = list((tmp_path / "data" / "fid_stats").glob("cifar10_train_32x32px_inception*_n16.npz"))
    assert len(cached) == 1  # the training set's features, computed once


# -- bad input ------------------------------------------------------------------------------------


def run_in_process(args, out, monkeypatch, capfd) -> tuple[int, str]:
    """`python -m ctdm.evaluate ARGS` in this process (the same argv through the same main)."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["ctdm.evaluate", *args, "logger=csv", f"hydra.run.dir={out}"])
    GlobalHydra.instance().clear()
    try:
        runpy.run_module("ctdm.evaluate", run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capfd.readouterr().err


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("bad")
    _, ckpt, _ = digits
    data = ckpt.read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 3])
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint.pop("ctdm_config")
    torch.save(checkpoint, folder / "no_config.ckpt")
    np.savez(folder / "no_sigma.npz", mu=np.zeros(64))
    np.savez(folder / "wrong_shape.npz", mu=np.zeros(64), sigma=np.zeros((3, 3)))
    (folder / "torch_home").mkdir()
    return folder, ckpt


BAD = [
    ("missing checkpoint", ["ckpt_path={files}/missing.ckpt"], ["missing.ckpt", "no such file"]),
    ("truncated checkpoint", ["ckpt_path={files}/truncated.ckpt"], ["truncated.ckpt", "truncated"]),
    ("config-less checkpoint", ["ckpt_path={files}/no_config.ckpt"], ["no_config.ckpt", "ctdm_config"]),
    # missing FID weights are found first, before the evaluation is built: a feature network that needs none
    (
        "fewer than 2 samples",
        ["ckpt_path={ckpt}", "eval/fid/extractor=random", "eval.num_samples=1"],
        ["num_samples", ">= 2", "1"],
    ),
    (
        "unknown extractor",
        ["ckpt_path={ckpt}", "eval.fid.extractor._target_=ctdm.metrics.features.NoSuchNet"],
        ["NoSuchNet"],
    ),
    (
        "no weights offline",
        ["ckpt_path={ckpt}", "eval.fid.weights_path=null"],
        ["eval.fid.weights_path", "hub"],
    ),
    (
        "ref_stats without sigma",
        ["ckpt_path={ckpt}", "eval/fid/extractor=random", "eval.fid.ref_stats={files}/no_sigma.npz"],
        ["no_sigma.npz", "'sigma'"],
    ),
    (
        "ref_stats of the wrong shape",
        ["ckpt_path={ckpt}", "eval/fid/extractor=random", "eval.fid.ref_stats={files}/wrong_shape.npz"],
        ["wrong_shape.npz", "(3, 3)", "(64, 64)"],
    ),
]


@pytest.mark.parametrize("case,args,words", BAD, ids=[c[0] for c in BAD])
def test_bad_input_fails_with_one_paragraph(case, args, words, bad_files, tmp_path, monkeypatch, capfd):
    files, ckpt = bad_files
    monkeypatch.setenv("TORCH_HOME", str(files / "torch_home"))  # no cached Inception weights
    out = tmp_path / "run"
    code, err = run_in_process([a.format(files=files, ckpt=ckpt) for a in args], out, monkeypatch, capfd)
    assert code not in (0, None), err
    for word in words:
        assert word in err, f"{word!r} missing from:\n{err}"
    assert "Traceback" not in err and len(err[err.index("Error: ") :].strip().splitlines()) == 2, err
    assert not list(out.rglob("metrics.json"))
