"""Scorers chosen by the data: MMD against held-out points for low-dimensional data, FID and KID for
images. Each has the metric interface `reset()`, `update(samples)` (any number of times, so samples can
come in chunks), `compute()` -> {metric: value, "num_samples": n}, and says how it meets DDP:

- `per_rank = False` (MMD): update with every rank's samples, gathered in index order;
- `per_rank = True` (FID/KID): update with this rank's share; `compute()` syncs the states (collective).

`pass_score` is (name, score(samples)) for scorers cheap enough to follow every Picard pass, else None.
"""

from pathlib import Path

import torch
from torch import Tensor

from ctdm.data.images import to_model_range
from ctdm.evaluation.seeds import ONE_PROCESS, Ranks
from ctdm.metrics import ImageMetrics, mmd2, real_stats_file


class MMDScorer:
    """Unbiased squared MMD (ctdm.metrics.mmd2: Gaussian kernel, `bandwidth` in `units`) against the
    held-out points `reference`."""

    name = "mmd"
    per_rank = False

    def __init__(self, reference: Tensor, bandwidth: float | str = 0.1, units: str = "sigma"):
        self.reference, self.bandwidth, self.units = reference, bandwidth, units
        self.pass_score = (self.name, self.score)
        self.reset()

    def score(self, samples: Tensor) -> float:
        return float(mmd2(samples, self.reference, self.bandwidth, self.units))

    def reset(self) -> None:
        self._parts: list[Tensor] = []

    def update(self, samples: Tensor, indices: Tensor | None = None) -> None:
        """Samples of any chunk, in any order. They are kept (d numbers each: low-dimensional data), since
        the unbiased MMD pairs every sample with every other; the kernel is summed in blocks (mmd2)."""
        self._parts.append(samples.detach().to("cpu", torch.float64))

    def compute(self) -> dict[str, float]:
        samples = torch.cat(self._parts)
        return {"mmd": self.score(samples), "num_samples": len(samples)}

    def baselines(self, num_samples: int, seed: int) -> dict[str, float]:
        """The trivial baseline: as many standard-normal points, scored the same way."""
        shape = self.reference.shape[1:]
        normal = torch.randn(num_samples, *shape, generator=torch.Generator().manual_seed(seed))
        return {"normal_mmd": self.score(normal)}


class ImageScorer:
    """FID and KID (ctdm.metrics.ImageMetrics, its real side already in place) of each rank's share,
    fed to the feature network `batch_size` images at a time."""

    name = "fid"
    per_rank = True
    pass_score = None  # a feature network per pass would cost more than the sampling

    def __init__(self, metrics: ImageMetrics, batch_size: int = 64):
        self.metrics, self.batch_size = metrics, batch_size

    def reset(self) -> None:
        self.metrics.reset()

    def update(self, samples: Tensor, indices: Tensor | None = None) -> None:
        """This rank's samples of a chunk (and their sample indices: which ones KID keeps past
        eval.fid.kid_max_samples); FID and KID hold sums and a bounded subset, not the samples."""
        parts = indices.split(self.batch_size) if indices is not None else [None] * len(samples)
        for part, index in zip(samples.split(self.batch_size), parts, strict=False):
            self.metrics.update_fake(part, index)

    def compute(self) -> dict[str, float]:
        scores = self.metrics.compute()  # collective: every rank, the same numbers
        with self.metrics.fid.sync_context(should_unsync=True):  # the count over all ranks
            scores["num_samples"] = int(self.metrics.fid.fake_features_num_samples)
        return scores

    def baselines(self, num_samples: int, seed: int) -> dict[str, float]:
        return {}


def data_name(datamodule) -> str:
    """The data set's name in FID cache files: its DataModule's (cifar10, digits, ...); an image folder's
    also carries the folder's name, since different folders are different sets."""
    name = type(datamodule).__name__.removesuffix("DataModule").lower()
    root = getattr(datamodule, "root", None)
    if root is not None and name == "imagefolder":
        name += "-" + Path(str(root)).name
    return name


def image_scorer(
    datamodule,
    extractor: torch.nn.Module | str | None = None,
    *,
    ref_stats: str | None = None,
    cache_dir: str | None = None,
    real_count: int | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    kid_max_samples: int | None = 10_000,
    batch_size: int = 64,
    ranks: Ranks = ONE_PROCESS,
    device: torch.device | str = "cpu",
) -> ImageScorer:
    """FID/KID against `ref_stats` (an npz of mu, sigma: FID only), or the training images of `datamodule`
    (a seeded subset of `real_count`, the same on every rank), their features cached under `cache_dir`
    or computed now (each rank its share) and then cached."""
    metrics = ImageMetrics(
        extractor if extractor is not None else "inception",
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
        kid_max_samples=kid_max_samples,
    ).to(device)
    if ref_stats:
        metrics.load_ref_stats(ref_stats)
        return ImageScorer(metrics, batch_size)
    images = datamodule.images_train
    if real_count is not None and real_count < len(images):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        images = images[order[:real_count]]
    cache = None
    if cache_dir:
        resolution = list(datamodule.shape[1:])
        cache = real_stats_file(
            cache_dir, data_name(datamodule), "train", resolution, metrics.name, len(images)
        )
    mine = ranks.share(len(images))
    share = images[mine.start : mine.stop]
    batches = (
        to_model_range(share[i : i + batch_size], datamodule.max_value).to(device)
        for i in range(0, len(share), batch_size)
    )
    metrics.load_or_compute_real(batches, cache)
    return ImageScorer(metrics, batch_size)


def is_image_data(datamodule) -> bool:
    """Image data ([N, C, H, W] held-out points) are scored by FID/KID: MMD measures nothing in 64+
    dimensions."""
    return datamodule.x_val.dim() == 4


def scorer_for(
    datamodule, *, mmd_bandwidth: float | str = 0.1, mmd_units: str = "sigma", **image_options
) -> MMDScorer | ImageScorer:
    """The data's scorer: FID/KID for images (`image_options`: image_scorer's), MMD against the held-out
    points otherwise."""
    if is_image_data(datamodule):
        return image_scorer(datamodule, **image_options)
    return MMDScorer(datamodule.x_val, mmd_bandwidth, mmd_units)
