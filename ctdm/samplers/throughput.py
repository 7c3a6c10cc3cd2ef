"""Rows per network call and Picard windows from the network's measured cost on this device.

A network call of R rows costs t(R). While the device has idle parallel units (a GPU at small R, any
device when Python and launch overheads dominate) t(R) is about flat; past that saturation point it
grows in proportion to R; on a CPU it grows faster again once the activations leave the caches, which
is why one call for a whole Picard pass (millions of rows) is slower than the same rows in chunks.

`measure_call_times` measures t(R) at R = 1, 2, 4, ... on the device until the throughput (rows per
second) stops growing, and the network's memory per row. `call_times` does it once per device and
network: the result is kept for the process and, for nn.Module networks, in a JSON file in the folder
it is given (ParallelSampler's `call_times_dir`, e.g. the run's folder), else `cache_dir()`
($CTDM_CACHE_DIR, else $XDG_CACHE_HOME/ctdm, else ~/.cache/ctdm); delete the file to measure again.
From the curve (`CallTimes`):

- `rows_per_call(budget, batch)`: the smallest R within 5% of the best throughput measured, raised to
  the sequential sampler's own call (`batch` rows) while that is within the near-best range, and no
  more rows than fit the memory budget: the chunk size of ParallelSampler's automatic chunking;
- `contended_rows(budget, batch)`: the rows per call on a CPU busier than torch's threads assume;
- `seconds_for(R, chunk)`: the predicted time of R rows in calls of at most `chunk` rows;
- `auto_window(N, steps, chunk, ...)`: the window with the largest predicted speed-up over the
  sequential steps, from the cost of a pass (N x W rows) against a step (N rows) and the steps a pass
  advances: for small batches a pass near the device's saturation point, for a saturated device 1
  (docs/samplers.md).

Nothing here changes what the network computes: chunking splits a batch (rows are independent), and
the window only sets how many steps a Picard pass evaluates.
"""

import bisect
import hashlib
import inspect
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ctdm.samplers.memory import TensorMemory

log = logging.getLogger(__name__)

CACHE_FILE = "call_times.json"
CACHE_VERSION = 1
# The throughput within this fraction of the best measured counts as saturated (measurements on a
# shared CPU scatter by more than this, so larger chunks would be chosen by chance).
NEAR_BEST = 0.95
# Stop measuring once this many doublings in a row did not beat the best throughput by NEAR_BEST's
# margin, but not before MIN_ROWS rows: on a CPU busier than torch's threads assume, each multi-threaded
# call waits milliseconds for a thread to be scheduled, so small calls cost as much as large ones and
# the throughput only grows again past hundreds of rows.
PATIENCE = 2
MIN_ROWS = 1024
MAX_ROWS = 1 << 20
MAX_SECONDS = 20.0  # measuring stops after this long (a large network on a CPU), keeping what it has
SLOW_CALL = 0.1  # a call this slow is timed once after its warm-up, faster ones MIN_REPEATS times or more
MIN_REPEATS, MAX_REPEATS, MIN_TIMED = 3, 50, 0.02  # (and until MIN_TIMED seconds, at most MAX_REPEATS)
# The memory per row is measured on two call sizes (the larger per row is kept); a call is sized to use
# at most this share of the memory budget by that measure (activations are not exactly linear in the rows).
MEMORY_HEADROOM = 0.9
# Twice the rows costing this many times as long marks a CPU busier than torch's threads assume (a
# healthy device at most about doubles, 2.7x at a cache edge): calls past the size where torch starts
# its threads wait tens of milliseconds for one to be scheduled, whatever their size, so the measured
# throughput is noise and larger calls amortise the wait. Then `CallTimes.contended_rows` (a batch's
# sequential call or more, not a whole pass past the caches), and a warning.
CONTENDED_JUMP = 8.0
# The same, seen while sampling (the CPU can get busy after the measurement): STALLS calls in a row that
# take STALL_FACTOR times their measured time (and a millisecond more) switch to `contended_rows` for
# the rest of that sampling run (the next run watches again).
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
    contended: bool = False  # see CONTENDED_JUMP: rows_per_call is then the memory budget's

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
        """Rows per call on a CPU busier than torch's threads assume (see CONTENDED_JUMP): every call
        waits for a thread, so the calls are as large as stay efficient, the largest near-best size of
        a healthy measurement (MIN_ROWS of a contended one, whose curve is noise), and at least `batch`,
        the sequential sampler's call, which waits as often; capped by the memory budget. Not larger:
        past the caches a call costs up to 2.5x as much per row (one call of a 2,000-sample pass)."""
        rows = max(MIN_ROWS if self.contended else self.near_best_rows()[-1], batch or 1)
        return rows if memory_budget is None else min(rows, self.budget_rows(memory_budget))

    def budget_rows(self, memory_budget: float) -> int:
        """The most rows whose network memory fits MEMORY_HEADROOM of `memory_budget` (bytes)."""
        return max(1, int(MEMORY_HEADROOM * memory_budget // max(self.bytes_per_row, 1e-9)))

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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_call(eps_fn, z: Tensor, logsnr: Tensor, device: torch.device) -> float:
    """The fastest of MIN_REPEATS or more calls after a warm-up (one if the warm-up took over
    SLOW_CALL): the minimum is the call least disturbed by other work on the device."""
    synchronize(device)
    start = time.perf_counter()
    eps_fn(z, logsnr)
    synchronize(device)
    repeats = 1 if time.perf_counter() - start > SLOW_CALL else MIN_REPEATS
    best, total, calls = math.inf, 0.0, 0
    while calls < repeats or (total < MIN_TIMED and calls < MAX_REPEATS):
        synchronize(device)
        start = time.perf_counter()
        eps_fn(z, logsnr)
        synchronize(device)
        seconds = time.perf_counter() - start
        best, total, calls = min(best, seconds), total + seconds, calls + 1
    return best


def _bytes_per_row(eps_fn, z: Tensor, logsnr: Tensor, device: torch.device) -> float:
    """Peak memory of one call per row: the CUDA allocator's peak, or the tensors counted by TensorMemory."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        eps_fn(z, logsnr)
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / len(z)
    with TensorMemory() as memory:
        eps_fn(z, logsnr)
    return memory.peak / len(z)


@torch.no_grad()
def measure_call_times(
    eps_fn,
    shape: tuple[int, ...],
    device=None,
    dtype: torch.dtype = torch.float32,
    memory_budget: float | None = None,
    max_rows: int = MAX_ROWS,
    max_seconds: float = MAX_SECONDS,
) -> CallTimes:
    """t(R) of `eps_fn(z [R, *shape], logsnr [R])` for R = 1, 2, 4, ... on `device`.

    Stops when PATIENCE doublings in a row from MIN_ROWS rows on did not raise the best throughput by
    more than 1/NEAR_BEST, after `max_seconds`, at `max_rows`, or when the next size
    would not fit `memory_budget` (bytes; the memory per row is measured on small calls first).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")

    def inputs(rows: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(rows)
        z = torch.randn((rows, *shape), generator=generator).to(device, dtype)
        logsnr = torch.empty(rows).uniform_(-10, 10, generator=generator).to(device, dtype)
        return z, logsnr

    start = time.perf_counter()
    per_row = max(_bytes_per_row(eps_fn, *inputs(rows), device) for rows in (64, 256))
    rows, seconds, best, stale, r = [], [], 0.0, 0, 1
    while r <= max_rows and time.perf_counter() - start < max_seconds:
        if memory_budget is not None and r * per_row > memory_budget and rows:
            break
        t = max(_time_call(eps_fn, *inputs(r), device), 1e-9)
        rows.append(r)
        seconds.append(t)
        if r >= MIN_ROWS:  # stalls below MIN_ROWS do not count (see MIN_ROWS)
            stale = 0 if r / t > best / NEAR_BEST else stale + 1
        best = max(best, r / t)
        if stale >= PATIENCE:
            break
        r *= 2
    if rows[-1] > 256 and device.type == "cuda":  # the largest call, where the allocator's blocks are large
        per_row = max(per_row, _bytes_per_row(eps_fn, *inputs(rows[-1]), device))
    jumps = [b / a for a, b in zip(seconds, seconds[1:], strict=False)]
    threads = torch.get_num_threads() > 1  # one thread waits for nobody: a jump is then noise
    contended = device.type == "cpu" and threads and max(jumps, default=1.0) > CONTENDED_JUMP
    return CallTimes(rows, seconds, per_row, device_name(device), contended)


def device_name(device: torch.device) -> str:
    """What the timings depend on: the GPU model, or the CPU model and torch's thread count."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda {props.name} {props.total_memory >> 20} MiB"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{device.type} {cpu}, {torch.get_num_threads()} threads"


def network_key(denoiser) -> str | None:
    """A name for the network's cost: its class, method and the shapes of its weights (not their
    values); None when `denoiser` is no nn.Module or method of one (then nothing is kept on disk)."""
    module = denoiser if isinstance(denoiser, nn.Module) else getattr(denoiser, "__self__", None)
    if not isinstance(module, nn.Module):
        return None
    if module is denoiser:  # as_eps_fn calls its eps if it has one
        method = "eps" if callable(getattr(module, "eps", None)) else "forward"
    else:
        method = getattr(denoiser, "__name__", "forward")
    digest = hashlib.sha1()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    return f"{type(module).__module__}.{type(module).__qualname__}.{method} {digest.hexdigest()[:16]}"


def cache_dir() -> Path:
    """Where measured call times are kept unless a folder is given: $CTDM_CACHE_DIR, else
    $XDG_CACHE_HOME/ctdm, else ~/.cache/ctdm."""
    if os.environ.get("CTDM_CACHE_DIR"):
        return Path(os.environ["CTDM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ctdm"


# Measurements kept for the process, keyed like the file's entries and by the file (or, for networks
# that are no nn.Module, by the function's object). Kept because a measurement costs up to MAX_SECONDS
# and an evaluation calls the samplers once per chunk of samples; what it holds only chooses the rows
# per call (never the samples) and window=auto, and tests that count rows give their own CallTimes.
_MEMO: dict[tuple, CallTimes] = {}


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignoring the unreadable call-time cache %s (%s); measuring again", path, error)
        return {}
    return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}


def _write_cache(path: Path, entries: dict) -> None:
    """Written to a temporary file and renamed: a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1))
        tmp.replace(path)
    except OSError as error:  # a read-only home: the measurement still serves this process
        log.warning("could not write the call-time cache %s (%s)", path, error)


def call_times(
    eps_fn,
    denoiser,
    shape: tuple[int, ...],
    device=None,
    dtype: torch.dtype = torch.float32,
    extra_key: str = "",
    folder: str | Path | None = None,
) -> CallTimes:
    """`measure_call_times(eps_fn, ...)` once per device and network (`denoiser`, what eps_fn calls).

    Kept for the process; for nn.Module networks also on disk, in CACHE_FILE under `folder` (None:
    `cache_dir()`). The key holds the device (`device_name`), the network (`network_key`), the sample
    shape, the dtype, autocast's dtype when it is on, and `extra_key` (e.g. the devices a batch is split
    over).
    """
    # A wrapper that names what it wraps (`__wrapped__`: a query recorder, a hook) is neither probed nor
    # keyed: the probe's calls are no queries of a solve, and the cost is the wrapped network's.
    eps_fn, denoiser = inspect.unwrap(eps_fn), inspect.unwrap(denoiser)
    device = torch.device(device) if device is not None else torch.device("cpu")
    autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    network = network_key(denoiser)
    parts = (device_name(device), network, tuple(shape), str(dtype), str(autocast), extra_key)
    path = (Path(folder) if folder is not None else cache_dir()) / CACHE_FILE
    memo_key = (
        (*parts, str(path)) if network is not None else (*parts, id(getattr(denoiser, "__self__", denoiser)))
    )
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    disk_key = " | ".join(map(str, parts))
    entries = _read_cache(path) if network is not None else {}
    if disk_key in entries:
        times = CallTimes(**entries[disk_key])
    else:
        start = time.perf_counter()
        times = measure_call_times(eps_fn, shape, device, dtype, memory_budget=default_memory_budget(device))
        log.info(
            "measured the network's call times on %s in %.1f s: best %s rows per call, saturation at %d rows",
            times.device,
            time.perf_counter() - start,
            times.rows_per_call(),
            times.saturation_rows(),
        )
        if times.contended:  # kept for this process only: the next one may find the CPU less busy
            log.warning(
                "network calls on %s took up to %.0fx as long for twice the rows: torch's %d threads wait "
                "for a busy CPU (more work than cores), so every call costs tens of milliseconds. Calls "
                "as large as the memory budget allows. torch.set_num_threads(1) (or OMP_NUM_THREADS=1) is "
                "likely much faster here, for every sampler.",
                times.device,
                max(b / a for a, b in zip(times.seconds, times.seconds[1:], strict=False)),
                torch.get_num_threads(),
            )
        elif network is not None:
            entries = _read_cache(path)  # another process may have written meanwhile
            entries[disk_key] = asdict(times)
            _write_cache(path, entries)
    _MEMO[memo_key] = times
    return times


class Chunks:
    """eps_fn in calls of at most `rows` rows (rows are independent, so the result is the same).

    With `watch` (the CallTimes the rows were chosen from; for CPUs running torch on several threads):
    each call is timed, and once STALLS calls in a row took STALL_FACTOR times as long as measured, the
    CPU has become busier than torch's threads assume (see CONTENDED_JUMP): the remaining calls of this
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


def default_memory_budget(device) -> float:
    """Bytes one network call may use when none is configured: half the free GPU memory, or a quarter
    of the available RAM on a CPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4
    except (ValueError, OSError, AttributeError):
        return float(1 << 30)
