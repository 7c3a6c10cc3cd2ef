"""Exact resume: N steps straight equal N/2 steps, a SIGTERM (or a first run of N/2 steps, whose last.ckpt
is its final step, between validations), and N/2 more from last.ckpt.

A tiny 2-D run (EMA on, cosine learning rate, 5 batches per epoch so the stop falls mid-epoch) is
compared on everything a resume restores: raw and EMA weights, Adam's moments, the learning-rate
schedule, the step and epoch counters, the training loss of every step (which depends on the data
order and the training noise) and the final sample evaluation.
"""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config, run_cli

from ctdm.callbacks import PREEMPTED_EXIT_CODE
from ctdm.train import train

STEPS, STOP = 12, 6
RUN = [
    "debug=smoke",
    "callbacks=ema",
    "callbacks.ema.decay=0.9",
    "logger=csv",
    "data.train_size=80",  # 5 batches of 16 per epoch: the stop at step 6 is mid-epoch
    "data.batch_size=16",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "trainer.log_every_n_steps=1",
]


def _train(overrides: list[str], out: Path) -> dict:
    return train(compose_config(RUN + overrides, out))


def _losses(out: Path) -> dict[int, float]:
    with open(out / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree, key=str) for t in _tensors(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


@pytest.mark.parametrize("first_part", ["signal", "max_steps"])
def test_stop_and_resume_equals_a_straight_run(first_part, tmp_path):
    straight = _train([], tmp_path / "straight")

    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    if first_part == "signal":
        stop = ["+callbacks.stop._target_=helpers.SignalAtStep", f"+callbacks.stop.step={STOP}"]
        with pytest.raises(SystemExit) as stopped:
            _train(stop, tmp_path / "first")
        assert stopped.value.code == PREEMPTED_EXIT_CODE  # not 0: schedulers must not count it as done
        assert not (tmp_path / "first" / "summary.json").exists()  # a stopped run did not finish
    else:  # a finished run of STOP steps: no validation (every STEPS), so last.ckpt is the final-step save
        schedule = f"model.lr_scheduler.T_max={STEPS}"  # the cosine of the whole run, as resuming needs
        summary = _train([f"trainer.max_steps={STOP}", schedule], tmp_path / "first")
        assert summary["last_checkpoint"] == str(last) and summary["best_checkpoint"] is None
    assert torch.load(last, weights_only=False)["global_step"] == STOP
    resumed = _train([f"ckpt_path={last}"], tmp_path / "resumed")
    # The resumed run names its own files, not the first run's.
    assert resumed["last_checkpoint"] == str(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert resumed["best_checkpoint"].startswith(str(tmp_path / "resumed"))

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS and a["epoch"] == b["epoch"]
    assert a["lr_schedulers"] == b["lr_schedulers"]  # plain numbers: the cosine schedule's position
    for key in ("state_dict", "current_model_state", "optimizer_states"):
        ta, tb = _tensors(a[key]), _tensors(b[key])
        assert len(ta) == len(tb) > 0, key
        for x, y in zip(ta, tb, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=key)
    assert a["lr_schedulers"][0]["last_epoch"] == STEPS
    # EMA is on and differs from the raw weights, so both were compared.
    assert any(not torch.equal(v, a["current_model_state"][k]) for k, v in a["state_dict"].items())

    # Every step's loss: same batches in the same order, same noise.
    whole = _losses(tmp_path / "straight")
    pieces = {**_losses(tmp_path / "first"), **_losses(tmp_path / "resumed")}
    assert sorted(whole) == sorted(pieces) == list(range(STEPS))
    for step in whole:
        assert pieces[step] == pytest.approx(whole[step], rel=1e-6), step
    for key, value in straight["metrics"].items():
        if key.startswith("eval/") and not key.endswith("seconds"):
            assert resumed["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-9), key

    # The training cost: the chain's rows and steps are the straight run's; its seconds are the first
    # part's (stored in its checkpoint) plus the resumed part's own.
    cost, whole_cost = resumed["training"], straight["training"]
    first_cost = torch.load(last, weights_only=False)["ctdm_training_cost"]
    assert first_cost["steps"] == STOP and cost["this_run"]["steps"] == STEPS - STOP
    for key in ("steps", "rows_forward", "rows_backward", "rows_per_step"):
        assert cost[key] == whole_cost[key] > 0, key
    assert cost["seconds"] == pytest.approx(first_cost["seconds"] + cost["this_run"]["seconds"])
    assert resumed["metrics"]["train/seconds"] == cost["seconds"]
    assert b["ctdm_training_cost"]["rows_forward"] == cost["rows_forward"]


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = ["debug=smoke", "logger=wandb", "trainer.max_steps=6", "trainer.val_check_interval=3"]

    def run_ids(out: Path) -> list[str]:
        return [p.name.rsplit("-", 1)[1] for p in (out / "wandb").glob("offline-run-*")]

    try:
        stop = ["+callbacks.stop._target_=helpers.SignalAtStep", "+callbacks.stop.step=3"]
        with pytest.raises(SystemExit):
            train(compose_config(run + stop, tmp_path / "first"))
    finally:
        wandb.finish()
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    first_id = run_ids(tmp_path / "first")
    assert len(first_id) == 1 and torch.load(last, weights_only=False)["ctdm_wandb_id"] == first_id[0]
    try:
        train(compose_config(run + [f"ckpt_path={last}"], tmp_path / "resumed"))
        assert wandb.run.id == first_id[0] and wandb.run.settings.resume == "allow"
    finally:
        wandb.finish()
    assert run_ids(tmp_path / "resumed") == first_id


@pytest.mark.slow
def test_resume_changes_lets_a_resume_go_on_with_other_data(smoke_run, tmp_path):
    """The refusal of another data choice (tests/config/test_bad_inputs.py) has its explicit override."""
    out = tmp_path / "moons"
    last = smoke_run / "checkpoints" / "last.ckpt"
    args = ["debug=smoke", "logger=csv", f"ckpt_path={last}", "trainer.max_steps=8"]
    args += ["model.lr_scheduler.T_max=4", "data=moons", "resume_changes=[data]", f"hydra.run.dir={out}"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["global_step"] == 8
