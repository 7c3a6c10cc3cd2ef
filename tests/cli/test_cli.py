"""ctdm.cli: mistakes are refused before the heavy libraries load and before anything is written, with the
offline routes in README's syntax; `--help` lists the options users choose from; libraries stay quiet."""

import pytest
from conftest import run_cli

HEAVY = ("lightning", "torchvision", "torchmetrics", "wandb", "matplotlib")


def imported(stderr: str) -> set[str]:
    """Top-level packages a `python -X importtime` run imported."""
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    ("args", "words", "torch"),
    [
        (["data.batch_size=0"], ["data.batch_size=0", ">= 1"], False),
        (["loss=nonexistent"], ["loss/nonexistent"], False),
        (["data=dino", "data.path={tmp}/none.tsv"], ["data.path=", "none.tsv", "no such file"], False),
        (["loss=contrastive", "loss.cdl.points=0"], ["loss.cdl.points", ">= 1"], True),
        (["sampler=para_ddpm", "sampler.tolerance=0"], ["tolerance", "> 0"], True),
        (
            ["data=cifar10", "data.root={tmp}/no_cifar"],
            [
                "data.root=",
                "not a folder",
                "python -m ctdm.data.fake cifar10 DIR",
                "data.check_integrity=false",
            ],
            False,
        ),
        (
            ["data=digits", "eval.fid.weights_path={tmp}/none.pth"],
            ["eval.fid.weights_path=", "none.pth", "convert_inception"],
            False,
        ),
        (
            ["data=digits", "eval/fid/extractor=torchscript", "eval.fid.extractor.path={tmp}/none.pt"],
            ["eval.fid.extractor.path", "none.pt", "not a file"],
            False,
        ),
    ],
    ids=[
        "value",
        "option",
        "data path",
        "loss argument",
        "sampler argument",
        "cifar root",
        "fid weights",
        "torchscript",
    ],
)
def test_a_mistake_is_refused_before_the_heavy_imports_and_writes_nothing(args, words, torch, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    result = run_cli(
        ["-X", "importtime", "-m", "ctdm.train", *args],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "0"},
        module=None,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    message = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    for word in words:
        assert word in message, f"{word!r} not in {message}"
    loaded = imported(result.stderr)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert ("torch" in loaded) == torch  # composition, values and the files named need no torch
    assert not list((tmp_path / "logs").rglob("*.*")), list((tmp_path / "logs").rglob("*"))  # no run left


def test_help_lists_the_options_users_choose(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = result.stdout[: result.stdout.index("== Config")]
    lines = {
        line.split(": ")[0]: line.split(": ", 1)[1] for line in listing.splitlines() if ": " in line[:40]
    }
    assert lines["loss"].split(", ")[:3] == ["contrastive", "edm", "itd"] and "mse_cdl" in lines["loss"]
    assert lines["sampler"].startswith("ddim, ddpm") and "model/lr_scheduler" in lines
    options = [o for line in lines.values() for o in line.split(", ")]
    assert not [o for o in options if o.startswith("_")]  # _module, _cdl, _parallel: bases, not options
    assert not [g for g in lines if g.startswith("hydra")] and "python -m ctdm.compare" in listing
    assert "trainer:" in result.stdout and "max_steps: 4000" in result.stdout  # then the config


@pytest.mark.parametrize(
    ("kind", "shape"), [("cifar10", (3, 32, 32)), ("mnist", (1, 28, 28)), ("image_folder", (3, 20, 20))]
)
def test_the_fake_data_command_writes_what_its_overrides_read(kind, shape, make_cfg, tmp_path):
    result = run_cli([kind, str(tmp_path / kind)], cwd=tmp_path, module="ctdm.data.fake")
    assert result.returncode == 0, result.stderr
    overrides = result.stdout.split("then: python -m ctdm.train ")[1].split()
    assert overrides[:2] == [f"data={kind}", f"data.root={tmp_path / kind}"]
    from ctdm.build import build_data

    data = build_data(make_cfg(overrides))  # the real config and loader, with exactly what was printed
    data.setup("fit")
    assert tuple(data.x_val.shape[1:]) == shape and len(data.x_val) >= 1
    if kind == "cifar10":
        bad = run_cli(["svhn", str(tmp_path / "x")], cwd=tmp_path, module="ctdm.data.fake")
        assert bad.returncode == 2 and "cifar10" in bad.stderr


def test_the_libraries_are_quiet(tmp_path):
    """A smoke run's console: no Lightning device listing or tips, no deprecation warnings, no W&B version
    banner; the training bar counts steps, not `Epoch 0/-2`."""
    args = ["debug=smoke", "trainer.enable_progress_bar=true", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli(args, cwd=tmp_path, env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    console = result.stdout + result.stderr
    for noise in (
        "GPU available",
        "TPU available",
        "Tip:",
        "Seed set",
        "deprecated",
        "wandb version",
        "anonymous",
        "/-2",
    ):
        assert noise not in console, noise
    assert "training: 100%" in console and "4/4" in console
    assert "W&B, offline: wandb sync" in result.stdout
