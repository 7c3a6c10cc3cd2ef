"""Which samples a process draws: per-sample seeds and each rank's share of the sample indices.

Sample i is drawn from seed (seed << 32) + i whatever the rank, the batch or the sampler (NVlabs/edm's
per-sample seeds), so results do not depend on the number of DDP ranks, and sequential and parallel
samplers are compared on the same noise.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


def sample_seeds(seed: int, indices: Iterable[int]) -> Tensor:
    """The seeds of the samples with these indices: (seed << 32) + i, [len(indices)] long."""
    return (seed << 32) + torch.tensor(list(indices), dtype=torch.long)


def rank_share(num_samples: int, rank: int, world: int) -> range:
    """The sample indices of one rank: contiguous shares of ceil(N / world), each index exactly once
    (the last ranks may get fewer, or none)."""
    share = math.ceil(num_samples / world)
    start = min(rank * share, num_samples)
    return range(start, min(start + share, num_samples))


@dataclass(frozen=True)
class Ranks:
    """The processes an evaluation runs on: this one's rank, their number, and how to gather a tensor from
    all of them ([world, *shape], e.g. Lightning's `trainer.strategy.all_gather`). One process by default."""

    rank: int = 0
    world: int = 1
    all_gather: Callable[[Tensor], Tensor] | None = None

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def share(self, num_samples: int) -> range:
        return rank_share(num_samples, self.rank, self.world)

    def gather(self, local: Tensor, num_samples: int) -> Tensor:
        """Every rank's share of `num_samples` rows, in index order (shares padded to one size to gather)."""
        if self.world == 1:
            return local
        share = math.ceil(num_samples / self.world)
        padded = torch.cat([local, local.new_zeros(share - len(local), *local.shape[1:])])
        return self.all_gather(padded).flatten(0, 1)[:num_samples]


ONE_PROCESS = Ranks()  # the default: no DDP
