"""The issue-16 sweep's report, rebuilt from committed run folders alone.

    python -m experiments.cdl_report --collect /path/to/sweep_out   # copy finished jobs' light files in
    python -m experiments.cdl_report                                # write report.md and plots/

Run folders: experiments/results/cdl_sweep/<arm>/seed<k>/ (as experiments.cdl_sweep writes them, without
checkpoints), and the earlier dino report's jobs (experiments/results/paper_dino/authors/<job>/), which ran
the same command for some arms: `loss=itd` is arm `itd`, `loss=itd_cdl` is `itd_cdl_p2_w1` (ctdm's CDL at
its default then, weight 1), `loss=mse_cdl` is `mse_cdl_p2_w1`, `loss=mse_sum` is `mse_sum`, and
`itd_cdl_paper` (the authors' CDL: 2 items x 128 independent points) has no sweep arm. A job that both
ran is counted once, and the report checks that the two runs agree (the code reproduces a job's training
bit for bit, so they must; the MMD, summed in blocks since, agrees to rounding: relative 1e-9).

Each arm is compared with its base, difference ± standard error: CDL on the ITD base (and ITD with
stratified levels, and the authors' CDL) with `itd`; CDL on the MSE base with `mse_sum`. (`mse_cdl` adds CDL
to the mean-reduced MSE, `loss=mse`; Adam is invariant to the loss's scale up to its epsilon, so `mse` and
`mse_sum` train the same model: equal MMD to 3 digits at seed 0, both in the table. `mse_sum` has the seeds.)
"""

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

from ctdm.compare import (
    Run,
    by_seed,
    difference,
    load_runs,
    markdown_table,
    mean_sd,
    number,
    paired_difference,
)

RESULTS = Path(__file__).parent / "results" / "cdl_sweep"
EARLIER = Path(__file__).parent / "results" / "paper_dino" / "authors"
EARLIER_ARMS = {
    "itd": "itd",
    "itd_cdl": "itd_cdl_p2_w1",
    "mse_cdl": "mse_cdl_p2_w1",
    "mse_sum": "mse_sum",
    "itd_cdl_paper": "itd_cdl_paper",
}
# The authors' numbers (782k steps, one seed, 2,000 samples; experiments/report.py has their source).
PAPER = {"itd_cdl_paper": (0.00123, 0.0075), "mse_sum": (0.00311, 0.0090)}  # ParaDDPM, ParaDDIM MMD
# What a job's folder keeps in the repository: no checkpoints, one sample picture and one pass curve.
KEEP = (
    ".hydra/*.yaml",
    "summary.json",
    "nfe.json",
    "eval/*.json",
    "csv/metrics.csv",
    "plots/samples_para_ddpm_step*.png",
    "plots/mmd_per_pass_para_ddpm_step*.png",
    "eval_seed*/metrics.json",
)
COLUMNS = {
    "ParaDDPM MMD": "eval/para_ddpm/mmd",
    "DDPM MMD": "eval/ddpm/mmd",
    "ParaDDIM MMD": "eval/para_ddim/mmd",
    "ParaDDPM passes": "eval/para_ddpm/passes",
    "val/nll": "val/nll",
    "CDL accuracy": "val/cdl_acc",
}
DIFFERENCES = ("eval/para_ddpm/mmd", "eval/para_ddim/mmd", "val/nll")
PAIRED = ("eval/para_ddpm/mmd", "eval/ddpm/mmd", "eval/para_ddim/mmd", "val/nll", "val/cdl_acc")


def base_of(arm: str) -> str | None:
    if arm.startswith("itd_") or arm == "itd_cdl_paper":
        return "itd"
    if arm.startswith("mse_cdl") or arm == "mse":
        return "mse_sum"
    return None


def collect(source: Path, results: Path = RESULTS) -> list[Path]:
    """Copy the light files of every finished job under source/<arm>/seed<k>/ into results/."""
    copied = []
    for summary in sorted(source.glob("*/seed*/summary.json")):
        job = summary.parent
        target = results / job.parent.name / job.name
        for pattern in KEEP:
            for path in job.glob(pattern):
                (target / path.relative_to(job)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(job))
        copied.append(target)
    if (source / "exact_nfe.json").is_file():  # the exact denoiser through the few-step samplers
        results.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "exact_nfe.json", results / "exact_nfe.json")
    return copied


def arm_runs(
    results: Path = RESULTS, earlier: Path | None = EARLIER
) -> tuple[dict[str, list[Run]], list[str]]:
    """{arm: runs} with the earlier report's jobs pooled in, and a line per job found in both places."""
    arms: dict[str, list[Run]] = {}
    for run in load_runs([results]):
        arms.setdefault(run.folder.parent.name, []).append(run)
    checks = []
    for run in load_runs([earlier]) if earlier and earlier.is_dir() else []:
        arm = EARLIER_ARMS.get(run.choices.get("loss", ""))
        if arm and arm.endswith("_w1") and run.value("loss.cdl.weight") != "1":
            arm = None  # the preset's weight then was 1; a job that ran another is no seed of this arm
        if arm is None or run.value("experiment") not in ("paper_dino", "-"):
            continue
        same = [r for r in arms.get(arm, []) if r.seed == run.seed]
        if same:
            a, b = same[0].metrics.get("eval/para_ddpm/mmd"), run.metrics.get("eval/para_ddpm/mmd")
            agree = a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
            checks.append(
                f"{arm} seed {run.seed}: ParaDDPM MMD {a!r} here, {b!r} in the earlier report: "
                + ("agree" if agree else "DIFFER")
            )
            continue
        arms.setdefault(arm, []).append(run)
    order = lambda name: (base_of(name) or name, name != base_of(name) and base_of(name) is not None, name)  # noqa: E731
    return {name: arms[name] for name in sorted(arms, key=order)}, checks


def values(runs: list[Run], metric: str) -> list[float]:
    return [r.metrics[metric] for r in runs if metric in r.metrics]


def versus_base(runs: list[Run], base: list[Run], metric: str) -> str:
    """difference ± se with two or more seeds each side, else the single seeds' difference (marked n=1).
    The base counts at the arm's seeds where it ran 2 or more of them: seeds differ (a base run at more
    seeds than its arm would otherwise mix seed composition into the difference)."""
    text = difference(values(runs, metric), values(at_seeds(base, {r.seed for r in runs}), metric))
    if text != "-" or not base:
        return text
    same_seed = {r.seed: r.metrics.get(metric) for r in base}
    diffs = [
        r.metrics[metric] - same_seed[r.seed]
        for r in runs
        if same_seed.get(r.seed) is not None and metric in r.metrics
    ]
    return f"{'+' if diffs[0] >= 0 else ''}{number(diffs[0])} (n=1)" if len(diffs) == 1 else "-"


def at_seeds(runs: list[Run], seeds: set[str]) -> list[Run]:
    """The runs at `seeds` if 2 or more are, else all of them."""
    same = [r for r in runs if r.seed in seeds]
    return same if len(same) > 1 else runs


def same_seeds(base: dict[str, dict], arm: dict[str, dict]) -> dict[str, dict]:
    """{seed: scores} of the base at the arm's seeds if 2 or more are, else all of them."""
    same = {seed: scores for seed, scores in base.items() if seed in arm}
    return same if len(same) > 1 else base


def paired_table(arms: dict[str, list[Run]]) -> list[str]:
    """Each arm against its base at the seeds both ran: mean ± se of the per-seed differences (pairs),
    and the ParaDDPM difference at each seed."""
    rows = []
    for name, runs in arms.items():
        base = arms.get(base_of(name) or "", [])
        if base_of(name) in (None, name):
            continue
        cells = [paired_difference(by_seed(runs, m), by_seed(base, m)) for m in PAIRED]
        if all(c == "-" for c in cells):
            continue
        mmd, base_mmd = by_seed(runs, PAIRED[0]), by_seed(base, PAIRED[0])
        each = ", ".join(f"{s}: {number(mmd[s] - base_mmd[s], 2)}" for s in sorted(mmd) if s in base_mmd)
        rows.append([f"`{name}`", f"`{base_of(name)}`", *cells, each])
    header = ["arm", "base", *(f"Δ {m.split('/')[-2] if m.startswith('eval') else m}" for m in PAIRED)]
    return markdown_table([*header, "Δ ParaDDPM at each seed"], rows)


def reseeded_table(arms: dict[str, list[Run]]) -> list[str]:
    """Arms re-scored by `ctdm.evaluate ... eval.seed=<k>` into <job>/eval_seed<k>/ (other sampling noise,
    the same checkpoints): each against its base, paired by seed, beside the training run's own score."""
    rescored: dict[str, dict[str, dict[str, dict]]] = {}  # folder name -> arm -> seed -> metrics
    for name, runs in arms.items():
        for run in runs:
            for path in sorted(run.folder.glob("eval_seed*/metrics.json")) if run.folder else []:
                rescored.setdefault(path.parent.name, {}).setdefault(name, {})[run.seed] = json.loads(
                    path.read_text()
                )
    rows = []
    metrics = ("eval/ddpm/mmd", "val/nll")
    for folder, scored in sorted(rescored.items()):
        for name, jobs in scored.items():
            base = base_of(name)
            if base in (None, name) or base not in scored:
                continue
            again = [
                paired_difference(
                    {k: j[m] for k, j in jobs.items() if m in j},
                    {k: j[m] for k, j in scored[base].items() if m in j},
                )
                for m in metrics
            ]
            seeds = set(jobs) & set(scored[base])
            own = [
                paired_difference(
                    {k: v for k, v in by_seed(arms[name], m).items() if k in seeds},
                    {k: v for k, v in by_seed(arms[base], m).items() if k in seeds},
                )
                for m in metrics
            ]
            rows.append([f"`{name}`", f"`{base}`", folder.replace("eval_", ""), *again, *own])
    if not rows:
        return []
    header = ["arm", "base", "re-scored with", "Δ DDPM", "Δ val/nll", "Δ DDPM (own)", "Δ val/nll (own)"]
    return [
        "## The same checkpoints with other sampling noise",
        "",
        "`python -m ctdm.evaluate ckpt_path=<job>/checkpoints/last.ckpt 'eval/samplers=[ddpm]'",
        "eval.seed=<k>` draws every sample afresh (a difference that is the models' and not one noise",
        "draw's holds under it) and computes val/nll on all 8,000 held-out points (the training run's",
        "validation: 4 batches of 128). Paired by seed; (own): the training run's evaluation at the same",
        "seeds.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def main_table(arms: dict[str, list[Run]]) -> list[str]:
    header = [
        "arm",
        "seeds",
        *COLUMNS,
        *(f"Δ {m.split('/')[-2] if m.startswith('eval') else m} vs base" for m in DIFFERENCES),
    ]
    rows = []
    for name, runs in arms.items():
        base = arms.get(base_of(name) or "", [])
        rows.append(
            [
                f"`{name}`",
                ",".join(sorted({r.seed for r in runs})),
                *(mean_sd(values(runs, metric)) for metric in COLUMNS.values()),
                *((versus_base(runs, base, m) if base_of(name) else "base") for m in DIFFERENCES),
            ]
        )
    return markdown_table(header, rows)


def nfe_scores(arms: dict[str, list[Run]]) -> dict[str, dict[str, dict]]:
    """{arm: {seed: its nfe.json}} for the arms with any scored seed."""
    scored = {
        name: {
            r.seed: json.loads((r.folder / "nfe.json").read_text())
            for r in runs
            if (r.folder / "nfe.json").is_file()
        }
        for name, runs in arms.items()
    }
    return {k: v for k, v in scored.items() if v}


def nfe_table(arms: dict[str, list[Run]], exact: dict | None) -> list[str]:
    """MMD of the few-step samplers (stage nfe) per arm, mean ± sd over the seeds scored; then each arm
    scored at 2 or more seeds against its base, difference ± standard error."""
    scored = nfe_scores(arms)
    if not scored:
        return ["No job has been scored with few-step samplers yet (`experiments.cdl_sweep --stage nfe`)."]
    samplers = list(next(iter(next(iter(scored.values())).values())))
    mmd = lambda jobs, s: {seed: j[s]["mmd"] for seed, j in jobs.items() if s in j}  # noqa: E731
    rows = [
        [f"`{name}`", ",".join(sorted(jobs)), *(mean_sd(mmd(jobs, s).values()) for s in samplers)]
        for name, jobs in scored.items()
    ]
    if exact:
        rows.append(
            ["exact denoiser", 1, *(number(exact[s]["mmd"]) if s in exact else "-" for s in samplers)]
        )
    lines = markdown_table(["arm", "seeds", *samplers], rows)
    pairs = [
        (n, b) for n in scored if (b := base_of(n)) in scored and len(scored[n]) > 1 and len(scored[b]) > 1
    ]
    if pairs:
        lines += ["", "Against the base, difference of the means ± standard error:", ""]
        lines += markdown_table(
            ["arm", "base", *samplers],
            [
                [
                    f"`{n}`",
                    f"`{b}`",
                    *(
                        difference(
                            mmd(scored[n], s).values(), mmd(same_seeds(scored[b], scored[n]), s).values()
                        )
                        for s in samplers
                    ),
                ]
                for n, b in pairs
            ],
        )
        lines += ["", "Against the base, paired by seed: mean ± se of the per-seed differences (pairs):", ""]
        lines += markdown_table(
            ["arm", "base", *samplers],
            [
                [
                    f"`{n}`",
                    f"`{b}`",
                    *(paired_difference(mmd(scored[n], s), mmd(scored[b], s)) for s in samplers),
                ]
                for n, b in pairs
            ],
        )
    return lines


def plot_nfe(arms: dict[str, list[Run]], exact: dict | None, path: Path) -> Path | None:
    from ctdm.plotting import plt, save_figure

    scored = nfe_scores(arms)
    if not scored:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, family in zip(axes, ("ddim", "heun"), strict=True):
        for name, jobs in [*scored.items(), *([("exact denoiser", {"-": exact})] if exact else [])]:
            names, nfe = _family(jobs, family)
            mean = [statistics.fmean(j[s]["mmd"] for j in jobs.values()) for s in names]
            ax.plot(nfe, mean, "k--" if name == "exact denoiser" else "o-", label=f"{name} (n={len(jobs)})")
        _nfe_axes(ax, nfe)
        ax.set_title(f"{family.upper()}: MMD against NFE (mean over seeds)")
    axes[0].set_ylabel("MMD^2 (paper units)")
    axes[1].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def _family(jobs: dict[str, dict], family: str) -> tuple[list[str], list[float]]:
    """The sampler names of one family (ddim10, ddim25, ...) in step order, and their NFE."""
    first = next(iter(jobs.values()))
    names = sorted(
        (s for s in first if s.startswith(family) and s[len(family) :].isdigit()),
        key=lambda s: int(s[len(family) :]),
    )
    return names, [first[s]["nfe"] for s in names]


def _nfe_axes(ax, nfe: list[float]) -> None:
    """Log axes with the NFE values as plain ticks; symlog on y only if a plotted MMD is not above 0
    (MMD^2 is unbiased, so a model at the noise floor can score below 0)."""
    ax.set_xscale("log")
    ax.set_xticks(nfe, [str(int(n)) for n in nfe])
    ax.minorticks_off()
    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    if values and min(values) > 0:
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("network evaluations per sample")


def plot_nfe_pairs(arms: dict[str, list[Run]], exact: dict | None, folder: Path) -> list[Path]:
    """One picture per comparison: an arm scored at 2 or more seeds against its base, MMD against NFE
    for DDIM and EDM-Heun (mean ± standard error over the seeds) and the paired difference arm - base
    at each sampler (mean ± se over the seeds both ran; below 0: the arm is better)."""
    from ctdm.plotting import plt, save_figure

    scored = nfe_scores(arms)
    paths = []
    for name, jobs in scored.items():
        base = base_of(name)
        if base in (None, name) or base not in scored or len(jobs) < 2 or len(scored[base]) < 2:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        seeds = sorted(set(jobs) & set(scored[base]))
        for ax, family in zip(axes[:2], ("ddim", "heun"), strict=True):
            names, nfe = _family(jobs, family)
            for label, runs, style in ((base, scored[base], "s-"), (name, jobs, "o-")):
                values = [[j[s]["mmd"] for j in runs.values()] for s in names]
                mean = [statistics.fmean(v) for v in values]
                se = [statistics.stdev(v) / len(v) ** 0.5 for v in values]
                ax.errorbar(nfe, mean, yerr=se, fmt=style, capsize=3, label=f"{label} (n={len(runs)})")
            if exact:
                ax.plot(nfe, [exact[s]["mmd"] for s in names], "k--", label="exact denoiser")
            _nfe_axes(ax, nfe)
            ax.set_title(f"{family.upper()}: MMD^2, mean ± se over seeds")
            ax.legend(fontsize=7)
        axes[0].set_ylabel("MMD^2 (paper units)")
        samplers = [s for s in next(iter(jobs.values())) if s in scored[base][seeds[0]]]
        diffs = [[jobs[k][s]["mmd"] - scored[base][k][s]["mmd"] for k in seeds] for s in samplers]
        axes[2].errorbar(
            range(len(samplers)),
            [statistics.fmean(d) for d in diffs],
            yerr=[statistics.stdev(d) / len(d) ** 0.5 for d in diffs],
            fmt="o",
            capsize=3,
        )
        axes[2].axhline(0, color="k", lw=0.8)
        axes[2].set_xticks(range(len(samplers)), samplers, rotation=60, fontsize=7)
        axes[2].set_title(f"{name} - {base}, paired by seed ({len(seeds)} pairs), ± se")
        fig.tight_layout()
        paths.append(save_figure(fig, folder / f"mmd_vs_nfe_{name}.png", dpi=110))
    return paths


def plot_weights(arms: dict[str, list[Run]], path: Path) -> Path:
    """Each CDL arm's difference from its base against the CDL weight, paired by seed (mean ± se over
    the seeds both ran; a point without a bar: one seed), per base, points and draws; ParaDDPM,
    ParaDDIM and val/nll. Arms run at different seeds compare only through their own base's seeds."""
    from ctdm.plotting import plt, save_figure

    metrics = ("eval/para_ddpm/mmd", "eval/para_ddim/mmd", "val/nll")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for ax, metric in zip(axes, metrics, strict=True):
        families: dict[str, list[tuple[float, list[float]]]] = {}
        for name, runs in arms.items():
            base = base_of(name)
            if "_cdl_" not in name or "_w" not in name or base not in arms:
                continue
            family, weight = name.rsplit("_w", 1)
            arm_values, base_values = by_seed(runs, metric), by_seed(arms[base], metric)
            diffs = [arm_values[s] - base_values[s] for s in arm_values if s in base_values]
            if diffs:
                families.setdefault(family, []).append((float(weight), diffs))
        for i, (family, points) in enumerate(sorted(families.items())):
            points.sort()
            shift = 1.06 ** (i - len(families) / 2)  # side by side at one weight
            ax.errorbar(
                [w * shift for w, _ in points],
                [statistics.fmean(d) for _, d in points],
                yerr=[statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0 for _, d in points],
                marker="o" if family.startswith("itd") else "s",
                capsize=3,
                linestyle="-" if family.startswith("itd") else ":",
                label=family,
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3 if metric.startswith("eval") else 0.1)
        ax.set_xlabel("loss.cdl.weight")
        ax.set_ylabel(f"Δ {metric} vs base")
        ax.set_title(f"{metric.split('/')[-2] if metric.startswith('eval') else metric}: arm - base, paired")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("CDL arms against their base (itd or mse_sum) at the same seeds: mean ± se; no bar: 1 seed")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def report(results: Path = RESULTS, earlier: Path | None = EARLIER) -> Path:
    arms, checks = arm_runs(results, earlier)
    exact_file = results / "exact_nfe.json"
    exact = json.loads(exact_file.read_text()) if exact_file.is_file() else None
    # The exact denoiser's scores sit beside the earlier report's jobs: none without `earlier`.
    limit_file = earlier.parent / "exact_limit.json" if earlier else None
    limit = json.loads(limit_file.read_text())["metrics"] if limit_file and limit_file.is_file() else {}
    limit_of = lambda key: number(limit[key]) if key in limit else "not measured"  # noqa: E731
    (results / "plots").mkdir(parents=True, exist_ok=True)
    weights = plot_weights(arms, results / "plots" / "mmd_vs_weight.png")
    nfe_plot = plot_nfe(arms, exact, results / "plots" / "mmd_vs_nfe.png")
    pair_plots = plot_nfe_pairs(arms, exact, results / "plots")
    lines = [
        "# Which CDL setting helps? (experiment=paper_dino, 20k steps, 2,000 samples)",
        "",
        "Built by `python -m experiments.cdl_report` from the run folders beside this file and the",
        "earlier report's (`../paper_dino/authors`). MMD^2 in the authors' units; mean ± sd over the seeds",
        "listed; Δ: the arm's mean minus its base's (`itd` for the ITD base, `mse_sum` for the MSE base)",
        "± the standard error of the difference (the base at the arm's seeds), or the one seed's difference",
        "(n=1) in the coarse pass.",
        "A Δ within about two standard errors is not resolved by the seeds. Arm names:",
        "`<base>_cdl_p<points>_w<weight>` is ctdm's every-item CDL with that many shared points per item",
        "(plain draws); `sf2` is 2 points with stratified and focused levels (ctdm.diffusion.Draws), the",
        "lower-variance draws at the authors' cost.",
        "",
        *main_table(arms),
        "",
        "Paired by seed: at one seed every arm starts from the same initial weights, sees the same data",
        "order and samples with the same noise, so the difference at each seed cancels that seed's share of",
        "the spread (the seeds' spread in the table above is mostly shared). Mean ± se of the per-seed",
        "differences (pairs), for the arms run at 2 or more of their base's seeds:",
        "",
        *paired_table(arms),
        "",
        f"Exact denoiser (the limit): ParaDDPM {limit_of('eval/para_ddpm/mmd')}, "
        f"ParaDDIM {limit_of('eval/para_ddim/mmd')} (MMD^2 is unbiased: it can be below 0). "
        "The authors (782k steps, one seed): "
        + ", ".join(f"`{a}` ParaDDPM {p}, ParaDDIM {d}" for a, (p, d) in PAPER.items())
        + ".",
        "",
        f"![MMD against weight]({weights.relative_to(results)})",
        "",
        *reseeded_table(arms),
        "## Few-step samplers (where better denoising off the training paths should matter most)",
        "",
        *nfe_table(arms, exact),
        "",
        *([f"![MMD against NFE]({nfe_plot.relative_to(results)})", ""] if nfe_plot else []),
        *(f"![{p.stem}]({p.relative_to(results)})\n" for p in pair_plots),
        "## Jobs run twice (here and in the earlier report): they must agree",
        "",
        *(f"- {c}" for c in checks or ["none"]),
        "",
    ]
    path = results / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--collect", type=Path, default=None, help="copy finished jobs in from this sweep folder first"
    )
    args = parser.parse_args(argv)
    if args.collect:
        print(f"{len(collect(args.collect, args.results))} jobs collected into {args.results}")
    path = report(args.results)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
