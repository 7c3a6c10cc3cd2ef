"""The report: report.md, runs.csv and plots/ for the runs under some folders; the command line."""

import argparse
import fnmatch
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ctdm.compare.arms import (
    _sort_key,
    arm_labels,
    baseline_of,
    default_baseline,
    group_runs,
    independent_keys,
    parse_baseline,
    swept_keys,
)
from ctdm.compare.cost import COST_AXES, STEP_BUDGET, TRAINING_COST, _cost_cells, cost_report
from ctdm.compare.plots import plot_metric_vs_value, plot_pass_curves
from ctdm.compare.runs import find_run_folders, load_runs
from ctdm.compare.stats import difference, mean_sd, paired_difference
from ctdm.compare.tables import (
    DEFAULT_METRICS,
    HEADLINE_METRICS,
    markdown_table,
    metric_names,
    metric_tables,
    write_runs_csv,
)


def compare(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    baseline: Sequence[str] = (),
    metrics: Sequence[str] = DEFAULT_METRICS,
    cost: str | None = None,
    budget: str = STEP_BUDGET,
    at: Sequence[float] = (),
) -> Path:
    """report.md, runs.csv and plots/ in `out` (default: the first path) for the runs under `paths`;
    returns the report's path. `cost` (e.g. train/seconds) adds the compute axis: the headline metrics
    against it, one curve per arm with `budget` forming its points (cost_report), at the costs `at`."""
    out = Path(out if out is not None else paths[0])
    runs = load_runs(paths)
    unfinished = len(find_run_folders(paths)) - len(runs)
    if not runs:
        raise ValueError(
            f"No finished run under {', '.join(map(str, paths))}: a run folder has .hydra/ and summary.json "
            "(ctdm.train) or metrics.json (ctdm.evaluate)."
        )
    keys = swept_keys(runs)
    arms = group_runs(runs, keys)
    labels = arm_labels(arms)
    names = metric_names(runs, metrics)
    if not names:
        raise ValueError(f"No metric matches {list(metrics)}; the runs have {sorted(runs[0].metrics)}.")
    wanted = parse_baseline(baseline) if baseline else default_baseline(arms)
    unknown = sorted(set(wanted) - set(keys))
    if unknown:
        raise ValueError(
            f"--baseline names {unknown}, which the runs do not sweep; swept keys: {keys or 'none'}."
        )
    if at and cost is None:
        raise ValueError(f"--at {' '.join(map(str, at))} needs --cost, the cost those budgets are in.")

    seeds = sorted({run.seed for run in runs}, key=_sort_key)
    lines = [f"# Comparison of {len(runs)} runs in {len(arms)} arms", ""]
    lines.append(f"Runs under {', '.join(f'`{p}`' for p in paths)}, written by `python -m ctdm.compare`.")
    swept = ", ".join(
        f"`{k}` ({', '.join(sorted({a.values[k] for a in arms}, key=_sort_key))})" for k in keys
    )
    lines.append(f"Swept: {swept or 'nothing (one arm)'}; seeds pooled: {', '.join(seeds)}.")
    if unfinished:
        lines.append(f"{unfinished} unfinished run folder(s) (no summary.json) left out.")
    lines += ["", "## Arms", ""]
    costs = [k for k in TRAINING_COST if any(k in run.metrics for run in runs)]
    if costs:
        lines.append(
            "Training cost (mean over the arm's runs): wall time in training steps (no validation, sample "
            "evaluation or checkpoints), steps, and network rows per step, forward + backward."
        )
        lines.append("")
    header = ["arm", *keys, "runs", "seeds"] + (["train s", "steps", "rows/step"] if costs else [])
    rows = [
        [
            label,
            *arm.values.values(),
            len(arm.runs),
            ", ".join(sorted({r.seed for r in arm.runs}, key=_sort_key)),
            *(_cost_cells(arm.runs) if costs else []),
        ]
        for arm, label in zip(arms, labels, strict=True)
    ]
    lines += markdown_table(header, rows)
    lines += ["", "## Metrics", "", "Mean ± standard deviation over the arm's runs (n)."]
    lines += metric_tables(arms, labels, names, lambda arm, m: mean_sd(arm.values_of(m), n=True))

    pairs = [(a, baseline_of(a, arms, wanted)) for a in arms]
    pairs = [(a, b) for a, b in pairs if b is not None and b is not a]
    if pairs:
        target = " ".join(f"{k}={v}" for k, v in wanted.items())
        lines += ["", f"## Against the baseline `{target}`", ""]
        lines.append(
            "Each arm's mean minus its baseline's (same values of the other swept keys) ± the standard error "
            "of that difference; within about two standard errors the seeds do not resolve it."
        )
        label_of = {id(a): label for a, label in zip(arms, labels, strict=True)}
        by_arm = {id(a): b for a, b in pairs}
        compared = [a for a in arms if id(a) in by_arm]
        lines += metric_tables(
            compared,
            [label_of[id(a)] for a in compared],
            names,
            lambda arm, m: difference(arm.values_of(m), by_arm[id(arm)].values_of(m)),
        )
        paired = lambda arm, m: paired_difference(arm.by_seed(m), by_arm[id(arm)].by_seed(m))  # noqa: E731
        if any(paired(a, m) != "-" for a in compared for m in names):
            lines += ["", "### Paired by seed", ""]
            lines.append(
                "The mean of the per-seed differences ± its standard error (pairs): runs at one seed share "
                "initial weights, data order and sampling noise, so pairing removes the seed's share."
            )
            lines += metric_tables(compared, [label_of[id(a)] for a in compared], names, paired)

    plots = []
    headline = [m for m in names if any(fnmatch.fnmatch(m, p) for p in HEADLINE_METRICS)] or names[:6]
    independent = independent_keys(arms)
    for key in independent:
        safe = re.sub(r"[^\w.=-]+", "_", key)
        path = out / "plots" / f"metrics_vs_{safe}.png"
        plots.append(plot_metric_vs_value(arms, key, headline, path, lines_by=independent))
    groups = dict(zip(labels, (arm.runs for arm in arms), strict=True))
    for sampler in sorted({s for run in runs for s in run.curves}):
        plots.append(plot_pass_curves(groups, sampler, out / "plots" / f"mmd_per_pass_{sampler}.png"))
    plots = [p for p in plots if p is not None]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    if cost is not None:
        lines += cost_report(runs, cost, headline, out, budget, at)

    write_runs_csv(runs, keys, [*names, *costs], out / "runs.csv", out)
    lines += ["", "Every run's numbers: [runs.csv](runs.csv)."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m ctdm.compare",
        description=sys.modules["ctdm.compare"].__doc__,  # the package's: what the command does
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="run folders, multirun folders or folders of them"
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the arm the others are compared with (repeat for several keys; default: the first value of "
        "the first swept key)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        metavar="PATTERN",
        help="metrics to report, as globs (default: eval/* val/*), e.g. 'eval/*/mmd' val/nll",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where report.md goes (default: the first path)"
    )
    parser.add_argument(
        "--cost",
        default=None,
        metavar="KEY",
        help="add the compute axis: the headline metrics against this training cost, one curve per arm "
        f"({', '.join(COST_AXES)}; train/rows = forward + backward network rows)",
    )
    parser.add_argument(
        "--budget",
        default=STEP_BUDGET,
        metavar="KEY",
        help="what makes the points of a curve: an override key (e.g. trainer.max_time), or `step` (the "
        "default): each run's global step, so trainer.max_steps and the checkpoints an evaluation scored "
        "are points, not arms; runs of an arm at one budget are pooled over seeds",
    )
    parser.add_argument(
        "--at",
        nargs="+",
        type=float,
        default=[],
        metavar="COST",
        help="also tabulate each arm's metrics interpolated at these costs (e.g. --at 200 800 3200)",
    )
    args = parser.parse_args(argv)
    try:
        report = compare(args.paths, args.out, args.baseline, args.metrics, args.cost, args.budget, args.at)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(1, f"Error: {err}\n")
    print(report)
    return report
