"""Tables: the metrics a report shows, markdown tables per metric section, and runs.csv."""

import csv
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ctdm.compare.arms import Arm
from ctdm.compare.runs import Run

# Metrics a report shows by default, and the headline ones that get a plot against each swept key.
DEFAULT_METRICS = ("eval/*", "val/*")
HEADLINE_METRICS = ("eval/*/mmd", "eval/*/fid", "eval/*/kid", "eval/*/passes", "val/nll", "val/cdl_acc")


def metric_names(runs: Sequence[Run], patterns: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """The runs' metrics matching any of `patterns` (fnmatch globs): eval/ ones first, in the order the runs
    logged them."""
    names = []
    for run in runs:
        names += [m for m in run.metrics if m not in names and any(fnmatch.fnmatch(m, p) for p in patterns)]
    return sorted(names, key=lambda m: not m.startswith("eval/"))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _sections(metrics: Sequence[str]) -> dict[str, list[str]]:
    """Metrics by what they describe: `eval/para_ddpm/mmd` under eval/para_ddpm, `val/nll` under val."""
    out: dict[str, list[str]] = {}
    for metric in metrics:
        out.setdefault(metric.rpartition("/")[0] or metric, []).append(metric)
    return out


def metric_tables(
    arms: Sequence[Arm], labels: Sequence[str], metrics: Sequence[str], cell: Callable[[Arm, str], str]
) -> list[str]:
    """One table per metric section (rows: arms; columns: the section's metrics), cells from `cell`."""
    lines = []
    for section, names in _sections(metrics).items():
        header = ["arm", *(m.rpartition("/")[2] for m in names)]
        lines += ["", f"`{section}/`", ""]
        lines += markdown_table(
            header, ([label, *(cell(a, m) for m in names)] for a, label in zip(arms, labels, strict=True))
        )
    return lines


def write_runs_csv(runs: Sequence[Run], keys: Sequence[str], metrics: Sequence[str], path: Path, root: Path):
    """runs.csv: one row per run (folder relative to `root`, swept values, seed, step, metrics)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["folder", *keys, "seed", "step", *metrics])
        for run in runs:
            values = [run.metrics.get(m, "") for m in metrics]
            writer.writerow(
                [_relative(run.folder, root), *(run.value(k) for k in keys), run.seed, run.step, *values]
            )
    return path


def _relative(folder: Path, root: Path) -> str:
    try:
        return str(folder.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(folder)
