"""What a training budget buys: CDL against plain ITD and MSE at equal training *time* (issue 25), from
scratch and when fine-tuning a converged base, on experiment=paper_dino (or paper_1d), in stages.

    python -m experiments.equal_compute --stage calibrate                  # seconds per step of every arm
    python -m experiments.equal_compute --stage scratch --recipe const --seeds 0,1,2 --dry-run
    python -m experiments.equal_compute --stage scratch --recipe const --seeds 0,1,2 --jobs 2
    python -m experiments.equal_compute --stage scratch --recipe decay --arms itd,itd_cdl_k8
    python -m experiments.equal_compute --stage finetune --base <base run>/checkpoints/last.ckpt
    python -m experiments.equal_compute --stage calibrate --smoke          # any stage in seconds
    python -m experiments.equal_compute_report logs/equal_compute/paper_dino --collect

Arms (`--list`): the base losses `itd` and `mse_sum`, and CDL settings on the ITD base that could pay at
equal time: `itd_cdl` (the sweep's equal-steps winner: 16 shared points on every item, weight 1),
`itd_cdl_p2_w0.01` (2 points, weight 0.01), `itd_cdl_s<n>` (CDL on n items of the batch,
loss.cdl.samples) and `itd_cdl_k<k>` (CDL every k steps, loss.cdl.every_n_steps), at 16 points. Fine-tune
arms on an MSE base put the same settings on the summed MSE (`mse_sum_cdl`, ...).

Budgets are seconds of training (`--budgets`, default 200,800,3200 s on one CPU thread here). Stage
`calibrate` measures every arm's seconds per training step side by side in one process on one thread
(Lightning's training step as ctdm.train runs it, hooks and logging included, timed from each batch's
start to its end), in rounds that visit the arms in a rotated order so machine load hits every arm
alike, and counts the rows
each step sends through the network (forward, and forward with gradient = backward): calibration.json.
A budget becomes each arm's number of steps through it (rounded to `--granularity` steps); the report
puts each point at its measured training time where the run records one (summary.json's train/seconds)
and at the calibrated one otherwise, and in network rows either way, so the table carries over to a GPU.

Stage `scratch --recipe const` (the authors' constant learning rate, model/lr_scheduler=constant whatever
the preset's own schedule): per arm x seed ONE run to the largest budget, checkpointed at every budget's
step (ctdm.callbacks.CheckpointAtSteps); the largest budget is the run's own evaluation, every smaller one
its checkpoint scored by `python -m ctdm.evaluate` with the preset's samplers and seeds into
<job>/budget<B>s/. `--recipe cosine`: the same runs with a cosine decay over the largest budget's steps
(model/lr_scheduler=cosine), so a smaller budget's checkpoint sits at the same point of every arm's
schedule (experiment=digits's own schedule). `--recipe decay`: one run per arm x seed x budget
with model/lr_scheduler=cosine ending at that budget, into <arm>/budget<B>s/seed<k>/. `--reuse DIR` takes
the itd / mse_sum const jobs from existing base runs (DIR/<arm>/seed<k>/checkpoints/, periodic and
last.ckpt) where a saved step lies within 25% of the calibrated steps: the nearest such step is scored,
and its exact step (and so its cost) is what budget.json records.

Stage `finetune`: from `--base` (a checkpoint of the preset trained with loss=itd or loss=mse_sum), each
fine-tune arm (the base loss continued, and CDL settings) trains the same `--finetune-seconds` of
training (steps per arm from the calibration) with experiment=<preset>_finetune, >= 3 seeds, then its
last.ckpt is scored by the few-step samplers (DDIM and EDM-Heun at 10-100 steps, ParaDDIM:
experiments.cdl_sweep.score_nfe) into nfe.json.

Every scored point's folder gets budget.json (arm, seed, recipe, budget, steps, checkpoint), written last:
the report reads those. Resumable across sessions: a job whose points are all scored is skipped, a job
folder with checkpoints/last.ckpt but no summary.json resumes from it (last.ckpt is written at every
validation, about every `--checkpoint-seconds` of training). Jobs run `--jobs` at a time, one thread
each. `--dry-run` prints the planned jobs and the predicted hours and runs nothing.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ctdm.config_dir import CONFIG_DIR
from experiments.cdl_sweep import run_pool

PRESETS = ("paper_dino", "paper_1d", "digits")
BASE_LOSSES = {"itd": ["loss=itd"], "mse_sum": ["loss=mse_sum"]}
# The CDL term on a base: ITD + CDL (loss=itd_cdl), or the authors' summed MSE + CDL.
WITH_CDL = {"itd": ["loss=itd_cdl"], "mse_sum": ["loss=mse_cdl", "loss.mse.reduction=sum"]}
SIXTEEN = ["loss.cdl.points=16", "loss.cdl.weight=1"]  # loss=itd_cdl's own (loss=contrastive: k16 below)
CDL_SETTINGS = {
    "cdl": SIXTEEN,
    "cdl_p2_w0.01": ["loss.cdl.points=2", "loss.cdl.weight=0.01"],
    **{f"cdl_s{n}": [*SIXTEEN, f"loss.cdl.samples={n}"] for n in (8, 16, 32)},
    **{f"cdl_k{k}": [*SIXTEEN, f"loss.cdl.every_n_steps={k}"] for k in (4, 8, 16)},
}
SCRATCH_ARMS = [*BASE_LOSSES, *(f"itd_{s}" for s in CDL_SETTINGS)]
# The image setting of loss.cdl (conf/loss/_data/_image.yaml, 4 items x 16 points): an arm of the digits
# preset (--preset digits --arms itd,itd_cdl_s4), not of the 2-D stages' default lists.
CDL_SETTINGS["cdl_s4"] = [*SIXTEEN, "loss.cdl.samples=4"]
FINETUNE_ARMS = {
    "itd": ["itd", "itd_cdl", "itd_cdl_p2_w0.01", "itd_cdl_s8", "itd_cdl_k8"],
    "mse_sum": ["mse_sum", "mse_sum_cdl", "mse_sum_cdl_p2_w0.01", "mse_sum_cdl_s8", "mse_sum_cdl_k8"],
}
BUDGETS = (200.0, 800.0, 3200.0)
REUSE_TOLERANCE = 0.25  # a saved base-run step serves a budget when within 25% of its calibrated steps
# Predicted minutes of one scoring of a point (1000-step DDPM + ParaDDPM + ParaDDIM on the preset's
# samples, one thread) and of a fine-tune's few-step samplers: for --dry-run's hours only (rough).
EVALUATION_MINUTES = {"paper_dino": 3.0, "paper_1d": 4.0, "digits": 25.0}
# The few-step samplers of a fine-tune, scored by MMD on the 2-D presets (stage nfe); the image preset's
# own evaluation already has DDIM-25/50 beside DDPM, by FID and KID.
NFE_PRESETS = ("paper_dino", "paper_1d")
NFE_MINUTES = 3.0


def arm_overrides(arm: str) -> list[str]:
    """The loss overrides of an arm name: a base loss, or `<base>_<CDL setting>`."""
    if arm in BASE_LOSSES:
        return BASE_LOSSES[arm]
    for base in BASE_LOSSES:
        setting = arm.removeprefix(f"{base}_")
        if setting != arm and setting in CDL_SETTINGS:
            return [*WITH_CDL[base], *CDL_SETTINGS[setting]]
    known = [*SCRATCH_ARMS, *FINETUNE_ARMS["mse_sum"][1:]]
    raise ValueError(
        f"unknown arm {arm!r}: arms are a base loss {list(BASE_LOSSES)} or <base>_<setting> "
        f"with a setting of {list(CDL_SETTINGS)} (e.g. {', '.join(known[:4])})."
    )


# -- calibration: seconds and network rows per training step, measured side by side ------------------


def compose_run(preset: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import ctdm.config  # noqa: F401  (the schema conf/config.yaml composes on)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={preset}", *overrides])


@dataclass
class _Trainee:
    """One arm's module and training batches, trained by a Lightning Trainer as `ctdm.train` does (its
    training_step, backward, update and per-step hooks and logging), timed from each batch's start to its
    end; a forward hook on the network counts the rows it is sent."""

    module: object
    loader: object
    step: int = 0
    rows_forward: int = 0
    rows_backward: int = 0
    seconds: list = field(default_factory=list)

    def count(self, net, inputs, output) -> None:
        import torch

        rows = inputs[0].shape[0]
        self.rows_forward += rows
        # with gradient, and not a checkpointed forward re-run during backward: back-propagated
        if torch.is_grad_enabled() and torch._C._current_graph_task_id() == -1:
            self.rows_backward += rows

    def train(self, steps: int, root: Path) -> float:
        """`steps` training steps (a fresh Trainer from global step 0, so every_n_steps cycles are whole);
        the seconds spent inside them (not the fit's setup)."""
        import lightning as L

        timer = _step_timer()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=root,
            callbacks=[timer],
        )
        with warnings.catch_warnings():  # "a validation_step but no val_dataloader": on purpose
            warnings.simplefilter("ignore", UserWarning)
            trainer.fit(self.module, train_dataloaders=self.loader)
        self.step += steps
        return timer.seconds


def _step_timer():
    """A Lightning callback summing the seconds from each training batch's start to its end (built here:
    this module imports Lightning only when it trains)."""
    import lightning as L

    class StepTimer(L.Callback):
        seconds, start = 0.0, 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seconds += time.perf_counter() - self.start

    return StepTimer()


def _trainee(preset: str, arm: str, extra: list[str]) -> _Trainee:
    from ctdm.build import build_data, build_module

    cfg = compose_run(preset, [*arm_overrides(arm), *extra])
    module, data = build_module(cfg), build_data(cfg)
    module.noise_seed = data.shuffle_seed = 0
    data.setup("fit")
    module.set_data_var(data.data_var)
    trainee = _Trainee(module, data.train_dataloader())
    module.parameterization.net.register_forward_hook(trainee.count)
    return trainee


def calibrate(preset: str, arms: list[str], rounds: int, steps: int, extra: list[str]) -> dict:
    """{arm: seconds per step (median over rounds), their relative spread, rows per step}: `steps`
    training steps of each arm per round, the arms in a rotated order each round, after one warm-up
    round; `steps` is rounded up to whole cycles of every arm's every_n_steps."""
    import tempfile

    import torch

    from ctdm.cli import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="ctdm_calibrate_"))  # Lightning's default_root_dir: nothing kept
    trainees = {arm: _trainee(preset, arm, extra) for arm in arms}
    # whole cycles of every term's every_n_steps in each round, so rows and seconds are per-step averages
    cycle = math.lcm(*(t.every_n_steps for x in trainees.values() for t in x.module.loss_terms.values()))
    steps = cycle * math.ceil(steps / cycle)
    for trainee in trainees.values():  # warm-up (allocator, first-call costs), not timed or counted
        trainee.train(max(2, steps // 4), root)
        trainee.rows_forward = trainee.rows_backward = trainee.step = 0
    for r in range(rounds):
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
            trainees[arm].seconds.append(trainees[arm].train(steps, root) / steps)
    out = {}
    for arm, t in trainees.items():
        median = statistics.median(t.seconds)
        out[arm] = {
            "seconds_per_step": median,
            "spread": (max(t.seconds) - min(t.seconds)) / median,  # (max - min) / median over the rounds
            "seconds_per_step_rounds": t.seconds,
            "rows_forward_per_step": t.rows_forward / t.step,
            "rows_backward_per_step": t.rows_backward / t.step,
            "rows_per_step": (t.rows_forward + t.rows_backward) / t.step,
            "steps_per_round": steps,
        }
    return out


def read_calibration(out: Path) -> dict:
    path = out / "calibration.json"
    if not path.is_file():
        raise SystemExit(
            f"{path} does not exist: budgets in seconds turn into steps through each arm's measured seconds "
            "per step. Run `python -m experiments.equal_compute --stage calibrate` (same --out and preset) "
            "first."
        )
    return json.loads(path.read_text())


def steps_for(budget: float, arm: str, calibration: dict, granularity: int) -> int:
    """Steps of `arm` that take `budget` seconds of training, to a multiple of `granularity` (>= one)."""
    arms = calibration["arms"]
    if arm not in arms:
        raise SystemExit(f"calibration.json has no arm {arm!r} (it has {sorted(arms)}): calibrate it first.")
    steps = budget / arms[arm]["seconds_per_step"]
    return max(granularity, granularity * round(steps / granularity))


# -- jobs --------------------------------------------------------------------------------------------


@dataclass
class Point:
    """One scored point of a cost curve: `folder` gets budget.json once scored."""

    folder: Path
    budget: float
    steps: int
    checkpoint: Path | None = None  # scored by ctdm.evaluate (None: the training run scores itself)


@dataclass
class Job:
    name: str
    arm: str
    seed: int
    folder: Path | None  # the training run (None: only evaluations of existing checkpoints)
    train: list[str]  # ctdm.train overrides (the folder's), [] without training
    points: list[Point]
    record: dict  # what budget.json says besides the point's own budget and steps
    nfe: bool = False  # score the run's last.ckpt with the few-step samplers afterwards
    predicted_seconds: float = 0.0

    def done(self) -> bool:
        return all(_scored(p) for p in self.points) and (not self.nfe or (self.folder / "nfe.json").is_file())


def _trained(job: Job) -> bool:
    """The job's run finished at its last point's steps (a run that stopped at a smaller largest budget
    before `--budgets` grew resumes from its last.ckpt)."""
    summary = job.folder / "summary.json"
    steps = max(p.steps for p in job.points)
    return summary.is_file() and json.loads(summary.read_text()).get("global_step", 0) >= steps


def _scored(point: Point) -> bool:
    """The point's budget.json is there and is this budget's (a job folder scored at a smaller largest
    budget before `--budgets` grew holds that budget's record: the run goes on to the new one)."""
    record = point.folder / "budget.json"
    return record.is_file() and json.loads(record.read_text()).get("budget_seconds") == point.budget


def _common(folder: Path) -> list[str]:
    return [
        f"hydra.run.dir={folder}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "eval.progress_bar=false",
    ]


def _interval(seconds: float, arm: str, calibration: dict, steps: int, granularity: int) -> int:
    return min(steps, steps_for(seconds, arm, calibration, granularity))


def scratch_jobs(args, calibration: dict, out: Path) -> list[Job]:
    jobs = []
    for arm in args.arms:
        for seed in args.seeds:
            steps = [steps_for(b, arm, calibration, args.granularity) for b in args.budgets]
            if args.smoke:  # every budget a few steps: the stage's mechanics, not its numbers
                steps = [2 * (i + 1) for i in range(len(args.budgets))]
            sps = calibration["arms"][arm]["seconds_per_step"]
            record = {
                "arm": arm,
                "seed": seed,
                "recipe": args.recipe,
                "stage": "scratch",
                "preset": args.preset,
            }
            schedule = f"model/lr_scheduler={'constant' if args.recipe == 'const' else 'cosine'}"
            if args.recipe == "decay":
                for budget, n in zip(args.budgets, steps, strict=True):
                    folder = out / arm / f"budget{budget:g}s" / f"seed{seed}"
                    interval = _interval(args.checkpoint_seconds, arm, calibration, n, args.granularity)
                    train = [*arm_overrides(arm), f"seed={seed}", "model/lr_scheduler=cosine"]
                    train += [f"trainer.max_steps={n}", f"trainer.val_check_interval={interval}"]
                    jobs.append(
                        Job(
                            folder.relative_to(out).as_posix(),
                            arm,
                            seed,
                            folder,
                            train,
                            [Point(folder, budget, n)],
                            record,
                            predicted_seconds=n * sps,
                        )
                    )
                continue
            folder = out / arm / f"seed{seed}"
            reused = _reuse(args.reuse, arm, seed, args.budgets, steps) if args.reuse else None
            # (reused base runs are scored as they were trained: --reuse takes const runs of the preset)
            if reused is not None:
                points = [Point(folder / f"budget{b:g}s", b, s, c) for b, s, c in reused]
                jobs.append(
                    Job(f"{arm}/seed{seed}", arm, seed, folder, [], points, {**record, "reused": True})
                )
                continue
            interval = _interval(args.checkpoint_seconds, arm, calibration, max(steps), args.granularity)
            budget_dir = folder / "checkpoints" / "budgets"
            points = [
                Point(folder / f"budget{b:g}s", b, s, budget_dir / f"step_{s:06d}.ckpt")
                for b, s in zip(args.budgets, steps, strict=True)
            ]
            points[-1] = Point(folder, args.budgets[-1], max(steps))  # the run's own final evaluation
            train = [
                *arm_overrides(arm),
                f"seed={seed}",
                schedule,
                f"trainer.max_steps={max(steps)}",
                f"trainer.val_check_interval={interval}",
                "+callbacks.budget_checkpoints._target_=ctdm.callbacks.CheckpointAtSteps",
                f"+callbacks.budget_checkpoints.dirpath={budget_dir}",
                f"+callbacks.budget_checkpoints.steps=[{','.join(map(str, sorted(set(steps))))}]",
            ]
            jobs.append(
                Job(
                    f"{arm}/seed{seed}",
                    arm,
                    seed,
                    folder,
                    train,
                    points,
                    record,
                    predicted_seconds=max(steps) * sps,
                )
            )
    return jobs


def _saved_steps(folder: Path) -> dict[int, Path]:
    """{step: checkpoint} of a base run's periodic checkpoints (step_XXXXXX.ckpt) and, once it finished,
    its last.ckpt."""
    import torch

    found = {int(p.stem.split("_")[1]): p for p in (folder / "checkpoints").glob("periodic/step_*.ckpt")}
    last = folder / "checkpoints" / "last.ckpt"
    if last.is_file() and (folder / "summary.json").is_file():  # a running job's last.ckpt moves on
        step = int(torch.load(last, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))
        found.setdefault(step, last)
    return found


def _reuse(root: Path, arm: str, seed: int, budgets, steps) -> list | None:
    """[(budget, saved step, checkpoint)] from root/<arm>/seed<k>/ when every budget has a saved step
    within REUSE_TOLERANCE of its calibrated steps (the nearest one), else None (the job trains)."""
    if arm not in BASE_LOSSES or not (root / arm / f"seed{seed}").is_dir():
        return None
    saved = _saved_steps(root / arm / f"seed{seed}")
    chosen = []
    for budget, n in zip(budgets, steps, strict=True):
        nearest = min(saved, key=lambda s: abs(s - n), default=None)
        if nearest is None or abs(nearest - n) > REUSE_TOLERANCE * n:
            return None
        chosen.append((budget, nearest, saved[nearest]))
    return chosen


def base_loss_of(checkpoint: dict, path: Path) -> str:
    cfg = checkpoint["ctdm_config"]
    terms = set(cfg.get("loss") or {})
    if terms == {"itd"}:
        return "itd"
    if terms == {"mse"} and cfg["loss"]["mse"].get("reduction") == "sum":
        return "mse_sum"
    raise SystemExit(
        f"--base {path} was trained with the loss terms {sorted(terms)}; the fine-tune arms continue or add "
        "CDL to a base of loss=itd or loss=mse_sum (experiment=paper_dino loss=itd, ...)."
    )


def finetune_jobs(args, calibration: dict, out: Path) -> list[Job]:
    from ctdm.checkpoint import load_checkpoint

    base = args.base.resolve()
    checkpoint = load_checkpoint(base, key="--base")
    base_loss, base_step = base_loss_of(checkpoint, base), int(checkpoint.get("global_step", 0))
    arms = args.arms if args.arms_given else FINETUNE_ARMS[base_loss]
    wrong = [a for a in arms if not (a == base_loss or a.startswith(f"{base_loss}_"))]
    if wrong:
        raise SystemExit(f"--arms {wrong} do not build on the base's loss {base_loss!r} (--base {base}).")
    label = args.base_name or f"{base_loss}_step{base_step}"
    jobs = []
    for arm in arms:
        steps = 2 if args.smoke else steps_for(args.finetune_seconds, arm, calibration, args.granularity)
        for seed in args.seeds:
            folder = out / "finetune" / label / arm / f"seed{seed}"
            record = {
                "arm": arm,
                "seed": seed,
                "recipe": "finetune",
                "stage": "finetune",
                "preset": args.preset,
                "base": str(base),
                "base_arm": base_loss,
                "base_step": base_step,
                "finetune_steps": steps,
            }
            interval = _interval(args.checkpoint_seconds, arm, calibration, steps, args.granularity)
            train = [
                *arm_overrides(arm),
                f"seed={seed}",
                f"trainer.val_check_interval={interval}",
                f"finetune.base={base}",
                f"finetune.steps={steps}",
            ]
            sps = calibration["arms"][arm]["seconds_per_step"]
            jobs.append(
                Job(
                    f"finetune/{label}/{arm}/seed{seed}",
                    arm,
                    seed,
                    folder,
                    train,
                    [Point(folder, args.finetune_seconds, base_step + steps)],
                    record,
                    nfe=args.preset in NFE_PRESETS,
                    predicted_seconds=steps * sps,
                )
            )
    return jobs


def _train_command(preset: str, job: Job, extra: list[str]) -> list[str]:
    last = job.folder / "checkpoints" / "last.ckpt"
    args = [f"experiment={preset}", *job.train]
    if last.is_file():  # a session stopped mid-run: go on from its last validation
        args = [f"experiment={preset}", *[a for a in job.train if not a.startswith("finetune.")]]
        args.append(f"ckpt_path={last}")
        if job.record["stage"] == "finetune":  # the plain preset, resumed: its length in absolute steps
            args += [f"trainer.max_steps={job.points[0].steps}", "resume_changes=[loss]"]
    elif job.record["stage"] == "finetune":
        args[0] = f"experiment={preset}_finetune"
    return [sys.executable, "-m", "ctdm.train", *args, *_common(job.folder), *extra]


def _evaluate_command(preset: str, point: Point, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ctdm.evaluate",
        f"experiment={preset}",
        f"ckpt_path={point.checkpoint}",
        *_common(point.folder),
        *extra,
    ]


def run_job(job: Job, preset: str, extra: list[str]) -> tuple[str, int, float]:
    """Train (unless finished), score every point not yet scored, and write each point's budget.json."""
    start = time.perf_counter()
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled"), "OMP_NUM_THREADS": "1"}
    root = job.folder.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{job.folder.name}.log", "a") as log:

        def call(command: list[str]) -> int:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode

        if job.train and not _trained(job):
            code = call(_train_command(preset, job, extra))
            if code:
                return job.name, code, time.perf_counter() - start
        for point in job.points:
            if _scored(point):
                continue
            if point.checkpoint is not None and not (point.folder / "metrics.json").is_file():
                code = call(_evaluate_command(preset, point, extra))
                if code:
                    return job.name, code, time.perf_counter() - start
            checkpoint = str(point.checkpoint or job.folder / "checkpoints" / "last.ckpt")
            record = {
                **job.record,
                "budget_seconds": point.budget,
                "steps": point.steps,
                "checkpoint": checkpoint,
            }
            (point.folder / "budget.json").write_text(json.dumps(record, indent=1))
        if job.nfe and not (job.folder / "nfe.json").is_file():
            from experiments.cdl_sweep import run_nfe

            _, code, _ = run_nfe(job.folder)
            if code:
                return job.name, code, time.perf_counter() - start
    return job.name, 0, time.perf_counter() - start


def print_plan(jobs: list[Job], todo: list[Job], preset: str, parallel: int) -> None:
    minutes = EVALUATION_MINUTES[preset]
    total = 0.0
    for job in todo:
        evaluations = sum(p.checkpoint is not None or p.folder == job.folder for p in job.points)
        hours = (job.predicted_seconds + 60 * (minutes * evaluations + NFE_MINUTES * job.nfe)) / 3600
        total += hours
        steps = ", ".join(f"{p.budget:g}s={p.steps}" for p in job.points)
        print(f"  {job.name:44s} {hours:6.2f} h  steps: {steps}{'  (reused)' if not job.train else ''}")
    print(
        f"{len(todo)} jobs to run ({len(jobs) - len(todo)} done): predicted {total:.1f} job-hours, "
        f"{total / parallel:.1f} h at --jobs {parallel} (training from calibration.json; evaluation "
        f"~{minutes:g} min a point, a guess)",
        flush=True,
    )


def main(argv=None) -> list[tuple[str, int, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=("calibrate", "scratch", "finetune"), default="calibrate")
    recipes = ("const", "cosine", "decay")
    parser.add_argument("--recipe", choices=recipes, default="const", help="stage scratch")
    parser.add_argument("--preset", choices=PRESETS, default="paper_dino")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default: the stage's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS), help="seconds of training")
    parser.add_argument("--granularity", type=int, default=100, help="budget steps are multiples of this")
    parser.add_argument("--checkpoint-seconds", type=float, default=300.0, help="last.ckpt about this often")
    parser.add_argument("--base", type=Path, default=None, help="stage finetune: the base checkpoint")
    parser.add_argument("--base-name", default=None, help="stage finetune: its folder name under finetune/")
    parser.add_argument("--finetune-seconds", type=float, default=200.0, help="training time of each arm")
    parser.add_argument("--reuse", type=Path, default=None, help="const recipe: base runs' <arm>/seed<k>/")
    parser.add_argument("--rounds", type=int, default=5, help="stage calibrate")
    parser.add_argument("--steps", type=int, default=40, help="stage calibrate: steps per arm per round")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at once, one thread each")
    parser.add_argument("--out", type=Path, default=None, help="default logs/equal_compute/<preset>")
    parser.add_argument("--smoke", action="store_true", help="debug=smoke: every stage in seconds")
    parser.add_argument("--dry-run", action="store_true", help="print the planned jobs and hours only")
    parser.add_argument("--list", action="store_true", help="print the arms and exit")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"] + (["debug=smoke"] if args.smoke else [])
    if args.list:
        for arm in dict.fromkeys([*SCRATCH_ARMS, *FINETUNE_ARMS["mse_sum"]]):
            print(f"{arm:22s} {' '.join(arm_overrides(arm))}")
        return []
    args.arms_given = args.arms is not None
    default = {
        "calibrate": list(dict.fromkeys([*SCRATCH_ARMS, *FINETUNE_ARMS["mse_sum"]])),
        "scratch": SCRATCH_ARMS,
        "finetune": [],
    }[args.stage]
    args.arms = args.arms.split(",") if args.arms else default
    try:
        for arm in args.arms:
            arm_overrides(arm)
    except ValueError as err:
        parser.error(f"--arms: {err}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.budgets = sorted(float(b) for b in args.budgets.split(","))
    if not args.budgets or args.budgets[0] <= 0:
        parser.error(f"--budgets {args.budgets}: seconds of training, numbers > 0.")
    out = (args.out or Path("logs/equal_compute") / args.preset).resolve()
    if args.stage == "calibrate":
        steps = 2 if args.smoke else args.steps
        rounds = 2 if args.smoke else args.rounds
        print(
            f"calibrating {len(args.arms)} arms on {args.preset}: {rounds} rounds of {steps}+ steps",
            flush=True,
        )
        arms = calibrate(args.preset, args.arms, rounds, steps, extra)
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "preset": args.preset,
            "rounds": rounds,
            "steps_per_round": arms[next(iter(arms))]["steps_per_round"],
            "overrides": extra,
            "threads": 1,
            "arms": arms,
        }
        (out / "calibration.json").write_text(json.dumps(record, indent=1))
        for arm, a in arms.items():
            print(
                f"  {arm:22s} {1000 * a['seconds_per_step']:8.2f} ms/step (spread {a['spread']:.0%}), "
                f"{a['rows_per_step']:.0f} rows/step",
                flush=True,
            )
        return []
    calibration = read_calibration(out)
    if calibration["preset"] != args.preset:
        parser.error(
            f"{out}/calibration.json was measured on {calibration['preset']}, not --preset {args.preset}."
        )
    if args.stage == "finetune":
        if args.base is None:
            parser.error(
                "--stage finetune needs --base <base run>/checkpoints/last.ckpt (loss=itd or mse_sum)."
            )
        jobs = finetune_jobs(args, calibration, out)
    else:
        jobs = scratch_jobs(args, calibration, out / f"scratch_{args.recipe}")
    todo = [j for j in jobs if not j.done()]
    print_plan(jobs, todo, args.preset, args.jobs)
    if args.dry_run:
        return []
    return run_pool([(run_job, job, args.preset, extra) for job in todo], args.jobs)


if __name__ == "__main__":
    main()
