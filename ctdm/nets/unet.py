"""A DDPM-style UNet (Ho et al. 2020) conditioned on continuous log-SNR.

Levels of residual blocks at resolutions H, H/2, ... (channel multipliers `mult`), self-attention at
`attn_resolutions` and in the middle, GroupNorm + SiLU, dropout in every residual block, skip
connections from each down block to its up block. With width 128, mult (1, 2, 2, 2), 2 blocks,
attention at 16 and dropout 0.1 it is the DDPM CIFAR-10 network (~35.7M parameters).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctdm.nets.mlp import LogSNREmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # gcd: narrow debug nets (width 16) still get a valid group count
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Linear(emb_dim, cout)
        self.out_layers = nn.Sequential(
            _norm(cout, groups), nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(cout, cout, 3, padding=1))
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, residual, zero-initialised output projection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(-1, -2).unbind(1)  # [n, hw, c]
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """eps_hat(z [N, C, H, W], logsnr [N]) -> [N, C, H, W].

    shape: [C, H, W] of the data (H and W divisible by 2^(len(mult) - 1)).
    width: channels of the first level; level i has width * mult[i].
    blocks: residual blocks per level on the way down (one more on the way up, as in DDPM).
    attn_resolutions: resolutions (e.g. 16) whose levels get self-attention; the middle always has it.
    """

    def __init__(
        self,
        shape: list[int],
        width: int = 128,
        mult: list[int] = (1, 2, 2, 2),
        blocks: int = 2,
        attn_resolutions: list[int] = (16,),
        dropout: float = 0.1,
        num_freqs: int = 64,
        norm_groups: int = 32,
    ):
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"UNet needs image data of shape [C, H, W]; got data.shape={list(shape)}.")
        channels, height, w = shape
        factor = 2 ** (len(mult) - 1)
        if height % factor or w % factor:
            raise ValueError(
                f"UNet with mult={list(mult)} halves the resolution {len(mult) - 1} times, so height and "
                f"width must be divisible by {factor}; data.shape={list(shape)}. Use fewer levels."
            )
        resolutions = [height // 2**i for i in range(len(mult))]
        unknown = set(attn_resolutions) - set(resolutions)
        if unknown:
            raise ValueError(
                f"attn_resolutions={list(attn_resolutions)}: {sorted(unknown)} not among this UNet's "
                f"resolutions {resolutions} for data.shape={list(shape)}."
            )
        if width < 1 or blocks < 1 or not 0 <= dropout < 1:
            raise ValueError(
                f"UNet needs width >= 1, blocks >= 1, 0 <= dropout < 1; got {width}, {blocks}, {dropout}."
            )
        self.shape = tuple(shape)
        emb_dim = 4 * width
        self.embed = LogSNREmbedding(emb_dim, num_freqs)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)

        def res(cin, cout):
            return ResBlock(cin, cout, emb_dim, dropout, norm_groups)

        # Down: each entry is a block list (res [+ attn]) or a downsampling conv; skips[i] = its width.
        self.down = nn.ModuleList()
        skips, ch = [width], width
        for level, m in enumerate(mult):
            for _ in range(blocks):
                attn = resolutions[level] in attn_resolutions
                self.down.append(
                    nn.ModuleList(
                        [res(ch, width * m)] + ([AttnBlock(width * m, norm_groups)] if attn else [])
                    )
                )
                ch = width * m
                skips.append(ch)
            if level < len(mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([res(ch, ch), AttnBlock(ch, norm_groups), res(ch, ch)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for _ in range(blocks + 1):
                attn = resolutions[level] in attn_resolutions
                self.up.append(
                    nn.ModuleList(
                        [res(ch + skips.pop(), width * m)]
                        + ([AttnBlock(width * m, norm_groups)] if attn else [])
                    )
                )
                ch = width * m
            if level > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)
                    )
                )
        self.out = nn.Sequential(
            _norm(ch, norm_groups), nn.SiLU(), _zero(nn.Conv2d(ch, channels, 3, padding=1))
        )

    def forward(self, z: Tensor, logsnr: Tensor) -> Tensor:
        emb = self.embed(logsnr)
        h = self.conv_in(z)
        hs = [h]
        for layer in self.down:
            h = self._run(layer, h, emb)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(layer, h, emb)
        return self.out(h)

    @staticmethod
    def _run(layer: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        if not isinstance(layer, nn.ModuleList):  # a down- or upsampling step
            return layer(h)
        h = layer[0](h, emb)
        return layer[1](h) if len(layer) > 1 else h
