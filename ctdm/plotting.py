"""Pictures of samples: scatter plots over the data for 2-D, histograms for 1-D."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_samples(samples: Tensor, data: Tensor, path: str | Path, title: str = "") -> Path | None:
    """Save samples drawn over reference data; returns the path, or None for data that isn't 1-D/2-D."""
    samples, data = samples.detach().cpu().flatten(1), data.detach().cpu().flatten(1)
    if samples.shape[1] not in (1, 2):
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
