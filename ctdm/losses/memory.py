"""A training step's memory, from the network rows its loss terms hold for the backward pass.

A loss term sends `rows` network rows through the graph of a step: the MSE and EDM losses one per item,
the ITD loss `points` per item, the CDL 2 x `samples` x `points` (log p and log p_zeta). Without
chunking every row's activations are held until the backward pass; with `max_batch` the Monte-Carlo
terms checkpoint each chunk (ctdm.diffusion.likelihood.point_errors), so they hold one chunk's.
`bytes_per_row` measures what one row costs (activations kept for backward, and the backward
pass itself), and the rest is arithmetic:

- `AutoChunk` / `auto_max_batch`: the chunk of `max_batch: auto`: every row in one call when they fit
  the memory budget (no recomputation), else as many as fit: the samplers' budget (ctdm.samplers.memory
  `default_memory_budget`, `budget_rows`), one mechanism for both; the DiffusionModule plans it on
  its device when fit or validation starts (`DiffusionModule.plan_chunks`);
- `estimate_step` / `check_step_fits`: the step's peak before training, refused with the estimate and a
  `max_batch` / `samples` that fits (as ctdm.evaluation.budget does for the sample evaluation);
- `describe_cost`: what the CDL adds to the base loss's step: network rows and a predicted time ratio.
"""

import inspect
import math

import torch

from ctdm.samplers.memory import MEMORY_HEADROOM, budget_rows, default_memory_budget, peak_bytes

AUTO = "auto"
# Cost of a network row, in forward passes: forward 1, backward about 2; a checkpointed row runs its
# forward twice. The ratio printed before training is this model's; benchmarks/cdl_step.py --images
# measures it (unet_small, unet_cifar).
BACKWARD_COST = 2.0


def check_max_batch(max_batch) -> int | str | None:
    """max_batch as a term takes it: a positive integer, "auto" or None."""
    if max_batch is None or max_batch == AUTO:
        return max_batch
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, 'auto' or null, got {max_batch!r}.")
    return max_batch


def bytes_per_row(
    eps_fn, shape: tuple[int, ...], device=None, dtype=torch.float32, backward: bool = True
) -> float:
    """Peak memory per row of a network call and (`backward`) its backward pass, what a row of a loss
    holds, on `device` (ctdm.samplers.memory.peak_bytes).
    Wrappers that name what they wrap (`__wrapped__`, e.g. a counter of network rows) are skipped: the
    probe is no training work. Only the input's gradient is taken, so no parameter's .grad is touched."""
    eps_fn = inspect.unwrap(eps_fn)
    device = torch.device(device) if device is not None else torch.device("cpu")
    rows = 8 if device.type == "cuda" else 2
    z = torch.zeros(rows, *shape, device=device, dtype=dtype, requires_grad=backward)
    logsnr = torch.zeros(rows, device=device, dtype=dtype)

    def probe():
        with torch.set_grad_enabled(backward):
            out = eps_fn(z, logsnr)
            if backward and out.requires_grad:  # (a fixed function of z, e.g. an exact denoiser, may not)
                torch.autograd.grad(out.float().square().sum(), z)

    return peak_bytes(probe, device) / rows


def resolved_chunk(term, batch: int, per_row: float, budget: float) -> int | None:
    """The max_batch `term` runs with at `batch` items: its number, None, or what "auto" chooses from
    `budget` (or the term's own memory_budget)."""
    chunk = getattr(term, "max_batch", None)
    if chunk != AUTO:
        return chunk
    planned = getattr(term, "auto_chunk", None)
    if planned is not None and planned.rows:  # planned on its device by the module
        return planned.for_rows(term.network_rows(batch), backward=True)
    own = getattr(term, "memory_budget", None)
    return auto_max_batch(term.network_rows(batch), per_row, own if own is not None else budget)


def held_rows(term, batch: int, per_row: float, budget: float) -> int:
    """Rows whose activations `term` holds at once: all of them, or one checkpointed chunk."""
    rows, chunk = term.network_rows(batch), resolved_chunk(term, batch, per_row, budget)
    return rows if chunk is None else min(rows, chunk)


def auto_max_batch(rows: int, per_row: float, memory_budget: float) -> int | None:
    """max_batch "auto": None (one call, nothing recomputed) when all `rows` fit the budget, else the
    rows that fit."""
    fitting = budget_rows(per_row, memory_budget)
    return None if rows <= fitting else fitting


class AutoChunk:
    """The chunk of a term with max_batch "auto". `plan` sets, for one device, the rows a call may take
    with autograd on (a row's forward and backward memory) and off (its forward's; splitting a no-grad
    call costs nothing) from the network's measured bytes per row and the memory budget; the
    DiffusionModule plans its terms when fit or validation starts, measuring its own network (never
    through the eps function the terms are given, which a cost counter may wrap). Unplanned (a term
    called on its own), "auto" is one call, as max_batch None."""

    def __init__(self, memory_budget: float | None = None):
        self.memory_budget = memory_budget
        self.rows: dict[bool, int] = {}  # autograd on -> rows per call

    def plan(self, per_row: dict[bool, float], device) -> None:
        """per_row: {autograd on: bytes per row}; the budget is memory_budget, else the samplers'
        default_memory_budget(device)."""
        budget = self.memory_budget if self.memory_budget is not None else default_memory_budget(device)
        self.rows = {grad: budget_rows(bytes_, budget) for grad, bytes_ in per_row.items()}

    def __call__(self, rows: int) -> int | None:
        """max_batch for a call of `rows` rows now (autograd on or off)."""
        return self.for_rows(rows, torch.is_grad_enabled())

    def for_rows(self, rows: int, backward: bool) -> int | None:
        """max_batch for a call of `rows` rows: None when they fit (or nothing is planned)."""
        fitting = self.rows.get(backward)
        return None if fitting is None or rows <= fitting else fitting


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def estimate_step(terms: dict, batch: int, per_row: float, param_bytes: int, budget: float):
    """The peak bytes of one training step on one rank (a ctdm.evaluation.budget.Estimate): the weights
    with their gradients and Adam's two moments, and each term's held rows (`held_rows`)."""
    from ctdm.evaluation.budget import Estimate  # (ctdm.evaluation loads torchmetrics: not at import)

    parts = {"weights, gradients and Adam state": 4 * param_bytes}
    for key, term in terms.items():
        rows = held_rows(term, batch, per_row, budget)
        parts[f"loss.{key} {rows} rows"] = math.ceil(rows * per_row)
    return Estimate(parts)


def check_step_fits(
    terms: dict, batch: int, per_row: float, param_bytes: int, *, available: float, where: str, budget: float
):
    """The step's estimate (`estimate_step`), or a ValueError naming the keys when it exceeds
    `available` bytes (`where` they are) or a term's own loss.<key>.memory_budget, with a max_batch and
    samples that fit. `budget`: what max_batch "auto" chooses from (the samplers' default)."""
    from ctdm.evaluation.budget import _size
    from ctdm.losses.cdl import ContrastiveDiffusionLoss  # (it imports this module)

    needed = estimate_step(terms, batch, per_row, param_bytes, budget)

    def held(key):
        return held_rows(terms[key], batch, per_row, budget) * per_row

    over = [
        k
        for k, t in terms.items()
        if getattr(t, "memory_budget", None) is not None and held(k) > t.memory_budget
    ]
    if needed.total <= available and not over:
        return needed
    key = over[0] if over else max(terms, key=held)  # the term holding the most rows is the one to chunk
    term = terms[key]
    limit = term.memory_budget if over else available - (needed.total - held(key))
    fitting = int(MEMORY_HEADROOM * max(limit, 0) // max(per_row, 1e-9))
    if fitting < 1:
        hints = [f"data.batch_size (now {batch})", "a smaller network"]
    else:
        hints = [f"loss.{key}.max_batch={fitting} (chunks of the rows, checkpointed; or auto)"] * hasattr(
            term, "max_batch"
        )
        if isinstance(term, ContrastiveDiffusionLoss):
            if fitting >= 2 * term.points:
                hints.append(
                    f"loss.{key}.samples={fitting // (2 * term.points)} (the items that get the CDL)"
                )
            hints.append(f"loss.{key}.points (now {term.points})")
        hints.append(f"data.batch_size (now {batch})")
    what = (
        f"its loss.{key}.memory_budget={_size(term.memory_budget)}"
        if over
        else f"the {_size(available)} {where}"
    )
    raise ValueError(
        f"A training step at data.batch_size={batch} needs about {_size(needed.total)} ({needed.describe()}; "
        f"{_size(per_row)} per network row, forward and backward), more than {what}: loss.{key} holds "
        f"{held_rows(term, batch, per_row, budget)} of its {term.network_rows(batch)} network rows at once "
        f"(max_batch={getattr(term, 'max_batch', None)}). Set {'; or '.join(hints)}. Checked before "
        "training, so nothing was trained for nothing."
    )


def describe_cost(terms: dict, batch: int, per_row: float, budget: float) -> str | None:
    """What the CDL terms add to the base loss's step: extra network rows, and the step-time ratio
    predicted from rows (forward 1, backward BACKWARD_COST, a checkpointed row one forward more), on
    average over steps when a term runs every n-th step (`every_n_steps`); None without a CDL term of
    positive weight."""
    from ctdm.losses.cdl import ContrastiveDiffusionLoss

    cdl = {k: t for k, t in terms.items() if isinstance(t, ContrastiveDiffusionLoss) and t.weight > 0}
    if not cdl:
        return None

    def cost(term) -> float:
        rows = term.network_rows(batch)
        checkpointed = held_rows(term, batch, per_row, budget) < rows
        return rows * (1 + BACKWARD_COST + checkpointed)

    base = {k: t for k, t in terms.items() if k not in cdl}
    base_rows = sum(t.network_rows(batch) for t in base.values())
    extra_rows = sum(t.network_rows(batch) for t in cdl.values())
    each = "; ".join(
        f"loss.{k}: 2 x {t.items(batch)} items x {t.points} points, "
        f"max_batch={resolved_chunk(t, batch, per_row, budget)}"
        + (f", once every {t.every_n_steps} steps" if t.every_n_steps > 1 else "")
        for k, t in cdl.items()
    )
    base_cost = sum(cost(t) for t in base.values())
    if not base_cost:
        ratio = "no base loss beside it"
    else:
        peak = (base_cost + sum(cost(t) for t in cdl.values())) / base_cost
        mean = (base_cost + sum(cost(t) / t.every_n_steps for t in cdl.values())) / base_cost
        ratio = f"{peak:.1f}x the base loss's step"
        if mean != peak:
            ratio = f"{mean:.1f}x the base loss's step on average ({ratio} with the CDL)"
    return (
        f"CDL cost: {extra_rows} network rows per step beside the base loss's {base_rows} ({each}); "
        f"predicted step time {ratio} (from the rows: forward 1, backward {BACKWARD_COST:g}, a "
        "checkpointed row one forward more)."
    )


class StepOutOfMemory(ValueError):
    """The device ran out of memory during training (`error`, torch.OutOfMemoryError): which loss term
    holds the most network rows, the keys that lower them, and the checkpoint to resume from."""

    def __init__(self, error: BaseException, terms: dict, batch: int, step: int, checkpoint: str | None):
        rows = {k: t.network_rows(batch) for k, t in terms.items()}
        key = max(rows, key=rows.get)
        term = terms[key]
        keys = [f"loss.{key}.max_batch=auto (or a number of rows: chunks, checkpointed)"] * hasattr(
            term, "max_batch"
        )
        if hasattr(term, "samples"):
            keys += [f"loss.{key}.samples", f"loss.{key}.points"]
        kept = (
            f"The last checkpoint is kept: resume with ckpt_path={checkpoint}"
            if checkpoint
            else "No checkpoint was written yet"
        )
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(
            f"Out of memory at training step {step} ({first}). The step's network rows per rank: "
            + ", ".join(
                f"loss.{k} {n} (max_batch={getattr(terms[k], 'max_batch', None)})" for k, n in rows.items()
            )
            + f" at data.batch_size={batch} per rank. Lower the largest with {', '.join(keys)}, or "
            "data.batch_size; ctdm estimates the step before training (ctdm.losses.memory), but allocator "
            f"fragmentation, other processes on the device and the evaluation's network take more. {kept}."
        )
