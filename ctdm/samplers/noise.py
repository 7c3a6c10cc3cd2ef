"""Per-sample noise from a counter-based generator: draw j of sample i is a pure function of (seeds[i], j).

Every sampler numbers its standard normal draws per sample: draw 0 is the prior's, draw k+1 the noise
of step k. Draw (seed, j) is computed on its own by Philox4x32-10 (Salmon et al. 2011, the generator
of cuRAND and JAX) keyed by the seed with counter (element block, j, 0, 0), then Box-Muller in
float64. So a sample does not depend on the batch it is in, the number of ranks, how its trajectory
is solved or which draws were made before (the parallel solver draws a step's noise only when the
step enters its window), and the values are the same on every device: integer arithmetic is exact,
and float64 rounding differences vanish in the cast to float32.
"""

import math

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
PHILOX_KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
BLOCKS_PER_CHUNK = 1 << 18  # Philox blocks computed at once: bounds its temporaries to ~30 MB


def _mulhilo(multiplier: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """(high, low) 32-bit halves of multiplier * x for x in [0, 2^32), in int64 without overflow."""
    t = x * (multiplier >> 16)  # < 2^48
    u = ((t & 0xFFFF) << 16) + x * (multiplier & 0xFFFF)  # < 2^32 + 2^48
    return (t >> 16) + (u >> 32), u & MASK32


def philox4x32(counter: tuple[Tensor, ...], key: tuple[Tensor, Tensor], rounds: int = 10) -> list[Tensor]:
    """Philox4x32-`rounds` of 32-bit words held in int64 tensors (broadcast together): four words out."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_KEY_STEPS[0]) & MASK32, (k1 + PHILOX_KEY_STEPS[1]) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_MULTIPLIERS[0], c0)
        hi1, lo1 = _mulhilo(PHILOX_MULTIPLIERS[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


def _box_muller(words: list[Tensor]) -> Tensor:
    """Four uniform 32-bit words [..] -> four standard normals [.., 4] (float64)."""
    u = [(w.double() + 0.5) * 2.0**-32 for w in words]  # in (0, 1)
    r01, r23 = (-2 * u[0].log()).sqrt(), (-2 * u[2].log()).sqrt()
    t1, t3 = 2 * math.pi * u[1], 2 * math.pi * u[3]
    return torch.stack([r01 * t1.cos(), r01 * t1.sin(), r23 * t3.cos(), r23 * t3.sin()], -1)


def per_sample_normal(
    seeds: Tensor | list[int] | int,
    index: Tensor | list[int] | int,
    shape: tuple[int, ...],
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws [*batch, *shape], batch = the broadcast shape of `seeds` and `index`:
    entry [b] is draw number index[b] of the sample seeded with seeds[b].

    E.g. seeds [N] and index 0: every sample's prior draw; seeds [N, 1] and index [1, J]: J draws of
    each sample; seeds [R] and index [R]: one (sample, draw) pair per row. Seeds are 64-bit integers
    (the Philox key), indices integers in [0, 2^32).
    """
    seeds = torch.as_tensor(seeds, dtype=torch.long, device=device)
    index = torch.as_tensor(index, dtype=torch.long, device=seeds.device)
    if (index < 0).any() or (index > MASK32).any():
        raise ValueError(
            "index must hold draw numbers in [0, 2^32), got values from "
            f"{int(index.min())} to {int(index.max())}."
        )
    seeds, index = torch.broadcast_tensors(seeds, index)
    batch, numel = seeds.shape, math.prod(shape)
    seeds, index = seeds.reshape(-1, 1), index.reshape(-1, 1)
    n_blocks = -(-numel // 4)  # each Philox block gives four normals
    blocks = torch.arange(n_blocks, device=seeds.device)
    out = torch.empty(len(seeds), n_blocks * 4, dtype=dtype, device=seeds.device)
    rows_per_chunk = max(1, BLOCKS_PER_CHUNK // max(n_blocks, 1))
    zero = torch.zeros((), dtype=torch.long, device=seeds.device)
    for first in range(0, len(seeds), rows_per_chunk):
        rows = slice(first, first + rows_per_chunk)
        key = (seeds[rows] & MASK32, (seeds[rows] >> 32) & MASK32)
        c0, c1 = torch.broadcast_tensors(blocks, index[rows])
        normals = _box_muller(philox4x32((c0, c1, zero, zero), key))  # [rows, blocks, 4]
        out[rows] = normals.flatten(1)
    return out[:, :numel].reshape(*batch, *shape)
