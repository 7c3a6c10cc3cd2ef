"""Build report.md for a comparison from its run folders alone.

    python -m experiments.report OUT_DIR [--ood-samples 500]

OUT_DIR holds one Hydra multirun folder per recipe (OUT_DIR/<recipe>/<job>/ with .hydra/, summary.json,
eval/<sampler>_passes_step*.json and checkpoints/last.ckpt), as experiments.compare_arms writes them.
For data with an exact law the report adds, per job, the denoiser's exact error on the training paths
and at the Picard solver's queries (ctdm.diagnostics, written to <job>/ood_error.json and, for 1-D data,
the Figure-1 heat map), and a row for the exact denoiser itself: the limit no training can pass
(cached in OUT_DIR/exact_limit.json; delete it to recompute).
"""

import argparse
import json
import math
from pathlib import Path

import torch

from ctdm.build import build_data, build_samplers, load_module
from ctdm.checkpoint import load_checkpoint
from ctdm.compare import (
    Arm,
    Run,
    baseline_of,
    difference,
    group_runs,
    load_runs,
    markdown_table,
    mean_sd,
    plot_pass_curves,
)
from ctdm.diagnostics import QueryRecorder, error_heatmap, measure_ood_error
from ctdm.evaluation import MMDScorer, evaluate_samplers, generate, sample_seeds

# The authors' numbers (one seed each; their MMD units) from their notebooks, by experiment and arm.
PAPER = {
    "paper_dino": {
        "itd_cdl_paper": {
            "steps": 782000,
            "samples": 2000,
            **{"eval/para_ddpm/passes": 36, "eval/para_ddpm/nfe": 13983, "eval/para_ddpm/mmd": 0.00123},
            **{"eval/para_ddim/passes": 21, "eval/para_ddim/nfe": 4565, "eval/para_ddim/mmd": 0.0075},
        },
        "mse_sum": {
            "steps": 782000,
            "samples": 2000,
            **{"eval/para_ddpm/passes": 37, "eval/para_ddpm/nfe": 14397, "eval/para_ddpm/mmd": 0.00311},
            **{"eval/para_ddim/passes": 22, "eval/para_ddim/nfe": 6459, "eval/para_ddim/mmd": 0.0090},
        },
    },
    "paper_1d": {  # ParaDDPM 1000 on 6,666 samples: passes only
        "itd_cdl_paper": {"samples": 6666, "eval/para_ddpm/passes": 24},
        "mse_sum": {"samples": 6666, "eval/para_ddpm/passes": 26},
        "itd": {"samples": 6666, "eval/para_ddpm/passes": 38},
    },
}


def recipe_of(run: Run) -> str:
    """The recipe is the multirun folder a job ran in (<out>/<recipe>/<job>, as compare_arms writes)."""
    return run.folder.parent.name


def arm_of(run: Run) -> str:
    """A comparison's arms are loss options."""
    return run.value("loss")


def shown(folder: Path) -> Path:
    """The folder relative to the working directory when inside it (reports rebuilt in a clone read the
    same), else absolute."""
    try:
        return folder.relative_to(Path.cwd())
    except ValueError:
        return folder


def read_ood(run: Run) -> dict | None:
    """The job's exact-error record (<job>/ood_error.json, written by add_ood_error), if measured."""
    file = run.folder / "ood_error.json"
    return json.loads(file.read_text()) if file.is_file() else None


def chunked(eps_fn, rows: int = 4096):
    """eps_fn on at most `rows` states at a time (the exact mixture denoiser builds [N, K, d] tensors)."""
    return lambda z, a: torch.cat(
        [eps_fn(zc, ac) for zc, ac in zip(z.split(rows), a.split(rows), strict=True)]
    )


def add_ood_error(job: Run, num_samples: int, sampler_name: str = "para_ddpm") -> None:
    """Measure the trained denoiser against the exact one (paths vs solver queries) and store it in
    <job>/ood_error.json."""
    checkpoint = job.folder / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return
    module = load_module(checkpoint)
    cfg, eps_fn = module.run_config, module.eps
    law = getattr(build_data(cfg), "law", None)
    samplers = build_samplers(cfg)
    if law is None or not samplers:
        return
    name = sampler_name if sampler_name in samplers else next(iter(samplers))
    sampler = samplers[name]
    n = min(num_samples, cfg["eval"]["num_samples"])
    result = {
        "sampler": name,
        "num_samples": n,
        **measure_ood_error(eps_fn, law, sampler, n, cfg["eval"]["seed"]),
    }
    if law.dim == 1:  # the paper's Figure 1, with this sampler's queries on top
        recorder = QueryRecorder(eps_fn)
        generate(sampler, recorder, (1,), sample_seeds(cfg["eval"]["seed"], range(min(n, 500))))
        path, _ = error_heatmap(
            eps_fn,
            law,
            job.folder / "plots" / "ood_error_heatmap.png",
            queries=recorder.states(),
            title=f"{arm_of(job)}, seed {job.seed}: |eps_hat - eps*|^2 (white: {name} queries)",
        )
        result["heatmap"] = str(path.relative_to(job.folder))  # the folder may move
    (job.folder / "ood_error.json").write_text(json.dumps(result, indent=1))


@torch.no_grad()
def exact_limit(job: Run) -> dict | None:
    """Every sampler of the job run with the law's exact denoiser, same seeds and MMD: the limit row."""
    checkpoint = job.folder / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return None
    cfg = load_checkpoint(checkpoint)["ctdm_config"]
    datamodule = build_data(cfg)
    law = getattr(datamodule, "law", None)
    if law is None:
        return None
    datamodule.setup("fit")
    ev = cfg["eval"]
    result = evaluate_samplers(
        list(build_samplers(cfg).values()),
        chunked(law.eps),
        MMDScorer(datamodule.x_val, ev["mmd_bandwidth"], ev["mmd_units"]),
        tuple(datamodule.shape),
        num_samples=ev["num_samples"],
        seed=ev["seed"],
    )
    metrics = {}
    for r in result.samplers:
        metrics |= {f"eval/{r.name}/mmd": r.scores["mmd"], f"eval/{r.name}/nfe": r.nfe}
        metrics |= {f"eval/{r.name}/passes": r.passes}
    return {"metrics": metrics, "curves": result.curves}


def _columns(samplers: list[str]) -> list[tuple[str, str]]:
    cols = []
    for name in samplers:
        cols.append((f"{name} MMD", f"eval/{name}/mmd"))
        if name.startswith("para"):
            cols += [(f"{name} passes", f"eval/{name}/passes"), (f"{name} NFE", f"eval/{name}/nfe")]
    return cols + [("val/nll", "val/nll"), ("val/cdl_acc", "val/cdl_acc")]


def _differences(arms: list[Arm], cols: list[tuple[str, str]], baselines=("mse_sum", "mse")) -> list[str]:
    """Per recipe, each arm's mean minus the baseline arm's (the baseline loss with the recipe's other
    settings: ctdm.compare.baseline_of), with the standard error of that difference."""
    keys = [(c, k) for c, k in cols if k.endswith(("/mmd", "/passes"))] + [("val/nll", "val/nll")]
    lines = []
    for recipe in sorted({recipe_of(arm.runs[0]) for arm in arms}):
        members = [arm for arm in arms if recipe_of(arm.runs[0]) == recipe]
        base = next((b for b in baselines if b in {arm_of(a.runs[0]) for a in members}), None)
        if base is None or len(members) < 2 or "loss" not in members[0].values:
            continue
        rows = []
        for arm in sorted(members, key=lambda a: arm_of(a.runs[0])):
            other = baseline_of(arm, arms, {"loss": base})
            if other is not None and other is not arm:
                rows.append(
                    [
                        arm_of(arm.runs[0]),
                        *(difference(arm.values_of(k), other.values_of(k)) for _, k in keys),
                    ]
                )
        if not lines:
            lines += ["", "## Each arm against the baseline", "", "Mean difference ± its standard error."]
        lines += ["", f"{recipe} recipe, against `{base}`:", ""]
        lines += markdown_table(["arm", *(c for c, _ in keys)], rows)
    return lines


def build_report(out_dir: Path, ood_samples: int = 500, limit: bool = True) -> Path:
    """report.md (and plots/) in out_dir from the job folders under it; returns the report's path."""
    out_dir = Path(out_dir).resolve()  # job folders and heat-map paths are absolute
    jobs = load_runs([out_dir])
    if not jobs:
        raise ValueError(f"{out_dir} holds no finished job (no <recipe>/<job>/summary.json under it).")
    for job in jobs:
        if read_ood(job) is None and ood_samples > 0:
            add_ood_error(job, ood_samples)
    ood = {job.folder: read_ood(job) for job in jobs}
    first = jobs[0]
    experiment, samplers = first.choices.get("experiment"), list(first.config["eval"]["samplers"])
    limit_row = None
    if limit:  # the exact denoiser's runs are minutes of CPU: computed once per out folder
        cache = out_dir / "exact_limit.json"
        if cache.is_file():
            limit_row = json.loads(cache.read_text())
        else:
            limit_row = exact_limit(first)
            if limit_row is not None:
                cache.write_text(json.dumps(limit_row, indent=1))
    bandwidth, units = first.config["eval"]["mmd_bandwidth"], first.config["eval"]["mmd_units"]
    cols = _columns(samplers)
    with_ood = any(ood.values())
    header = ["recipe", "arm", "seeds", "steps", "samples", *[c for c, _ in cols]]
    ood_keys = ["error_on_paths", "error_at_queries", "ratio", "median_ratio"] if with_ood else []
    header += ["err on paths", "err at queries", "ratio", "median ratio"] if with_ood else []

    lines = [f"# {experiment}: {len(jobs)} jobs", ""]
    lines += [
        f"Built from `{shown(out_dir)}` by experiments/report.py. Mean ± standard deviation over seeds. "
        f"MMD^2 is unbiased, bandwidth {bandwidth} in {units} units"
        + (
            f" (ctdm's sigma-unit value at sigma = {math.sqrt(bandwidth):.4g} is the paper-unit value / "
            f"{1 / math.sqrt(2 * math.pi * bandwidth):.4g})."
            if units == "paper" and bandwidth != "median"
            else "."
        ),
        "",
    ]
    # The arms: jobs grouped by the overrides that differ between them (ctdm.compare), seeds pooled.
    arms = sorted(group_runs(jobs), key=lambda a: (recipe_of(a.runs[0]), arm_of(a.runs[0])))
    rows = []
    for arm in arms:
        members = arm.runs
        counts = sorted({str(j.config["eval"]["num_samples"]) for j in members})
        row = [
            recipe_of(members[0]),
            arm_of(members[0]),
            str(len(members)),
            str(members[0].step),
            "/".join(counts),
        ]
        row += [mean_sd(arm.values_of(key)) for _, key in cols]
        row += [mean_sd(ood[j.folder].get(key) for j in members if ood[j.folder]) for key in ood_keys]
        rows.append(row)
    if limit_row:
        row = ["-", "**exact denoiser** (limit)", "-", "-", str(first.config["eval"]["num_samples"])]
        row += [mean_sd([limit_row["metrics"].get(key)]) for _, key in cols]
        rows.append(row + ["0", "0", "-", "-"][: len(ood_keys)])
    for arm, numbers in PAPER.get(experiment, {}).items():
        row = ["paper", f"{arm} (their one seed)", "1", str(numbers.get("steps", "-"))]
        row.append(str(numbers.get("samples", "-")))
        row += [f"{numbers[key]:g}" if key in numbers else "-" for _, key in cols]
        rows.append(row + ["-"] * len(ood_keys))
    lines += markdown_table(header, rows)

    lines += _differences(arms, cols)
    lines += ["", "## Every job", ""]
    rows = []
    for job in jobs:
        values = [f"{job.metrics[k]:.4g}" if k in job.metrics else "-" for _, k in cols]
        rows.append([job.folder.relative_to(out_dir), recipe_of(job), arm_of(job), job.seed, *values])
    lines += markdown_table(["job", "recipe", "arm", "seed", *(c for c, _ in cols)], rows)

    lines += ["", "## MMD after each Picard pass", ""]
    groups = {f"{recipe_of(a.runs[0])} / {arm_of(a.runs[0])}": a.runs for a in arms}
    for sampler in samplers:
        exact = (
            {"exact denoiser": limit_row["curves"][sampler]}
            if limit_row and sampler in limit_row["curves"]
            else {}
        )
        path = plot_pass_curves(
            groups, sampler, out_dir / "plots" / f"mmd_per_pass_{sampler}.png", units, exact
        )
        if path is not None:
            lines.append(f"![{sampler}]({path.relative_to(out_dir)})")
    heatmaps = [j for j in jobs if ood[j.folder] and ood[j.folder].get("heatmap")]
    if heatmaps:
        lines += ["", "## Denoiser error over (z, log-SNR) (the paper's Figure 1)", ""]
        for job in heatmaps:
            rel = (job.folder / "plots" / Path(ood[job.folder]["heatmap"]).name).relative_to(out_dir)
            lines.append(f"- {recipe_of(job)} / {arm_of(job)}, seed {job.seed}: ![]({rel})")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--ood-samples", type=int, default=500, help="samples for the exact-error measure (0: skip)"
    )
    parser.add_argument("--no-limit", action="store_true", help="skip the exact-denoiser row")
    args = parser.parse_args(argv)
    print(build_report(args.out_dir, args.ood_samples, not args.no_limit))


if __name__ == "__main__":
    main()
