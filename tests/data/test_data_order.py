"""GlobalBatchOrder: the training order is a function of (seed, global batch index) alone."""

import pytest

from ctdm.data.datamodule import GlobalBatchOrder

SIZE, BATCH, SEED = 50, 8, 3  # 6 global batches per epoch, 2 rows dropped


def _global_batches(world: int, start: int = 0, epochs: int = 3) -> list[list[int]]:
    """The global batches a run on `world` ranks sees from global batch `start`, for `epochs` iterations."""
    samplers = [GlobalBatchOrder(SIZE, BATCH, world, rank, SEED, start) for rank in range(world)]
    batches = []
    for _ in range(epochs):
        shares = [list(iter(s)) for s in samplers]  # each rank's indices, BATCH // world per batch
        per = BATCH // world
        for b in range(len(shares[0]) // per):
            batches.append([i for share in shares for i in share[b * per : (b + 1) * per]])
    return batches


def test_every_epoch_is_a_fresh_permutation_of_whole_batches():
    batches = _global_batches(1)
    assert len(batches) == 3 * (SIZE // BATCH)
    epochs = [sum(batches[e * 6 : (e + 1) * 6], []) for e in range(3)]
    for rows in epochs:
        assert len(set(rows)) == len(rows) == 6 * BATCH and set(rows) <= set(range(SIZE))
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_share_the_one_rank_batches(world):
    assert _global_batches(world) == _global_batches(1)


@pytest.mark.parametrize("start", [0, 4, 6, 9])
def test_a_resumed_order_continues_the_straight_one(start):
    straight = _global_batches(1, epochs=4)
    resumed = _global_batches(1, start=start, epochs=3)  # the first iteration finishes start's epoch
    assert resumed == straight[start : start + len(resumed)]
    assert _global_batches(2, start=start, epochs=2) == resumed[: len(_global_batches(2, start, 2))]


def test_the_seed_and_length():
    a = GlobalBatchOrder(SIZE, BATCH, 2, 0, seed=0)
    b = GlobalBatchOrder(SIZE, BATCH, 2, 0, seed=1)
    assert len(a) == 6 * 4 and list(a) != list(b)
    with pytest.raises(ValueError, match="data.batch_size=64 is larger than the 50"):
        GlobalBatchOrder(SIZE, 64, 1, 0, seed=0)
    with pytest.raises(ValueError, match="divisible by the world size"):
        GlobalBatchOrder(SIZE, BATCH, 3, 0, seed=0)
