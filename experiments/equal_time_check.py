"""The first equal-time comparison on the dino, from committed folders alone (README, "What the measurements
say so far"): the 100,000-step base runs (experiments/results/equal_compute/bases/paper_dino/, about half
the training time of the CDL arms by the calibration) against the CDL sweep's 20,000-step arms at the same
seeds (experiments/results/cdl_sweep/), paired by seed (one seed: the same initial weights and data order).

    python -m experiments.equal_time_check
"""

import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BASES = RESULTS / "equal_compute" / "bases" / "paper_dino"
SWEEP = RESULTS / "cdl_sweep"
CALIBRATION = RESULTS / "equal_compute" / "paper_dino" / "calibration.json"
# (arm, its folder, steps, the calibration's arm of the same loss)
ARMS = [
    ("itd, 100k steps", BASES / "itd", 100_000, "itd"),
    ("itd_cdl 16 points weight 1, 20k steps", SWEEP / "itd_cdl_p16_w1", 20_000, "itd_cdl"),
    ("mse_sum, 100k steps", BASES / "mse_sum", 100_000, "mse_sum"),
    ("mse_cdl 16 points weight 1, 20k steps", SWEEP / "mse_cdl_p16_w1", 20_000, "mse_sum_cdl"),
]
PAIRS = [(1, 0), (3, 2)]  # (CDL arm, its base) by index into ARMS
METRICS = ["eval/para_ddpm/mmd", "eval/para_ddim/mmd", "val/nll"]
SEEDS = (0, 1, 2)


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4g}" if values else "-"
    return f"{statistics.mean(values):.2g} ± {statistics.stdev(values) / math.sqrt(len(values)):.1g}"


def metrics(folder: Path) -> dict[int, dict]:
    return {s: json.loads((folder / f"seed{s}" / "summary.json").read_text())["metrics"] for s in SEEDS}


def main() -> list[str]:
    calibration = json.loads(CALIBRATION.read_text()) if CALIBRATION.is_file() else {}
    per_step = {k: v.get("seconds_per_step") for k, v in calibration.get("arms", {}).items()}
    values = [metrics(folder) for _, folder, _, _ in ARMS]
    lines = ["| arm (seeds 0-2) | calibrated training s | " + " | ".join(METRICS) + " |"]
    lines.append("|---" * (2 + len(METRICS)) + "|")
    for (name, _, steps, cal), runs in zip(ARMS, values, strict=True):
        seconds = f"{steps * per_step[cal]:.0f}" if per_step.get(cal) else "-"
        cells = [mean_se([runs[s][m] for s in SEEDS]) for m in METRICS]
        lines.append(f"| {name} | {seconds} | " + " | ".join(cells) + " |")
    for arm, base in PAIRS:
        diffs = [
            mean_se([values[arm][s][m] - values[base][s][m] for s in SEEDS])
            + f" ({sum(values[arm][s][m] > values[base][s][m] for s in SEEDS)} of 3 above)"
            for m in METRICS
        ]
        lines.append(f"| {ARMS[arm][0]} - {ARMS[base][0]} (paired) | | " + " | ".join(diffs) + " |")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
