"""ctdm.compare: run folders -> arms by the overrides that differ, seeds pooled; report.md, runs.csv and plots
with every metric's mean ± sd (n) and each arm's difference from the baseline with its standard error."""

import csv
import json
import math
import statistics

import pytest
from conftest import run_cli, write_run

from ctdm import compare
from ctdm.compare import group_runs, load_runs, swept_keys

FIXED = ["loss=contrastive", "logger=csv", "trainer.enable_progress_bar=false"]  # the same in every run
MMD = {("0.1", 0): 0.1, ("0.1", 1): 0.2, ("1", 0): 0.3, ("1", 1): 0.5}
CURVE = [{"pass": 1, "nfe": 20.0, "mmd": 0.4}, {"pass": 2, "nfe": 39.0, "mmd": 0.2}]


def weight_sweep(root, weights=("0.1", "1"), spelling=None):
    """A multirun folder of 2 CDL weights x 2 seeds, as `-m loss.cdl.weight=0.1,1 seed=0,1` leaves it."""
    for job, (weight, seed) in enumerate((w, s) for w in weights for s in (0, 1)):
        overrides = [
            *FIXED,
            f"loss.cdl.weight={(spelling or {}).get((weight, seed), weight)}",
            f"seed={seed}",
        ]
        metrics = {"train/loss": 1.0, "eval/ddpm/mmd": MMD[weight, seed], "val/nll": 2.0 + seed}
        write_run(root / str(job), overrides, metrics, curves={"para_ddpm": CURVE})
    return root


def test_a_weight_sweep_gives_two_arms_of_two_seeds_with_their_means(tmp_path):
    # 1 and 1.0 are one value: the YAML default and a command line may spell it either way
    runs = load_runs([weight_sweep(tmp_path / "sweep", spelling={("1", 1): "1.0"})])
    assert len(runs) == 4 and swept_keys(runs) == ["loss.cdl.weight"]  # seed pooled, fixed keys left out
    arms = group_runs(runs)
    assert [a.values for a in arms] == [{"loss.cdl.weight": "0.1"}, {"loss.cdl.weight": "1"}]
    assert [len(a.runs) for a in arms] == [2, 2]
    assert statistics.fmean(arms[1].values_of("eval/ddpm/mmd")) == pytest.approx(0.4)

    report = compare.compare([tmp_path / "sweep"]).read_text()
    assert "Swept: `loss.cdl.weight` (0.1, 1); seeds pooled: 0, 1." in report
    # mean ± sd (n): 0.1 and 0.2; 0.3 and 0.5
    assert "| loss.cdl.weight=0.1 | 0.15 ± 0.071 (2) |" in report
    assert "| loss.cdl.weight=1 | 0.4 ± 0.14 (2) |" in report
    # against the first weight: +0.25 ± sqrt(0.005/2 + 0.02/2) = 0.11; val/nll differs by nothing
    assert "## Against the baseline `loss.cdl.weight=0.1`" in report
    assert "| loss.cdl.weight=1 | +0.25 ± 0.11 |" in report and "| loss.cdl.weight=1 | +0 ± 0.71 |" in report
    # paired by seed: differences 0.2 and 0.3, se = sd / sqrt(2) = 0.05
    assert "### Paired by seed" in report and "| loss.cdl.weight=1 | +0.25 ± 0.05 (2) |" in report
    assert "train/loss" not in report  # eval/ and val/ metrics by default

    rows = list(csv.DictReader((tmp_path / "sweep" / "runs.csv").open()))
    assert [(r["folder"], r["loss.cdl.weight"], r["seed"]) for r in rows] == [
        ("0", "0.1", "0"),
        ("1", "0.1", "1"),
        ("2", "1", "0"),
        ("3", "1", "1"),
    ]
    assert [float(r["eval/ddpm/mmd"]) for r in rows] == [0.1, 0.2, 0.3, 0.5]
    for plot in ("metrics_vs_loss.cdl.weight.png", "mmd_per_pass_para_ddpm.png"):
        assert f"(plots/{plot})" in report and (tmp_path / "sweep" / "plots" / plot).stat().st_size > 1000


def test_the_baseline_and_metrics_can_be_chosen(tmp_path):
    weight_sweep(tmp_path / "sweep")
    report = compare.compare(
        [tmp_path / "sweep"], tmp_path / "out", ["loss.cdl.weight=1"], ["val/*"]
    ).read_text()
    assert "| loss.cdl.weight=0.1 | -0 ± 0.71 |" in report or "| loss.cdl.weight=0.1 | +0 ± 0.71 |" in report
    assert "eval/ddpm" not in report and (tmp_path / "out" / "runs.csv").is_file()
    with pytest.raises(ValueError, match=r"--baseline names \['seed'\], which the runs do not sweep"):
        compare.compare([tmp_path / "sweep"], tmp_path / "out", ["seed=0"])
    with pytest.raises(ValueError, match="No metric matches"):
        compare.compare([tmp_path / "sweep"], tmp_path / "out", metrics=["eval/*/fid"])


def test_nested_arm_folders_are_labelled_by_their_folder_and_compared_with_the_one_baseline(tmp_path):
    # experiments.cdl_sweep's layout: <out>/<arm>/seed<k>/, single runs whose overrides name the arm
    arms = {
        "itd": ["loss=itd"],
        "itd_cdl_p2_w0.1": ["loss=itd_cdl", "loss.cdl.points=2", "loss.cdl.weight=0.1"],
        "itd_cdl_p2_w1": ["loss=itd_cdl", "loss.cdl.points=2", "loss.cdl.weight=1"],
    }
    for i, (arm, overrides) in enumerate(arms.items()):
        for seed in (0, 1):
            write_run(
                tmp_path / arm / f"seed{seed}", [*overrides, f"seed={seed}"], {"eval/ddpm/mmd": i + seed}
            )
    (tmp_path / "itd" / "seed2" / ".hydra").mkdir(parents=True)  # still running: no summary.json
    runs = load_runs([tmp_path])
    assert swept_keys(runs) == [
        "loss",
        "loss.cdl.points",
        "loss.cdl.weight",
    ]  # "-" where a run has no such key
    report = compare.compare([tmp_path], baseline=["loss=itd"]).read_text()
    assert "1 unfinished run folder(s)" in report
    assert "| itd | itd | - | - | 2 | 0, 1 |" in report  # label, loss, points, weight, runs, seeds
    assert "| itd_cdl_p2_w1 | +2 ± 0.71 |" in report  # against itd, the only arm with loss=itd


def test_an_evaluation_belongs_to_the_arm_of_the_run_it_scored(tmp_path):
    trained = weight_sweep(tmp_path / "sweep")
    for job in range(4):
        ckpt = trained / str(job) / "checkpoints" / "last.ckpt"
        metrics = {"eval/para_ddpm/mmd": float(job)}
        write_run(
            tmp_path / "eval" / str(job), [f"ckpt_path={ckpt}", "sampler=para_ddpm"], metrics, evaluation=True
        )
    runs = load_runs([tmp_path / "eval"])
    arms = group_runs(runs)  # ckpt_path says where, not what: the weights of the scored runs make the arms
    assert [a.values for a in arms] == [{"loss.cdl.weight": "0.1"}, {"loss.cdl.weight": "1"}]
    assert [a.values_of("eval/para_ddpm/mmd") for a in arms] == [[0.0, 1.0], [2.0, 3.0]]
    assert all(r.step == 4 for r in runs)


def test_the_command_line(tmp_path):
    weight_sweep(tmp_path / "sweep")
    result = run_cli(
        [str(tmp_path / "sweep"), "--baseline", "loss.cdl.weight=0.1"], tmp_path, module="ctdm.compare"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "sweep" / "report.md")
    missing = run_cli([str(tmp_path / "nothing")], tmp_path, module="ctdm.compare")
    assert missing.returncode == 1 and "is not a folder" in missing.stderr
    empty = run_cli([str(tmp_path / "sweep" / "plots")], tmp_path, module="ctdm.compare")
    assert empty.returncode == 1 and "No finished run under" in empty.stderr


@pytest.mark.slow
def test_on_a_real_smoke_multirun(weight_sweep_run):
    """The real CLI: `-m loss.cdl.weight=0.1,1 seed=0,1` (4 smoke jobs), then `python -m ctdm.compare`."""
    sweep = weight_sweep_run
    result = run_cli([str(sweep)], sweep, module="ctdm.compare")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = load_runs([sweep])
    arms = group_runs(runs)
    assert [a.values for a in arms] == [{"loss.cdl.weight": "0.1"}, {"loss.cdl.weight": "1"}]
    assert [sorted(r.seed for r in a.runs) for a in arms] == [["0", "1"], ["0", "1"]]
    report = (sweep / "report.md").read_text()
    for arm in arms:
        values = [
            json.loads((r.folder / "summary.json").read_text())["metrics"]["eval/para_ddpm/mmd"]
            for r in arm.runs
        ]
        cell = compare.mean_sd(values, n=True)
        assert math.isfinite(statistics.fmean(values)) and cell.endswith("(2)")
        assert f"| {arm.label} | {cell} |" in report, (arm.label, cell)


def test_the_paired_difference_cancels_a_shared_seed_effect():
    # Each seed shifts both arms by the same amount (its share); the arm is better by 0.1 at every seed
    # up to small noise, so the pairs resolve what the unpaired difference cannot.
    seed_effect = {"0": 0.0, "1": 3.0, "2": -2.0, "3": 1.0}
    noise = {"0": 0.01, "1": -0.02, "2": 0.0, "3": 0.01}
    base = {s: 5.0 + e for s, e in seed_effect.items()}
    arm = {s: 5.0 + e - 0.1 + noise[s] for s, e in seed_effect.items()}
    diffs = [arm[s] - base[s] for s in base]
    se = statistics.stdev(diffs) / 2
    assert compare.paired_difference(arm, base) == f"-0.1 ± {compare.number(se, 2)} (4)"
    assert se < 0.01
    unpaired = compare.difference(arm.values(), base.values())
    assert float(unpaired.split(" ± ")[1]) > 1.0  # the seed effect swamps the unpaired se
    # only the seeds both sides ran count; non-finite values drop their pair; under two pairs: "-"
    assert compare.paired_difference({**arm, "9": 1.0, "3": math.nan}, base).endswith("(3)")
    assert compare.paired_difference({"0": 1.0}, base) == "-"
