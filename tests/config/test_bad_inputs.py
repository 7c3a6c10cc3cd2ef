"""Bad input through the real entry point: each case exits non-zero with one paragraph that names the
key or file, no traceback, no summary.json and no run folder left behind.

Most cases call `ctdm.train.main` in this process, exactly as `python -m ctdm.train ARGS` does
(Hydra parses the same argv); a few run it as a subprocess to prove the same from the outside.
"""

import runpy
import sys

import pytest
import torch
from conftest import run_cli
from hydra.core.global_hydra import GlobalHydra

from ctdm.build import build_module

pytestmark = pytest.mark.slow

SMOKE = ["debug=smoke", "logger=csv"]


def write_checkpoints(folder):
    """A ctdm-shaped checkpoint of a width-32 smoke net, a truncated copy of it, and a foreign torch file."""
    from conftest import compose_config
    from omegaconf import OmegaConf

    cfg = compose_config([*SMOKE, "model.net.width=32"], folder / "compose")
    model = build_module(cfg)
    run_config = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    good = {"state_dict": model.state_dict(), "ctdm_config": run_config}  # what train.py stores
    torch.save(good, folder / "width32.ckpt")
    data = (folder / "width32.ckpt").read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.ckpt")


def write_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no_header.tsv").write_text("a\tb\n1\t2\n")
    (folder / "not_numbers.tsv").write_text("x\ty\n1\t2\nthree\t4\n")
    write_checkpoints(folder)


# (id, arguments, words the paragraph must hold). {files} is a folder of prepared bad files.
CASES = [
    ("unknown option", ["loss=nonexistent"], ["loss/nonexistent", "Available options", "mse"]),
    ("unknown key", ["no_such_key=1"], ["no_such_key"]),
    ("unknown eval key", ["eval.no_such_key=1"], ["eval.no_such_key"]),
    ("seed not an integer", ["seed=x"], ["seed", "'x'", "Integer"]),
    ("batch size not an integer", ["data.batch_size=1.5"], ["data.batch_size", "1.5", "Integer"]),
    ("max_steps not an integer", ["trainer.max_steps=abc"], ["trainer.max_steps", "abc", "Integer"]),
    ("bandwidth not a number", ["eval.mmd_bandwidth=wide"], ["eval.mmd_bandwidth", "wide", "'median'"]),
    ("unknown MMD units", ["eval.mmd_units=variance"], ["eval.mmd_units", "variance", "'paper'"]),
    (
        "val_points not an integer",
        ["diffusion.likelihood.val_points=many"],
        ["diffusion.likelihood.val_points", "many"],
    ),
    ("negative loss weight", ["loss.mse.weight=-1"], ["loss.mse.weight", ">= 0", "-1"]),
    ("all loss weights zero", ["loss.mse.weight=0"], ["weight", "zero"]),
    ("infinite loss weight", ["loss.mse.weight=inf"], ["loss.mse.weight", "finite"]),
    ("zero batch size", ["data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    ("max_steps -1", ["trainer.max_steps=-1"], ["trainer.max_steps=-1", ">= 1"]),
    (
        "batch not divisible by ranks",
        ["trainer=ddp_cpu", "data.batch_size=255"],
        ["data.batch_size=255", "divisible", "2"],
    ),
    ("zero CDL points", ["loss=contrastive", "loss.cdl.points=0"], ["loss.cdl.points", ">= 1", "0"]),
    ("zero sampler steps", ["sampler.steps=0"], ["steps", ">= 1", "0"]),
    ("zero Picard tolerance", ["sampler=para_ddpm", "sampler.tolerance=0"], ["tolerance", "0"]),
    ("zero Picard window", ["sampler=para_ddpm", "sampler.window=0"], ["window", "0"]),
    ("zero Picard passes", ["sampler=para_ddpm", "sampler.max_passes=0"], ["max_passes", "0"]),
    ("zero bandwidth", ["eval.mmd_bandwidth=0"], ["mmd_bandwidth", "> 0"]),
    ("missing dino file", ["data=dino", "data.path={files}/missing.tsv"], ["missing.tsv", "no such file"]),
    ("dino file without x, y", ["data=dino", "data.path={files}/no_header.tsv"], ["no_header.tsv", "'x'"]),
    (
        "dino file with text",
        ["data=dino", "data.path={files}/not_numbers.tsv"],
        ["not_numbers.tsv", "line 3"],
    ),
    ("missing CIFAR-10 root", ["data=cifar10", "data.root={files}/no_cifar"], ["no_cifar", "data.download"]),
    ("missing checkpoint", ["ckpt_path={files}/missing.ckpt"], ["missing.ckpt", "no such file"]),
    ("truncated checkpoint", ["ckpt_path={files}/truncated.ckpt"], ["truncated.ckpt", "truncated"]),
    ("foreign checkpoint", ["ckpt_path={files}/foreign.ckpt"], ["foreign.ckpt", "not a ctdm checkpoint"]),
    (
        "checkpoint of another width",
        ["ckpt_path={files}/width32.ckpt"],
        ["width32.ckpt", "holds model.net.width=32", "builds model.net.width=16", "[32", "[16"],
    ),
    (
        "multirun with a re-launching strategy",
        ["-m", "trainer=ddp_cpu"],
        ["trainer.strategy='ddp'", "multirun", "trainer=default", "without -m", "submitit"],
    ),
    ("misspelt optimized_metric", ["optimized_metric=val/los"], ["val/los", "available", "val/loss"]),
]


def run_in_process(args: list[str], out, monkeypatch, capfd) -> tuple[int, str]:
    """`python -m ctdm.train ARGS` without a new interpreter: the same argv through the same main."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    argv = ["ctdm.train", *flags, *overrides, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    try:
        runpy.run_module("ctdm.train", run_name="__main__")  # what `python -m` runs
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capfd.readouterr().err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    write_files(folder)
    return folder


@pytest.mark.parametrize("case,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_paragraph(case, args, words, files, tmp_path, monkeypatch, capfd):
    out = tmp_path / "run"
    # debug=smoke first: a check that is missing fails the test in seconds, not after a real run
    code, err = run_in_process([*SMOKE, *(a.format(files=files) for a in args)], out, monkeypatch, capfd)
    assert code not in (0, None), err
    for word in words:
        assert word in err, f"{word!r} missing from:\n{err}"
    assert "Traceback" not in err, err
    # A paragraph, not a log: ctdm's own errors are the paragraph and the HYDRA_FULL_ERROR hint;
    # Hydra's composition errors add the key path and, for a group, its options.
    if "Error: " in err:
        assert len(err[err.index("Error: ") :].strip().splitlines()) == 2, err
    else:
        # (the options and search path Hydra lists are tab-indented, one per line)
        assert len([line for line in err.strip().splitlines() if not line.startswith("\t")]) <= 8, err
    assert not list(out.rglob("summary.json"))
    if case != "misspelt optimized_metric":  # that one trained: its checkpoints stay
        assert not (out / ".hydra").exists(), sorted(p.name for p in out.iterdir())


SUBPROCESS = ["unknown option", "seed not an integer", "negative loss weight", "truncated checkpoint"]


@pytest.mark.parametrize("case", SUBPROCESS)
def test_the_same_from_a_new_interpreter(case, files, tmp_path):
    args, words = next((a, w) for c, a, w in CASES if c == case)
    out = tmp_path / "run"
    result = run_cli(
        [*(a.format(files=files) for a in args), f"hydra.run.dir={out}"],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "0"},
    )
    assert result.returncode != 0
    assert all(word in result.stderr for word in words), result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_hydra_full_error_keeps_the_trace(files, tmp_path):
    result = run_cli(["loss.mse.weight=-1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "weight must be a finite number >= 0" in result.stderr
