"""Parallel sampling by Picard iteration (ParaDiGMS, Shih et al. 2023) over any sequential step sampler.

The sequential chain x_{k+1} = x_k + drift(x_k, k) + noise_k has the fixed point
x_k = x_b + sum_{b<=j<k} (drift(x_j, j) + noise_j) for any exact x_b. Each sample has its own window
of W steps b..b+W-1 and holds only the W+1 states x_b..x_{b+W} it needs (a ring buffer: x_k in slot
k mod (W+1)) and the W steps' noise (slot k mod W). Each pass:

1. evaluates the drift of every sample's window in ONE batched eps_fn call (two for Heun), optionally
   split over several devices;
2. rebuilds the window as x_b + cumsum(drift + noise);
3. measures each new state's change ||new - old||^2 / (variance * d) (`change_scale`: ctdm's rule
   divides x_{k+1}'s change by step k's variance, the authors' by step k+1's), and slides the window
   start as `window_advance` says. Steps entering the window get their noise then (draw k+1 of the
   sample's counter-based generator, the same draw the sequential loop uses) and start at x_0.

So memory grows with N x W, not with the steps, and sample i's result and pass count do not depend on
the batch. Samples that finished drop out of the batch. With the same noise the fixed point is the
sequential trajectory, so a tiny tolerance reproduces it up to float rounding.
"""

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ctdm.diffusion.channel import append_dims
from ctdm.diffusion.checks import check_int, check_number
from ctdm.samplers.base import NOISE_CHUNK_ELEMENTS, SamplerStats, StepSampler, as_eps_fn
from ctdm.samplers.memory import default_memory_budget
from ctdm.samplers.noise import per_sample_normal
from ctdm.samplers.throughput import Chunks
from ctdm.samplers.timing import call_times, device_name, synchronize

log = logging.getLogger(__name__)

TOLERANCE_RULES = ("same_step", "next_step")
AUTO = "auto"
# A Picard solve takes at least about steps / ADVANCE_BOUND passes (measured at tolerance 0.1, full
# windows: 24-37 passes for 1000 DDPM steps, 21 for 700 DDIM steps, 9-12 for 20 DDPM steps).
ADVANCE_BOUND = 10
# Noise values drawn at once, at most (16 MB in float32, as the sequential loop's chunks), unless
# the window itself holds more.
NOISE_AHEAD_ELEMENTS = NOISE_CHUNK_ELEMENTS


def _int_or_auto(name: str, value, none_means: str):
    """`value` if it is None, "auto" or an integer >= 1, else a ValueError naming the choices."""
    if value is None or value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be an integer >= 1, 'auto' (chosen from the network's measured cost on the "
            f"device) or None ({none_means}), got {value!r}."
        )
    return value


def change_scale(step_variance: Tensor, rule: str = "same_step") -> Tensor:
    """The variance [K] that the change of state x_{k+1} (made by step k) is measured in, per rule.

    same_step (ctdm): step k's own variance `step_variance[k]` (see StepSampler).
    next_step (the authors' code, after ParaDiGMS): the variance of step k+1, the step that starts
    from x_{k+1}. The last step ends at the clean level, where that variance is zero, and x_K starts
    no step: both get 0, i.e. they count as converged only once they stop changing (the authors
    divide by 1e-20 and by 0). About one pass more than same_step.
    """
    if rule == "same_step":
        return step_variance
    if rule == "next_step":
        return torch.cat([step_variance[1:-1], step_variance.new_zeros(min(2, len(step_variance)))])
    raise ValueError(
        f"tolerance_rule must be one of {', '.join(TOLERANCE_RULES)} (same_step: each state's change in "
        f"units of the variance of the step that made it, ctdm's rule; next_step: of the step that starts "
        f"from it, the authors' rule), got {rule!r}."
    )


def window_advance(change: Tensor, valid: Tensor, tolerance: float) -> Tensor:
    """Steps each window start moves after a pass [A], from the changes of its new states [A, W].

    change[i, j] is the squared change of state x_{b+j+1} in units of its step's variance (per
    dimension); valid[i, j] is False past the last step. The start moves past every state before the
    first one whose change is still above tolerance^2 (all valid ones if none is), and by at least one
    step: x_{b+1} is exact once x_b is, whatever its change.
    """
    above = (change > tolerance**2) & valid
    first_above = torch.where(above.any(1), above.long().argmax(1), valid.sum(1))
    return first_above.clamp(min=1)


def split_over_devices(denoiser, devices: Sequence) -> Callable:
    """An eps_fn whose batch is cut into len(devices) contiguous chunks, one per device, then re-joined.

    denoiser: a plain nn.Module answering `eps(z, logsnr)` (or `forward`), or that method of one: the
    network is replicated onto each device once (a deep copy of that module, which holds the weights).
    A LightningModule is refused: pass the network it wraps. Any other callable gets its chunk moved
    to the device and must cope with that itself.
    """
    devices = [torch.device(d) for d in devices]
    module = denoiser if isinstance(denoiser, nn.Module) else getattr(denoiser, "__self__", None)
    if not isinstance(module, nn.Module):
        fns = [as_eps_fn(denoiser)] * len(devices)
    else:
        if any(cls.__name__ == "LightningModule" for cls in type(module).__mro__):
            raise ValueError(
                "devices: splitting over devices replicates the network, so pass the plain nn.Module "
                "that holds the weights (e.g. its parameterization), not the LightningModule "
                f"{type(module).__name__}."
            )
        method = denoiser.__name__ if module is not denoiser else None
        home = next(module.parameters(), torch.empty(0)).device
        replicas = [module if dev == home else copy.deepcopy(module).to(dev) for dev in devices]
        fns = [getattr(r, method) if method else as_eps_fn(r) for r in replicas]

    def split_eps(z: Tensor, logsnr: Tensor) -> Tensor:
        chunks = torch.arange(len(z), device=z.device).tensor_split(len(devices))
        # Launch every chunk before collecting any, so asynchronous devices overlap.
        outs = [
            fn(z[idx].to(dev, non_blocking=True), logsnr[idx].to(dev, non_blocking=True))
            for fn, dev, idx in zip(fns, devices, chunks, strict=True)
            if len(idx)
        ]
        return torch.cat([o.to(z.device) for o in outs])

    return split_eps


_BOOKKEEPING: dict = {}


@torch.no_grad()
def bookkeeping_seconds(base: StepSampler, shape: tuple, device, dtype) -> tuple[float, float]:
    """(seconds per Picard pass, seconds per sequential step) that the solver and the sequential loop
    spend besides the network, for small batches: timed with a network that costs nothing, once per
    process, device, sampler and sample shape (a few tens of milliseconds)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (device_name(device), repr(base), tuple(shape), dtype)
    if key not in _BOOKKEEPING:
        seeds, window = torch.arange(2, device=device), min(8, base.steps)
        free = lambda z, logsnr: torch.zeros_like(z)  # noqa: E731

        def timed(run) -> float:  # the fastest of three: the least disturbed by other work
            best = math.inf
            for _ in range(3):
                synchronize(device)
                start = time.perf_counter()
                run()
                synchronize(device)
                best = min(best, time.perf_counter() - start)
            return best

        def picard(passes: int):  # a tolerance nothing meets: every pass runs
            solver = ParallelSampler(base, window, tolerance=1e-30, max_passes=passes, max_batch=None)
            return lambda: solver(free, shape, seeds, device)

        few, more = 2, min(base.steps, 22)
        per_pass = (timed(picard(more)) - timed(picard(few))) / max(1, more - few)
        per_step = timed(lambda: base(free, shape, seeds, device)) / base.steps
        _BOOKKEEPING[key] = (max(per_pass, 0.0), per_step)
    return _BOOKKEEPING[key]


class ParallelSampler:
    """Picard (ParaDiGMS) solver that runs a sequential StepSampler's steps in parallel.

    base: the sequential StepSampler whose steps are solved (its steps, noise and seeds);
    window: steps evaluated per pass (None: every step; clipped to the steps; "auto": the window with
    the largest predicted speed-up over the sequential steps on this device at this batch, from the
    network's measured call times, see ctdm.samplers.throughput and .timing; 1 where no window pays);
    tolerance: > 0, on the root-mean-square change per dimension in units of a step's std;
    tolerance_rule: which step's variance (`change_scale`): "same_step" (ctdm) or "next_step" (the
    authors', for pass counts comparable with the paper's); max_passes: stop after this many passes
    (None: steps, always enough); devices: split each pass's batch over these devices (None: the
    device of the samples); max_batch: at most this many rows per network call ("auto", the default:
    the rows at which the measured throughput peaks, as many as the sequential sampler's call of N rows
    where that is as fast, within `memory_budget`; None: the whole pass, N x window rows, in one call);
    memory_budget: bytes one network call may use under "auto" (None: half the free GPU memory, a
    quarter of the available RAM on a CPU); name: None gives "para_<base name>"; call_times_dir: the
    folder of the measured call times' file (None: ctdm.samplers.timing.cache_dir(), i.e.
    $CTDM_CACHE_DIR, else $XDG_CACHE_HOME/ctdm, else ~/.cache/ctdm).
    The automatic choices call the network on probe inputs once per device and network (cached, see
    ctdm.samplers.timing); chunking never changes the samples, the window does within tolerance.
    Call: sampler(eps_fn, shape, seeds, device=None, hook=None) -> (samples, stats); stats.extra holds
    the window and max_batch used. `hook(pass_index, x_last, info)` runs after every pass with the
    current last state of every sample [N, *shape] (x_0 until the sample's window reaches the last
    step) and info {"nfe": evaluations per sample so far, "active": samples still iterating}.
    Memory: 2 W + 1 states per sample held, plus the pass's temporaries over its W steps (about ten
    more states per step, and the network's activations for N x W rows unless max_batch bounds them).
    """

    parallel = True

    def __init__(
        self,
        base: StepSampler,
        window: int | None = None,
        tolerance: float = 0.1,
        max_passes: int | None = None,
        devices: Sequence | None = None,
        name: str | None = None,
        tolerance_rule: str = "same_step",
        max_batch: int | str | None = AUTO,
        memory_budget: float | None = None,
        call_times_dir: str | None = None,
    ):
        if not isinstance(base, StepSampler):
            raise ValueError(
                f"base must be a sequential step sampler (DDPMSampler, DDIMSampler, HeunSampler, "
                f"EulerSampler), got {base!r}."
            )
        self.base = base
        self.steps = base.steps
        window = _int_or_auto("window", window, "every step")
        self.window = self.steps if window is None else window if window == AUTO else min(window, self.steps)
        self.tolerance = check_number("tolerance", tolerance, positive=True)
        self.max_passes = self.steps if max_passes is None else check_int("max_passes", max_passes)
        self.devices = list(devices) if devices else None
        self.max_batch = _int_or_auto("max_batch", max_batch, "a whole pass in one call")
        if memory_budget is not None:
            check_number("memory_budget", memory_budget, positive=True)
        self.memory_budget = memory_budget
        self.call_times_dir = call_times_dir
        self.name = name if name is not None else f"para_{base.name}"
        self.tolerance_rule = tolerance_rule
        self.change_scale = change_scale(base.step_variance, tolerance_rule)  # checks the rule
        self._told: set = set()  # (batch, window, chunk) already reported by _report_cost

    def plan(self, eps_fn, denoiser, shape: tuple, batch: int, device, dtype) -> tuple[int, Callable]:
        """(window, eps_fn in calls of the chosen rows) for `batch` samples: the configured ones, or for
        "auto" the ones the network's measured call times on this device give (ctdm.samplers.throughput).
        Automatic chunks on a CPU that runs torch on several threads are watched (`Chunks`) when the
        contended rows (`CallTimes.contended_rows`) are more."""
        if self.window != AUTO and self.max_batch != AUTO:
            return self.window, Chunks(eps_fn, self.max_batch) if self.max_batch else eps_fn
        devices = ",".join(map(str, self.devices)) if self.devices else ""
        times = call_times(
            eps_fn, denoiser, shape, device, dtype, extra_key=devices, folder=self.call_times_dir
        )
        chunk, watch, fallback = self.max_batch, None, None
        if chunk == AUTO:
            budget = self.memory_budget if self.memory_budget is not None else default_memory_budget(device)
            chunk = times.rows_per_call(budget, batch)
            fallback = times.contended_rows(budget, batch)
            threads = torch.device(device).type == "cpu" and torch.get_num_threads() > 1
            if threads and not times.contended and fallback > chunk:
                watch = times

        def auto_window() -> int:  # the samplers' own time per pass and step counts too
            return times.auto_window(
                batch, self.steps, chunk, *bookkeeping_seconds(self.base, shape, device, dtype)
            )

        window = auto_window() if self.window == AUTO else self.window
        self._report_cost(times, batch, window, chunk, auto_window)
        return window, Chunks(eps_fn, chunk, watch, fallback) if chunk else eps_fn

    def _report_cost(self, times, batch: int, window: int, chunk: int | None, auto_window) -> None:
        """Say (once per setting) what a pass costs in sequential steps, and warn when that is more than
        a pass advances: at most its window, and about steps / ADVANCE_BOUND on average (naming the
        window `auto_window()` would take)."""
        if (batch, window, chunk) in self._told:
            return
        self._told.add((batch, window, chunk))
        cost = times.seconds_for(batch * window, chunk) / times.seconds_for(batch, chunk)
        message = (
            f"{self.name}: {batch} samples, window {window}, {chunk or batch * window} rows per network "
            f"call: a pass costs about {cost:.1f} sequential steps on {times.device}"
        )
        advance = min(window, max(1.0, self.steps / ADVANCE_BOUND))
        if window > 1 and cost > advance:
            log.warning(
                "%s, more than a pass advances (at most about %.0f steps): slower than the sequential "
                "sampler here (passes still measure sequential depth). window=auto picks %d "
                "(docs/samplers.md).",
                message,
                advance,
                auto_window(),
            )
        else:
            log.info(message)

    @torch.no_grad()
    def __call__(
        self, eps_fn, shape: tuple[int, ...], seeds: Tensor, device=None, hook=None
    ) -> tuple[Tensor, SamplerStats]:
        start = time.perf_counter()
        shape, denoiser = tuple(shape), eps_fn
        eps_fn = split_over_devices(eps_fn, self.devices) if self.devices else as_eps_fn(eps_fn)
        seeds = torch.as_tensor(seeds, dtype=torch.long, device=device)
        x0 = per_sample_normal(seeds, 0, shape)
        N, dev = len(x0), x0.device
        W, eps_fn = self.plan(eps_fn, denoiser, shape, N, dev, x0.dtype)
        base = self.base.on(dev, x0.dtype)
        x0 = base.prior(x0)
        solve = self._one_step_per_pass if W == 1 else self._picard
        x, passes, evaluations, converged, hook_seconds = solve(base, eps_fn, x0, seeds, W, hook)
        stats = SamplerStats(
            nfe=evaluations / N,
            passes=passes,
            seconds=time.perf_counter() - start - hook_seconds,  # the hook's time is not the sampler's
            converged=converged,
            extra={
                "window": W,
                "max_batch": eps_fn.rows if isinstance(eps_fn, Chunks) else None,  # at the end
                "tolerance": self.tolerance,
                "tolerance_rule": self.tolerance_rule,
            },
        )
        return x, stats

    def _picard(self, base, eps_fn, x0: Tensor, seeds: Tensor, W: int, hook):
        """The Picard iteration with window W: (x_K, passes, evaluations, converged, hook seconds)."""
        K, N, shape, dev = self.steps, len(x0), tuple(x0.shape[1:]), x0.device
        # A zero variance (next_step's last two states): converged only when unchanged (change / tiny = inf).
        scale = self.change_scale.to(dev).clamp(min=torch.finfo(torch.float64).tiny) * max(1, x0[0].numel())
        states = x0.unsqueeze(1).repeat(1, W + 1, *([1] * len(shape)))  # x_k in slot k % (W+1)
        # Noise is drawn for up to `ahead` steps past the window at a time (a step's noise is needed
        # from when it enters the window): the counter-based generator costs ~200 small operations a
        # call, more than the rest of a pass for small batches. n_{k+1} of step k in slot k % M.
        ahead = max(1, NOISE_AHEAD_ELEMENTS // max(1, x0.numel()))
        M = min(K, W + ahead)
        noise = x0.new_empty((N, M, *shape))
        drawn = torch.zeros(N, dtype=torch.long, device=dev)  # steps [0, drawn) have their noise

        def draw(samples: Tensor, upto: Tensor) -> None:
            """Draw the noise of steps drawn .. upto-1 of these samples (their held steps span < M)."""
            count = upto - drawn[samples]
            first = torch.arange(int(count.max()), device=dev)
            rows_a, rows_w = (first < count[:, None]).nonzero(as_tuple=True)
            steps = drawn[samples][rows_a] + rows_w
            noise[samples[rows_a], steps % M] = per_sample_normal(seeds[samples[rows_a]], steps + 1, shape)
            drawn[samples] = upto

        offsets = torch.arange(W, device=dev)
        everyone = torch.arange(N, device=dev)
        draw(everyone, torch.full((N,), min(K, M), device=dev))
        nfe_before = torch.cat([base.nfe_per_step.new_zeros(1), base.nfe_per_step.cumsum(0)])  # [K+1]
        begin = torch.zeros(N, dtype=torch.long, device=dev)
        evaluations, passes, hook_seconds = 0, 0, 0.0
        while passes < self.max_passes:
            active = (begin < K).nonzero().squeeze(1)
            if len(active) == 0:
                break
            passes += 1
            b = begin[active]  # [A]
            width = min(W, K - int(b.min()))  # no column that is past the last step for every sample
            steps = b[:, None] + offsets[:width]  # [A, width] step indices of each window
            valid = steps < K
            if width == W and bool(valid.all()):  # every window full: no compaction
                sample_of_row, step_of_row = active.repeat_interleave(width), steps.flatten()
            else:
                rows_a, rows_w = valid.nonzero(as_tuple=True)  # flattened valid (sample, step) pairs
                sample_of_row, step_of_row = active[rows_a], steps[rows_a, rows_w]
            x_in = states[sample_of_row, step_of_row % (W + 1)]
            n_in = noise[sample_of_row, step_of_row % M]
            delta = base.drift(eps_fn, x_in, step_of_row, n_in).add_(base.noise(n_in, step_of_row))
            evaluations += int((nfe_before[(b + width).clamp(max=K)] - nfe_before[b]).sum())
            if len(delta) == valid.numel():
                increments = delta.view(len(active), width, *shape)
            else:
                increments = x0.new_zeros((len(active), width, *shape))
                increments[rows_a, rows_w] = delta
            # x_{b+1} .. x_{b+width}; past the last step it repeats x_K (never read, see below).
            new = increments.cumsum_(1).add_(states[active, b % (W + 1)].unsqueeze(1))
            slots = (steps + 1) % (W + 1)
            change = states[active[:, None], slots].sub_(new).square_().flatten(2).sum(-1)  # [A, width]
            change = change.double() / scale[steps.clamp(max=K - 1)]
            # Written whole: the slot of a step k >= K holds x_{k-W}, before the window start, unused.
            states[active[:, None], slots] = new
            advance = window_advance(change, valid, self.tolerance)
            begin[active] = b + advance
            # The steps b+W .. b+W+advance-1 (those before K) enter the windows and start at x_0.
            entering = b[:, None] + W + offsets
            rows_a, rows_w = ((offsets < advance[:, None]) & (entering < K)).nonzero(as_tuple=True)
            entering_samples = active[rows_a]
            states[entering_samples, (entering[rows_a, rows_w] + 1) % (W + 1)] = x0[entering_samples]
            need = (begin[active] + W).clamp(max=K)  # every window's steps need their noise
            short = (drawn[active] < need).nonzero().squeeze(1)
            if len(short):
                draw(active[short], (begin[active[short]] + M).clamp(max=K))
            if hook is not None:
                hook_start = time.perf_counter()
                info = {"nfe": evaluations / N, "active": int((begin < K).sum())}
                hook(passes, self._last(states, x0, begin, W), info)
                hook_seconds += time.perf_counter() - hook_start
        return self._last(states, x0, begin, W), passes, evaluations, bool((begin >= K).all()), hook_seconds

    def _one_step_per_pass(self, base, eps_fn, x0: Tensor, seeds: Tensor, W: int, hook):
        """Window 1 as a plain loop: every pass advances every sample by exactly one step, so the
        Picard bookkeeping is skipped. The same arithmetic as `_picard` with W = 1 (x_b + (drift +
        noise)), hence the same samples, passes and hook calls, at the sequential sampler's cost."""
        K, N, shape = self.steps, len(x0), tuple(x0.shape[1:])
        chunk = max(1, NOISE_AHEAD_ELEMENTS // max(1, x0.numel()))
        x, evaluations, hook_seconds = x0, 0, 0.0
        passes = min(K, self.max_passes)
        all_steps = torch.arange(K, device=x0.device)
        for first in range(0, passes, chunk):
            ks = all_steps[first : min(first + chunk, passes)]
            noise = per_sample_normal(seeds[:, None], ks[None, :] + 1, shape)  # [N, chunk, *shape]
            for i, k in enumerate(ks):
                n = noise[:, i]
                x = base.drift(eps_fn, x, k, n).add_(base.noise(n, k)).add_(x)
                evaluations += N * int(base.nfe_per_step[k])
                if hook is not None:
                    hook_start = time.perf_counter()
                    done = int(k) == K - 1
                    hook(int(k) + 1, x if done else x0, {"nfe": evaluations / N, "active": 0 if done else N})
                    hook_seconds += time.perf_counter() - hook_start
        converged = passes == K
        return x if converged else x0, passes, evaluations, converged, hook_seconds

    def _last(self, states: Tensor, x0: Tensor, begin: Tensor, W: int) -> Tensor:
        """The current x_K of every sample: its ring slot once its window reaches step K, x_0 before."""
        K = self.steps
        return torch.where(append_dims(begin + W >= K, x0.dim()), states[:, K % (W + 1)], x0)

    def __repr__(self) -> str:
        return (
            f"ParallelSampler(name={self.name!r}, base={self.base!r}, window={self.window}, "
            f"tolerance={self.tolerance}, tolerance_rule={self.tolerance_rule!r}, "
            f"max_batch={self.max_batch!r})"
        )
