"""The compute axis: metrics against training cost, one curve per arm whose points are its budgets."""

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctdm.compare.arms import Arm, _sort_key, arm_labels, group_runs, swept_keys
from ctdm.compare.plots import _x_scale
from ctdm.compare.runs import Run, normalize
from ctdm.compare.stats import finite, mean_se, mean_se_text, number
from ctdm.compare.tables import markdown_table

# The training cost a run records (summary.json's metrics, ctdm.evaluate's metrics.json: ctdm.training_cost),
# and the derived `train/rows` = rows forward + rows backward (network evaluations).
TRAINING_COST = ("train/seconds", "train/steps", "train/rows_forward", "train/rows_backward")
COST_AXES = (*TRAINING_COST, "train/rows")
# The budget a run was given: `step`, its global step (a training run's last, an evaluation's checkpoint's).
STEP_BUDGET = "step"


def cost_of(run: Run, key: str) -> float | None:
    """The run's training cost `key` (any metric, or train/rows); None when it did not record it."""
    if key == "train/rows" and key not in run.metrics:
        parts = [run.metrics.get(k) for k in ("train/rows_forward", "train/rows_backward")]
        return None if None in parts else parts[0] + parts[1]
    return run.metrics.get(key)


def budget_of(run: Run, budget: str = STEP_BUDGET) -> str:
    """The run's value of the budget key (`step`: its global step)."""
    return normalize(run.step) if budget == STEP_BUDGET else run.value(budget)


def rows_per_step(runs: Sequence[Run]) -> list[float]:
    """(rows forward + backward) / steps of each run that recorded them: network evaluations per step."""
    return [
        cost_of(r, "train/rows") / r.metrics["train/steps"]
        for r in runs
        if cost_of(r, "train/rows") is not None and r.metrics.get("train/steps")
    ]


@dataclass
class CostPoint:
    """The runs of one arm at one budget (seeds pooled): one point of its cost curve."""

    budget: str
    runs: list[Run]

    def costs(self, key: str) -> list[float]:
        return finite(cost_of(run, key) for run in self.runs)

    def values_of(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.runs if metric in run.metrics]


@dataclass
class CostCurve:
    """An arm (the swept keys less the budget) and its points, by budget."""

    arm: Arm
    points: list[CostPoint]

    def xy(self, cost: str, metric: str) -> list[tuple[float, float, float, float, int]]:
        """(mean cost, its se, mean metric, its se, n) per point with both, in order of mean cost."""
        out = []
        for point in self.points:
            x, y = mean_se(point.costs(cost)), mean_se(point.values_of(metric))
            if x is not None and y is not None:
                out.append((*x, *y, len(finite(point.values_of(metric)))))
        return sorted(out)

    def at(self, cost: str, metric: str, budget: float) -> float | None:
        """The metric's mean at `budget` of cost, linearly interpolated between the two points around it
        (in log cost when every cost is positive: budgets are usually spaced by factors); None outside
        the curve's measured range (never extrapolated)."""
        points = [(x, y) for x, _, y, _, _ in self.xy(cost, metric)]
        if not points or not points[0][0] <= budget <= points[-1][0]:
            return None
        scale = math.log if all(x > 0 for x, _ in points) and budget > 0 else (lambda v: v)
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            if x0 <= budget <= x1:
                if x1 == x0:
                    return (y0 + y1) / 2
                t = (scale(budget) - scale(x0)) / (scale(x1) - scale(x0))
                return y0 + t * (y1 - y0)
        return points[0][1]  # a single point, at exactly its cost


def cost_curves(
    runs: Sequence[Run], cost: str, budget: str = STEP_BUDGET, keys: Sequence[str] | None = None
) -> list[CostCurve]:
    """One curve per arm: the runs that recorded `cost`, grouped by `keys` (default: the swept keys)
    less the budget key (and trainer.max_steps, which sets the step, for the `step` budget), each arm's
    runs at one budget pooled into a point (ordered by budget)."""
    runs = [run for run in runs if cost_of(run, cost) is not None]
    keys = swept_keys(runs) if keys is None else list(keys)
    not_arms = {budget, "trainer.max_steps"} if budget == STEP_BUDGET else {budget}
    curves = []
    for arm in group_runs(runs, [k for k in keys if k not in not_arms]):
        points: dict[str, list[Run]] = {}
        for run in arm.runs:
            points.setdefault(budget_of(run, budget), []).append(run)
        ordered = sorted(points, key=_sort_key)
        curves.append(CostCurve(arm, [CostPoint(b, points[b]) for b in ordered]))
    return curves


def plot_cost_curves(
    curves: Sequence[CostCurve], labels: Sequence[str], cost: str, metrics: Sequence[str], path: Path
) -> Path | None:
    """Each metric against the training cost: mean ± se over the seeds at each budget (both axes), one
    line per arm. None without a point."""
    from ctdm.plotting import plt, save_figure

    if not any(curve.xy(cost, m) for curve in curves for m in metrics):
        return None
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.5 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        xs = []
        for i, (curve, label) in enumerate(zip(curves, labels, strict=True)):
            points = curve.xy(cost, metric)
            if points:
                x, xerr, y, yerr, _ = zip(*points, strict=True)
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o", capsize=3, color=f"C{i}", label=label)
                xs += x
        _x_scale(ax, xs)
        ax.set_xlabel(cost)
        ax.set_title(metric, fontsize=9)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("mean ± se over seeds at each budget", fontsize=9)
    return save_figure(fig, path, dpi=100)


def cost_report(
    runs: Sequence[Run],
    cost: str,
    metrics: Sequence[str],
    out: Path,
    budget: str = STEP_BUDGET,
    at: Sequence[float] = (),
) -> list[str]:
    """The report's section on the compute axis (and its plot under out/plots/): each arm's points with
    their measured cost and metrics (mean ± se (n) over seeds), and, for costs `at`, each arm's metrics
    interpolated there (CostCurve.at)."""
    curves = cost_curves(runs, cost, budget)
    if not curves:
        recorded = sorted({k for run in runs for k in run.metrics if k.startswith("train/")})
        raise ValueError(
            f"--cost {cost}: no run recorded it (runs written before ctdm recorded training costs have "
            f"none); use one of {list(COST_AXES)} or another metric the runs have: {recorded or 'none'}."
        )
    labels = arm_labels([c.arm for c in curves])
    left_out = len(runs) - sum(len(p.runs) for c in curves for p in c.points)
    budget_name = "step (the run's global step)" if budget == STEP_BUDGET else f"`{budget}`"
    lines = ["", f"## Against training cost: `{cost}`", ""]
    lines.append(
        "One curve per arm (the swept keys less the budget); its points are the arm's budgets, "
        f"{budget_name}: the runs at one budget are pooled over seeds, their measured `{cost}` averaged. "
        "Cells: mean ± standard error (n)."
    )
    if left_out:
        lines.append(f"{left_out} run(s) without `{cost}` left out.")
    header = ["arm", "budget", cost, "rows/step", *metrics]
    rows = []
    for curve, label in zip(curves, labels, strict=True):
        for point in curve.points:
            cells = [mean_se_text(point.values_of(m)) for m in metrics]
            per_step = rows_per_step(point.runs)
            per_step = number(statistics.fmean(per_step)) if per_step else "-"
            rows.append([label, point.budget, mean_se_text(point.costs(cost)), per_step, *cells])
    lines += ["", *markdown_table(header, rows)]
    if at:
        lines += ["", f"### At equal `{cost}`", ""]
        lines.append(
            "Each arm's mean interpolated linearly between its two points around the cost (in log cost when "
            "all are positive); '-' outside the arm's measured range (never extrapolated)."
        )
        for metric in metrics:
            table = [
                [label, *(_cell(curve.at(cost, metric, x)) for x in at)]
                for curve, label in zip(curves, labels, strict=True)
            ]
            lines += ["", f"`{metric}`", "", *markdown_table(["arm", *(number(x) for x in at)], table)]
    safe = re.sub(r"[^\w.=-]+", "_", cost)
    plot = plot_cost_curves(curves, labels, cost, metrics, out / "plots" / f"metrics_vs_{safe}.png")
    if plot is not None:
        lines += ["", f"![{plot.stem}]({plot.relative_to(out)})"]
    return lines


def _cell(value: float | None) -> str:
    return "-" if value is None else number(value)


def _cost_cells(runs: Sequence[Run]) -> list[str]:
    """Mean training seconds, steps and rows per step of the runs that recorded them."""
    per_step = rows_per_step(runs)
    seconds = finite(r.metrics.get("train/seconds") for r in runs)
    steps = finite(r.metrics.get("train/steps") for r in runs)
    return [number(statistics.fmean(v)) if v else "-" for v in (seconds, steps, per_step)]
