"""Time-conditioned MLPs (residual and plain) for 1-D and 2-D data, conditioned on continuous log-SNR.

Both take `dim` as an int or a data shape ([d] or [C, H, W]); inputs of several dimensions are
flattened and the output is shaped back like the input.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class LogSNREmbedding(nn.Module):
    """Sinusoidal features of a continuous log-SNR followed by a small MLP.

    Periods run geometrically from `max_period` (longer than the whole log-SNR range, so the
    embedding is one-to-one) down to `min_period` (fine enough to tell nearby levels apart). No
    rounding to a timestep grid: off-grid levels get their own embedding.
    """

    def __init__(self, dim: int, num_freqs: int = 16, max_period: float = 64.0, min_period: float = 0.5):
        super().__init__()
        periods = torch.logspace(math.log10(max_period), math.log10(min_period), num_freqs)
        self.register_buffer("freqs", 2 * math.pi / periods, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, logsnr: Tensor) -> Tensor:
        phase = logsnr.float()[:, None] * self.freqs
        return self.mlp(torch.cat([phase.sin(), phase.cos()], dim=1))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.mlp(torch.nn.functional.silu(self.norm(h) + self.emb(emb)))


class ResidualMLP(nn.Module):
    """Input projection, `blocks` residual blocks of `width` units with the log-SNR embedding added
    in every block, and a zero-initialised output layer (so training starts from eps_hat = 0).

    `input_freqs` > 0 adds sin/cos features of each input coordinate at periods 8, 4, 2, ...
    (input_freqs of them): near clean data the optimal noise prediction is steep in z, and these
    features let a small MLP fit that in far fewer steps.
    """

    def __init__(
        self,
        dim: int | Sequence[int],
        width: int = 128,
        blocks: int = 2,
        num_freqs: int = 16,
        input_freqs: int = 0,
    ):
        super().__init__()
        dim = _flat_dim(dim)
        if dim < 1 or width < 1 or blocks < 0 or input_freqs < 0:
            raise ValueError(
                "ResidualMLP needs dim >= 1, width >= 1, blocks >= 0, input_freqs >= 0; "
                f"got {dim}, {width}, {blocks}, {input_freqs}."
            )
        self.embed = LogSNREmbedding(width, num_freqs)
        self.register_buffer(
            "input_freqs", 2 * math.pi * 2.0 ** torch.arange(input_freqs) / 8, persistent=False
        )
        self.inp = nn.Linear(dim * (1 + 2 * input_freqs), width)
        self.blocks = nn.ModuleList(_ResidualBlock(width) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, z: Tensor, logsnr: Tensor) -> Tensor:
        shape, z = z.shape, z.flatten(1)
        emb = self.embed(logsnr)
        if len(self.input_freqs):
            phase = (z[..., None] * self.input_freqs).flatten(1)
            z = torch.cat([z, phase.sin(), phase.cos()], dim=1)
        h = self.inp(z) + emb
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).view(shape)


class MLP(nn.Module):
    """A plain MLP: [z, log-SNR embedding] -> `blocks` hidden layers of `width` SiLU units -> eps_hat.

    No residual connections or normalisation (the baseline the residual MLP is compared with); the
    output layer starts at zero like the other nets.
    """

    def __init__(self, dim: int | Sequence[int], width: int = 256, blocks: int = 3, num_freqs: int = 16):
        super().__init__()
        dim = _flat_dim(dim)
        if dim < 1 or width < 1 or blocks < 1:
            raise ValueError(f"MLP needs dim >= 1, width >= 1, blocks >= 1; got {dim}, {width}, {blocks}.")
        self.embed = LogSNREmbedding(width, num_freqs)
        layers = [nn.Linear(dim + width, width), nn.SiLU()]
        for _ in range(blocks - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.mlp = nn.Sequential(*layers, _zero_linear(width, dim))

    def forward(self, z: Tensor, logsnr: Tensor) -> Tensor:
        return self.mlp(torch.cat([z.flatten(1), self.embed(logsnr)], dim=1)).view(z.shape)


def _flat_dim(dim: int | Sequence[int]) -> int:
    return dim if isinstance(dim, int) else math.prod(dim)


def _zero_linear(width: int, dim: int) -> nn.Linear:
    layer = nn.Linear(width, dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
