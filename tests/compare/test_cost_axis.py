"""ctdm.compare's compute axis: each metric against training cost, one curve per arm with its budgets as
points (seeds pooled: mean ± se), interpolated at equal cost, on synthetic run folders."""

import math
import statistics

import pytest
from conftest import write_run

from ctdm import compare
from ctdm.compare import cost_curves, load_runs

FIXED = ["data=dino", "logger=csv"]
# Per arm: training seconds per step and network rows per step; the MMD falls 10x per 10x steps.
ARMS = {"itd": (0.1, 16), "contrastive": (0.4, 528)}
SEEDS = (0, 1, 2)


def mmd(loss: str, steps: int, seed: int) -> float:
    return (0.1 if loss == "itd" else 0.05) * 100 / steps + 0.001 * seed


def seconds(loss: str, steps: int, seed: int) -> float:
    return ARMS[loss][0] * steps * (1 + 0.1 * seed)  # the shared machine's speed differs per job


def cost_metrics(loss: str, steps: int, seed: int) -> dict:
    rows = ARMS[loss][1] * steps // 2
    return {
        "eval/ddpm/mmd": mmd(loss, steps, seed),
        "val/nll": 2.0,
        "train/seconds": seconds(loss, steps, seed),
        "train/steps": steps,
        "train/rows_forward": rows,
        "train/rows_backward": rows,
    }


def budget_study(root):
    """loss=itd,contrastive x trainer.max_steps=100,1000 x seed=0,1,2, as a multirun leaves it."""
    job = 0
    for loss in ARMS:
        for steps in (100, 1000):
            for seed in SEEDS:
                overrides = [*FIXED, f"loss={loss}", f"trainer.max_steps={steps}", f"seed={seed}"]
                write_run(root / str(job), overrides, cost_metrics(loss, steps, seed), step=steps)
                job += 1
    return root


def test_each_arm_is_one_curve_whose_points_are_its_budgets_with_seeds_pooled(tmp_path):
    runs = load_runs([budget_study(tmp_path / "study")])
    curves = cost_curves(runs, "train/seconds")
    assert [c.arm.values for c in curves] == [{"loss": "contrastive"}, {"loss": "itd"}]  # max_steps: points
    itd = curves[1]
    assert [p.budget for p in itd.points] == ["100", "1000"] and [len(p.runs) for p in itd.points] == [3, 3]
    (x, xse, y, yse, n), _ = itd.xy("train/seconds", "eval/ddpm/mmd")
    at_100 = [seconds("itd", 100, s) for s in SEEDS]
    assert x == pytest.approx(statistics.fmean(at_100)) and n == 3
    assert xse == pytest.approx(statistics.stdev(at_100) / math.sqrt(3))
    assert y == pytest.approx(0.1 + 0.001) and yse == pytest.approx(0.001 / math.sqrt(3))

    # Interpolated in log cost between the points around it (11 s and 110 s): halfway in log at their
    # geometric mean; nothing outside the measured range.
    x0, x1 = (statistics.fmean(seconds("itd", n, s) for s in SEEDS) for n in (100, 1000))
    assert itd.at("train/seconds", "eval/ddpm/mmd", math.sqrt(x0 * x1)) == pytest.approx((0.101 + 0.011) / 2)
    assert itd.at("train/seconds", "eval/ddpm/mmd", x1) == pytest.approx(0.011)
    assert itd.at("train/seconds", "eval/ddpm/mmd", x1 * 1.01) is None
    assert itd.at("train/seconds", "eval/ddpm/mmd", x0 * 0.99) is None

    # train/rows is forward + backward: the network evaluations
    rows = curves[0].xy("train/rows", "eval/ddpm/mmd")
    assert [r[0] for r in rows] == [528 * 100, 528 * 1000]


def test_intermediate_checkpoints_scored_by_evaluate_are_points_of_their_runs_curve(tmp_path):
    for seed in SEEDS:
        trained = write_run(
            tmp_path / "train" / str(seed),
            [*FIXED, "loss=itd", "trainer.max_steps=1000", f"seed={seed}"],
            cost_metrics("itd", 1000, seed),
            step=1000,
        )
        for step in (100, 500):
            write_run(
                tmp_path / "eval" / f"{seed}_{step}",
                [f"ckpt_path={trained}/checkpoints/step_{step:06d}.ckpt"],
                cost_metrics("itd", step, seed),
                step=step,
                evaluation=True,
            )
    (curve,) = cost_curves(load_runs([tmp_path]), "train/steps")
    assert curve.arm.values == {} and [p.budget for p in curve.points] == ["100", "500", "1000"]
    assert [len(p.runs) for p in curve.points] == [3, 3, 3]


def test_the_report_and_the_command_line(tmp_path, capsys):
    root = budget_study(tmp_path / "study")
    write_run(tmp_path / "study" / "old", [*FIXED, "loss=itd", "seed=9"], {"eval/ddpm/mmd": 0.5})  # no cost
    report = compare.main([str(root), "--cost", "train/seconds", "--at", "40", "1000"]).read_text()
    assert "## Against training cost: `train/seconds`" in report
    assert "1 run(s) without `train/seconds` left out." in report
    # itd at 100 steps: 10, 11, 12 s; MMD 0.1 + 0.001 x seed; 16 rows per step
    assert "| loss=itd | 100 | 11 ± 0.58 (3) | 16 | 0.101 ± 0.00058 (3) |" in report
    # at 40 s, contrastive's first point (44 s) is out of range; itd: between 11 s and 110 s
    itd_at_40 = 0.101 + math.log(40 / 11) / math.log(10) * (0.011 - 0.101)
    assert "| loss=contrastive | - | " in report
    assert f"| loss=itd | {compare.number(itd_at_40)} | - |" in report
    assert (root / "plots" / "metrics_vs_train_seconds.png").is_file()
    # The arms table carries each arm's training cost (mean over its runs): seconds, steps, rows per step.
    assert "| train s | steps | rows/step |" in report
    assert "| loss=itd trainer.max_steps=1000 | itd | 1000 | 3 | 0, 1, 2 | 110 | 1000 | 16 |" in report
    assert "train/seconds" in (root / "runs.csv").read_text().splitlines()[0]

    with pytest.raises(SystemExit) as failed:
        compare.main([str(root), "--cost", "train/minutes"])
    assert failed.value.code == 1
    assert "--cost train/minutes: no run recorded it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main([str(root), "--at", "40"])
    assert "--at 40.0 needs --cost" in capsys.readouterr().err
