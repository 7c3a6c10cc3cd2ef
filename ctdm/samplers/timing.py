"""The network's call times on this device, measured once and kept: the curve ctdm.samplers.throughput
plans the parallel sampler's rows per call and window from.

`measure_call_times` measures t(R) at R = 1, 2, 4, ... on the device until the throughput (rows per
second) stops growing, and the network's memory per row. `call_times` does it once per device and
network: the result is kept for the process and, for nn.Module networks, in a JSON file in the folder
it is given (ParallelSampler's `call_times_dir`, e.g. the run's folder), else `cache_dir()`
($CTDM_CACHE_DIR, else $XDG_CACHE_HOME/ctdm, else ~/.cache/ctdm); delete the file to measure again.
"""

import hashlib
import inspect
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from ctdm.samplers.memory import default_memory_budget, peak_bytes
from ctdm.samplers.throughput import MIN_ROWS, NEAR_BEST, CallTimes

log = logging.getLogger(__name__)

CACHE_FILE = "call_times.json"
CACHE_VERSION = 1
# Stop measuring once this many doublings in a row did not beat the best throughput by NEAR_BEST's
# margin, but not before MIN_ROWS rows (ctdm.samplers.throughput: small calls on a busy CPU cost as much as
# large ones).
PATIENCE = 2
MAX_ROWS = 1 << 20
MAX_SECONDS = 20.0  # measuring stops after this long (a large network on a CPU), keeping what it has
SLOW_CALL = 0.1  # a call this slow is timed once after its warm-up, faster ones MIN_REPEATS times or more
MIN_REPEATS, MAX_REPEATS, MIN_TIMED = 3, 50, 0.02  # (and until MIN_TIMED seconds, at most MAX_REPEATS)
# Twice the rows costing this many times as long marks a CPU busier than torch's threads assume (a
# healthy device at most about doubles, 2.7x at a cache edge): calls past the size where torch starts
# its threads wait tens of milliseconds for one to be scheduled, whatever their size, so the measured
# throughput is noise and larger calls amortise the wait. Then `CallTimes.contended_rows` (a batch's
# sequential call or more, not a whole pass past the caches), and a warning.
CONTENDED_JUMP = 8.0


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
    """Peak memory of one call per row (`peak_bytes`)."""
    return peak_bytes(lambda: eps_fn(z, logsnr), device) / len(z)


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
    # The larger per row of two sizes: activations are not exactly linear in the rows (calls are sized
    # from it with ctdm.samplers.memory.MEMORY_HEADROOM to spare).
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
