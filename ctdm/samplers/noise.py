"""Per-sample noise: sample i draws from its own generator, so it does not depend on the batch it
is in, the number of ranks, or how the trajectory is solved (as NVlabs/edm does)."""

import torch
from torch import Tensor


def per_sample_normal(seeds: Tensor | list[int], shape: tuple[int, ...], device=None) -> Tensor:
    """Standard normal noise [len(seeds), *shape]; row i comes from a generator seeded with seeds[i].

    One generator call per sample (not per element or step): draw everything a sample needs at once.
    """
    seeds = torch.as_tensor(seeds).tolist()
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows).to(device)
