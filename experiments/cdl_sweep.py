"""Which CDL setting helps? Named arms (sets of overrides) on experiment=paper_dino, run in stages.

    python -m experiments.cdl_sweep --list                        # the arms and their overrides
    python -m experiments.cdl_sweep --stage coarse --jobs 2       # every arm, seed 0
    python -m experiments.cdl_sweep --stage confirm --arms itd,itd_cdl_p2_w0.01 --seeds 0,1,2
    python -m experiments.cdl_sweep --stage nfe --arms itd,itd_cdl_p2_w0.01 --seeds 0,1,2
    python -m experiments.cdl_sweep --stage coarse --smoke --arms itd,itd_cdl_sf2_w1   # seconds

An arm is a base loss (`mse_sum`, the authors' DDPM baseline; `mse`, the mean MSE that `mse_cdl` adds
CDL to; `itd`, the authors' ITD loss, also with stratified levels) or ctdm's every-item CDL on the MSE or
the ITD base at `points` shared draws and `weight`, with plain draws (p2, p8, p16) or with the
lower-variance draws at the authors' cost (sf2: 2 points, stratified and focused levels,
ctdm.diffusion.Draws). Each job is one `python -m ctdm.train` run into <out>/<arm>/seed<k>/; a job whose
folder already holds summary.json is skipped, so a sweep stopped in one session resumes in the next,
and a later stage reuses the seeds an earlier one ran. Arguments after `--` go to every job.

Stage `nfe` trains nothing: it scores the finished jobs' checkpoints with few-step samplers, where a
denoiser that is better off the training paths should matter most: DDIM and EDM-Heun at 10, 25, 50
and 100 steps and ParaDDIM-700 at tolerances 0.1 and 0.3 (MMD in the preset's units, the same
samples and seeds for every arm), into <job>/nfe.json; `--exact` also scores the data's exact
denoiser once, into <out>/exact_nfe.json (the limit).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

BASES = {
    "mse_sum": ["loss=mse_sum"],
    "mse": ["loss=mse"],
    "itd": ["loss=itd"],
    "itd_stratified": ["loss=itd", "loss.itd.draws.stratified=true"],
}
POINTS = (2, 8, 16)
WEIGHTS = (0.01, 0.1, 1)
LOWER_VARIANCE = ["loss.cdl.points=2", "loss.cdl.draws.stratified=true", "loss.cdl.draws.focused=true"]


def _arms() -> dict[str, list[str]]:
    arms = dict(BASES)
    for base in ("itd", "mse"):
        for weight in WEIGHTS:
            for points in POINTS:
                arms[f"{base}_cdl_p{points}_w{weight}"] = [
                    f"loss={base}_cdl",
                    f"loss.cdl.points={points}",
                    f"loss.cdl.weight={weight}",
                ]
            arms[f"{base}_cdl_sf2_w{weight}"] = [
                f"loss={base}_cdl",
                *LOWER_VARIANCE,
                f"loss.cdl.weight={weight}",
            ]
    return arms


ARMS = _arms()
STAGES = {"coarse": "0", "confirm": "0,1,2", "nfe": "0,1,2"}  # default seeds of each stage
NFE_STEPS = (10, 25, 50, 100)
NFE_TOLERANCES = (0.1, 0.3)


def nfe_samplers(cfg: dict, steps=NFE_STEPS, tolerances=NFE_TOLERANCES) -> list:
    """DDIM and EDM-Heun at each number of steps, and the run's ParaDDIM (if it has one) at each tolerance."""
    from hydra.utils import instantiate

    from ctdm.samplers import DDIMSampler, HeunSampler

    schedule = instantiate(cfg["diffusion"]["schedule"])
    samplers = []
    for k in steps:
        samplers += [DDIMSampler(k, schedule, name=f"ddim{k}"), HeunSampler(k, name=f"heun{k}")]
    para = cfg["eval"]["samplers"].get("para_ddim")  # (experiment=paper_1d evaluates none)
    if para is not None:
        samplers += [instantiate({**para, "tolerance": t, "name": f"para_ddim_tol{t}"}) for t in tolerances]
    return samplers


def score_nfe(cfg: dict, denoiser, num_samples: int | None = None) -> dict:
    """{sampler: {mmd, nfe, passes}} of every `nfe_samplers` sampler on `denoiser`, scored as the run's
    own evaluation (its held-out points, bandwidth, units, seed and sample count)."""
    from ctdm.build import build_data
    from ctdm.evaluation import MMDScorer, evaluate_samplers

    data, ev = build_data(cfg), cfg["eval"]
    data.setup("fit")
    result = evaluate_samplers(
        nfe_samplers(cfg),
        denoiser,
        MMDScorer(data.x_val, ev["mmd_bandwidth"], ev["mmd_units"]),
        tuple(data.shape),
        num_samples=num_samples or ev["num_samples"],
        seed=ev["seed"],
    )
    return {r.name: {"mmd": r.scores["mmd"], "nfe": r.nfe, "passes": r.passes} for r in result.samplers}


def run_nfe(folder: Path, num_samples: int | None = None) -> tuple[str, int, float]:
    """Stage nfe for one finished job: its last.ckpt scored by `score_nfe` into <folder>/nfe.json."""
    from ctdm.build import load_module

    start = time.perf_counter()
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return f"{folder.parent.name}/{folder.name}", 1, 0.0
    module = load_module(checkpoint)
    scores = score_nfe(module.run_config, module.eps, num_samples)
    (folder / "nfe.json").write_text(json.dumps(scores, indent=1))
    return f"{folder.parent.name}/{folder.name}", 0, time.perf_counter() - start


def run_exact_nfe(out: Path, folder: Path, num_samples: int | None = None) -> None:
    """The data's exact denoiser through the same samplers: the limit every arm is measured against."""
    import torch

    from ctdm.build import build_data
    from ctdm.checkpoint import load_checkpoint

    cfg = load_checkpoint(folder / "checkpoints" / "last.ckpt")["ctdm_config"]
    law = build_data(cfg).law

    def exact(z, a):  # the mixture's [N, K, d] tensors, a cache-sized chunk at a time
        return torch.cat([law.eps(zc, ac) for zc, ac in zip(z.split(4096), a.split(4096), strict=True)])

    (out / "exact_nfe.json").write_text(json.dumps(score_nfe(cfg, exact, num_samples), indent=1))


def command(arm: str, seed: int, out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ctdm.train",
        "experiment=paper_dino",
        *ARMS[arm],
        f"seed={seed}",
        f"hydra.run.dir={out / arm / f'seed{seed}'}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "eval.progress_bar=false",
        *extra,
    ]


def run_job(arm: str, seed: int, out: Path, extra: list[str]) -> tuple[str, int, float]:
    folder = out / arm / f"seed{seed}"
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(out / arm / f"seed{seed}.log", "w") as log:
        env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled"), "OMP_NUM_THREADS": "1"}
        code = subprocess.run(
            command(arm, seed, out, extra), stdout=log, stderr=subprocess.STDOUT, env=env
        ).returncode
    return f"{arm}/seed{seed}", code, time.perf_counter() - start


def main(argv=None) -> list[tuple[str, int, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=sorted(STAGES), default="coarse")
    parser.add_argument("--arms", default=None, help="comma-separated arm names (default: all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the stage's)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at once, one thread each")
    parser.add_argument("--out", type=Path, default=Path("logs/cdl_sweep"))
    parser.add_argument("--smoke", action="store_true", help="debug=smoke: every job in seconds")
    parser.add_argument("--list", action="store_true", help="print the arms and exit")
    parser.add_argument("--exact", action="store_true", help="stage nfe: also the exact denoiser's limit")
    parser.add_argument("--samples", type=int, default=None, help="stage nfe: samples (default: the run's)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"] + (["debug=smoke"] if args.smoke else [])
    if args.list:
        for name, overrides in ARMS.items():
            print(f"{name:24s} {' '.join(overrides)}")
        return []
    arms = args.arms.split(",") if args.arms else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"--arms has unknown arms {unknown}; `--list` prints the {len(ARMS)} arms.")
    seeds = [int(s) for s in (args.seeds or STAGES[args.stage]).split(",")]
    out = args.out.resolve()
    if args.stage == "nfe":
        import torch

        torch.set_num_threads(1)
        folders = [out / a / f"seed{s}" for a in arms for s in seeds]
        todo = [f for f in folders if (f / "summary.json").exists() and not (f / "nfe.json").exists()]
        print(f"{len(todo)} checkpoints to score into nfe.json", flush=True)
        done = []
        for folder in todo:
            name, code, seconds = run_nfe(folder, args.samples)
            print(f"{name}: {'ok' if code == 0 else 'no checkpoint'} in {seconds / 60:.1f} min", flush=True)
            done.append((name, code, seconds))
        if args.exact and todo and not (out / "exact_nfe.json").exists():
            run_exact_nfe(out, todo[0], args.samples)
        return done
    todo = [(a, s) for a in arms for s in seeds if not (out / a / f"seed{s}" / "summary.json").exists()]
    print(
        f"{len(todo)} jobs to run ({len(arms) * len(seeds) - len(todo)} already done) into {out}", flush=True
    )
    return run_pool([(run_job, arm, seed, out, extra) for arm, seed in todo], args.jobs)


def run_pool(calls: list[tuple], jobs: int) -> list[tuple[str, int, float]]:
    """Each call `(fn, *args)` (fn returns (name, exit code, seconds)), `jobs` at a time, printing each
    outcome as it ends; the outcomes in the order they ended."""
    done = []
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(fn, *fn_args) for fn, *fn_args in calls]
        for future in as_completed(futures):
            name, code, seconds = future.result()
            print(
                f"{name}: {'ok' if code == 0 else f'failed (exit {code})'} in {seconds / 60:.1f} min",
                flush=True,
            )
            done.append((name, code, seconds))
    return done


if __name__ == "__main__":
    main()
