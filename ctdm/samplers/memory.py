"""How much tensor memory a computation holds at once, on any device (CPU has no allocator statistics),
and how much one network call may use: the budget that the samplers' and the loss terms' automatic
chunks (`max_batch: auto`) both fill.

`TensorMemory` is a TorchDispatchMode: it sees every tensor an operation creates while it is on, counts
its storage's bytes until the last tensor using that storage is freed, and keeps the peak. Tensors made
before it was on (network weights, inputs) and views of them are not counted. Used by the sampler tests
and benchmarks/sampling.py to show that the Picard solver's memory grows with its window, not its steps.
`peak_bytes` measures a call with it on a CPU and with the allocator's statistics on a GPU.
"""

import os
import weakref

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemory(TorchDispatchMode):
    """with TensorMemory() as memory: ...; then memory.peak (bytes) and memory.current (still held)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]
        self.current = self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors_in = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        inputs = {t.untyped_storage().data_ptr() for t in tensors_in}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self.live:
                if key in inputs:  # a view of (or an in-place write to) a tensor made outside
                    continue
                self.live[key] = [storage.nbytes(), 0]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_bytes(call, device: torch.device) -> float:
    """Peak memory that `call()` allocates beyond what was held before it: the CUDA allocator's peak, or
    the tensors counted by TensorMemory elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with TensorMemory() as memory:
        call()
    return memory.peak


# A call is sized to use at most this share of the memory budget by its measured memory per row
# (activations are not exactly linear in the rows).
MEMORY_HEADROOM = 0.9


def budget_rows(per_row: float, memory_budget: float) -> int:
    """The most rows whose memory (`per_row` bytes each) fits MEMORY_HEADROOM of `memory_budget`, at
    least 1."""
    return max(1, int(MEMORY_HEADROOM * memory_budget // max(per_row, 1e-9)))


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
