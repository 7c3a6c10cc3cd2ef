"""Numbers over seeds: mean ± sd, mean ± se, unpaired differences and differences paired by seed."""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

from ctdm.compare.runs import Run


def finite(values: Iterable) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def number(x: float, digits: int = 3) -> str:
    """`digits` significant digits, without an exponent from 10^digits up (12000, not 1.2e+04)."""
    if not math.isfinite(x) or abs(x) < 10**digits:  # nan: a cell with nothing to show
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
