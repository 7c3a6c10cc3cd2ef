"""LightningDataModules: the shared loader logic and the one for data drawn from a law (toy sets).

Every DataModule gives `shape` (per sample), `x_val` ([N, *shape] held-out points in model range,
the evaluation reference), `data_var` ([*shape], per-dimension variance over the whole training
set) and `law` (the exact law for Gaussian mixtures, else None). Image sets live in ctdm.data.images.
"""

import warnings

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

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


class GlobalBatchOrder(DistributedSampler):
    """Training order fixed by (seed, global batch index) alone, for any number of ranks and any resume.

    Epoch e is `randperm(size)` drawn with seed `seed + e`; global batch g of that epoch is its rows
    [g*B, (g+1)*B) (B = `batch_size`, the global batch; the last partial batch is dropped), and rank r
    takes the r-th contiguous share of it. So 1 rank and W ranks see the same global batches, and a run
    resumed at global batch `start` (= the restored global step) continues mid-epoch exactly where a
    straight run would be, without replaying or skipping data. Each `iter()` yields what is left of
    the epoch holding `start`, then moves `start` to the next epoch; `set_epoch` is not needed.
    (A DistributedSampler, so Lightning keeps it under DDP instead of wrapping it in its own.)
    """

    def __init__(self, size: int, batch_size: int, num_replicas: int, rank: int, seed: int, start: int = 0):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.size, self.global_batch = size, batch_size
        self.per_rank = per_rank_batch_size(batch_size, num_replicas)
        self.batches_per_epoch = size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"data.batch_size={batch_size} is larger than the {size} training samples; lower it."
            )
        self.start = start

    def __len__(self) -> int:
        return self.batches_per_epoch * self.per_rank

    def __iter__(self):
        epoch, first = divmod(self.start, self.batches_per_epoch)
        self.start = (epoch + 1) * self.batches_per_epoch
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        batches = order[: self.batches_per_epoch * self.global_batch].view(
            self.batches_per_epoch, self.num_replicas, self.per_rank
        )
        return iter(batches[first:, self.rank].flatten().tolist())


class _TrainLoader(DataLoader):
    """The training loader. Its position needs no state (GlobalBatchOrder starts at the restored global
    step); what Lightning stores for it is what the position cannot tell, the order's seed and global
    batch, so a resume that changes them (and so the data order) says so."""

    def state_dict(self) -> dict:
        return {"seed": self.sampler.seed, "batch_size": self.sampler.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if state != self.state_dict():
            warnings.warn(
                f"Resuming with a different training order: the checkpoint's run had {state}, this run "
                f"{self.state_dict()}, so the remaining batches differ from the original run's.",
                stacklevel=2,
            )


class BatchedDataModule(L.LightningDataModule):
    """Loaders over whole-batch datasets; `batch_size` is global and split over the DDP ranks."""

    def __init__(self, batch_size: int, num_workers: int = 0, pin_memory: bool = False):
        super().__init__()
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be an integer >= 0, got {num_workers!r}.")
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.shuffle_seed = 0  # the training order's seed (train.py sets the run's seed)

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        """Training (`shuffle`): GlobalBatchOrder from the restored global step; held-out data: in order."""
        sampler = None
        if shuffle:
            trainer = self.trainer
            sampler = GlobalBatchOrder(
                len(dataset),
                self.batch_size,
                num_replicas=self._world_size(),
                rank=trainer.global_rank if trainer is not None else 0,
                seed=self.shuffle_seed,
                # batches already trained on (exact when every optimizer step takes one batch)
                start=trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0,
            )
        return (_TrainLoader if shuffle else DataLoader)(
            dataset,
            batch_size=per_rank_batch_size(self.batch_size, self._world_size()),
            sampler=sampler,
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
        **loader,  # num_workers, pin_memory: BatchedDataModule's
    ):
        super().__init__(batch_size, **loader)
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
    """The Datasaurus dino (the paper's 2-D set) as its exact Gaussian mixture; `path=None` reads the
    packaged points, a path reads a Datasaurus-format file."""

    def __init__(self, path: str | None = None, dataset: str = "dino", jitter: float = 0.15, **kwargs):
        super().__init__(law=dino(path, jitter, dataset), **kwargs)
        self.path = path
