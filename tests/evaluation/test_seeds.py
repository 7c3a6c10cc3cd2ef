"""Which samples a rank draws: the per-sample seed rule, contiguous shares that cover every index once,
and gathering the shares back in index order."""

import pytest
import torch
from threaded_ranks import ThreadedRanks

from ctdm.evaluation import Ranks, rank_share, sample_seeds


def test_sample_seed_rule():
    assert sample_seeds(3, [0, 1, 7]).tolist() == [3 << 32, (3 << 32) + 1, (3 << 32) + 7]
    assert sample_seeds(0, range(4)).dtype == torch.long
    assert sample_seeds(5, []).shape == (0,)


@pytest.mark.parametrize("num_samples", [0, 1, 7, 15, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shares_are_contiguous_and_cover_every_index_once(num_samples, world):
    shares = [rank_share(num_samples, rank, world) for rank in range(world)]
    assert [i for share in shares for i in share] == list(range(num_samples))
    assert all(len(s) <= -(-num_samples // world) for s in shares)


@pytest.mark.parametrize("world", [2, 3])
def test_gather_puts_the_shares_back_in_index_order(world):
    rows = torch.arange(14.0)[:, None].repeat(1, 2)

    def gather(ranks: Ranks):
        share = ranks.share(len(rows))
        return ranks.gather(rows[share.start : share.stop], len(rows))

    for gathered in ThreadedRanks(world).run(gather):
        torch.testing.assert_close(gathered, rows, rtol=0, atol=0)
    assert Ranks().gather(rows, len(rows)) is rows  # one process: nothing to gather
