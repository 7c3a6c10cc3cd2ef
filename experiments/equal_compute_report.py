"""The equal-compute study's report (experiments.equal_compute), rebuilt from its run folders alone.

    python -m experiments.equal_compute_report OUT                       # OUT/report.md, OUT/plots/
    python -m experiments.equal_compute_report OUT --collect logs/equal_compute/paper_dino

OUT is a study folder (calibration.json, scratch_const/, scratch_decay/, finetune/); `--collect SOURCE`
first copies the light files of SOURCE's scored points into OUT (summary/metrics, budget.json, nfe.json,
.hydra, pass curves, one sample picture; no checkpoints or samples), so the committed
experiments/results/equal_compute/<preset>/ rebuilds the report without the logs.

A point is a folder with budget.json (what the runner planned: arm, seed, recipe, budget, steps) and a
finished run (summary.json of ctdm.train or metrics.json of ctdm.evaluate). Its cost is the measured
training time and network rows (forward + backward) the run records (metrics train/seconds,
train/rows_forward, train/rows_backward) where it has them, else its steps times the arm's calibrated
seconds and rows per step (calibration.json; marked * in the tables), and the calibrated seconds where
budget.json says `seconds_not_comparable` (a reason: the run shared the machine unlike the others). A
fine-tune point's cost is its own (finetune_steps; the base's is shared by all arms). Budgets are matched
by planned seconds: points of one budget are compared, and the paired differences pair an arm with `itd`
(fine-tuning: with the base loss continued) at the same budget *and* seed.
"""

import argparse
import json
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from ctdm.compare import Run, finite, markdown_table, number, paired_difference, read_run
from experiments.cdl_report import KEEP

RESULTS = Path(__file__).parent / "results"
METRICS = ("eval/para_ddpm/mmd", "eval/ddpm/mmd")  # 2-D presets; image presets: metrics_of
SAMPLER_LABELS = {"ddpm": "DDPM", "para_ddpm": "ParaDDPM", "ddim25": "DDIM-25", "ddim50": "DDIM-50"}
# ctdm.evaluate runs of a point's checkpoint with more samplers than its own evaluation had (e.g. 1000-step
# DDPM on the digits fine-tunes): <point>/rescored/<name>/metrics.json, merged into the point's metrics.
RESCORED = "rescored"
LIGHT = (
    *KEEP,
    "budget.json",
    "metrics.json",
    f"{RESCORED}/*/metrics.json",
    f"{RESCORED}/*/.hydra/*.yaml",
    "plots/samples_ddim*_step*.png",  # an image preset's pictures (its samplers are DDPM and DDIM)
    f"{RESCORED}/*/plots/samples_*.png",
)
# The fine-tunes' starting points, trained by ctdm.train into <study>/bases/<loss>/seed<k>/ (no budget.json).
BASES = "bases"
BASELINE = "itd"
# An arm's budget is compared with the baseline budget nearest it in steps when within this share of them.
EQUAL_STEPS_TOLERANCE = 0.15


@dataclass
class Point:
    arm: str
    seed: int
    recipe: str  # const, cosine, decay or finetune
    budget: float  # planned seconds of training
    steps: int  # training steps of this point (a fine-tune's own)
    run: Run
    record: dict
    seconds: float
    rows: float
    measured: bool  # cost recorded by the run (else calibrated)


def collect(source: Path, out: Path) -> list[Path]:
    """Copy the light files of every scored point under `source` (folders with budget.json) into `out`."""
    copied = []
    bases = [f.parent for f in sorted((source / BASES).glob("*/seed*/summary.json"))]
    for folder in [record.parent for record in sorted(source.rglob("budget.json"))] + bases:
        target = out / folder.relative_to(source)
        for pattern in LIGHT:
            for path in folder.glob(pattern):
                (target / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(folder))
        copied.append(target)
    for name in ("calibration.json", "exact_nfe.json", "preregistration.md", "fid_floor.json"):
        if (source / name).is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, out / name)
    return copied


def cost(run: Run, record: dict, calibration: dict) -> tuple[float, float, bool, int]:
    """(seconds, rows, measured, steps) of a point's own training."""
    finetune = record.get("stage") == "finetune"
    steps = int(record["steps"]) - (int(record["base_step"]) if finetune else 0)
    m = run.metrics
    summary = run.folder / "summary.json"
    own = json.loads(summary.read_text()).get("training", {}).get("this_run") if summary.is_file() else None
    if finetune and own:  # the fine-tune's own share (the cumulative totals include the base's)
        return float(own["seconds"]), float(own["rows_forward"] + own["rows_backward"]), True, steps
    arm = calibration.get("arms", {}).get(record["arm"], {})
    sps, rps = arm.get("seconds_per_step", math.nan), arm.get("rows_per_step", math.nan)
    if not finetune and "train/seconds" in m:
        rows = m.get("train/rows_forward", math.nan) + m.get("train/rows_backward", 0)
        if record.get("seconds_not_comparable"):  # e.g. run at low priority beside other jobs
            return steps * sps, rows, False, steps
        return m["train/seconds"], rows, True, steps
    return steps * sps, steps * rps, False, steps


def read_points(root: Path) -> list[Point]:
    calibration_file = root / "calibration.json"
    calibration = json.loads(calibration_file.read_text()) if calibration_file.is_file() else {}
    points = []
    for path in sorted(root.rglob("budget.json")):
        run = read_run(path.parent)
        if run is None:
            continue
        for extra in sorted((path.parent / RESCORED).glob("*/metrics.json")):
            scores = json.loads(extra.read_text())
            run.metrics.update({k: v for k, v in scores.items() if k.startswith("eval/")})
        record = json.loads(path.read_text())
        seconds, rows, measured, steps = cost(run, record, calibration)
        points.append(
            Point(
                record["arm"],
                int(record["seed"]),
                record["recipe"],
                float(record["budget_seconds"]),
                steps,
                run,
                record,
                seconds,
                rows,
                measured,
            )
        )
    return points


def mean_se(values) -> str:
    """`mean ± standard error (n)`; the mean alone for one value, "-" for none."""
    values = finite(values)
    if not values:
        return "-"
    if len(values) == 1:
        return f"{number(values[0])} (1)"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{number(statistics.fmean(values))} ± {number(se, 2)} ({len(values)})"


def _by_seed(points: list[Point], metric: str) -> dict[str, float]:
    """{seed: value} by budget.json's seed: a ctdm.evaluate point's own config has the evaluation's seed
    (0), not the training run's, so compare.by_seed (Run.seed) would pair every evaluation with seed 0."""
    seeds = [p.seed for p in points if metric in p.run.metrics]
    return {
        str(p.seed): p.run.metrics[metric]
        for p in points
        if metric in p.run.metrics and seeds.count(p.seed) == 1
    }


def _mean(values) -> float:
    values = finite(values)
    return statistics.fmean(values) if values else math.nan


def _cost_cells(points: list[Point]) -> list[str]:
    mark = "" if all(p.measured for p in points) else "*"
    return [
        f"{number(_mean(p.seconds for p in points))}{mark}",
        f"{number(_mean(p.rows for p in points) / 1e6)}",
    ]


def metrics_of(points: list[Point]) -> tuple[str, ...]:
    """The quality metrics of the tables: MMD of ParaDDPM and DDPM (2-D), or on image data FID then KID
    of every sampler the runs scored (experiment=digits: DDPM, ParaDDPM, DDIM-25/50)."""
    keys = {k for p in points for k in p.run.metrics}
    image = [f"eval/{s}/{q}" for q in ("fid", "kid") for s in SAMPLER_LABELS if f"eval/{s}/{q}" in keys]
    return tuple(image) or METRICS


def metric_label(metric: str) -> str:
    """`eval/ddim25/fid` -> `DDIM-25 FID`."""
    _, sampler, quantity = metric.split("/")
    return f"{SAMPLER_LABELS.get(sampler, sampler)} {quantity.upper()}"


def header(metrics: tuple[str, ...]) -> list[str]:
    cells = []
    for metric in metrics:
        _, sampler, quantity = metric.split("/")
        q = "" if quantity == "mmd" else f" {quantity.upper()}"
        cells += [metric_label(metric), f"Δ {SAMPLER_LABELS.get(sampler, sampler)}{q} (pairs)"]
    return [*cells, "val/nll", "val/cdl_acc"]


def _metric_cells(points: list[Point], base: list[Point] | None, metrics: tuple[str, ...]) -> list[str]:
    cells = []
    for metric in metrics:
        cells.append(mean_se(p.run.metrics.get(metric) for p in points))
        cells.append(paired_difference(_by_seed(points, metric), _by_seed(base, metric)) if base else "-")
    return cells + [mean_se(p.run.metrics.get(m) for p in points) for m in ("val/nll", "val/cdl_acc")]


def _arm_rows(at: list[Point], arms: list[str], base: list[Point], metrics: tuple[str, ...]) -> list[list]:
    """A table row per arm of `at`: steps, cost, each metric's mean ± se and its difference from `base`
    paired by seed (none on the baseline's own row)."""
    rows = []
    for arm in arms:
        group = [p for p in at if p.arm == arm]
        steps = "/".join(str(s) for s in sorted({p.steps for p in group}))
        cells = _metric_cells(group, base if arm != BASELINE else None, metrics)
        rows.append([arm, steps, *_cost_cells(group), *cells])
    return rows


def scratch_table(points: list[Point], recipe: str) -> list[str]:
    """Per budget, every arm: cost, MMD mean ± se over seeds and its paired difference from `itd` at that
    budget and seed."""
    mine = [p for p in points if p.recipe == recipe]
    metrics = metrics_of(mine)
    lines = []
    for budget in sorted({p.budget for p in mine}):
        at = [p for p in mine if p.budget == budget]
        arms = sorted({p.arm for p in at}, key=lambda a: (a != BASELINE, a))
        rows = _arm_rows(at, arms, [p for p in at if p.arm == BASELINE], metrics)
        lines += [f"\n**{budget:g} s of training**\n"]
        lines += markdown_table(["arm", "steps", "training s", "rows (M)", *header(metrics)], rows)
    return lines


def equal_steps_table(points: list[Point], recipe: str) -> list[str]:
    """Each other arm's budget against the `itd` budget nearest it in steps, where within
    EQUAL_STEPS_TOLERANCE of its steps and not the same budget: the comparison at (about) equal steps,
    paired by seed (the per-budget tables are at equal time)."""
    mine = [p for p in points if p.recipe == recipe]
    metrics = metrics_of(mine)
    base_steps = {p.budget: p.steps for p in mine if p.arm == BASELINE}
    lines = []
    for arm in sorted({p.arm for p in mine} - {BASELINE}):
        for budget in sorted({p.budget for p in mine if p.arm == arm}):
            at = [p for p in mine if p.arm == arm and p.budget == budget]
            steps = min(p.steps for p in at)
            near = min(base_steps, key=lambda b: abs(base_steps[b] - steps), default=None)
            far = near is None or abs(base_steps[near] - steps) > EQUAL_STEPS_TOLERANCE * steps
            if far or near == budget:  # (the same budget: already the per-budget table's comparison)
                continue
            base = [p for p in mine if p.arm == BASELINE and p.budget == near]
            lines += [f"\n**{arm} at {budget:g} s against {BASELINE} at {near:g} s**\n"]
            rows = _arm_rows([*base, *at], [BASELINE, arm], base, metrics)
            lines += markdown_table(["arm", "steps", "training s", "rows (M)", *header(metrics)], rows)
    if not lines:
        return []
    tolerance = f"{EQUAL_STEPS_TOLERANCE:.0%}"
    intro = f"Each arm's budget against the `{BASELINE}` budget nearest it in steps (within {tolerance})."
    return [intro, *lines]


def bases_table(root: Path, metrics: tuple[str, ...]) -> list[str]:
    """The fine-tunes' starting points (<root>/bases/<loss>/seed<k>/, ctdm.train runs): steps, measured
    training time and rows, and the same quality metrics as the fine-tune tables."""
    rows = []
    for summary in sorted((root / BASES).glob("*/seed*/summary.json")):
        run = read_run(summary.parent)
        if run is None:
            continue
        m = run.metrics
        rows.append(
            [
                f"{summary.parent.parent.name}/{summary.parent.name}",
                number(m.get("train/steps", math.nan)),
                number(m.get("train/seconds", math.nan)),
                number((m.get("train/rows_forward", math.nan) + m.get("train/rows_backward", 0)) / 1e6),
                *(number(m.get(k, math.nan)) for k in metrics),
            ]
        )
    if not rows:
        return []
    return [
        "\n**The bases** (ctdm.train runs under bases/; every fine-tune arm starts from its checkpoint)\n",
        *markdown_table(["base", "steps", "training s", "rows (M)", *map(metric_label, metrics)], rows),
    ]


def finetune_table(points: list[Point]) -> list[str]:
    lines = []
    mine = [p for p in points if p.recipe == "finetune"]
    metrics = metrics_of(mine)
    for base_name in sorted({p.run.folder.parents[1].name for p in mine}):
        group = [p for p in mine if p.run.folder.parents[1].name == base_name]
        base_arm = group[0].record["base_arm"]
        continued = [p for p in group if p.arm == base_arm]
        rows = []
        for arm in sorted({p.arm for p in group}, key=lambda a: (a != base_arm, a)):
            g = [p for p in group if p.arm == arm]
            steps = "/".join(str(s) for s in sorted({p.steps for p in g}))
            rows.append(
                [
                    arm,
                    steps,
                    *_cost_cells(g),
                    *_metric_cells(g, continued if arm != base_arm else None, metrics),
                ]
            )
        first = group[0].record
        lines += [
            f"\n**Base `{base_name}`** ({first['base_arm']} at step {first['base_step']}; each arm "
            f"{first['budget_seconds']:g} s of fine-tuning; Δ against `{base_arm}` continued)\n"
        ]
        lines += markdown_table(["arm", "fine-tune steps", "training s", "rows (M)", *header(metrics)], rows)
        lines += nfe_table(group, base_arm)
    return lines


def nfe_table(group: list[Point], base_arm: str) -> list[str]:
    """Few-step samplers (nfe.json) of the fine-tune arms: MMD mean ± se, paired difference from the base
    loss continued."""
    scores = {}
    for p in group:
        path = p.run.folder / "nfe.json"
        if path.is_file():
            scores[(p.arm, str(p.seed))] = json.loads(path.read_text())
    samplers = list(dict.fromkeys(s for v in scores.values() for s in v))
    if not samplers:
        return []
    arms = sorted({a for a, _ in scores}, key=lambda a: (a != base_arm, a))

    def seeds(arm, sampler):
        return {s: v[sampler]["mmd"] for (a, s), v in scores.items() if a == arm and sampler in v}

    rows = []
    for sampler in samplers:
        row = [sampler]
        for arm in arms:
            cell = mean_se(seeds(arm, sampler).values())
            if arm != base_arm:
                cell += f"; Δ {paired_difference(seeds(arm, sampler), seeds(base_arm, sampler))}"
            row.append(cell)
        rows.append(row)
    return [
        "\nFew-step samplers (MMD, paper units; Δ paired with the base continued):\n",
        *markdown_table(["sampler", *arms], rows),
    ]


def plot_curves(points: list[Point], recipe: str, folder: Path) -> list[Path]:
    """The study's first metric (ParaDDPM MMD on 2-D data, DDPM or DDIM FID on images) against training
    seconds and against network rows, one curve per arm (the mean over seeds at each budget, bars:
    standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe_points = [p for p in points if p.recipe == recipe]
    metric = metrics_of(recipe_points)[0]
    mine = [p for p in recipe_points if metric in p.run.metrics]
    if not mine:
        return []
    quantity = metric.split("/")[-1]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for axis, label in (("seconds", "training seconds"), ("rows", "network rows (forward + backward)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for arm in sorted({p.arm for p in mine}, key=lambda a: (a != BASELINE, a)):
            xs, ys, es = [], [], []
            for budget in sorted({p.budget for p in mine if p.arm == arm}):
                g = [p for p in mine if p.arm == arm and p.budget == budget]
                values = finite(p.run.metrics[metric] for p in g)
                xs.append(_mean(getattr(p, axis) for p in g))
                ys.append(statistics.fmean(values))
                es.append(statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=arm, lw=2 if arm == BASELINE else 1)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        units = "$^2$ (paper units)" if quantity == "mmd" else ""
        ax.set_ylabel(f"{metric_label(metric)}{units}")
        ax.set_title(f"{recipe} learning rate: {metric_label(metric)} against {axis}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = folder / f"{quantity}_vs_{axis}_{recipe}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def limits(root: Path, preset: str) -> list[str]:
    """The exact denoiser's MMD (the floor no training reaches) and the paper's numbers, where stored."""
    from experiments.report import PAPER

    lines = []
    floor = root / "fid_floor.json"  # experiments.image_floor: held-out images against the training set
    if floor.is_file():
        f = json.loads(floor.read_text())
        lines.append(
            f"- Floor ({floor.relative_to(root)}): the {f['num_samples']} held-out images against the "
            f"training set score FID {number(f['fid'])}, KID {number(f['kid'])} ± {number(f['kid_std'])} "
            "(FID is biased up at this count; KID is not)."
        )
    exact = RESULTS / preset / "exact_limit.json"
    if exact.is_file():
        m = json.loads(exact.read_text())["metrics"]
        lines.append(
            f"- Exact denoiser ({exact.relative_to(RESULTS.parent)}): ParaDDPM "
            f"{number(m.get('eval/para_ddpm/mmd', math.nan))}, "
            f"DDPM {number(m.get('eval/ddpm/mmd', math.nan))}."
        )
    nfe = next(
        (p for p in (root / "exact_nfe.json", RESULTS / "cdl_sweep" / "exact_nfe.json") if p.is_file()), None
    )
    if nfe is not None and preset == "paper_dino":
        scores = json.loads(nfe.read_text())
        lines.append(
            "- Exact denoiser, few-step samplers: "
            + ", ".join(f"{k} {number(v['mmd'])}" for k, v in scores.items())
            + "."
        )
    for arm, numbers in PAPER.get(preset, {}).items():
        shown = ", ".join(f"{k} {number(v)}" for k, v in numbers.items())
        lines.append(f"- The paper's `{arm}`: {shown}.")
    return lines


def calibration_table(root: Path) -> list[str]:
    path = root / "calibration.json"
    if not path.is_file():
        return ["(no calibration.json)"]
    c = json.loads(path.read_text())
    rows = [
        [arm, f"{1000 * a['seconds_per_step']:.2f}", f"{a['spread']:.0%}", f"{a['rows_per_step']:.0f}"]
        for arm, a in c["arms"].items()
    ]
    note = f"{c['rounds']} rounds x {c['steps_per_round']} steps, one thread"
    note += f", overrides {c['overrides']}" if c.get("overrides") else ""
    return [f"Calibration ({note}):\n", *markdown_table(["arm", "ms/step", "spread", "rows/step"], rows)]


def report(root: Path) -> Path:
    points = read_points(root)
    preset = next((p.record.get("preset") for p in points), None) or root.name
    lines = [
        f"# CDL at equal compute: {preset}",
        "",
        "Rebuilt by `python -m experiments.equal_compute_report "
        f"{root}` from the folders under it ({len(points)} scored points). "
        + (
            "FID and KID (the standard Inception features), "
            if metrics_of(points)[0].endswith(("/fid", "/kid"))
            else "MMD^2 in the paper's units, "
        )
        + "mean ± standard error (seeds); Δ: the paired difference from `itd` at the same budget and seed "
        "(fine-tuning: from the base loss continued), mean ± se (pairs). Training seconds: measured by "
        "the run, or * steps x the calibrated seconds per step. Rows: network rows forward + backward.",
        "",
    ]
    lines += calibration_table(root)
    plots = []
    for recipe, title in (
        ("const", "From scratch, constant learning rate (the authors' recipe)"),
        ("cosine", "From scratch, cosine decay over the largest budget (smaller budgets: its checkpoints)"),
        ("decay", "From scratch, cosine decay to each budget"),
    ):
        if any(p.recipe == recipe for p in points):
            lines += ["", f"## {title}", *scratch_table(points, recipe)]
            steps = equal_steps_table(points, recipe)
            lines += ["", f"### {title.split(',')[0]} at about equal steps", *steps] if steps else []
            plots += plot_curves(points, recipe, root / "plots")
    if any(p.recipe == "finetune" for p in points):
        lines += ["", "## Fine-tuning a converged base at equal training time"]
        lines += [*bases_table(root, metrics_of(points)), *finetune_table(points)]
    lines += ["", "## Limits and the paper", *(limits(root, preset) or ["(none stored)"])]
    lines += ["", *[f"![{p.stem}](plots/{p.name})" for p in plots]]
    out = root / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, nargs="?", default=RESULTS / "equal_compute" / "paper_dino")
    parser.add_argument(
        "--collect", type=Path, default=None, help="copy a study's light files into OUT first"
    )
    args = parser.parse_args(argv)
    if args.collect is not None:
        if not args.collect.is_dir():
            parser.error(
                f"--collect {args.collect}: no such folder (a study folder of experiments.equal_compute)."
            )
        print(f"collected {len(collect(args.collect, args.out))} points into {args.out}")
    path = report(args.out)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
