"""Bad input through the real entry point: each case exits non-zero with one paragraph that names the
key or file, no traceback, no summary.json and no run folder left behind.

Most cases call `ctdm.train.main` in this process, exactly as `python -m ctdm.train ARGS` does
(Hydra parses the same argv); a few run it as a subprocess to prove the same from the outside.
"""

import runpy
import subprocess
import sys
import time

import pytest
import torch
from conftest import cli_env, run_cli
from hydra.core.global_hydra import GlobalHydra

from ctdm.build import build_module
from ctdm.data import fake

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
    (folder / "nan.tsv").write_text("x\ty\n1\t2\n3\tnan\n")
    (folder / "inf.tsv").write_text("x\ty\n1\t2\n3\t4\n-inf\t5\n")
    (folder / "binary.tsv").write_bytes(bytes(range(256)) * 4)
    write_checkpoints(folder)
    write_image_files(folder)


def write_image_files(folder):
    """Image data sets with one fault each, in the layouts the real readers take."""
    fake.write_image_folder(folder / "truncated_png", n=8, size=8)
    png = folder / "truncated_png" / "class1" / "00003.png"
    png.write_bytes(png.read_bytes()[:40])
    fake.write_image_folder(folder / "text_png", n=8, size=8)
    (folder / "text_png" / "class0" / "notes.png").write_text("not an image\n")
    (folder / "no_images").mkdir()
    (folder / "no_images" / "readme.txt").write_text("nothing here\n")
    for name in ("cifar_truncated", "cifar_empty"):
        fake.write_cifar10(folder / name)
    batch = folder / "cifar_truncated" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    (folder / "cifar_empty" / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    fake.write_mnist(folder / "mnist_truncated")
    idx = folder / "mnist_truncated" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    idx.write_bytes(idx.read_bytes()[:1000])


IMAGES = ["data=image_folder", "data.resolution=16", "data.val_size=2"]  # over the fake 8x8 images
NAN_AT_STEP_1 = ["loss.mse._target_=helpers.NaNAtCall", "+loss.mse.nan_call=1"]  # the 2nd loss call
LONGER = ["trainer.max_steps=8", "model.lr_scheduler.T_max=4"]  # past its 4 steps, on its schedule

# (id, arguments, words the paragraph must hold). {files}: a folder of prepared bad files; {ckpt}: the
# last.ckpt of a finished 4-step smoke run.
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
        ["trainer.strategy='ddp'", "multirun", "trainer=default", "without -m", "hydra/launcher=slurm"],
    ),
    ("misspelt optimized_metric", ["optimized_metric=val/los"], ["val/los", "available", "val/loss"]),
    # Settings the objects built from the config check before fit, named by their key
    ("negative learning rate", ["model.optimizer.lr=-1"], ["model.optimizer", "learning rate", "-1"]),
    ("learning rate not a number", ["model.optimizer.lr=abc"], ["model.optimizer", "torch.optim.Adam"]),
    ("negative likelihood clip", ["diffusion.likelihood.clip=-1"], ["diffusion.likelihood.clip", "> 0"]),
    ("zero likelihood points", ["diffusion.likelihood.val_points=0"], ["diffusion.likelihood.val_points"]),
    (
        "zeta low with kind logistic",
        ["loss=contrastive", "loss.cdl.zeta.low=1"],
        ["loss.cdl.zeta.low", "does not apply to kind='logistic'"],
    ),
    (
        "zeta loc with kind uniform",
        ["loss=contrastive", "loss.cdl.zeta.kind=uniform", "loss.cdl.zeta.loc=1"],
        ["loss.cdl.zeta.loc", "does not apply to kind='uniform'"],
    ),
    (
        "uniform zeta without bounds",
        ["loss=contrastive", "loss.cdl.zeta.kind=uniform"],
        ["loss.cdl.zeta.low", "finite number"],
    ),
    ("skipped fraction above 1", ["model.max_skipped_fraction=2"], ["model.max_skipped_fraction", "[0, 1]"]),
    ("negative skipped fraction", ["model.max_skipped_fraction=-0.5"], ["model.max_skipped_fraction"]),
    ("zero network width", ["model.net.width=0"], ["model.net", "width >= 1"]),
    ("unknown precision", ["trainer.precision=fp7"], ["trainer", "fp7", "bf16-mixed"]),
    ("zero validation interval", ["trainer.val_check_interval=0"], ["trainer.val_check_interval=0"]),
    ("zero held-out points", ["data.val_size=0"], ["data.val_size", "positive"]),
    ("unknown sampler option", ["sampler=nope"], ["sampler/nope", "Available options"]),
    ("unknown evaluation sampler", ["eval/samplers=[nope]"], ["eval/samplers/nope"]),
    # Data files: every reader names the file (and line or index)
    ("dino file with NaN", ["data=dino", "data.path={files}/nan.tsv"], ["nan.tsv", "line 3", "finite"]),
    ("dino file with inf", ["data=dino", "data.path={files}/inf.tsv"], ["inf.tsv", "line 4", "finite"]),
    ("binary dino file", ["data=dino", "data.path={files}/binary.tsv"], ["binary.tsv", "not a text file"]),
    ("truncated PNG", [*IMAGES, "data.root={files}/truncated_png"], ["00003.png"]),
    ("text file named .png", [*IMAGES, "data.root={files}/text_png"], ["notes.png"]),
    ("image folder without images", [*IMAGES, "data.root={files}/no_images"], ["no_images", "no image"]),
    (
        "truncated CIFAR-10 batch, no md5 check",
        ["data=cifar10", "data.root={files}/cifar_truncated", "data.check_integrity=false"],
        ["data_batch_2", "truncated"],
    ),
    (
        "empty CIFAR-10 batch, no md5 check",
        ["data=cifar10", "data.root={files}/cifar_empty", "data.check_integrity=false"],
        ["test_batch", "empty"],
    ),
    ("empty CIFAR-10 batch", ["data=cifar10", "data.root={files}/cifar_empty"], ["test_batch", "empty"]),
    (
        "truncated MNIST file",
        ["data=mnist", "data.root={files}/mnist_truncated"],
        ["train-images-idx3-ubyte", "truncated", "1000 bytes"],
    ),
    ("checkpoint path a folder", ["ckpt_path={files}"], ["ckpt_path=", "no such file"]),
    # Resuming (a real 4-step run's last.ckpt): nothing to train, or another data, loss or choice
    ("resume to the checkpoint's step", ["ckpt_path={ckpt}"], ["trainer.max_steps=4", "train nothing"]),
    ("resume below the checkpoint's step", ["ckpt_path={ckpt}", "trainer.max_steps=2"], ["(4)", "nothing"]),
    ("resume on other data", ["ckpt_path={ckpt}", *LONGER, "data=moons"], ["moons", "eight_gaussians"]),
    ("resume with another loss", ["ckpt_path={ckpt}", *LONGER, "loss=contrastive"], ["loss", "contrastive"]),
    (
        "resume allowing an unknown change",
        ["ckpt_path={ckpt}", *LONGER, "resume_changes=[nonsense]"],
        ["resume_changes", "nonsense"],
    ),
    # Faults during training: a NaN loss stops the run at its step; skipping it counts against a bound
    ("NaN loss", [*NAN_AT_STEP_1], ["step 1", "mse = nan", "model.skip_nonfinite=true"]),
    (
        "too many skipped steps",
        [*NAN_AT_STEP_1, "model.skip_nonfinite=true"],
        ["model.max_skipped_fraction=0.01", "step 1"],
    ),
    (
        "non-finite final metrics",  # the validation after the 4 steps is NaN
        [*NAN_AT_STEP_1[:1], "+loss.mse.nan_call=4"],
        ["non-finite metrics", "val/loss=nan", "no summary.json"],
    ),
    # The sample evaluation: refused before training, with the estimate
    (
        "evaluation too large for memory",
        ["eval.num_samples=1000000000000"],
        ["eval.num_samples=1000000000000", "eval.batch_size=null", "GiB", "before training"],
    ),
    # A training step: refused before training when its rows cannot fit; out of memory during a step
    (
        "training step over the CDL's memory budget",
        ["loss=contrastive", "loss.cdl.max_batch=null", "loss.cdl.memory_budget=100000"],
        ["loss.cdl.memory_budget=97.7 KiB", "loss.cdl.max_batch=", "loss.cdl.points", "before training"],
    ),
    (
        "out of memory during a step",
        [
            "loss.mse._target_=helpers.OutOfMemoryAtStep",
            "+loss.mse.oom_step=3",
            "trainer.val_check_interval=2",
        ],
        ["Out of memory at training step 3", "loss.mse 16", "data.batch_size", "ckpt_path=", "last.ckpt"],
    ),
    ("one sample", ["eval.num_samples=1"], ["eval.num_samples", ">= 2"]),
    ("zero evaluation batch", ["eval.batch_size=0"], ["eval.batch_size", ">= 1"]),
    ("KID keeping one sample", ["data=digits", "eval.fid.kid_max_samples=1"], ["eval.fid.kid_max_samples"]),
    ("unknown FID extractor", ["data=digits", "eval.fid.extractor=nope"], ["eval.fid.extractor", "'nope'"]),
    (
        "a preset's keys for a sampler left out",  # experiment=digits sets para_ddpm's window
        ["experiment=digits", "eval/samplers=[ddpm]", "debug=smoke"],
        ["eval.samplers.para_ddpm has no _target_", "'~eval.samplers.para_ddpm'"],
    ),
]

# The same checks through `python -m ctdm.evaluate` ({ckpt}: a real run's last.ckpt).
EVALUATE_CASES = [
    ("missing checkpoint", ["ckpt_path={files}/missing.ckpt"], ["missing.ckpt", "no such file"]),
    ("truncated checkpoint", ["ckpt_path={files}/truncated.ckpt"], ["truncated.ckpt", "truncated"]),
    ("foreign checkpoint", ["ckpt_path={files}/foreign.ckpt"], ["foreign.ckpt", "not a ctdm checkpoint"]),
    ("checkpoint path a folder", ["ckpt_path={files}"], ["ckpt_path=", "no such file"]),
    ("another width", ["ckpt_path={ckpt}", "model.net.width=32"], ["model.net.width=16", "width=32"]),
    ("unknown key", ["ckpt_path={ckpt}", "no_such_key=1"], ["no_such_key"]),
    ("unknown sampler option", ["ckpt_path={ckpt}", "sampler=nope"], ["sampler/nope"]),
    ("zero sampler steps", ["ckpt_path={ckpt}", "sampler.steps=0"], ["sampler.steps", ">= 1"]),
    ("one sample", ["ckpt_path={ckpt}", "eval.num_samples=1"], ["eval.num_samples", ">= 2"]),
    ("zero evaluation batch", ["ckpt_path={ckpt}", "eval.batch_size=0"], ["eval.batch_size", ">= 1"]),
    ("zero bandwidth", ["ckpt_path={ckpt}", "eval.mmd_bandwidth=0"], ["eval.mmd_bandwidth", "> 0"]),
    ("unknown MMD units", ["ckpt_path={ckpt}", "eval.mmd_units=variance"], ["eval.mmd_units", "'paper'"]),
    (
        "evaluation too large for memory",
        ["ckpt_path={ckpt}", "eval.num_samples=1000000000000"],
        ["eval.num_samples=1000000000000", "GiB", "eval.batch_size"],
    ),
]
# these fail once training has started: the folder stays for its checkpoints
TRAINED = {"misspelt optimized_metric", "non-finite final metrics", "out of memory during a step"}
TABLE = [("train", *case) for case in CASES] + [("evaluate", *case) for case in EVALUATE_CASES]


def run_in_process(args: list[str], out, monkeypatch, capfd, entry: str = "train") -> tuple[int, str]:
    """`python -m ctdm.<entry> ARGS` without a new interpreter: the same argv through the same main."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    argv = [f"ctdm.{entry}", *flags, *overrides, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    try:
        runpy.run_module(f"ctdm.{entry}", run_name="__main__")  # what `python -m` runs
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capfd.readouterr().err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    write_files(folder)
    return folder


@pytest.mark.parametrize("entry,case,args,words", TABLE, ids=[f"{c[0]}: {c[1]}" for c in TABLE])
def test_bad_input_fails_with_one_paragraph(
    entry, case, args, words, files, smoke_run, tmp_path, monkeypatch, capfd
):
    out = tmp_path / "run"
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    # debug=smoke first: a check that is missing fails the test in seconds, not after a real run
    # (ctdm.evaluate takes its model, data and size from the checkpoint)
    first = SMOKE if entry == "train" else ["logger=csv"]
    args = [*first, *(a.format(files=files, ckpt=ckpt) for a in args)]
    code, err = run_in_process(args, out, monkeypatch, capfd, entry)
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
    if case in TRAINED:  # failed after training: the folder stays for its checkpoints
        assert (out / "checkpoints" / "last.ckpt").is_file()
    else:
        assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()  # a refused resume leaves its source


def test_a_second_run_into_a_folder_in_use_fails_at_once(files, tmp_path, monkeypatch, capfd):
    """Another process holds the folder (a run in progress): the second run exits 1 naming the folder and
    the holder, and writes nothing there (no .hydra, no summary.json); the holder's lock stays."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from ctdm import run_folder; run_folder.hold({str(out)!r}); input()"],
        stdin=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        for _ in range(200):  # until the holder has written its details
            if (out / ".ctdm.lock").is_file() and (out / ".ctdm.lock").stat().st_size:
                break
            time.sleep(0.05)
        for entry, first in (("train", SMOKE), ("evaluate", ["logger=csv"])):
            code, err = run_in_process(first, out, monkeypatch, capfd, entry)
            assert code == 1, err
            assert f"hydra.run.dir='{out}' is in use by another run (pid {holder.pid}" in err, err
            assert "Traceback" not in err
            assert sorted(p.name for p in out.iterdir()) == [".ctdm.lock"]
    finally:
        holder.communicate(b"\n", timeout=30)
    assert not out.exists() or not (out / ".ctdm.lock").exists()  # the holder gave it back


def test_an_unwritable_run_folder_fails_naming_it(files, tmp_path, monkeypatch, capfd):
    out = files / "no_header.tsv" / "run"  # under a file: no folder can be made there
    code, err = run_in_process(SMOKE, out, monkeypatch, capfd)
    assert code == 1 and "Traceback" not in err, err
    assert f"hydra.run.dir='{out}': cannot write the run folder (Not a directory" in err, err


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
