"""Counter-based per-sample noise: Philox4x32-10 against its published answers, draws as pure functions
of (seed, draw index), standard normal statistics, and the sequential loop's chunked draws."""

import math
import re

import pytest
import torch

from ctdm.data.toy import eight_gaussians
from ctdm.samplers import DDPMSampler, base, noise, per_sample_normal
from ctdm.samplers.noise import philox4x32

# Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors): (counter, key, output).
PHILOX_KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


def test_philox_matches_the_published_answers():
    counters = [torch.tensor([c[i] for c, _, _ in PHILOX_KAT]) for i in range(4)]
    keys = [torch.tensor([k[i] for _, k, _ in PHILOX_KAT]) for i in range(2)]
    words = torch.stack(philox4x32(counters, keys), 1)
    assert words.tolist() == [want for _, _, want in PHILOX_KAT]


def test_a_draw_is_a_function_of_its_seed_and_index_alone():
    seeds, index = torch.tensor([5, 9, 2**40 + 5]), torch.tensor([0, 3, 7, 1000])
    grid = per_sample_normal(seeds[:, None], index[None, :], (3, 2))  # [3, 4, 3, 2]
    assert grid.shape == (3, 4, 3, 2)
    for i, seed in enumerate(seeds.tolist()):
        for j, draw in enumerate(index.tolist()):
            torch.testing.assert_close(grid[i, j], per_sample_normal(seed, draw, (3, 2)), rtol=0, atol=0)
    # Any order, any batch: the rows are the same.
    flipped = per_sample_normal(seeds.flip(0), 7, (3, 2))
    torch.testing.assert_close(flipped, grid[:, 2].flip(0), rtol=0, atol=0)
    # Seeds differing only in their high 32 bits, and neighbouring draws, differ.
    assert not torch.allclose(grid[0], grid[2]) and not torch.allclose(grid[0, 0], grid[0, 1])


def test_draws_are_standard_normal():
    x = per_sample_normal(torch.arange(50)[:, None], torch.arange(200)[None, :], (5,)).flatten().double()
    n = len(x)  # 50,000
    assert abs(float(x.mean())) < 5 / math.sqrt(n)
    assert abs(float(x.var()) - 1) < 5 * math.sqrt(2 / n)
    # Kolmogorov-Smirnov distance to the normal CDF (the 0.1% critical value is 1.95 / sqrt(n)).
    cdf = 0.5 * (1 + torch.erf(x.sort().values / math.sqrt(2)))
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((cdf - grid).abs().max()) < 1.95 / math.sqrt(n)
    # Neighbouring elements, draws and seeds are uncorrelated.
    y = per_sample_normal(torch.arange(2000)[:, None], torch.arange(2)[None, :], (2,)).double()
    for a, b in ((y[:, 0, 0], y[:, 0, 1]), (y[:, 0, 0], y[:, 1, 0]), (y[:-1, 0, 0], y[1:, 0, 0])):
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 4 / math.sqrt(2000)


def test_chunked_computation_gives_the_same_draws(monkeypatch):
    seeds, index = torch.arange(7)[:, None], torch.arange(5)[None, :]
    whole = per_sample_normal(seeds, index, (3, 5))
    monkeypatch.setattr(noise, "BLOCKS_PER_CHUNK", 3)
    torch.testing.assert_close(per_sample_normal(seeds, index, (3, 5)), whole, rtol=0, atol=0)


def test_the_sequential_loop_draws_the_same_noise_in_any_chunk_of_steps(monkeypatch):
    law, sampler = eight_gaussians(), DDPMSampler(steps=30)
    whole, _ = sampler(law.eps, (2,), torch.arange(6))
    monkeypatch.setattr(base, "NOISE_CHUNK_ELEMENTS", 6 * 2 * 7)  # 7 steps a chunk, the last one short
    torch.testing.assert_close(sampler(law.eps, (2,), torch.arange(6))[0], whole, rtol=0, atol=0)


@pytest.mark.parametrize("index", [-1, 2**32])
def test_a_bad_draw_index_is_refused(index):
    with pytest.raises(ValueError, match=re.escape("index must hold draw numbers in [0, 2^32)")):
        per_sample_normal([1, 2], torch.tensor([0, index]), (2,))
