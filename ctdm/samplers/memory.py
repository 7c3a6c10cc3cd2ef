"""How much tensor memory a computation holds at once, on any device (CPU has no allocator statistics).

`TensorMemory` is a TorchDispatchMode: it sees every tensor an operation creates while it is on, counts
its storage's bytes until the last tensor using that storage is freed, and keeps the peak. Tensors made
before it was on (network weights, inputs) and views of them are not counted. Used by the sampler tests
and benchmarks/sampling.py to show that the Picard solver's memory grows with its window, not its steps.
"""

import weakref

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
