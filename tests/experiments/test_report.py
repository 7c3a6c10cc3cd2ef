"""experiments.compare_arms end to end on a 2-job smoke multirun (joblib launcher, 2 jobs at once):
report.md has one row per job, the exact-denoiser limit, the paper's numbers and the pass-curve plots."""

import json
import re

import pytest
from conftest import write_run

from ctdm.compare import group_runs, load_runs
from experiments import compare_arms
from experiments import report as report_script

pytest.importorskip(
    "hydra_plugins.hydra_joblib_launcher", reason="the sweep extra: pip install -e '.[sweep]'"
)


@pytest.mark.slow
def test_report_from_a_two_job_smoke_multirun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dino"
    args = ["--smoke", "--arms", "mse_sum,itd_cdl_paper", "--seeds", "0", "--recipes", "authors"]
    report = compare_arms.main([*args, "--jobs", "2", "--out", str(out), "--ood-samples", "8"])
    text = report.read_text()
    jobs = sorted(p.parent for p in out.glob("authors/*/summary.json"))
    assert len(jobs) == 2
    # the per-job table: exactly one row per job folder, with its arm
    rows = [line for line in text.splitlines() if re.match(r"\| authors/\d+ \|", line)]
    assert len(rows) == 2
    arms = {json.loads((j / "ood_error.json").read_text())["sampler"] for j in jobs}
    assert arms == {"para_ddpm"}
    for arm in ("mse_sum", "itd_cdl_paper"):
        assert sum(f"| {arm} |" in row for row in rows) == 1
        assert f"| authors | {arm} | 1 | 4 |" in text  # the per-arm summary row (1 seed, 4 smoke steps)
    assert "**exact denoiser** (limit)" in text and "| paper | mse_sum (their one seed)" in text
    assert "0.00311" in text and "13983" in text  # the paper's dino numbers beside ours
    for plot in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out / plot).is_file(), plot
    # rebuilding from the folders alone gives the same report
    rebuilt = report_script.build_report(out, ood_samples=8)
    assert rebuilt.read_text() == text


def test_differences_against_the_baseline_carry_their_standard_error(tmp_path):
    def job(recipe, loss, seed, value, lr=None):
        overrides = [f"loss={loss}", f"seed={seed}"] + ([f"model/lr_scheduler={lr}"] if lr else [])
        return write_run(tmp_path / recipe / f"{loss}_{seed}", overrides, {"eval/para_ddpm/mmd": value})

    for seed, (base, cdl) in enumerate([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]):
        job("authors", "mse_sum", seed, base)
        job("authors", "itd_cdl_paper", seed, cdl)
    for seed in (0, 1):  # no baseline in this recipe: no table
        job("decay", "itd", seed, 1.0, lr="cosine")
    arms = group_runs(load_runs([tmp_path]))
    cols = [("para_ddpm MMD", "eval/para_ddpm/mmd"), ("val/nll", "val/nll")]
    lines = report_script._differences(arms, cols)
    text = "\n".join(lines)
    assert "authors recipe, against `mse_sum`" in text and "decay recipe" not in text
    row = next(line for line in lines if line.startswith("| itd_cdl_paper |"))
    # +1 with s.e. sqrt(1/3 + 1/3) = 0.816; no val/nll in these runs
    assert row == "| itd_cdl_paper | +1 ± 0.82 | - |", row
