"""Samples written to disk as they come: one `.npy` file per sampler, rows in sample-index order.

The file's header is written first for all `num_samples` rows ([N, *shape] float32); each chunk's rows
are then written at their indices with plain file writes (no memory map: mapped pages would count as
the process's memory), so an evaluation never holds more than a chunk. The file is written under a
temporary name and renamed when every row is in: `samples_<sampler>.npy` exists only complete.
`numpy.load(path, mmap_mode="r")` reads it back without loading it.
"""

import os
from pathlib import Path

import numpy as np
from torch import Tensor


class SampleFile:
    """with SampleFile(path, num_samples, shape) as f: f.write(first_index, samples) ..."""

    def __init__(self, path: str | Path, num_samples: int, shape: tuple[int, ...]):
        self.path = Path(path)
        self.shape, self.num_samples = tuple(shape), num_samples
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * 4
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")
        header = {"descr": "<f4", "fortran_order": False, "shape": (num_samples, *self.shape)}
        np.lib.format.write_array_header_2_0(self._file, header)
        self.offset = self._file.tell()
        self._file.truncate(self.offset + num_samples * self.row_bytes)
        self.written = 0

    def write(self, first: int, samples: Tensor) -> None:
        """Rows first .. first + len(samples) - 1."""
        if not len(samples):
            return
        rows = samples.detach().to("cpu").float().contiguous().numpy()
        self._file.seek(self.offset + first * self.row_bytes)
        self._file.write(rows.data)  # the array's own buffer, no copy
        self.written += len(rows)

    def close(self, complete: bool = True) -> Path | None:
        self._file.close()
        if complete and self.written == self.num_samples:
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return None

    def __enter__(self) -> "SampleFile":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self._file.closed:
            self.close(complete=kind is None)
