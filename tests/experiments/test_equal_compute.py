"""The equal-compute runner (experiments.equal_compute): every arm builds the loss its name says; the
calibration counts exactly the rows each arm's training step sends through the network (an analytic
count); budgets turn into steps and the base runs' saved steps are reused by the documented rule; a
smoke study runs every stage through the real CLIs and resumes."""

import json

import pytest
import torch
from conftest import ROOT, cli_env, compose_config

from ctdm.build import build_module
from experiments import equal_compute as ec

BATCH = 16  # debug=smoke's batch


@pytest.mark.parametrize("arm", list(dict.fromkeys([*ec.SCRATCH_ARMS, *ec.FINETUNE_ARMS["mse_sum"]])))
def test_every_arm_builds_the_loss_its_name_says(arm, tmp_path):
    module = build_module(compose_config(["experiment=paper_dino", *ec.arm_overrides(arm)], tmp_path))
    terms = module.loss_terms
    base = "itd" if arm.startswith("itd") else "mse"
    assert base in terms and ({"itd", "mse"} - {base}).isdisjoint(terms)
    if base == "mse":
        assert terms["mse"].reduction == "sum"
    cdl = terms.get("cdl")
    assert (cdl is None) == (arm in ec.BASE_LOSSES)
    if cdl is not None:
        setting = arm.split("_cdl")[1]
        assert cdl.points == (2 if setting == "_p2_w0.01" else 16)
        assert cdl.weight == (0.01 if setting == "_p2_w0.01" else 1.0)
        assert cdl.samples == (int(setting[2:]) if setting.startswith("_s") else "all")
        assert cdl.every_n_steps == (int(setting[2:]) if setting.startswith("_k") else 1)


def test_unknown_arms_are_refused_naming_the_settings(capsys):
    with pytest.raises(SystemExit):
        ec.main(["--arms", "itd,itd_cdl_s7"])
    assert "itd_cdl_s7" in capsys.readouterr().err


def test_calibration_counts_the_rows_each_arm_sends_through_the_network():
    """Rows per step, forward and backward, against the count by hand at batch B = 16: the base loss sends
    B rows, CDL 2 x items x points more (log p and log p_zeta), every k-th step only; all with gradient."""
    arms = ["itd", "mse_sum", "itd_cdl", "itd_cdl_p2_w0.01", "itd_cdl_s8", "itd_cdl_k4", "mse_sum_cdl_k8"]
    cdl = {"itd_cdl": 2 * 16 * BATCH, "itd_cdl_p2_w0.01": 2 * 2 * BATCH, "itd_cdl_s8": 2 * 16 * 8}
    cdl |= {"itd_cdl_k4": 2 * 16 * BATCH / 4, "mse_sum_cdl_k8": 2 * 16 * BATCH / 8}
    result = ec.calibrate("paper_dino", arms, rounds=1, steps=3, extra=["debug=smoke"])
    for arm in arms:
        rows = BATCH + cdl.get(arm, 0)
        assert result[arm]["rows_forward_per_step"] == rows, arm
        assert result[arm]["rows_backward_per_step"] == rows, arm
        assert result[arm]["rows_per_step"] == 2 * rows and result[arm]["seconds_per_step"] > 0
        assert result[arm]["steps_per_round"] == 8  # 3 rounded up to whole cycles of k = 4 and 8


def test_budgets_become_steps_and_saved_base_steps_are_reused_within_a_quarter(tmp_path):
    calibration = {"arms": {"itd": {"seconds_per_step": 0.02}, "itd_cdl": {"seconds_per_step": 0.2}}}
    assert ec.steps_for(200, "itd", calibration, 100) == 10000
    assert ec.steps_for(200, "itd_cdl", calibration, 100) == 1000
    assert ec.steps_for(1, "itd_cdl", calibration, 100) == 100  # at least one granule
    periodic = tmp_path / "itd" / "seed0" / "checkpoints" / "periodic"
    periodic.mkdir(parents=True)
    for step in (5000, 10000, 15000, 35000):
        (periodic / f"step_{step:06d}.ckpt").write_bytes(b"")
    chosen = ec._reuse(tmp_path, "itd", 0, [200, 650], [10000, 32500])
    assert [(b, s) for b, s, _ in chosen] == [(200, 10000), (650, 35000)]
    assert chosen[1][2] == periodic / "step_035000.ckpt"
    assert ec._reuse(tmp_path, "itd", 0, [800], [40000])[0][1] == 35000  # 12.5% off: reused
    assert ec._reuse(tmp_path, "itd", 0, [200, 1000], [10000, 50000]) is None  # nearest 35000: 30% off
    assert ec._reuse(tmp_path, "itd_cdl", 0, [200], [10000]) is None  # only the base losses' runs


@pytest.mark.slow
def test_smoke_study_runs_every_stage_and_resumes(tmp_path, monkeypatch):
    for key, value in cli_env().items():  # the jobs' environment: tests/ importable, W&B off
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    out = ["--out", str(tmp_path), "--smoke", "--seeds", "0"]
    assert ec.main(["--stage", "calibrate", "--arms", "itd,itd_cdl", *out]) == []
    assert "itd" in json.loads((tmp_path / "calibration.json").read_text())["arms"]
    scratch = ["--stage", "scratch", "--arms", "itd", "--budgets", "1,2", *out]
    assert [code for _, code, _ in ec.main(scratch)] == [0]
    job = tmp_path / "scratch_const" / "itd" / "seed0"
    small, large = (
        json.loads(p.read_text()) for p in (job / "budget1s" / "budget.json", job / "budget.json")
    )
    assert (small["steps"], large["steps"]) == (2, 4) and small["budget_seconds"] == 1.0
    assert json.loads((job / "budget1s" / "metrics.json").read_text())["global_step"] == 2
    assert json.loads((job / "summary.json").read_text())["global_step"] == 4
    assert ec.main(scratch) == []  # every point scored: nothing runs again
    base = job / "checkpoints" / "last.ckpt"
    finetune = ["--stage", "finetune", "--base", str(base), "--arms", "itd_cdl", *out]
    assert [code for _, code, _ in ec.main(finetune)] == [0]
    tuned = tmp_path / "finetune" / "itd_step4" / "itd_cdl" / "seed0"
    record = json.loads((tuned / "budget.json").read_text())
    assert (record["base_step"], record["finetune_steps"], record["steps"]) == (4, 2, 6)
    assert json.loads((tuned / "summary.json").read_text())["global_step"] == 6
    assert "heun10" in json.loads((tuned / "nfe.json").read_text())
    assert torch.load(tuned / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


@pytest.mark.parametrize(("recipe", "schedule"), [("const", "constant"), ("cosine", "cosine")])
def test_a_scratch_recipe_sets_its_schedule_whatever_the_presets_own(recipe, schedule, tmp_path):
    # experiment=digits decays (cosine) by default: its const runs must still be constant
    from types import SimpleNamespace

    calibration = {"arms": {"itd": {"seconds_per_step": 0.1}}}
    args = SimpleNamespace(
        arms=["itd"], seeds=[0], budgets=[10.0, 20.0], granularity=10, smoke=False, recipe=recipe,
        preset="digits", reuse=None, checkpoint_seconds=300.0,
    )  # fmt: skip
    (job,) = ec.scratch_jobs(args, calibration, tmp_path)
    assert f"model/lr_scheduler={schedule}" in job.train
    cfg = ec.compose_run("digits", job.train)
    want = {"constant": "ConstantLR", "cosine": "CosineAnnealingLR"}[schedule]
    assert cfg.model.lr_scheduler._target_.endswith(want) and cfg.trainer.max_steps == 200
    assert [p.steps for p in job.points] == [100, 200] and job.points[0].checkpoint.name == "step_000100.ckpt"


def test_a_job_scored_at_a_smaller_largest_budget_trains_on_when_the_budgets_grow(tmp_path):
    from types import SimpleNamespace

    calibration = {"arms": {"itd": {"seconds_per_step": 0.1}}}
    args = SimpleNamespace(
        arms=["itd"], seeds=[0], budgets=[10.0], granularity=10, smoke=False, recipe="const",
        preset="paper_dino", reuse=None, checkpoint_seconds=300.0,
    )  # fmt: skip
    (small,) = ec.scratch_jobs(args, calibration, tmp_path)
    (small.folder / "budget.json").parent.mkdir(parents=True)
    (small.folder / "budget.json").write_text(json.dumps({"budget_seconds": 10.0, "steps": 100}))
    assert small.done()
    args.budgets = [40.0]  # the same job folder, now to be trained to 40 s
    (grown,) = ec.scratch_jobs(args, calibration, tmp_path)
    assert grown.folder == small.folder and not grown.done()
    # and its run, finished at the smaller budget's steps, trains on (resumed from its last.ckpt)
    (small.folder / "summary.json").write_text(json.dumps({"global_step": 100}))
    assert ec._trained(small) and not ec._trained(grown)
