"""Rows per network call and Picard windows from the network's measured cost on this device.

A network call of R rows costs t(R). While the device has idle parallel units (a GPU at small R, any
device when Python and launch overheads dominate) t(R) is about flat; past that saturation point it
grows in proportion to R; on a CPU it grows faster again once the activations leave the caches, which
is why one call for a whole Picard pass (millions of rows) is slower than the same rows in chunks.

`CallTimes` is that curve, measured and kept by ctdm.samplers.timing (`call_times`), and what the
parallel sampler plans from it:

- `rows_per_call(budget, batch)`: the smallest R within 5% of the best throughput measured, raised to
  the sequential sampler's own call (`batch` rows) while that is within the near-best range, and no
  more rows than fit the memory budget: the chunk size of ParallelSampler's automatic chunking;
- `contended_rows(budget, batch)`: the rows per call on a CPU busier than torch's threads assume;
- `seconds_for(R, chunk)`: the predicted time of R rows in calls of at most `chunk` rows;
- `auto_window(N, steps, chunk, ...)`: the window with the largest predicted speed-up over the
  sequential steps, from the cost of a pass (N x W rows) against a step (N rows) and the steps a pass
  advances: for small batches a pass near the device's saturation point, for a saturated device 1
  (docs/samplers.md).

`Chunks` runs the network in calls of the planned rows, and watches them for a CPU that became busy.
Nothing here changes what the network computes: chunking splits a batch (rows are independent), and
the window only sets how many steps a Picard pass evaluates.
"""

import bisect
import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ctdm.samplers.memory import budget_rows

log = logging.getLogger(__name__)

# The throughput within this fraction of the best measured counts as saturated (measurements on a
# shared CPU scatter by more than this, so larger chunks would be chosen by chance).
NEAR_BEST = 0.95
# The rows from which measuring may stop, and the rows per call of a contended measurement (its curve
# is noise): on a CPU busier than torch's threads assume, each multi-threaded call waits milliseconds for
# a thread to be scheduled, so small calls cost as much as large ones and the throughput only grows
# again past hundreds of rows.
MIN_ROWS = 1024
# A CPU busier than torch's threads assume (ctdm.samplers.timing.CONTENDED_JUMP), seen while sampling (it
# can get busy after the measurement): STALLS calls in a row that take STALL_FACTOR times their measured
# time (and a millisecond more) switch to `contended_rows` for the rest of that sampling run (the next run
# watches again).
STALL_FACTOR, STALLS = 4.0, 3
# window auto. A Picard pass of window W advances a(W) steps on average; a conservative fit to measured
# ones (docs/samplers.md: eight Gaussians, 1000 DDPM steps, tolerance 0.1: window 2 advances 1.0 step per
# pass, 4: 1.9, 8: 3.4, 32: 11, 256: 38, 1000: 40, and a full window takes 24-37 passes for 1000 steps
# on the dino and 1-D sets) is a(W) = W / (2.5 + 25 W / steps), at least 1. A window other than 1 is
# taken only where it is predicted at least MIN_GAIN times faster than the sequential steps.
ADVANCE_FIXED, ADVANCE_FULL = 2.5, 25.0
MIN_GAIN = 1.2


def picard_advance(window: int, steps: int) -> float:
    """Steps a Picard pass of `window` advances on average over `steps` steps (conservative, see above)."""
    return max(1.0, window / (ADVANCE_FIXED + ADVANCE_FULL * window / steps))


@dataclass
class CallTimes:
    """t(R): `seconds[i]` per call of `rows[i]` rows (rows doubling from 1), measured on `device`;
    `bytes_per_row`: the network's peak memory per row of a call (activations, not weights)."""

    rows: list[int]
    seconds: list[float]
    bytes_per_row: float
    device: str = ""
    contended: bool = False  # see timing.CONTENDED_JUMP: rows_per_call is then the memory budget's

    def __post_init__(self):
        # Monotone in R: a bigger call never costs less. Noise on a shared device only adds time, so
        # each size keeps the least time measured at it or any larger size (the lower envelope).
        self.seconds = [min(self.seconds[i:]) for i in range(len(self.seconds))]

    def call_seconds(self, rows: int) -> float:
        """t(rows) of one call: linear between measured sizes, at the last throughput beyond them."""
        if rows <= 0:
            return 0.0
        sizes, times = self.rows, self.seconds
        if rows >= sizes[-1]:
            return times[-1] * rows / sizes[-1]
        if rows <= sizes[0]:
            return times[0]
        i = bisect.bisect_left(sizes, rows)
        frac = (rows - sizes[i - 1]) / (sizes[i] - sizes[i - 1])
        return times[i - 1] + frac * (times[i] - times[i - 1])

    def seconds_for(self, rows: int, chunk: int | None) -> float:
        """Predicted time of `rows` rows in calls of at most `chunk` rows (None: one call)."""
        if chunk is None or rows <= chunk:
            return self.call_seconds(rows)
        full, rest = divmod(rows, chunk)
        return full * self.call_seconds(chunk) + self.call_seconds(rest)

    def near_best_rows(self) -> list[int]:
        """The measured sizes whose throughput is within NEAR_BEST of the best measured."""
        throughput = [r / max(t, 1e-12) for r, t in zip(self.rows, self.seconds, strict=True)]
        best = max(throughput)
        return [r for r, v in zip(self.rows, throughput, strict=True) if v >= NEAR_BEST * best]

    def rows_per_call(self, memory_budget: float | None = None, batch: int | None = None) -> int | None:
        """The smallest measured R within NEAR_BEST of the best throughput, raised to `batch` (the rows
        of the sequential sampler's own call) up to the largest such R, capped by the memory budget.

        Within the near-best range the measurement cannot tell sizes apart, but sampling can: calls of
        the sequential sampler's size cost per row what its calls do (ParaDDPM in 256-row calls cost
        15% more per evaluation than in 2,000-row calls on both 2-D models at 2,000 samples, one
        thread; compare with benchmarks/sampling.py --per-evaluation). When the measurement was
        `contended`: `contended_rows` for a `batch`, else as many rows as the budget allows (None, no
        chunking, without a budget)."""
        if self.contended:
            if batch is not None:
                return self.contended_rows(memory_budget, batch)
            return None if memory_budget is None else self.budget_rows(memory_budget)
        near = self.near_best_rows()
        rows = near[0] if batch is None else max(near[0], min(batch, near[-1]))
        return rows if memory_budget is None else min(rows, self.budget_rows(memory_budget))

    def contended_rows(self, memory_budget: float | None = None, batch: int | None = None) -> int:
        """Rows per call on a CPU busier than torch's threads assume (see timing.CONTENDED_JUMP): every call
        waits for a thread, so the calls are as large as stay efficient, the largest near-best size of
        a healthy measurement (MIN_ROWS of a contended one, whose curve is noise), and at least `batch`,
        the sequential sampler's call, which waits as often; capped by the memory budget. Not larger:
        past the caches a call costs up to 2.5x as much per row (one call of a 2,000-sample pass)."""
        rows = max(MIN_ROWS if self.contended else self.near_best_rows()[-1], batch or 1)
        return rows if memory_budget is None else min(rows, self.budget_rows(memory_budget))

    def budget_rows(self, memory_budget: float) -> int:
        """The most rows whose network memory fits MEMORY_HEADROOM of `memory_budget` (bytes)."""
        return budget_rows(self.bytes_per_row, memory_budget)

    def auto_window(
        self,
        batch: int,
        steps: int,
        chunk: int | None,
        pass_overhead: float = 0.0,
        step_overhead: float = 0.0,
    ) -> int:
        """The window W <= steps with the largest predicted speed-up over the sequential steps,
        a(W) (t(batch) + step_overhead) / (t(batch W) + pass_overhead) with a(W) = `picard_advance`;
        1 (the sequential steps) unless that is at least MIN_GAIN. The overheads are the samplers' own
        time per pass and per step besides the network (`ParallelSampler`'s bookkeeping)."""
        step = self.seconds_for(batch, chunk) + step_overhead
        best, best_gain = 1, MIN_GAIN
        for window in range(2, steps + 1):
            pass_seconds = self.seconds_for(batch * window, chunk) + pass_overhead
            gain = picard_advance(window, steps) * step / pass_seconds
            if gain > best_gain:
                best, best_gain = window, gain
        return best

    def saturation_rows(self) -> int:
        """The knee of t(R): the most rows a call takes at twice the cost of the smallest call."""
        return max(r for r, t in zip(self.rows, self.seconds, strict=True) if t <= 2 * self.seconds[0])


class Chunks:
    """eps_fn in calls of at most `rows` rows (rows are independent, so the result is the same).

    With `watch` (the CallTimes the rows were chosen from; for CPUs running torch on several threads):
    each call is timed, and once STALLS calls in a row took STALL_FACTOR times as long as measured, the
    CPU has become busier than torch's threads assume (see timing.CONTENDED_JUMP): the remaining calls of this
    Chunks (one sampling run) take up to `fallback` rows (`CallTimes.contended_rows`), and a warning says
    so. `watch` itself is left as measured: the next run starts from the measured rows and watches again.
    """

    def __init__(self, eps_fn, rows: int, watch: CallTimes | None = None, fallback: int | None = None):
        self.eps_fn, self.rows, self.watch, self.fallback = eps_fn, rows, watch, fallback
        self.stalls = 0

    def __call__(self, z: Tensor, logsnr: Tensor) -> Tensor:
        if len(z) <= self.rows:
            return self._call(z, logsnr)
        out, first = [], 0
        while first < len(z):
            rows = slice(first, first + self.rows)
            out.append(self._call(z[rows], logsnr[rows]))
            first = rows.stop
        return torch.cat(out)

    def _call(self, z: Tensor, logsnr: Tensor) -> Tensor:
        if self.watch is None:
            return self.eps_fn(z, logsnr)
        start = time.perf_counter()
        out = self.eps_fn(z, logsnr)
        seconds = time.perf_counter() - start
        slow = seconds > STALL_FACTOR * self.watch.call_seconds(len(z)) + 1e-3
        self.stalls = self.stalls + 1 if slow else 0
        if self.stalls >= STALLS:
            log.warning(
                "network calls of %d rows on %s took %.0fx as long as measured, %d in a row: torch's %d "
                "threads wait for a busy CPU. Calls of up to %s rows for the rest of this sampling run; "
                "torch.set_num_threads(1) (or OMP_NUM_THREADS=1) is likely much faster here.",
                len(z),
                self.watch.device,
                seconds / self.watch.call_seconds(len(z)),
                self.stalls,
                torch.get_num_threads(),
                self.fallback or "all the",
            )
            self.rows = self.fallback or math.inf
            self.watch = None
        return out
