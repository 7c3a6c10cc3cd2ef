"""The equal-compute report on synthetic study folders (budget.json + run folders as the runner leaves
them): per budget, mean ± se over seeds; differences paired with `itd` at the same budget AND seed
(by budget.json's seed, as an evaluation's own config says seed 0); costs measured where the run
records them, calibrated otherwise; the fine-tune table against the base loss continued; collect + rebuild."""

import json

from conftest import write_run

from experiments import equal_compute_report as ecr

SEEDS = (0, 1, 2)
SEED_EFFECT = {0: 0.0, 1: 0.01, 2: 0.03}  # large and shared by arms at a seed: only pairing cancels it
ITD = {100: 0.02, 400: 0.005}  # ParaDDPM MMD of itd at each budget (seed 0)
GAIN = {100: -0.002, 400: +0.001}  # itd_cdl minus itd at each budget, the same at every seed


def _point(folder, record, mmd, evaluation, extra=None):
    metrics = {"eval/para_ddpm/mmd": mmd, "eval/ddpm/mmd": 2 * mmd, "val/nll": 1.0, "val/cdl_acc": 0.5}
    write_run(folder, ["seed=0"], {**metrics, **(extra or {})}, step=record["steps"], evaluation=evaluation)
    (folder / "budget.json").write_text(json.dumps(record))


def _study(root):
    calibration = {"rounds": 2, "steps_per_round": 16, "arms": {}}
    calibration["arms"]["itd"] = {"seconds_per_step": 0.01, "spread": 0.1, "rows_per_step": 256}
    calibration["arms"]["itd_cdl"] = {"seconds_per_step": 0.1, "spread": 0.1, "rows_per_step": 8448}
    (root / "scratch_const").mkdir(parents=True)
    (root / "calibration.json").write_text(json.dumps(calibration))
    for arm in ("itd", "itd_cdl"):
        sps = calibration["arms"][arm]["seconds_per_step"]
        for seed in SEEDS:
            job = root / "scratch_const" / arm / f"seed{seed}"
            for budget in (100, 400):
                mmd = ITD[budget] + SEED_EFFECT[seed] + (GAIN[budget] if arm == "itd_cdl" else 0.0)
                record = {
                    "arm": arm,
                    "seed": seed,
                    "recipe": "const",
                    "stage": "scratch",
                    "preset": "paper_dino",
                }
                record |= {"budget_seconds": budget, "steps": round(budget / sps)}
                if budget == 400:  # the training run itself, recording its measured cost
                    measured = {"train/seconds": 390.0, "train/rows_forward": 6e5, "train/rows_backward": 4e5}
                    _point(job, record, mmd, evaluation=False, extra=measured)
                else:  # a ctdm.evaluate folder inside the job: its own config says seed 0
                    _point(job / "budget100s", record, mmd, evaluation=True)
    for arm, gain in (("itd", 0.0), ("itd_cdl", -0.004)):
        for seed in SEEDS:
            folder = root / "finetune" / "itd_step100000" / arm / f"seed{seed}"
            record = {
                "arm": arm,
                "seed": seed,
                "recipe": "finetune",
                "stage": "finetune",
                "preset": "paper_dino",
            }
            record |= {"budget_seconds": 200, "base_arm": "itd", "base_step": 100000, "finetune_steps": 2000}
            record |= {"steps": 102000}
            _point(folder, record, 0.001 + SEED_EFFECT[seed] + gain, evaluation=False)
            nfe = {"heun10": {"mmd": 0.01 + SEED_EFFECT[seed] + 2 * gain, "nfe": 19, "passes": 10}}
            (folder / "nfe.json").write_text(json.dumps(nfe))
            (folder / "checkpoints").mkdir()
            (folder / "checkpoints" / "last.ckpt").write_bytes(b"heavy")


def _paired(cell):
    """(mean, se, pairs) of a `mean ± se (n)` cell."""
    mean, rest = cell.removeprefix("Δ ").split(" ± ")
    se, n = rest.split(" (")
    return float(mean), float(se), int(n.rstrip(")"))


def _exact(cell, mean):  # the paired difference, with the seed effect cancelled to rounding
    got, se, pairs = _paired(cell)
    return abs(got - mean) < 1e-9 and se < 1e-12 and pairs == 3


def _row(lines, arm, after):
    start = lines.index(after)
    return next(line for line in lines[start:] if line.startswith(f"| {arm} |")).split(" | ")


def test_report_pairs_by_budget_and_seed_and_rebuilds_from_collected_files(tmp_path):
    _study(tmp_path / "logs")
    results = tmp_path / "results"
    ecr.collect(tmp_path / "logs", results)
    assert not list(results.rglob("*.ckpt"))  # light files only
    lines = ecr.report(results).read_text().splitlines()
    small, large = (
        _row(lines, "itd_cdl", "**100 s of training**"),
        _row(lines, "itd_cdl", "**400 s of training**"),
    )
    # the seed effect cancels in pairs: exactly GAIN at each budget, which neither a pairing across
    # budgets nor one on the evaluations' own config seed (0 for all) gives
    assert _exact(small[5], -0.002) and _exact(large[5], 0.001)
    assert _exact(small[7], -0.004)  # DDPM = 2 x ParaDDPM here
    assert small[4] == "0.0313 ± 0.0088 (3)"  # mean ± se over seeds: 0.018 + 0.04/3
    # cost: the 100 s points calibrated (1000 steps x 0.1 s, 1000 x 8448 rows), the 400 s ones measured
    assert small[2:4] == ["100*", "8.45"] and large[2:4] == ["390", "1"]
    itd = _row(lines, "itd", "**100 s of training**")
    assert itd[1:4] == ["10000", "100*", "2.56"] and itd[5] == "-"
    tuned = _row(lines, "itd_cdl", "## Fine-tuning a converged base at equal training time")
    assert tuned[1] == "2000" and _exact(tuned[5], -0.004)
    heun = next(line for line in lines if line.startswith("| heun10 |"))
    assert _exact(heun.split("; ")[1].rstrip(" |"), -0.008)
    assert (results / "plots" / "mmd_vs_seconds_const.png").is_file()
    assert (results / "plots" / "mmd_vs_rows_const.png").is_file()


def test_an_image_study_is_reported_by_fid_and_kid_of_every_sampler_with_the_floor(tmp_path):
    # experiment=digits scores FID/KID, no MMD: the columns follow the samplers the runs scored
    root = tmp_path / "digits"
    gain = {"itd": 0.0, "itd_cdl_s4": -1.5}
    for arm in gain:
        for seed in SEEDS:
            folder = root / "finetune" / "itd_seed0" / arm / f"seed{seed}"
            fid = 20.0 + 10 * SEED_EFFECT[seed] + gain[arm]
            metrics = {"eval/ddim25/fid": fid, "eval/ddim50/fid": fid - 1, "eval/ddim25/kid": fid / 1000}
            write_run(folder, ["seed=0"], {**metrics, "val/nll": 1.0}, step=5100, evaluation=False)
            record = {"arm": arm, "seed": seed, "recipe": "finetune", "stage": "finetune", "preset": "digits"}
            record |= {"budget_seconds": 150, "base_arm": "itd", "base_step": 5000, "finetune_steps": 100}
            (folder / "budget.json").write_text(json.dumps({**record, "steps": 5100}))
            # 1000-step DDPM scored later by ctdm.evaluate into rescored/: merged into the point's metrics
            (folder / "rescored" / "ddpm").mkdir(parents=True)
            ddpm = {"eval/ddpm/fid": fid + 5, "train/seconds": 1.0}  # only its eval/ keys are taken
            (folder / "rescored" / "ddpm" / "metrics.json").write_text(json.dumps(ddpm))
            (folder / "plots").mkdir()
            (folder / "plots" / "samples_ddim25_step005100.png").write_bytes(b"\x89PNG")
    (root / "fid_floor.json").write_text(
        json.dumps({"fid": 3.2, "kid": 0.0004, "kid_std": 0.0001, "num_samples": 297})
    )
    # the base every arm starts from: a ctdm.train run under bases/, with its training cost and scores
    base = {"eval/ddim25/fid": 30.0, "eval/ddim50/fid": 29.0, "eval/ddim25/kid": 0.03}
    base |= {
        "train/steps": 5000,
        "train/seconds": 900.0,
        "train/rows_forward": 6.4e5,
        "train/rows_backward": 6.4e5,
    }
    write_run(root / "bases" / "itd" / "seed0", ["loss=itd", "seed=0"], base, step=5000)
    (root / "bases" / "itd" / "seed0" / "checkpoints").mkdir()
    (root / "bases" / "itd" / "seed0" / "checkpoints" / "last.ckpt").write_bytes(b"heavy")
    results = tmp_path / "results"
    ecr.collect(root, results)
    assert not list(results.rglob("*.ckpt"))  # light files only, the base's too
    assert (results / "fid_floor.json").is_file() and (
        results / "bases" / "itd" / "seed0" / "summary.json"
    ).is_file()
    assert len(list(results.glob("finetune/*/*/seed*/plots/samples_ddim25_step005100.png"))) == 6
    lines = ecr.report(results).read_text().splitlines()
    based = next(line for line in lines if line.startswith("| itd/seed0 |")).split(" | ")
    assert based[1:4] == ["5000", "900", "1.28"] and based[5:7] == ["30", "29"]  # DDPM: not scored (nan)
    head = next(line for line in lines if line.startswith("| arm | fine-tune steps"))
    assert "| DDPM FID | Δ DDPM FID (pairs) | DDIM-25 FID | Δ DDIM-25 FID (pairs) | DDIM-50 FID" in head
    assert "DDIM-25 KID" in head and "MMD" not in head and "ParaDDPM" not in head
    row = _row(lines, "itd_cdl_s4", "## Fine-tuning a converged base at equal training time")
    assert _exact(row[5], -1.5) and _exact(row[7], -1.5) and _exact(row[9], -1.5) and _exact(row[11], -0.0015)
    assert row[4] == "23.6 ± 0.088 (3)"  # DDPM FID of the CDL arm: 25 - 1.5 + 10 x the mean seed effect
    assert any("297 held-out images" in line and "FID 3.2" in line for line in lines)
    assert any(line.startswith("Rebuilt") and "FID and KID" in line for line in lines)


def test_an_arm_is_also_compared_with_itd_at_about_its_steps(tmp_path):
    # digits from scratch: CDL costs ~2x a step, so CDL at 480 s (1400 steps) meets ITD at 240 s (1500
    # steps, within the 15% tolerance) at about equal steps; CDL at 240 s (700 steps) meets none
    root = tmp_path / "digits"
    steps = {"itd": {240: 1500, 480: 3000}, "itd_cdl_s4": {240: 700, 480: 1400}}
    fid = {("itd", 240): 40.0, ("itd", 480): 30.0, ("itd_cdl_s4", 240): 50.0, ("itd_cdl_s4", 480): 37.0}
    for (arm, budget), value in fid.items():
        for seed in SEEDS:
            folder = root / "scratch_const" / arm / f"seed{seed}" / f"budget{budget}s"
            metrics = {"eval/ddim25/fid": value + 10 * SEED_EFFECT[seed], "val/nll": 1.0}
            metrics |= {"train/seconds": budget + 1.0, "train/rows_forward": 1e5, "train/rows_backward": 1e5}
            write_run(folder, ["seed=0"], metrics, step=steps[arm][budget], evaluation=False)
            record = {"arm": arm, "seed": seed, "recipe": "const", "stage": "scratch", "preset": "digits"}
            record |= {"budget_seconds": budget, "steps": steps[arm][budget]}
            (folder / "budget.json").write_text(json.dumps(record))
    lines = ecr.report(root).read_text().splitlines()
    title = "**itd_cdl_s4 at 480 s against itd at 240 s**"
    assert title in lines and not any(line.startswith("**itd_cdl_s4 at 240 s") for line in lines)
    base, cdl = _row(lines, "itd", title), _row(lines, "itd_cdl_s4", title)
    assert base[1:3] == ["1500", "241"] and cdl[1:3] == ["1400", "481"]
    assert _exact(cdl[5], 37.0 - 40.0)  # paired with ITD at 240 s, not at 480 s (which gives -7 + 30)
    at_time = _row(lines, "itd_cdl_s4", "**480 s of training**")
    assert _exact(at_time[5], 37.0 - 30.0)  # the per-budget table: equal time
    assert (root / "plots" / "fid_vs_seconds_const.png").is_file()


def test_a_point_whose_measured_seconds_are_not_comparable_is_costed_by_the_calibration(tmp_path):
    _study(tmp_path)
    for seed in SEEDS:  # the 400 s runs of itd_cdl measured 390 s, but ran at low priority
        path = tmp_path / "scratch_const" / "itd_cdl" / f"seed{seed}" / "budget.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "seconds_not_comparable": "ran at nice 19 beside other jobs"}))
    lines = ecr.report(tmp_path).read_text().splitlines()
    # 4000 steps x 0.1 s calibrated, marked *; the rows are still the measured 1 M
    assert _row(lines, "itd_cdl", "**400 s of training**")[2:4] == ["400*", "1"]
    assert _row(lines, "itd", "**400 s of training**")[2:4] == ["390", "1"]
