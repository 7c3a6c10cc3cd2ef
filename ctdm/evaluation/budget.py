"""How much memory one sample evaluation needs, estimated before any training step, and a refusal with
the estimate when it cannot fit (instead of a run killed for memory after training, with no message).

The estimate follows what ctdm.evaluation holds at once on one rank: a chunk of `eval.batch_size` samples
(all of the rank's share when it is null) with the sampler's states and the network's activations for the
rows it evaluates per call (measured on two rows), the chunk gathered from every rank under DDP and its
copy for the samples file, and the scorer's state: the samples themselves for MMD (low-dimensional
data: d numbers each) with one kernel block, or FID's sums, KID's bounded subset and the real features for
images. Only the first of these grows with eval.num_samples when eval.batch_size is set.
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ctdm.metrics.mmd import BLOCK
from ctdm.samplers.memory import TensorMemory

GIB = 1 << 30


@dataclass
class Estimate:
    """Bytes of each part, and in total."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {_size(n)}" for name, n in self.parts.items() if n)


def _size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@torch.no_grad()
def forward_bytes_per_row(denoiser, shape: tuple[int, ...]) -> int:
    """Tensor memory one network call needs per row (its activations), measured on the CPU on two rows."""
    z = torch.zeros(2, *shape)
    logsnr = torch.zeros(2)
    eps = getattr(denoiser, "eps", denoiser)
    was_training = getattr(denoiser, "training", False)
    if hasattr(denoiser, "eval"):
        denoiser.eval()
    try:
        with TensorMemory() as memory:
            eps(z, logsnr)
    finally:
        if was_training:
            denoiser.train()
    return math.ceil(memory.peak / 2)


def sampler_bytes(sampler, rows: int, sample_bytes: int, per_row: int) -> int:
    """A sampler's states and the network's activations for a chunk of `rows` samples (see the samplers'
    own notes: a sequential step holds a few states; a parallel one 2W+1 states per sample and about ten
    more per window step during a pass, and evaluates rows x W network rows per call unless max_batch)."""
    if not getattr(sampler, "parallel", False):
        return rows * (8 * sample_bytes + per_row)
    window = getattr(sampler, "window", None)
    window = window if isinstance(window, int) else getattr(sampler, "steps", 1)
    per_call = rows * window
    max_batch = getattr(sampler, "max_batch", None)
    if isinstance(max_batch, int):
        per_call = min(per_call, max_batch)
    return rows * (12 * window + 1) * sample_bytes + per_call * per_row


def estimate(
    samplers,
    shape: tuple[int, ...],
    *,
    num_samples: int,
    batch_size: int | None,
    world: int,
    per_row: int,
    images: bool,
    reference_points: int = 0,
    real_images: int = 0,
    num_features: int = 2048,
    kid_max_samples: int | None = 10_000,
) -> Estimate:
    """The peak bytes of one evaluation on one rank (see the module)."""
    sample_bytes = 4 * math.prod(shape)
    rows = batch_size or math.ceil(num_samples / world)
    parts = {
        "sampling": max(sampler_bytes(s, rows, sample_bytes, per_row) for s in samplers),
        "chunk gathered and written": (world + 1) * rows * sample_bytes,
    }
    if images:
        kept = num_samples if kid_max_samples is None else min(num_samples, 2 * kid_max_samples)
        # FID's three float64 D x D sums; KID's kept features (twice while it draws its subset), the real ones
        parts["FID/KID state"] = 8 * 3 * num_features**2 + 4 * num_features * (2 * kept + real_images)
    else:
        dims = math.prod(shape)
        parts["MMD samples and kernel block"] = 8 * dims * (num_samples + reference_points) + 3 * 8 * BLOCK**2
    return Estimate(parts)


def available_bytes(device: torch.device | str) -> tuple[int, str]:
    """(bytes this process can still use on `device`, where that number comes from)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    available = _meminfo("MemAvailable")
    limit = _cgroup_limit()
    if limit is not None and limit < available:
        return limit, "left under this job's memory limit (cgroup)"
    return available, "available on this machine (MemAvailable)"


def _meminfo(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _cgroup_limit() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), None without a limit."""
    try:
        root = Path("/sys/fs/cgroup")
        limit, current = (root / "memory.max").read_text().strip(), (root / "memory.current").read_text()
        return None if limit == "max" else int(limit) - int(current)
    except (OSError, ValueError):
        return None


def check_fits(
    needed: Estimate, available: int, where: str, *, num_samples: int, batch_size: int | None, rows_cost: int
) -> None:
    """A ValueError naming eval.num_samples / eval.batch_size, the estimate and a batch size that fits,
    when the estimate exceeds what is available."""
    if needed.total <= available:
        return
    chunk = f"eval.batch_size={batch_size}" if batch_size else "eval.batch_size=null (every sample at once)"
    fixed = needed.total - rows_cost * (batch_size or num_samples)
    suggestion = max(1, int((available / 2 - max(fixed, 0)) // max(rows_cost, 1)))
    hint = (
        f"Set eval.batch_size={min(suggestion, num_samples)} (memory then follows the batch, not "
        "eval.num_samples)"
        if suggestion >= 1 and fixed < available / 2
        else "Lower eval.num_samples"
    )
    raise ValueError(
        f"eval.num_samples={num_samples} with {chunk} needs about {_size(needed.total)} for the sample "
        f"evaluation ({needed.describe()}), but {_size(available)} are {where}. {hint}; checked before "
        "training, so nothing was trained for nothing."
    )
