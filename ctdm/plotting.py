"""Pictures: samples over the data (scatter plots for 2-D, histograms for 1-D, grids for images) and a
parallel sampler's score after each pass. Every figure of ctdm is drawn with this module's `plt`
(matplotlib's non-interactive Agg backend, set once here) and written by `save_figure`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:  # reports that only read files (ctdm.compare) plot without importing torch
    from torch import Tensor

__all__ = ["image_grid", "plot_pass_curve", "plot_samples", "plt", "save_figure"]


def save_figure(fig, path: str | Path, dpi: float | None = None) -> Path:
    """Write `fig` to `path` (making its folder), tightly laid out, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_samples(samples: Tensor, data: Tensor, path: str | Path, title: str = "") -> Path | None:
    """Save samples drawn over reference data; returns the path, or None for data that is neither
    1-D/2-D points nor images.

    Image batches [N, C, H, W] (C = 1 or 3, values in [-1, 1]) give two grids side by side: up to 64
    samples and up to 64 held-out images.
    """
    samples, data = samples.detach().cpu(), data.detach().cpu()
    if samples.dim() == 4 and samples.shape[1] in (1, 3):
        return _plot_image_grids(samples, data, path, title)
    samples, data = samples.flatten(1), data.flatten(1)
    if samples.shape[1] not in (1, 2):
        return None
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if samples.shape[1] == 2:
        lo = data.min(0).values - 0.5
        hi = data.max(0).values + 0.5
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.6", alpha=0.5, label=f"held-out data ({len(data)})")
        ax.scatter(
            samples[:, 0], samples[:, 1], s=2, c="tab:blue", alpha=0.6, label=f"samples ({len(samples)})"
        )
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
    else:
        ax.hist(data[:, 0].numpy(), bins=100, density=True, color="0.6", alpha=0.6, label="held-out data")
        ax.hist(
            samples[:, 0].numpy(), bins=100, density=True, histtype="step", color="tab:blue", label="samples"
        )
    ax.legend(loc="upper right", fontsize=8, markerscale=4)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def image_grid(images: Tensor, max_images: int = 64) -> Tensor:
    """Up to `max_images` images [N, C, H, W] in [-1, 1] as one [H', W', C] grid in [0, 1], 1-pixel gaps."""
    from torchvision.utils import make_grid

    images = images[:max_images].float().clamp(-1, 1).add(1).div(2)
    nrow = math.ceil(math.sqrt(len(images)))
    return make_grid(images, nrow=nrow, padding=1, pad_value=1.0).permute(1, 2, 0)


def _plot_image_grids(samples: Tensor, data: Tensor, path: str | Path, title: str) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), dpi=100)
    for ax, images, name in ((axes[0], samples, "samples"), (axes[1], data, "held-out data")):
        grid = image_grid(images)
        ax.imshow(
            grid.numpy(),
            cmap="gray" if images.shape[1] == 1 else None,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_title(f"{name} ({min(len(images), 64)} of {len(images)})", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_pass_curve(curve: list[dict], path: str | Path, title: str, threshold, references: dict) -> Path:
    """MMD after each Picard pass (log scale), with the threshold and sequential samplers' MMD."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    passes = [c["pass"] for c in curve]
    values = [max(c["mmd"], 1e-7) for c in curve]
    ax.plot(passes, values, marker=".", label="parallel sampler after each pass")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.1e}")
    for i, (name, value) in enumerate(references.items()):
        ax.axhline(max(value, 1e-7), color=f"C{i + 2}", ls=":", lw=1.5, label=f"{name}: {value:.1e}")
    ax.set_yscale("log")
    ax.set_xlabel("Picard pass")
    ax.set_ylabel("squared MMD vs held-out data (clipped at 1e-7)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
