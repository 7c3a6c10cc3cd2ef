"""Plots: metrics against a swept key, and the parallel samplers' MMD after each Picard pass."""

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from ctdm.compare.arms import Arm
from ctdm.compare.runs import Run, as_number
from ctdm.compare.stats import finite


def _x_scale(ax, xs: Sequence[float]) -> None:
    """Log-like x axis when the swept values span two decades or more (symlog when 0 is one of them)."""
    positive = [x for x in xs if x > 0]
    if len(positive) < 2 or max(positive) / min(positive) < 100 or any(x < 0 for x in xs):
        return
    if any(x == 0 for x in xs):
        ax.set_xscale("symlog", linthresh=min(positive))
    else:
        ax.set_xscale("log")


def plot_metric_vs_value(
    arms: Sequence[Arm], key: str, metrics: Sequence[str], path: Path, lines_by: Sequence[str] = ()
) -> Path | None:
    """Each metric against the numeric swept `key`: mean ± sd over the seeds of each arm, one line per
    combination of the `lines_by` keys' values. None when the key has fewer than 2 numeric values."""
    from ctdm.plotting import plt, save_figure

    if (
        not metrics
        or any(as_number(a.values[key]) is None for a in arms)
        or len({a.values[key] for a in arms}) < 2
    ):
        return None
    lines: dict[str, list[Arm]] = {}
    for arm in arms:
        lines.setdefault(" ".join(f"{k}={arm.values[k]}" for k in lines_by if k != key), []).append(arm)
    legend = len(lines) > 1
    cols = min(3, len(metrics) + legend)
    rows = math.ceil((len(metrics) + legend) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):  # spare cells stay
        for i, (name, members) in enumerate(lines.items()):
            points = sorted((as_number(a.values[key]), finite(a.values_of(metric))) for a in members)
            points = [(x, v) for x, v in points if v]
            if points:
                xs, means = [x for x, _ in points], [statistics.fmean(v) for _, v in points]
                sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points]
                ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, color=f"C{i}", label=name)
                _x_scale(ax, xs)
        ax.set_xlabel(key)
        ax.set_title(metric, fontsize=9)
    spare = list(axes.flat)[len(metrics) :]
    for ax in spare:
        ax.axis("off")
    if legend:  # one legend for every panel, in the first free cell
        handles, names = axes.flat[0].get_legend_handles_labels()
        spare[0].legend(handles, names, loc="center", fontsize=8)
    n = sorted({len(a.runs) for a in arms})
    fig.suptitle(f"mean ± sd over seeds (n = {'/'.join(map(str, n))} per point)", fontsize=9)
    return save_figure(fig, path, dpi=100)


def mean_curve(curves: Sequence[list[dict]], key: str = "mmd") -> list[float]:
    """The mean over runs of a per-pass curve; a run that converged earlier keeps its last value."""
    length = max(len(c) for c in curves)
    table = [[c[min(i, len(c) - 1)][key] for i in range(length)] for c in curves]
    return [statistics.fmean(column) for column in zip(*table, strict=True)]


def plot_pass_curves(
    groups: dict[str, list[Run]],
    sampler: str,
    path: Path,
    units: str = "",
    extra: dict[str, list[dict]] | None = None,
) -> Path | None:
    """MMD after each Picard pass of `sampler`: the mean over each group's runs, and `extra` curves
    ({label: curve}, e.g. the exact denoiser's) dashed. None when no run recorded one."""
    from ctdm.plotting import plt, save_figure

    if not any(sampler in run.curves for runs in groups.values() for run in runs):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, runs in groups.items():
        curves = [run.curves[sampler] for run in runs if sampler in run.curves]
        if curves:
            mean = mean_curve(curves)
            ax.plot(range(1, len(mean) + 1), mean, label=f"{label} (n={len(curves)})")
    for label, curve in (extra or {}).items():
        ax.plot([c["pass"] for c in curve], [c["mmd"] for c in curve], "k--", label=label)
    # The unbiased MMD^2 is noisy around 0 at the floor and can be negative: a log axis that is linear
    # within +-1e-4 shows that instead of clipping it to a misleading tiny value.
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.axhspan(-1e-4, 1e-4, color="0.92", zorder=0)
    ax.set_xlabel("Picard pass")
    ax.set_ylabel(f"MMD^2{f' ({units} units)' if units else ''}; grey: |value| < 1e-4, linear")
    ax.set_title(f"{sampler}: MMD after each pass (mean over seeds)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)
