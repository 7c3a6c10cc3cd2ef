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

No torch and no Lightning here: it reads files (matplotlib only for the plots). The package, by what
each part does: runs (reading run folders), arms (grouping them, the baseline), stats (numbers over
seeds, paired by seed), tables (markdown tables, runs.csv), plots, cost (the compute axis) and report
(`compare`, `main`); every name is importable from `ctdm.compare` itself.
"""

from ctdm.compare.arms import (
    NOT_AN_ARM,
    POOLED,
    Arm,
    arm_labels,
    baseline_of,
    default_baseline,
    group_runs,
    independent_keys,
    parse_baseline,
    swept_keys,
)
from ctdm.compare.cost import (
    COST_AXES,
    STEP_BUDGET,
    TRAINING_COST,
    CostCurve,
    CostPoint,
    budget_of,
    cost_curves,
    cost_of,
    cost_report,
    plot_cost_curves,
    rows_per_step,
)
from ctdm.compare.plots import mean_curve, plot_metric_vs_value, plot_pass_curves
from ctdm.compare.report import compare, main
from ctdm.compare.runs import (
    Run,
    as_number,
    find_run_folders,
    load_runs,
    natural_key,
    normalize,
    read_curves,
    read_overrides,
    read_run,
)
from ctdm.compare.stats import (
    by_seed,
    difference,
    finite,
    mean_sd,
    mean_se,
    mean_se_text,
    number,
    paired_difference,
)
from ctdm.compare.tables import (
    DEFAULT_METRICS,
    HEADLINE_METRICS,
    markdown_table,
    metric_names,
    metric_tables,
    write_runs_csv,
)

__all__ = [
    "COST_AXES",
    "DEFAULT_METRICS",
    "HEADLINE_METRICS",
    "NOT_AN_ARM",
    "POOLED",
    "STEP_BUDGET",
    "TRAINING_COST",
    "Arm",
    "arm_labels",
    "as_number",
    "baseline_of",
    "budget_of",
    "by_seed",
    "compare",
    "cost_curves",
    "cost_of",
    "cost_report",
    "CostCurve",
    "CostPoint",
    "default_baseline",
    "difference",
    "find_run_folders",
    "finite",
    "group_runs",
    "independent_keys",
    "load_runs",
    "main",
    "markdown_table",
    "mean_curve",
    "mean_sd",
    "mean_se",
    "mean_se_text",
    "metric_names",
    "metric_tables",
    "natural_key",
    "normalize",
    "number",
    "paired_difference",
    "parse_baseline",
    "plot_cost_curves",
    "plot_metric_vs_value",
    "plot_pass_curves",
    "read_curves",
    "read_overrides",
    "read_run",
    "rows_per_step",
    "Run",
    "swept_keys",
    "write_runs_csv",
]
