"""The fine-tuning presets (experiment=paper_dino_finetune, paper_1d_finetune): finetune.base and
finetune.steps become ckpt_path and trainer.max_steps; the run resumes the base (its optimizer state
included) with another loss and trains on; bad inputs are refused in one paragraph before any data is read."""

import re

import pytest
import torch
from conftest import compose_config

from ctdm.checkpoint import CheckpointError, load_checkpoint
from ctdm.finetune import resolve_finetune
from ctdm.train import train

SMOKE = ["debug=smoke", "logger=csv", "trainer.enable_progress_bar=false", "eval.progress_bar=false"]


@pytest.fixture(scope="module")
def dino_base(tmp_path_factory):
    """A 4-step experiment=paper_dino loss=itd run: the base checkpoint."""
    out = tmp_path_factory.mktemp("base")
    train(compose_config(["experiment=paper_dino", "loss=itd", *SMOKE], out))
    return out / "checkpoints" / "last.ckpt"


def test_the_preset_resumes_the_base_with_the_loss_changed_and_trains_on(dino_base, tmp_path):
    """2 steps of ITD + CDL after the base's 4: the run ends at step 6, trains the CDL term, and continues
    the base's optimizer (Adam's step count 6, not the 2 of a fresh start) from its weights."""
    args = ["experiment=paper_dino_finetune", f"finetune.base={dino_base}", "finetune.steps=2", *SMOKE]
    cfg = compose_config(args, tmp_path)
    assert cfg.trainer.max_steps == 4  # debug=smoke's, which finetune.steps replaces
    summary = train(cfg)
    assert cfg.ckpt_path == str(dino_base) and cfg.trainer.max_steps == 6 == summary["global_step"]
    assert {"train/itd", "train/cdl"} <= set(summary["metrics"])
    tuned, base = load_checkpoint(summary["last_checkpoint"]), load_checkpoint(dino_base)
    assert set(tuned["ctdm_config"]["loss"]) == {"itd", "cdl"} and set(base["ctdm_config"]["loss"]) == {"itd"}
    adam = tuned["optimizer_states"][0]["state"]
    assert {int(s["step"]) for s in adam.values()} == {6}
    moved = [
        not torch.equal(tuned["state_dict"][k], v)
        for k, v in base["state_dict"].items()
        if v.is_floating_point()
    ]
    assert any(moved)


@pytest.mark.parametrize(
    "extra,pattern",
    [
        ([], r"^finetune\.base is not set: .*finetune\.base=<run folder>/checkpoints/last\.ckpt"),
        (["finetune.base=nowhere.ckpt"], r"^finetune\.base='nowhere\.ckpt': no such file"),
        (["finetune.base=BASE", "finetune.steps=0"], r"^finetune\.steps=0: .*integer >= 1"),
        (
            ["finetune.base=BASE", "trainer.max_steps=10"],
            r"^trainer\.max_steps=10 is set .*Set finetune\.steps",
        ),
        (["finetune.base=BASE", "ckpt_path=BASE"], r"^ckpt_path=.* and finetune\.base=.* are both set"),
    ],
)
def test_bad_fine_tune_inputs_are_refused_before_anything_is_read(dino_base, tmp_path, extra, pattern):
    args = ["experiment=paper_1d_finetune", *[a.replace("BASE", str(dino_base)) for a in extra]]
    cfg = compose_config(args, tmp_path)
    with pytest.raises((ValueError, CheckpointError)) as info:
        resolve_finetune(cfg)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert cfg.ckpt_path in (None, str(dino_base))  # nothing resolved half-way


def test_a_config_without_the_presets_is_left_alone(tmp_path):
    cfg = compose_config(["debug=smoke"], tmp_path)
    resolve_finetune(cfg)
    assert cfg.ckpt_path is None and cfg.trainer.max_steps == 4
