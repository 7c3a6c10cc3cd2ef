"""experiments.cdl_report: jobs collected without checkpoints, the earlier report's jobs pooled as seeds
(a job run in both places counted once), each arm against its own base."""

import json

import yaml

from experiments import cdl_report


def write_job(folder, loss, seed, para_ddpm, para_ddim=0.01, nll=1.5):
    (folder / ".hydra").mkdir(parents=True)
    overrides = ["experiment=paper_dino", f"loss={loss}", f"seed={seed}"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"experiment": "paper_dino", "loss": loss}
    (folder / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}})
    )
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
    metrics = {"eval/para_ddpm/mmd": para_ddpm, "eval/para_ddim/mmd": para_ddim, "val/nll": nll}
    (folder / "summary.json").write_text(json.dumps({"global_step": 20000, "metrics": metrics}))


def test_collect_report_pools_earlier_jobs_and_compares_each_arm_with_its_base(tmp_path):
    sweep, results, earlier = tmp_path / "sweep", tmp_path / "results", tmp_path / "earlier"
    write_job(sweep / "itd" / "seed0", "itd", 0, 0.002)
    write_job(sweep / "itd_cdl_p2_w0.1" / "seed0", "itd_cdl", 0, 0.0015)
    write_job(sweep / "itd_cdl_p2_w0.1" / "seed1", "itd_cdl", 1, 0.0025)
    (sweep / "itd" / "seed0" / "checkpoints").mkdir()
    (sweep / "itd" / "seed0" / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (sweep / "itd" / "seed1").mkdir(parents=True)  # unfinished: no summary.json
    write_job(earlier / "0", "itd", 0, 0.002)  # the same job as sweep/itd/seed0
    write_job(earlier / "1", "itd", 1, 0.004)
    write_job(earlier / "2", "mse_sum", 0, 0.009)  # a base with one seed

    copied = cdl_report.collect(sweep, results)
    assert sorted(p.relative_to(results).as_posix() for p in copied) == [
        "itd/seed0",
        "itd_cdl_p2_w0.1/seed0",
        "itd_cdl_p2_w0.1/seed1",
    ]
    assert (results / "itd" / "seed0" / "summary.json").is_file()
    assert not (results / "itd" / "seed0" / "checkpoints").exists()

    arms, checks = cdl_report.arm_runs(results, earlier)
    assert {name: sorted(r.seed for r in runs) for name, runs in arms.items()} == {
        "itd": ["0", "1"],
        "itd_cdl_p2_w0.1": ["0", "1"],
        "mse_sum": ["0"],
    }
    assert list(arms)[:2] == ["itd", "itd_cdl_p2_w0.1"]  # each base before its arms
    assert checks == ["itd seed 0: ParaDDPM MMD 0.002 here, 0.002 in the earlier report: agree"]
    # arm mean 0.002, base mean 0.003: -0.001 ± sqrt(0.0005^2 + 0.001^2) = 0.0011
    assert (
        cdl_report.versus_base(arms["itd_cdl_p2_w0.1"], arms["itd"], "eval/para_ddpm/mmd")
        == "-0.001 ± 0.0011"
    )

    report = cdl_report.report(results, earlier).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| `itd_cdl_p2_w0.1`"))
    assert "0.002 ± 0.00071" in row and "-0.001 ± 0.0011" in row
    # paired by seed: seed 0 0.0015 - 0.002, seed 1 0.0025 - 0.004: -0.001 ± 0.0005 (2 pairs)
    paired = next(
        line for line in report.split("Paired by seed")[1].splitlines() if "`itd_cdl_p2_w0.1`" in line
    )
    assert "| -0.001 ± 0.0005 (2) |" in paired and "0: -0.0005, 1: -0.0015" in paired
    assert (results / "plots" / "mmd_vs_weight.png").stat().st_size > 0


def test_few_step_scores_are_compared_per_seed_with_one_picture_per_comparison(tmp_path):
    results = tmp_path / "results"
    for arm, loss, shift in (("itd", "itd", 0.0), ("itd_cdl_p2_w0.1", "itd_cdl", -0.001)):
        for seed, seed_effect in ((0, 0.0), (1, 0.004)):
            folder = results / arm / f"seed{seed}"
            write_job(folder, loss, seed, 0.002)
            scores = {
                f"ddim{k}": {"mmd": 0.01 + seed_effect + shift + 0.0001 * k * seed, "nfe": k, "passes": k}
                for k in (10, 100)
            }
            (folder / "nfe.json").write_text(json.dumps(scores))
    report = cdl_report.report(results, None).read_text()
    unpaired, paired = report.split("Against the base, difference of the means")[1].split("paired by seed")
    # the arm is 0.001 lower at both seeds: paired se 0 (to rounding), while the seed effect swamps the
    # unpaired se
    assert "| `itd_cdl_p2_w0.1` | `itd` | -0.001 ± 0.0035 | -0.001 ± 0.0099 |" in unpaired
    row = next(line for line in paired.splitlines() if line.startswith("| `itd_cdl_p2_w0.1`"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert [c.split(" ± ")[0] for c in cells] == ["-0.001", "-0.001"] and all(
        c.endswith("(2)") for c in cells
    )
    assert all(float(c.split(" ± ")[1].split()[0]) < 1e-12 for c in cells)
    picture = results / "plots" / "mmd_vs_nfe_itd_cdl_p2_w0.1.png"
    assert picture.stat().st_size > 10_000 and f"]({picture.relative_to(results)})" in report


def test_single_seeds_compare_seed_for_seed():
    base = [cdl_report.Run(folder=None, overrides={"seed": "0"}, config={}, choices={}, metrics={"m": 0.5})]
    arm = [cdl_report.Run(folder=None, overrides={"seed": "0"}, config={}, choices={}, metrics={"m": 0.75})]
    assert cdl_report.versus_base(arm, base, "m") == "+0.25 (n=1)"
    other_seed = [
        cdl_report.Run(folder=None, overrides={"seed": "1"}, config={}, choices={}, metrics={"m": 0.75})
    ]
    assert cdl_report.versus_base(other_seed, base, "m") == "-"


def test_the_base_counts_at_the_arms_seeds():
    run = lambda seed, m: cdl_report.Run(  # noqa: E731
        folder=None, overrides={"seed": seed}, config={}, choices={}, metrics={"m": m}
    )
    base = [run("0", 1.0), run("1", 2.0), run("2", 9.0)]  # seed 2 is a bad seed the arm never ran
    arm = [run("0", 1.5), run("1", 2.5)]
    # against the base's seeds 0 and 1 (mean 1.5), not all three (mean 4)
    assert cdl_report.versus_base(arm, base, "m").startswith("+0.5 ± ")
    assert cdl_report.versus_base([run("0", 1.5), run("7", 2.5)], base, "m").startswith("-2 ± ")


def test_checkpoints_rescored_with_other_noise_are_compared_paired(tmp_path):
    results = tmp_path / "results"
    for arm, loss, own, again in (
        ("itd", "itd", 0.002, 0.003),
        ("itd_cdl_p2_w0.01", "itd_cdl", 0.0019, 0.0028),
    ):
        for seed, seed_effect in ((0, 0.0), (1, 0.001)):
            folder = results / arm / f"seed{seed}"
            write_job(folder, loss, seed, own + seed_effect)
            summary = json.loads((folder / "summary.json").read_text())
            summary["metrics"]["eval/ddpm/mmd"] = own + seed_effect
            (folder / "summary.json").write_text(json.dumps(summary))
            (folder / "eval_seed1").mkdir()
            metrics = {"eval/ddpm/mmd": again + seed_effect, "val/nll": 1.5}
            (folder / "eval_seed1" / "metrics.json").write_text(json.dumps(metrics))
    report = cdl_report.report(results, None).read_text()
    section = report.split("## The same checkpoints with other sampling noise")[1]
    row = next(line for line in section.splitlines() if line.startswith("| `itd_cdl_p2_w0.01`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["`itd_cdl_p2_w0.01`", "`itd`", "seed1"]
    assert (
        cells[3].startswith("-0.0002 ± ") and cells[4] == "+0 ± 0 (2)" and cells[5].startswith("-0.0001 ± ")
    )


def test_the_exact_limit_is_read_beside_the_earlier_argument_and_not_without_it(tmp_path):
    """The limit line comes from `earlier`'s folder (here a made-up limit), never from the committed
    experiments/results/paper_dino/exact_limit.json; no `earlier`: no limit."""
    results, earlier = tmp_path / "results", tmp_path / "paper_dino" / "authors"
    write_job(results / "itd" / "seed0", "itd", 0, 0.002)
    earlier.mkdir(parents=True)
    limit = {"metrics": {"eval/para_ddpm/mmd": 0.0123, "eval/para_ddim/mmd": 0.0456}}
    (earlier.parent / "exact_limit.json").write_text(json.dumps(limit))

    def limit_line(report):
        return next(line for line in report.read_text().splitlines() if line.startswith("Exact denoiser"))

    assert limit_line(cdl_report.report(results, earlier)).startswith(
        "Exact denoiser (the limit): ParaDDPM 0.0123, ParaDDIM 0.0456 "
    )
    assert limit_line(cdl_report.report(results, None)).startswith(
        "Exact denoiser (the limit): ParaDDPM not measured, ParaDDIM not measured "
    )
