"""Evaluation results as plain records: what each sampler drew, scored and cost, and the flat
`eval/<sampler>/<metric>` names they are logged under."""

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor


def first_below(curve: list[dict], key: str, threshold: float) -> dict | None:
    """The first pass of a per-pass curve whose `key` is at or below `threshold`."""
    return next((c for c in curve if c[key] <= threshold), None)


@dataclass
class SamplerResult:
    """One sampler's evaluation.

    samples: every rank's samples in index order, on the CPU (the first `keep` of them when the
    evaluation streamed: ctdm.evaluation.evaluate_samplers); scores: the scorer's metrics (mmd, or fid,
    kid, kid_std) and num_samples (each index counted once); nfe, passes, seconds, converged: as in
    ctdm.evaluation.Generation; curve: the parallel sampler's score after every pass, when recorded;
    threshold_hit: the first pass of the curve at or below the evaluation's threshold; samples_file: every
    sample on disk (.npy), when the evaluation wrote them.
    """

    name: str
    samples: Tensor
    scores: dict[str, float]
    nfe: float
    passes: int
    seconds: float
    converged: bool = True
    parallel: bool = False
    curve: list[dict] | None = None
    threshold_hit: dict | None = None
    samples_file: Path | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """{eval/<sampler>/<metric>: value}: scores, nfe, passes, seconds, and passes_to_threshold,
        nfe_to_threshold when the curve reached the threshold."""
        values = {**self.scores, "nfe": self.nfe, "passes": self.passes, "seconds": self.seconds}
        if self.threshold_hit is not None:
            values |= {"passes_to_threshold": self.threshold_hit["pass"]}
            values |= {"nfe_to_threshold": self.threshold_hit["nfe"]}
        return {f"eval/{self.name}/{key}": value for key, value in values.items()}


@dataclass
class EvaluationResult:
    """Every sampler's result, in the order they ran, and the data's baselines (eval/normal_mmd)."""

    samplers: list[SamplerResult] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None

    @property
    def metrics(self) -> dict[str, float]:
        out = {key: value for result in self.samplers for key, value in result.metrics.items()}
        return out | {f"eval/{key}": value for key, value in self.baselines.items()}

    @property
    def samples(self) -> dict[str, Tensor]:
        return {result.name: result.samples for result in self.samplers}

    @property
    def curves(self) -> dict[str, list[dict]]:
        return {result.name: result.curve for result in self.samplers if result.curve}


# The end-of-run table's columns: (metric, heading), in this order; a column shows if any sampler has it.
TABLE_COLUMNS = (
    ("num_samples", "samples"),
    ("fid", "FID"),
    ("kid", "KID"),
    ("mmd", "MMD^2"),
    ("passes", "passes"),
    ("nfe", "NFE"),
    ("seconds", "seconds"),
    ("passes_to_threshold", "passes to threshold"),
)


def sampler_table(metrics: dict[str, float], indent: str = "  ") -> list[str]:
    """Every sampler's flat `eval/<sampler>/<metric>` values as the lines of a text table (one row per
    sampler: samples, FID, KID ± its spread over subsets, MMD^2, passes, NFE, seconds); [] if none."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval":
            rows.setdefault(parts[1], {})[parts[2]] = value
    columns = [(m, h) for m, h in TABLE_COLUMNS if any(m in r for r in rows.values())]
    if not rows or not columns:
        return []

    def cell(row: dict, metric: str) -> str:
        if metric not in row:
            return "-"
        text = f"{row[metric]:.4g}"
        return f"{text} ± {row['kid_std']:.2g}" if metric == "kid" and "kid_std" in row else text

    table = [["sampler", *(h for _, h in columns)]] + [
        [n, *(cell(r, m) for m, _ in columns)] for n, r in rows.items()
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
