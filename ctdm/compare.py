"""Compare runs: `python -m ctdm.compare PATH... [--baseline KEY=VALUE] [--metrics PATTERN ...] [--out DIR]`.

Reads every finished run folder under the PATHs (a Hydra multirun, several of them, single runs, or nested
folders such as <out>/<arm>/seed<k>/; a run folder has `.hydra/` and `summary.json`, or `metrics.json` for
`python -m ctdm.evaluate`), finds the command-line overrides whose values differ between runs (the swept
keys; `seed` is pooled, and the keys about where and how a run logs are left out), groups the runs into arms
by those values and writes into --out (default: the first PATH):

- report.md: every eval/ and val/ metric's mean ± standard deviation (n) per arm, and each arm's difference
  from the baseline arm with the standard error of that difference;
- runs.csv: one row per run (its folder, arm, swept values, seed and metrics);
- plots/: each headline metric against each numeric swept key (mean ± sd over seeds), and the parallel
  samplers' MMD after every Picard pass (mean over the seeds of each arm).

The arms table shows each arm's training cost (train/seconds, train/steps, network rows per step).
`--cost KEY` (train/seconds, train/rows, ...) adds the compute axis: the headline metrics against that
cost, one curve per arm whose points are its budgets (`--budget`, default each run's global step, so
trainer.max_steps and scored intermediate checkpoints are points, not arms), seeds pooled (mean ± se),
and with `--at COST ...` each arm interpolated at equal cost (`cost_report`).

The functions are the building blocks of report scripts (experiments/report.py uses them):

    runs = load_runs(["logs/train/multiruns/2026-01-02_03-04-05"])
    keys = swept_keys(runs)                      # e.g. ["loss.cdl.weight"]
    arms = group_runs(runs, keys)                # [Arm(values={"loss.cdl.weight": "0.1"}, runs=[...]), ...]
    mean_sd([r.metrics["eval/ddpm/mmd"] for r in arms[0].runs])

No torch and no Lightning here: it reads files (matplotlib only for the plots).
"""

import argparse
import csv
import fnmatch
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Replicates, pooled within an arm.
POOLED = ("seed",)
# Overrides that never define an arm: where a run writes and logs, what it resumes, how it shows progress.
# (New runs also carry Hydra's override_dirname exclude_keys, conf/hydra/default.yaml, which are left out.)
NOT_AN_ARM = ("hydra", "paths", "logger", "ckpt_path", "task_name", "trainer.enable_progress_bar")
NOT_AN_ARM += ("eval.progress_bar",)
# Metrics a report shows by default, and the headline ones that get a plot against each swept key.
DEFAULT_METRICS = ("eval/*", "val/*")
HEADLINE_METRICS = ("eval/*/mmd", "eval/*/fid", "eval/*/kid", "eval/*/passes", "val/nll", "val/cdl_acc")


# -- reading run folders -----------------------------------------------------------------------------


@dataclass
class Run:
    """One finished run, as its folder records it.

    overrides: {key: value} of its command line (for a ctdm.evaluate run, its training run's overrides
    updated with its own); config: the composed config (.hydra/config.yaml); choices: Hydra's group
    choices (.hydra/hydra.yaml); metrics: summary.json's metrics (metrics.json for an evaluation);
    curves: {sampler: [{"pass", "nfe", "mmd"}, ...]} of its last evaluation; excluded: keys its Hydra
    config leaves out of run names.
    """

    folder: Path
    overrides: dict[str, str]
    config: dict
    choices: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[dict]] = field(default_factory=dict)
    step: int | None = None
    excluded: tuple[str, ...] = ()

    def value(self, key: str) -> str:
        """The run's value of an override key, as text: the override itself, else its config group's
        choice, else the composed config's value; "-" when the run has no such key."""
        if key.startswith("~"):  # a deletion: the node is gone or kept
            return "removed" if key in self.overrides else "-"
        if key in self.overrides:
            return normalize(self.overrides[key])
        if key in self.choices:
            return normalize(self.choices[key])
        node = self.config
        for part in key.lstrip("+~").split("."):
            if not isinstance(node, dict) or part not in node:
                return "-"
            node = node[part]
        return "-" if isinstance(node, (dict, list)) else normalize(node)

    @property
    def seed(self) -> str:
        return self.value("seed")


def normalize(value) -> str:
    """One spelling per value: 1, 1.0 and 1e0 are "1"; True and true are "true"; None is "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value).strip()
    if text.lower() in ("true", "false", "null", "none"):
        return {"none": "null"}.get(text.lower(), text.lower())
    number = as_number(text)
    return format(number, ".12g") if number is not None else text


def as_number(text: str) -> float | None:
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _split_override(line: str) -> tuple[str, str]:
    """`+loss.cdl.weight=0.1` -> ("loss.cdl.weight", "0.1"); `~eval.samplers.x` -> ("~eval.samplers.x", "")"""
    key, _, value = line.partition("=")
    key = key.strip().lstrip("+")
    return key.split("@", 1)[0], value.strip()


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_overrides(folder: Path) -> dict[str, str]:
    """{key: value} of a run folder's .hydra/overrides.yaml (its command-line overrides)."""
    return dict(_split_override(line) for line in _read_yaml(folder / ".hydra" / "overrides.yaml") or [])


def read_curves(folder: Path) -> dict[str, list[dict]]:
    """{sampler: per-pass curve} from eval/<sampler>_passes_step<N>.json (the last step's wins)."""
    curves = {}
    for path in sorted((folder / "eval").glob("*_passes_step*.json")):
        payload = json.loads(path.read_text())
        curves[payload["sampler"]] = payload["passes"]
    return curves


def read_run(folder: str | Path) -> Run | None:
    """The finished run in `folder`; None when it has not finished (no summary.json or metrics.json)."""
    folder = Path(folder)
    summary, evaluation = folder / "summary.json", folder / "metrics.json"
    if summary.is_file():
        record = json.loads(summary.read_text())
        metrics, step = record["metrics"], record.get("global_step")
    elif evaluation.is_file():
        metrics = json.loads(evaluation.read_text())
        step = metrics.pop("global_step", None)
    else:
        return None
    overrides = read_overrides(folder)
    if evaluation.is_file() and "ckpt_path" in overrides:
        # An evaluation is the arm of the run it scored: <run>/checkpoints/<file>.ckpt -> <run>/.hydra.
        trained = Path(overrides["ckpt_path"]).expanduser().parent.parent
        overrides = {**read_overrides(trained), **overrides} if (trained / ".hydra").is_dir() else overrides
    hydra = (_read_yaml(folder / ".hydra" / "hydra.yaml") or {}).get("hydra", {})
    excluded = hydra.get("job", {}).get("config", {}).get("override_dirname", {}).get("exclude_keys") or ()
    return Run(
        folder=folder,
        overrides=overrides,
        config=_read_yaml(folder / ".hydra" / "config.yaml") or {},
        choices={k: v for k, v in (hydra.get("runtime", {}).get("choices") or {}).items() if v is not None},
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        curves=read_curves(folder),
        step=step,
        excluded=tuple(excluded),
    )


def natural_key(path: Path) -> list:
    """authors/2 before authors/10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Every run folder (one with .hydra/) under the paths, without looking inside run folders."""
    found = []
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"{str(root)!r} is not a folder: give run folders or folders holding them."
            )
        for here, dirs, _files in os.walk(root):
            if ".hydra" in dirs:
                found.append(Path(here))
                dirs.clear()  # checkpoints/, wandb/, plots/ hold no runs
            else:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(set(found), key=natural_key)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The finished runs under `paths` (unfinished ones, without summary.json, are skipped)."""
    runs = [read_run(folder) for folder in find_run_folders(paths)]
    return [run for run in runs if run is not None]


# -- arms --------------------------------------------------------------------------------------------


def _is_arm_key(key: str, excluded: Iterable[str] = ()) -> bool:
    bare = key.lstrip("~")
    if bare in POOLED or key in excluded:
        return False
    return not any(bare == k or bare.startswith((k + ".", k + "/")) for k in NOT_AN_ARM)


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """The override keys whose values differ between runs (in the order they first appear on the command
    lines), without the pooled seed and the keys about where and how runs log."""
    excluded = {k for run in runs for k in run.excluded}
    keys = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys and _is_arm_key(k, excluded)]
    return [k for k in keys if len({run.value(k) for run in runs}) > 1]


@dataclass
class Arm:
    """The runs that share their values of the swept keys (seeds pooled)."""

    values: dict[str, str]
    runs: list[Run]

    @property
    def label(self) -> str:
        """`loss.cdl.weight=0.1 loss=itd_cdl`; "all runs" when nothing was swept."""
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"

    @property
    def folder_label(self) -> str | None:
        """The name of the folder that holds every run of the arm and only them (e.g. `itd_cdl_p2_w0.1`
        for <out>/itd_cdl_p2_w0.1/seed0, seed1), else None."""
        parents = {run.folder.parent for run in self.runs}
        return next(iter(parents)).name if len(parents) == 1 else None

    def values_of(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.runs if metric in run.metrics]

    def by_seed(self, metric: str) -> dict[str, float]:
        return by_seed(self.runs, metric)


def _sort_key(value: str):
    number = as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, value)


def group_runs(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[Arm]:
    """The arms: runs grouped by their values of `keys` (default: the swept keys), ordered by those
    values (numbers numerically)."""
    keys = swept_keys(runs) if keys is None else list(keys)
    arms: dict[tuple, Arm] = {}
    for run in runs:
        values = {k: run.value(k) for k in keys}
        arms.setdefault(tuple(values.values()), Arm(values, [])).runs.append(run)
    return [arms[k] for k in sorted(arms, key=lambda vs: [_sort_key(v) for v in vs])]


def independent_keys(arms: Sequence[Arm]) -> list[str]:
    """The swept keys less those that only follow an earlier one (eval.num_samples=1000 exactly when
    model/lr_scheduler=cosine): what labels and plots need to tell the arms apart."""
    keys = list(arms[0].values) if arms else []
    out = []
    for key in keys:
        follows = any(
            len({(a.values[k], a.values[key]) for a in arms})
            == len({a.values[k] for a in arms})
            == len({a.values[key] for a in arms})
            for k in out
        )
        if not follows:
            out.append(key)
    return out


def arm_labels(arms: Sequence[Arm]) -> list[str]:
    """Each arm's folder name when every arm has its own folder (shorter), else its values of the
    independent swept keys."""
    folders = [arm.folder_label for arm in arms]
    if all(folders) and len(set(folders)) == len(folders) and len(arms) > 1:
        return folders
    keys = independent_keys(arms)
    return [" ".join(f"{k}={arm.values[k]}" for k in keys) or arm.label for arm in arms]


def parse_baseline(items: Sequence[str]) -> dict[str, str]:
    """["loss.cdl.weight=0"] -> {"loss.cdl.weight": "0"} (values normalised)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--baseline {item!r} must be KEY=VALUE, e.g. loss.cdl.weight=0.")
        out[key.strip()] = normalize(value)
    return out


def baseline_of(arm: Arm, arms: Sequence[Arm], baseline: dict[str, str]) -> Arm | None:
    """The arm to compare `arm` with: the baseline's values for its keys and `arm`'s own for the other
    swept keys (a weight x points sweep compares each weight with the baseline weight at the same points);
    failing that, the one arm with the baseline's values (`loss=itd` for arms that also set CDL keys)."""
    wanted = {**arm.values, **{k: v for k, v in baseline.items() if k in arm.values}}
    same = next((a for a in arms if a.values == wanted), None)
    if same is not None:
        return same
    matching = [a for a in arms if all(a.values.get(k) == v for k, v in baseline.items())]
    return matching[0] if len(matching) == 1 else None


def default_baseline(arms: Sequence[Arm]) -> dict[str, str]:
    """The first value of the first swept key (e.g. loss.cdl.weight=0, the smallest)."""
    if not arms or not arms[0].values:
        return {}
    key = next(iter(arms[0].values))
    return {key: min((a.values[key] for a in arms), key=_sort_key)}


# -- numbers -----------------------------------------------------------------------------------------


def finite(values: Iterable) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def number(x: float, digits: int = 3) -> str:
    """`digits` significant digits, without an exponent from 10^digits up (12000, not 1.2e+04)."""
    if abs(x) < 10**digits:
        return f"{x:.{digits}g}"
    return f"{round(x, digits - 1 - math.floor(math.log10(abs(x)))):.0f}"


def mean_sd(values: Iterable, n: bool = False) -> str:
    """`mean ± sd` over the finite values (`mean` alone for one, "-" for none); `(n)` appended if asked."""
    values = finite(values)
    if not values:
        return "-"
    mean = statistics.fmean(values)
    text = f"{number(mean)} ± {number(statistics.stdev(values), 2)}" if len(values) > 1 else number(mean)
    return f"{text} ({len(values)})" if n else text


def difference(values: Iterable, base: Iterable) -> str:
    """`mean(values) - mean(base) ± se`, se = sqrt(s1^2/n1 + s2^2/n2): a difference within about two
    standard errors is not resolved by the seeds; "-" unless both sides have 2 or more values."""
    a, b = finite(values), finite(base)
    if len(a) < 2 or len(b) < 2:
        return "-"
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    diff = statistics.fmean(a) - statistics.fmean(b)
    return f"{'+' if diff >= 0 else ''}{number(diff)} ± {number(se, 2)}"


def by_seed(runs: Sequence[Run], metric: str) -> dict[str, float]:
    """{seed: value} over the seeds with one run holding the metric (a seed run twice pairs with nothing)."""
    seeds = [run.seed for run in runs if metric in run.metrics]
    return {r.seed: r.metrics[metric] for r in runs if metric in r.metrics and seeds.count(r.seed) == 1}


def paired_difference(values: Mapping, base: Mapping) -> str:
    """`mean ± se (n pairs)` of the per-seed differences values[seed] - base[seed], over the seeds both
    sides ran with finite values. Two arms run at one seed share its initial weights, data order and
    sampling noise, so the per-seed difference cancels that seed's share of the spread: with a shared
    seed effect the paired se is far below `difference`'s. "-" under 2 pairs."""
    pairs = [
        (float(values[s]), float(base[s]))
        for s in values
        if s in base and finite([values[s]]) and finite([base[s]])
    ]
    if len(pairs) < 2:
        return "-"
    diffs = [a - b for a, b in pairs]
    mean, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{'+' if mean >= 0 else ''}{number(mean)} ± {number(se, 2)} ({len(diffs)})"


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


# -- plots -------------------------------------------------------------------------------------------


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


# -- the compute axis: metrics against training cost --------------------------------------------------

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


def mean_se(values: Iterable) -> tuple[float, float] | None:
    """(mean, standard error) of the finite values (se 0 for one value); None for none."""
    values = finite(values)
    if not values:
        return None
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.fmean(values), se


def mean_se_text(values: Iterable) -> str:
    """`mean ± se (n)`; `mean (1)` for one value; "-" for none."""
    stats, n = mean_se(values), len(finite(values))
    if stats is None:
        return "-"
    mean, se = stats
    return f"{number(mean)} ± {number(se, 2)} ({n})" if n > 1 else f"{number(mean)} (1)"


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


# -- the report ----------------------------------------------------------------------------------------


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


def _cost_cells(runs: Sequence[Run]) -> list[str]:
    """Mean training seconds, steps and rows per step of the runs that recorded them."""
    per_step = rows_per_step(runs)
    seconds = finite(r.metrics.get("train/seconds") for r in runs)
    steps = finite(r.metrics.get("train/steps") for r in runs)
    return [number(statistics.fmean(v)) if v else "-" for v in (seconds, steps, per_step)]


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m ctdm.compare",
        description=__doc__,
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


if __name__ == "__main__":
    main()
