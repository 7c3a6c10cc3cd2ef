"""Compare the arms of a preset: the multirun (a preset's arms, i.e. loss options, x seeds x recipes, local
parallel jobs through the joblib launcher), then report.md from the run folders (experiments.report).
Run from the repository root:

    python -m experiments.compare_arms                    # the CPU-sized dino comparison (make sweep)
    python -m experiments.compare_arms --steps 782000 --jobs 8 --out logs/paper_dino_gpu -- trainer=gpu
    python -m experiments.compare_arms --experiment paper_1d --arms mse_sum,itd,itd_cdl_paper
    python -m experiments.compare_arms --smoke --arms mse_sum,itd_cdl_paper --seeds 0   # seconds

Recipes: `authors` is the preset's (their constant learning rate, no EMA); `decay` runs every arm again
with a cosine decay of the learning rate (model/lr_scheduler=cosine), so a difference between arms is
not the noise of a constant-LR final iterate. Arguments after `--` go to every job as Hydra overrides.
Needs the sweep extra (pip install -e '.[sweep]') for the joblib launcher.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments.report import build_report

ARMS = {
    "paper_dino": "mse_sum,itd,itd_cdl_paper,mse_cdl,itd_cdl",
    "paper_1d": "mse_sum,itd,itd_cdl_paper,mse_cdl,itd_cdl",
    "eight_gaussians": "mse,mse_cdl,itd,itd_cdl,itd_cdl_paper",
    "digits": "mse,mse_cdl,itd_cdl_paper",
}
RECIPES = {"authors": [], "decay": ["model/lr_scheduler=cosine"]}


def launch(args, recipe: str, extra: list[str]) -> subprocess.CompletedProcess:
    """One Hydra multirun (every arm x seed of one recipe) into <out>/<recipe>/<job>/."""
    command = [
        sys.executable,
        "-m",
        "ctdm.train",
        "-m",
        f"experiment={args.experiment}",
        f"loss={args.arms}",
        f"seed={args.seeds}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.jobs}",
        f"hydra.sweep.dir={args.out / recipe}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "eval.progress_bar=false",
        *RECIPES[recipe],
    ]
    if args.steps is not None:
        command.append(f"trainer.max_steps={args.steps}")
    if args.smoke:
        command.append("debug=smoke")
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    env.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs))
    )  # jobs x threads = cores
    print(" ".join(command + extra), flush=True)
    return subprocess.run(command + extra, env=env, check=False)


def main(argv=None) -> Path:  # report.md's path (the out folder with --no-report)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="paper_dino", help="a conf/experiment preset")
    parser.add_argument(
        "--arms", default=None, help="loss options, comma-separated (default: the preset's arms)"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (at least 3 for a spread)")
    parser.add_argument("--recipes", default="authors,decay", help=f"comma-separated, of {sorted(RECIPES)}")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per job (default: the preset's)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="jobs run at once (joblib launcher)")
    parser.add_argument("--smoke", action="store_true", help="debug=smoke: every job runs in seconds")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: logs/<experiment>)")
    parser.add_argument("--ood-samples", type=int, default=500, help="samples for the exact-error measure")
    parser.add_argument("--report-only", action="store_true", help="rebuild report.md from --out, no runs")
    parser.add_argument(
        "--no-report", action="store_true", help="run the jobs only (experiments.report later)"
    )
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    args.arms = args.arms or ARMS.get(args.experiment, "mse,mse_cdl")
    args.out = (args.out or Path("logs") / args.experiment).resolve()
    recipes = args.recipes.split(",")
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        parser.error(f"--recipes has {unknown}; choose from {sorted(RECIPES)}.")
    if not args.report_only:
        start = time.perf_counter()
        for recipe in recipes:
            if launch(args, recipe, extra).returncode != 0:
                print(
                    f"warning: some {recipe} jobs failed; the report lists the finished ones", file=sys.stderr
                )
        print(f"multirun wall time: {time.perf_counter() - start:.0f} s", flush=True)
    if args.no_report:
        return args.out
    report = build_report(args.out, args.ood_samples if not args.smoke else min(args.ood_samples, 16))
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
