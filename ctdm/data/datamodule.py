"""LightningDataModules: the shared loader logic and the one for data drawn from a law (toy sets).

Every DataModule gives `shape` (per sample), `x_val` ([N, *shape] held-out points in model range,
the evaluation reference), `data_var` ([*shape], per-dimension variance over the whole training
set) and `law` (the exact law for Gaussian mixtures, else None). Image sets live in ctdm.data.images.
"""

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ctdm.data.toy import dino


class _TensorRows(Dataset):
    """Rows of one tensor; `__getitems__` lets the DataLoader fetch a whole batch with one index op."""

    def __init__(self, x: Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]

    def __getitems__(self, indices):
        return self.x[torch.as_tensor(indices)]


def _as_batch(batch: Tensor) -> Tensor:
    return batch


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """`data.batch_size` is global: split it evenly over the ranks or fail naming both numbers."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"data.batch_size must be a positive integer (the global batch), got {batch_size!r}."
        )
    if batch_size % world_size:
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch size and must be divisible by the world size "
            f"({world_size} ranks); choose a multiple of {world_size}."
        )
    return batch_size // world_size


class BatchedDataModule(L.LightningDataModule):
    """Loaders over whole-batch datasets; `batch_size` is global and split over the DDP ranks."""

    def __init__(self, batch_size: int, num_workers: int = 0, pin_memory: bool = False):
        super().__init__()
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be an integer >= 0, got {num_workers!r}.")
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=per_rank_batch_size(self.batch_size, self._world_size()),
            shuffle=shuffle,
            drop_last=shuffle,
            collate_fn=_as_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )


class ToyDataModule(BatchedDataModule):
    """Fixed training and validation sets drawn from `law` with their own seeds.

    `law` is anything with `dim` and `sample(n, generator)`; it is exposed as `.law` only when it is
    exact (has `log_prob` and `eps`, as the Gaussian mixtures do), else `.law` is None.
    `data_var` ([dim], per-dimension variance over the whole training set) is what the likelihood
    estimators use for their reference Gaussian.
    """

    def __init__(
        self,
        law,
        shape: list[int],
        train_size: int = 20000,
        val_size: int = 2000,
        batch_size: int = 256,
        train_seed: int = 0,
        val_seed: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__(batch_size, num_workers, pin_memory)
        if list(shape) != [law.dim]:
            raise ValueError(
                f"data.shape={list(shape)} does not match the law's dimension {law.dim}; use [{law.dim}]."
            )
        for key, value in (("train_size", train_size), ("val_size", val_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{key} must be a positive integer, got {value!r}.")
        self.source, self.shape = law, tuple(shape)
        self.law = law if hasattr(law, "log_prob") and hasattr(law, "eps") else None
        self.train_size, self.val_size = train_size, val_size
        self.train_seed, self.val_seed = train_seed, val_seed
        self.x_train: Tensor | None = None
        self.x_val: Tensor | None = None
        self._data_var: Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.x_train is None:
            self.x_train = self.source.sample(self.train_size, torch.Generator().manual_seed(self.train_seed))
            self.x_val = self.source.sample(self.val_size, torch.Generator().manual_seed(self.val_seed))
            self._data_var = self.x_train.var(0)

    @property
    def data_var(self) -> Tensor:
        self.setup()
        return self._data_var

    def train_dataloader(self) -> DataLoader:
        return self._loader(_TensorRows(self.x_train), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(_TensorRows(self.x_val), shuffle=False)


class DinoDataModule(ToyDataModule):
    """The Datasaurus dino (the paper's 2-D set) read from `path`, as its exact Gaussian mixture."""

    def __init__(self, path: str, dataset: str = "dino", jitter: float = 0.15, **kwargs):
        super().__init__(law=dino(path, jitter, dataset), **kwargs)
        self.path = path
