"""What training cost: wall time in training steps, steps, and rows through the network (no Lightning here).

`CountedEps` wraps the noise predictor a training step hands to its loss terms and counts, call by call,
the rows it sends through the network: every row as forward, and as backward the rows whose forward ran
with gradient enabled (they are back-propagated). A forward that activation checkpointing re-runs during
backward (autograd's graph task is running) is a second forward, not a second backward. Counting at the
eps function, not with a hook on the network, keeps validation and sample evaluation out without asking
what mode the network is in.

`TrainingCost` is the record: {seconds, steps, rows_forward, rows_backward}. DiffusionModule keeps the
cost of its checkpoint chain (`base`, read from the checkpoint it resumed, key `ctdm_training_cost`) and
this process's (`this_run`); their sum is what summary.json, the logs and the next checkpoint carry.
`StepClock` times the training part of each batch for it.
A checkpoint written before ctdm recorded costs holds no such key: its steps are counted as
`uncounted_steps` and its cost as zero.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

CHECKPOINT_KEY = "ctdm_training_cost"
# The flat metric keys (summary.json's metrics, ctdm.evaluate's metrics.json, the logs) of the totals.
METRIC_KEYS = {
    "seconds": "train/seconds",
    "steps": "train/steps",
    "rows_forward": "train/rows_forward",
    "rows_backward": "train/rows_backward",
}


@dataclass
class TrainingCost:
    """seconds: wall time in training steps (forward, backward, optimizer; no validation, sample
    evaluation or checkpoint writing); steps: optimizer steps; rows_forward / rows_backward: network rows
    (see CountedEps). uncounted_steps: steps of the chain trained before costs were recorded."""

    seconds: float = 0.0
    steps: int = 0
    rows_forward: int = 0
    rows_backward: int = 0
    uncounted_steps: int = 0

    def __add__(self, other: "TrainingCost") -> "TrainingCost":
        return TrainingCost(
            *(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True))
        )

    @property
    def rows_per_step(self) -> float:
        """(rows_forward + rows_backward) / steps: network evaluations per step, forward and backward."""
        return (self.rows_forward + self.rows_backward) / self.steps if self.steps else 0.0

    def counters(self) -> dict:
        """{seconds, steps, rows_forward, rows_backward}."""
        return {k: v for k, v in asdict(self).items() if k != "uncounted_steps"}

    def metrics(self) -> dict[str, float]:
        """The flat `train/*` keys (METRIC_KEYS)."""
        return {METRIC_KEYS[k]: float(v) for k, v in self.counters().items()}

    def to_checkpoint(self) -> dict:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping) -> "TrainingCost":
        """The cumulative cost a checkpoint carries; one written before costs were recorded: zero, with
        its global step as uncounted_steps."""
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            return cls(uncounted_steps=int(checkpoint.get("global_step", 0)))
        return cls(**{k: saved[k] for k in asdict(cls()) if k in saved})


def summary_block(base: TrainingCost, this_run: TrainingCost) -> dict:
    """summary.json's `training` block: the chain's totals, rows_per_step, uncounted_steps and this_run."""
    total = base + this_run
    return {
        **total.counters(),
        "rows_per_step": total.rows_per_step,
        "uncounted_steps": total.uncounted_steps,
        "this_run": this_run.counters(),
    }


class CountedEps:
    """`eps_fn` that adds the rows of every call to `cost` (a TrainingCost), each row `scale` times
    (the number of DDP ranks: each runs the same rows on its own share of the batch)."""

    def __init__(self, eps_fn: Callable[[Tensor, Tensor], Tensor], cost: TrainingCost, scale: int = 1):
        self.eps_fn, self.cost, self.scale = eps_fn, cost, scale

    def __call__(self, z: Tensor, logsnr: Tensor) -> Tensor:
        rows = z.shape[0] * self.scale
        self.cost.rows_forward += rows
        if torch.is_grad_enabled() and torch._C._current_graph_task_id() == -1:  # not a re-run in backward
            self.cost.rows_backward += rows
        return self.eps_fn(z, logsnr)


class StepClock:
    """Wall time of the timed part of training batches: from `start` (a batch's start) to each `lap`
    (the end of its backward pass, of its optimizer step); after `stop` (the batch's end: checkpoints,
    sample evaluations and validation follow) nothing counts until the next start."""

    def __init__(self):
        self.started: float | None = None  # perf_counter() at the start of what the next lap counts

    def start(self) -> None:
        self.started = time.perf_counter()

    def lap(self, device: torch.device) -> float:
        """Seconds since the start or the last lap (0 when stopped)."""
        if self.started is None:
            return 0.0
        if device.type == "cuda":  # the step's kernels finished, not only queued
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        return seconds

    def stop(self) -> None:
        self.started = None
