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
import statistics
from pathlib import Path

import torch
import yaml

from ctdm.build import build_data, build_samplers, load_module
from ctdm.checkpoint import load_checkpoint
from ctdm.diagnostics import QueryRecorder, error_heatmap, measure_ood_error
from ctdm.evaluation import MMDScorer, evaluate_samplers, generate, sample_seeds
from ctdm.plotting import plt, save_figure

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


def read_job(folder: Path) -> dict | None:
    """One finished job: its arm (the loss choice), recipe (the LR schedule choice), seed, metrics and
    pass curves; None for a job without summary.json (failed or still running)."""
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        return None
    hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    choices = hydra["runtime"]["choices"]
    curves = {}
    for path in sorted((folder / "eval").glob("*_passes_step*.json")):  # the last step's curve wins
        payload = json.loads(path.read_text())
        curves[payload["sampler"]] = payload["passes"]
    summary = json.loads(summary_file.read_text())
    return {
        "folder": folder,
        "arm": choices.get("loss"),
        "recipe": "decay" if choices.get("model/lr_scheduler") == "cosine" else "authors",
        "experiment": choices.get("experiment"),
        "seed": config.get("seed"),
        "steps": summary["global_step"],
        "num_samples": config["eval"]["num_samples"],
        "metrics": summary["metrics"],
        "curves": curves,
        "samplers": list(config["eval"]["samplers"]),
        "mmd": {k: config["eval"][k] for k in ("mmd_bandwidth", "mmd_units")},
        "ood": json.loads((folder / "ood_error.json").read_text())
        if (folder / "ood_error.json").is_file()
        else None,
    }


def read_jobs(out_dir: Path) -> list[dict]:
    jobs = [read_job(f) for f in sorted(out_dir.glob("*/*")) if (f / ".hydra").is_dir()]
    return [j for j in jobs if j is not None]


def chunked(eps_fn, rows: int = 4096):
    """eps_fn on at most `rows` states at a time (the exact mixture denoiser builds [N, K, d] tensors)."""
    return lambda z, a: torch.cat(
        [eps_fn(zc, ac) for zc, ac in zip(z.split(rows), a.split(rows), strict=True)]
    )


def add_ood_error(job: dict, num_samples: int, sampler_name: str = "para_ddpm") -> None:
    """Measure the trained denoiser against the exact one (paths vs solver queries) and store it."""
    checkpoint = job["folder"] / "checkpoints" / "last.ckpt"
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
            job["folder"] / "plots" / "ood_error_heatmap.png",
            queries=recorder.states(),
            title=f"{job['arm']}, seed {job['seed']}: |eps_hat - eps*|^2 (white: {name} queries)",
        )
        result["heatmap"] = str(path.relative_to(job["folder"]))  # the folder may move
    (job["folder"] / "ood_error.json").write_text(json.dumps(result, indent=1))
    job["ood"] = result


@torch.no_grad()
def exact_limit(job: dict) -> dict | None:
    """Every sampler of the job run with the law's exact denoiser, same seeds and MMD: the limit row."""
    checkpoint = job["folder"] / "checkpoints" / "last.ckpt"
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


def _mean_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3g} ± {spread:.2g}" if len(values) > 1 else f"{mean:.3g}"


def _columns(samplers: list[str]) -> list[tuple[str, str]]:
    cols = []
    for name in samplers:
        cols.append((f"{name} MMD", f"eval/{name}/mmd"))
        if name.startswith("para"):
            cols += [(f"{name} passes", f"eval/{name}/passes"), (f"{name} NFE", f"eval/{name}/nfe")]
    return cols + [("val/nll", "val/nll"), ("val/cdl_acc", "val/cdl_acc")]


def _differences(groups: dict, cols: list[tuple[str, str]], baselines=("mse_sum", "mse")) -> list[str]:
    """Per recipe, each arm's mean minus the baseline arm's, with the standard error of that difference
    (sqrt(s1^2/n1 + s2^2/n2)): a difference within about 2 standard errors is not resolved by the seeds."""
    keys = [(c, k) for c, k in cols if k.endswith(("/mmd", "/passes"))] + [("val/nll", "val/nll")]
    lines = []
    for recipe in sorted({label.split(" / ")[0] for label in groups}):
        arms = {
            label.split(" / ")[1]: jobs for label, jobs in groups.items() if label.startswith(recipe + " / ")
        }
        base = next((b for b in baselines if b in arms), None)
        if base is None or len(arms) < 2:
            continue
        if not lines:
            lines += ["", "## Each arm against the baseline", "", "Mean difference ± its standard error."]
        lines += [
            "",
            f"{recipe} recipe, against `{base}`:",
            "",
            "| arm | " + " | ".join(c for c, _ in keys) + " |",
        ]
        lines.append("|" + "---|" * (1 + len(keys)))
        for arm, jobs in sorted(arms.items()):
            if arm == base:
                continue
            row = [arm]
            for _, key in keys:
                a = [j["metrics"][key] for j in jobs if key in j["metrics"]]
                b = [j["metrics"][key] for j in arms[base] if key in j["metrics"]]
                if len(a) < 2 or len(b) < 2:
                    row.append("-")
                    continue
                se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
                row.append(f"{statistics.fmean(a) - statistics.fmean(b):+.3g} ± {se:.2g}")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def plot_curves(groups: dict, limit: dict | None, sampler: str, path: Path, units: str) -> Path:
    """MMD after each Picard pass: the mean over seeds per arm, and the exact denoiser's."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        curves = [j["curves"][sampler] for j in jobs if sampler in j["curves"]]
        if not curves:
            continue
        length = max(len(c) for c in curves)  # a converged run keeps its last value
        table = [[c[min(i, len(c) - 1)]["mmd"] for i in range(length)] for c in curves]
        mean = [statistics.fmean(col) for col in zip(*table, strict=True)]
        ax.plot(range(1, length + 1), mean, label=f"{label} (n={len(curves)})")
    if limit and sampler in limit["curves"]:
        exact = limit["curves"][sampler]
        ax.plot([c["pass"] for c in exact], [c["mmd"] for c in exact], "k--", label="exact denoiser")
    # The unbiased MMD^2 is noisy around 0 at the floor and can be negative: a log axis that is linear
    # within +-1e-4 shows that instead of clipping it to a misleading tiny value.
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.axhspan(-1e-4, 1e-4, color="0.92", zorder=0)
    ax.set_xlabel("Picard pass")
    ax.set_ylabel(f"MMD^2 ({units} units; grey: |value| < 1e-4, linear)")
    ax.set_title(f"{sampler}: MMD after each pass (mean over seeds)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def build_report(out_dir: Path, ood_samples: int = 500, limit: bool = True) -> Path:
    """report.md (and plots/) in out_dir from the job folders under it; returns the report's path."""
    out_dir = Path(out_dir).resolve()  # job folders and heat-map paths are absolute
    jobs = read_jobs(out_dir)
    if not jobs:
        raise ValueError(f"{out_dir} holds no finished job (no <recipe>/<job>/summary.json under it).")
    for job in jobs:
        if job["ood"] is None and ood_samples > 0:
            add_ood_error(job, ood_samples)
    experiment = jobs[0]["experiment"]
    samplers = jobs[0]["samplers"]
    limit_row = None
    if limit:  # the exact denoiser's runs are minutes of CPU: computed once per out folder
        cache = out_dir / "exact_limit.json"
        if cache.is_file():
            limit_row = json.loads(cache.read_text())
        else:
            limit_row = exact_limit(jobs[0])
            if limit_row is not None:
                cache.write_text(json.dumps(limit_row, indent=1))
    bandwidth, units = jobs[0]["mmd"]["mmd_bandwidth"], jobs[0]["mmd"]["mmd_units"]
    cols = _columns(samplers)
    with_ood = any(j["ood"] for j in jobs)
    header = ["recipe", "arm", "seeds", "steps", "samples", *[c for c, _ in cols]]
    ood_keys = ["error_on_paths", "error_at_queries", "ratio", "median_ratio"] if with_ood else []
    header += ["err on paths", "err at queries", "ratio", "median ratio"] if with_ood else []

    lines = [f"# {experiment}: {len(jobs)} jobs", ""]
    lines += [
        f"Built from `{out_dir}` by experiments/report.py. Mean ± standard deviation over seeds. MMD^2 is "
        f"unbiased, bandwidth {bandwidth} in {units} units"
        + (
            f" (ctdm's sigma-unit value at sigma = {math.sqrt(bandwidth):.4g} is the paper-unit value / "
            f"{1 / math.sqrt(2 * math.pi * bandwidth):.4g})."
            if units == "paper" and bandwidth != "median"
            else "."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        groups.setdefault(f"{job['recipe']} / {job['arm']}", []).append(job)
    for label, members in sorted(groups.items()):
        recipe, arm = label.split(" / ")
        counts = sorted({str(j["num_samples"]) for j in members})
        row = [recipe, arm, str(len(members)), str(members[0]["steps"]), "/".join(counts)]
        row += [_mean_spread([j["metrics"].get(key) for j in members]) for _, key in cols]
        row += [_mean_spread([j["ood"].get(key) for j in members if j["ood"]]) for key in ood_keys]
        lines.append("| " + " | ".join(row) + " |")
    if limit_row:
        row = ["-", "**exact denoiser** (limit)", "-", "-", str(jobs[0]["num_samples"])]
        row += [_mean_spread([limit_row["metrics"].get(key)]) for _, key in cols]
        lines.append("| " + " | ".join(row + ["0", "0", "-", "-"][: len(ood_keys)]) + " |")
    for arm, numbers in PAPER.get(experiment, {}).items():
        row = ["paper", f"{arm} (their one seed)", "1", str(numbers.get("steps", "-"))]
        row.append(str(numbers.get("samples", "-")))
        row += [f"{numbers[key]:g}" if key in numbers else "-" for _, key in cols]
        lines.append("| " + " | ".join(row + ["-"] * len(ood_keys)) + " |")

    lines += _differences(groups, cols)
    lines += [
        "",
        "## Every job",
        "",
        "| job | recipe | arm | seed | " + " | ".join(c for c, _ in cols) + " |",
    ]
    lines.append("|" + "---|" * (4 + len(cols)))
    for job in jobs:
        values = [f"{job['metrics'][k]:.4g}" if k in job["metrics"] else "-" for _, k in cols]
        rel = job["folder"].relative_to(out_dir)
        lines.append(
            f"| {rel} | {job['recipe']} | {job['arm']} | {job['seed']} | " + " | ".join(values) + " |"
        )

    lines += ["", "## MMD after each Picard pass", ""]
    for sampler in samplers:
        if any(sampler in j["curves"] for j in jobs):
            path = plot_curves(
                groups, limit_row, sampler, out_dir / "plots" / f"mmd_per_pass_{sampler}.png", units
            )
            lines.append(f"![{sampler}]({path.relative_to(out_dir)})")
    heatmaps = [j for j in jobs if j["ood"] and j["ood"].get("heatmap")]
    if heatmaps:
        lines += ["", "## Denoiser error over (z, log-SNR) (the paper's Figure 1)", ""]
        for job in heatmaps:
            rel = (job["folder"] / "plots" / Path(job["ood"]["heatmap"]).name).relative_to(out_dir)
            lines.append(f"- {job['recipe']} / {job['arm']}, seed {job['seed']}: ![]({rel})")
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
