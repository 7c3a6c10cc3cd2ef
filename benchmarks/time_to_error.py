"""Time to error: how long `python -m ctdm.train <bad input>` takes to refuse a mistake, and what it leaves.

    python benchmarks/time_to_error.py                               # this tree, 5 runs per case
    python benchmarks/time_to_error.py --before /tmp/ctdm_before     # beside another checkout of ctdm
    python benchmarks/time_to_error.py --repeats 1 --cases value     # the small mode the tests run

Each case is run as a user runs it (a new interpreter, W&B offline, in an empty folder), `--repeats`
times per tree, alternating the trees so both see the same load; the table gives the median wall time
(min-max), the ratio, and whether a run folder or W&B run was left behind; it exits 1 when this tree does not
refuse a case (exit status 1) or leaves something behind. `--before DIR` is the root
of another checkout (e.g. `git archive <commit> | tar -x -C DIR`); its ctdm is imported from there.
The machine's load average is printed: on a shared machine the times scale with it.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# case -> (what is wrong, the overrides); each must be refused with exit status 1
CASES = {
    "value": ("a config value (data.batch_size=0)", ["data.batch_size=0"]),
    "option": ("an unknown option (loss=nonexistent)", ["loss=nonexistent"]),
    "points": ("a loss argument (loss.cdl.points=0)", ["loss=contrastive", "loss.cdl.points=0"]),
    "path": ("a missing data file (data.path)", ["data=dino", "data.path=/nonexistent/dino.tsv"]),
    "weights": ("missing FID weights", ["data=digits", "eval.fid.weights_path=/nonexistent/inception.pth"]),
}


def run_case(tree: Path, overrides: list[str]) -> tuple[float, int, str]:
    """(seconds, exit status, what was left behind) of one `python -m ctdm.train OVERRIDES` from `tree`."""
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "WANDB_MODE": "offline",
            "HYDRA_FULL_ERROR": "0",
            **{
                k: str(Path(folder) / "wandb_home")
                for k in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")
            },
        }
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "ctdm.train", *overrides],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        seconds = time.perf_counter() - start
        runs = [p for p in (Path(folder) / "logs" / "train" / "runs").glob("*") if p.is_dir()]
        wandb = [p for run in runs for p in run.glob("wandb/*run-*")]
        left = "W&B run" if wandb else "run folder" if runs else "nothing"
        if result.returncode != 1:  # not refused: say how it ended
            left += f" (exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]})"
        return seconds, result.returncode, left


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, default=None, help="root of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    trees = {"this": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    times: dict[tuple[str, str], list[float]] = {}
    left: dict[tuple[str, str], str] = {}
    for case in args.cases:
        for _ in range(args.repeats):
            for name, tree in trees.items():  # alternating: both trees see the same load
                seconds, _code, what = run_case(tree, CASES[case][1])
                times.setdefault((case, name), []).append(seconds)
                left[case, name] = what
    names = list(trees)
    header = ["case"] + [f"{n}: median s (min-max)" for n in names] + (["ratio"] if len(names) > 1 else [])
    header += [f"{n}: left behind" for n in names]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for case in args.cases:
        cells = [CASES[case][0]]
        medians = {n: statistics.median(times[case, n]) for n in names}
        for n in names:
            values = times[case, n]
            cells.append(f"{medians[n]:.2f} ({min(values):.2f}-{max(values):.2f})")
        if len(names) > 1:
            cells.append(f"{medians['before'] / medians['this']:.1f}x faster")
        cells += [left[case, n] for n in names]
        print("| " + " | ".join(cells) + " |")
    floor = []
    for _ in range(args.repeats):  # what no check that builds a torch class can go below
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        floor.append(time.perf_counter() - start)
    print(f"`python -c 'import torch'` alone: median {statistics.median(floor):.2f} s")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    wrong = [case for case in args.cases if left[case, "this"] != "nothing"]
    if wrong:  # this tree must refuse every case (exit 1) and leave nothing behind
        sys.exit("not refused cleanly here: " + ", ".join(f"{c} ({left[c, 'this']})" for c in wrong))


if __name__ == "__main__":
    main()
