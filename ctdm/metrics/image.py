"""FID and KID of generated images through torchmetrics, correct under DDP, with cached real statistics.

`ImageMetrics(extractor)` runs the extractor once per image and feeds the features to torchmetrics'
FrechetInceptionDistance and KernelInceptionDistance (their states sync over DDP: every rank updates with
its share, every rank calls `compute()`, all get the same numbers). Images are ctdm's: [N, C, H, W] in
[-1, 1], C = 1 or 3, any size; the extractor does the rest (see `ctdm.metrics.features`).

The real side is kept across `reset()` (reset_real_features=False) and comes from one of:
- `update_real(x)` on each rank's share of the training images (then `real_features()` gathers them);
- `load_real(file)`: a cache written by `save_real(file)` (features, mu, sigma), keyed by `real_stats_file`;
- `load_ref_stats(file)`: an npz with only `mu` [D] and `sigma` [D, D] (EDM's reference files). FID only:
  KID needs the real features themselves, so `compute()` then returns no `kid`.
A loaded reference enters the metric state on rank 0 only (at the first update or compute, when DDP is up),
so the sum/concatenation over ranks counts it once.
"""

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd
from torchmetrics.utilities import dim_zero_cat

from ctdm.metrics import features as feature_extractors

EXTRACTORS = {
    "inception": feature_extractors.InceptionV3,
    "torchscript": feature_extractors.TorchScriptInception,
    "random": feature_extractors.RandomConvFeatures,
}


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    return torch.distributed.get_rank() if _distributed() else 0


class _Precomputed(nn.Module):
    """The 'network' handed to torchmetrics: features are already extracted."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


class _FID(FrechetInceptionDistance):
    """torchmetrics' FID, in float64, with a ValueError when a side has fewer than 2 samples."""

    def compute(self) -> Tensor:  # states are already synced over ranks here
        n_real, n_fake = int(self.real_features_num_samples), int(self.fake_features_num_samples)
        if n_real < 2 or n_fake < 2:
            raise ValueError(
                f"FID needs at least 2 real and 2 generated images (over all ranks) to estimate a "
                f"covariance, got {n_real} real and {n_fake} generated. Raise eval.num_samples (and the real "
                "count)."
            )
        self.orig_dtype = torch.float64
        return super().compute()


def sample_keys(indices: Tensor) -> Tensor:
    """A pseudo-random key per sample index (splitmix64's finaliser, in numpy's wrapping uint64): which
    samples a bounded KID keeps, the same on any number of ranks and in any chunks."""
    z = indices.cpu().numpy().astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return torch.from_numpy((z ^ (z >> np.uint64(31))) >> np.uint64(1)).to(torch.int64)


class _KID(KernelInceptionDistance):
    """torchmetrics' KID (unbiased polynomial-kernel MMD^2 over random subsets), computed in float64 with
    seeded subsets whose size is clipped to the sample count, so small counts work and ranks agree.

    The generated side keeps at most `max_samples` features: a uniform random subset of the samples
    (those with the smallest `sample_keys` of their indices), so memory does not grow with the sample
    count. Every KID subset is still a uniform random subset of all the samples (so KID's expectation is
    unchanged); with more samples than `max_samples` the subsets only overlap more. With fewer, nothing
    changes. The states are concatenated over ranks (dist_reduce_fx="cat"): one all-gather per state, so
    ranks with different numbers of updates cannot deadlock.
    """

    def __init__(self, num_features: int, seed: int = 0, max_samples: int | None = 10_000, **kwargs):
        with warnings.catch_warnings():  # "KID keeps all features in memory": bounded by max_samples
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(feature=_Precomputed(num_features), reset_real_features=False, **kwargs)
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)):
            raise ValueError(f"kid_max_samples must be null or an integer >= 2, got {max_samples!r}.")
        if max_samples is not None and max_samples < 2:
            raise ValueError(f"kid_max_samples must be null or an integer >= 2, got {max_samples!r}.")
        self.num_features, self.seed, self.max_samples = num_features, seed, max_samples
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")
        self.add_state("fake_index", [], dist_reduce_fx="cat")
        self._add_empty()
        self._next_index = 0  # sample indices when update_fake is given none (this rank's count)

    def _add_empty(self):
        # A [0, D] entry: a rank without images still gathers a 2-D tensor (torchmetrics needs equal ndim).
        for state in (self.real_features, self.fake_features):
            if not state:
                state.append(torch.zeros(0, self.num_features, device=self.device))
        if not self.fake_index:
            self.fake_index.append(torch.zeros(0, dtype=torch.long, device=self.device))

    def reset(self) -> None:
        super().reset()
        self._add_empty()
        self._next_index = 0

    def update_fake(self, features: Tensor, indices: Tensor | None = None) -> None:
        if indices is None:
            indices = torch.arange(self._next_index, self._next_index + len(features))
        self._next_index = int(indices.max()) + 1 if len(indices) else self._next_index
        self.update(features, real=False)
        self.fake_index.append(indices.to(self.device, torch.long))
        if self.max_samples is not None and sum(len(f) for f in self.fake_features) > 2 * self.max_samples:
            features, index = self._bounded(dim_zero_cat(self.fake_features), dim_zero_cat(self.fake_index))
            self.fake_features[:], self.fake_index[:] = [features], [index]

    def _bounded(self, features: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """The max_samples rows with the smallest keys, in index order."""
        if self.max_samples is None or len(index) <= self.max_samples:
            return features, index
        keep = sample_keys(index).topk(self.max_samples, largest=False).indices.to(index.device)
        keep = keep[index[keep].argsort()]
        return features[keep], index[keep]

    def compute(self) -> tuple[Tensor, Tensor]:
        real = dim_zero_cat(self.real_features).double()
        fake, index = self._bounded(dim_zero_cat(self.fake_features), dim_zero_cat(self.fake_index))
        fake = fake[index.argsort()].double()  # index order, whatever the ranks and chunks
        if len(real) < 2 or len(fake) < 2:
            raise ValueError(
                f"KID needs at least 2 real and 2 generated images (over all ranks), got {len(real)} real "
                f"and {len(fake)} generated."
            )
        size = min(self.subset_size, len(real), len(fake))
        # Whole sets on both sides: every subset is a permutation and the unbiased MMD^2 is the same.
        subsets = 1 if size == len(real) == len(fake) else self.subsets
        g = torch.Generator().manual_seed(self.seed)
        scores = torch.stack(
            [
                poly_mmd(
                    real[torch.randperm(len(real), generator=g)[:size].to(real.device)],
                    fake[torch.randperm(len(fake), generator=g)[:size].to(fake.device)],
                    self.degree,
                    self.gamma,
                    self.coef,
                )
                for _ in range(subsets)
            ]
        )
        return scores.mean(), scores.std(unbiased=False)


def build_extractor(extractor: nn.Module | str) -> nn.Module:
    """An extractor module as is, or one of EXTRACTORS by name (default arguments)."""
    if isinstance(extractor, str):
        if extractor not in EXTRACTORS:
            raise ValueError(
                f"Unknown FID feature extractor {extractor!r}. Use one of {sorted(EXTRACTORS)} or a module "
                "with `num_features` and `name` (in a config: eval.fid.extractor._target_=<class>, e.g. "
                "ctdm.metrics.features.InceptionV3, TorchScriptInception or RandomConvFeatures)."
            )
        return EXTRACTORS[extractor]()
    if not (
        isinstance(extractor, nn.Module) and hasattr(extractor, "num_features") and hasattr(extractor, "name")
    ):
        raise ValueError(
            f"FID feature extractor must be an nn.Module with `num_features` and `name` attributes (or one "
            f"of {sorted(EXTRACTORS)}), got {type(extractor).__name__}."
        )
    return extractor


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-")


def real_stats_file(
    cache_dir: str | Path, dataset: str, split: str, resolution, extractor: str, count: int
) -> Path:
    """Cache file of real features: every field that changes them is in the name."""
    if isinstance(resolution, list | tuple):
        resolution = "x".join(str(r) for r in resolution)
    fields = [dataset, split, f"{resolution}px", extractor, f"n{count}"]
    return Path(cache_dir) / ("_".join(_slug(f) for f in fields) + ".npz")


def load_ref_stats(path: str | Path, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """`mu` [D] and `sigma` [D, D] from an npz (EDM's reference files), checked against the extractor's D."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"eval.fid.ref_stats={str(path)!r} is not a file (an .npz with mu and sigma).")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as err:  # not an npz at all
        raise ValueError(f"eval.fid.ref_stats={str(path)!r} is not a readable .npz file ({err}).") from err
    expected = {"mu": (num_features,), "sigma": (num_features, num_features)}
    for key, shape in expected.items():
        if key not in arrays:
            raise ValueError(
                f"Reference statistics {path} have no key {key!r} (found {sorted(arrays)}); expected mu of "
                f"shape {expected['mu']} and sigma of shape {expected['sigma']} for this extractor."
            )
        if arrays[key].shape != shape:
            raise ValueError(
                f"Reference statistics {path}: {key!r} has shape {arrays[key].shape}, expected {shape} "
                f"(the extractor gives {num_features} features)."
            )
        if not np.isfinite(arrays[key]).all():
            raise ValueError(f"Reference statistics {path}: {key!r} has non-finite values.")
    return arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)


class ImageMetrics(nn.Module):
    """FID and KID of generated images against a real reference; see the module docstring.

    Args:
        extractor: a feature module (`ctdm.metrics.features`, built by Hydra `_target_`) or a name.
        kid_subset_size: KID subset size (torch-fidelity's 1000), clipped to the sample counts.
        kid_subsets: number of KID subsets (100); one when both sets are whole subsets.
        kid_max_samples: generated features KID keeps (a seeded uniform subset beyond it; see _KID).
        seed: seed of the KID subsets, so every rank and every run draws the same ones.
    """

    def __init__(
        self,
        extractor: nn.Module | str = "inception",
        kid_subset_size: int = 1000,
        kid_subsets: int = 100,
        seed: int = 0,
        kid_max_samples: int | None = 10_000,
    ):
        super().__init__()
        self.extractor = build_extractor(extractor).eval().requires_grad_(False)
        dim = self.extractor.num_features
        self.fid = _FID(feature=_Precomputed(dim), reset_real_features=False)
        self.kid = _KID(
            dim, seed=seed, max_samples=kid_max_samples, subset_size=kid_subset_size, subsets=kid_subsets
        )
        self.kid_enabled = True
        self._pending = None  # a loaded reference not yet in the metric state (see _put_reference)

    @property
    def name(self) -> str:
        return self.extractor.name

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Extractor features [N, D] of images [N, C, H, W] in [-1, 1]."""
        if not (isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] in (1, 3)):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Images must be a tensor [N, C, H, W] with C = 1 or 3 in [-1, 1], got {shape}.")
        return self.extractor(x.to(self.kid.device)).float()

    def _put_reference(self):
        """Move a loaded reference into the metric state, on rank 0 only (DDP sums/concatenates states)."""
        if self._pending is None:
            return
        kind, value = self._pending
        self._pending = None
        if _rank() != 0:
            return
        if kind == "features":
            self.fid.update(value, real=True)
            self.kid.update(value, real=True)
        else:  # mu, sigma: set FID's sums so that its mean and covariance come out as given (n = 2)
            mu, sigma = (torch.as_tensor(a, dtype=torch.float64, device=self.fid.device) for a in value)
            self.fid.real_features_num_samples += 2
            self.fid.real_features_sum += 2 * mu
            self.fid.real_features_cov_sum += sigma + 2 * torch.outer(mu, mu)

    def update_real(self, x: Tensor) -> None:
        self._put_reference()
        f = self.features(x)
        self.fid.update(f, real=True)
        if self.kid_enabled:
            self.kid.update(f, real=True)

    def update_fake(self, x: Tensor, indices: Tensor | None = None) -> None:
        """Generated images [N, C, H, W]; `indices` [N]: their sample indices (which ones a bounded KID
        keeps; default: counted from 0 on this rank)."""
        self._put_reference()
        f = self.features(x)
        self.fid.update(f, real=False)
        self.kid.update_fake(f, indices)

    def compute(self) -> dict[str, float]:
        """{"fid", "kid", "kid_std"} (no KID with ref_stats). Collective under DDP: call it on every rank."""
        self._put_reference()
        out = {"fid": float(self.fid.compute())}
        if self.kid_enabled:
            kid, kid_std = self.kid.compute()
            out.update(kid=float(kid), kid_std=float(kid_std))
        return out

    def reset(self) -> None:
        """Forget the generated images; keep the real side."""
        self.fid.reset()
        self.kid.reset()

    def real_features(self) -> Tensor:
        """All real features [N, D], gathered over ranks (collective under DDP)."""
        self._put_reference()
        with self.kid.sync_context(should_unsync=True):
            return dim_zero_cat(self.kid.real_features).clone()

    def save_real(self, path: str | Path) -> None:
        """Write the real features (and their mu, sigma) atomically; call on every rank, rank 0 writes."""
        f = self.real_features().double().cpu()
        if _rank() == 0:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            sigma = (
                torch.cov(f.T) if len(f) > 1 else torch.full((f.shape[1],) * 2, float("nan"), dtype=f.dtype)
            )
            np.savez(
                tmp,
                features=f.float().numpy(),
                mu=f.mean(0).numpy(),
                sigma=sigma.numpy(),
                extractor=self.name,
            )
            tmp.replace(path)
        if _distributed():  # the file exists for every rank once this returns
            torch.distributed.barrier()

    def load_real(self, path: str | Path) -> None:
        """Use the real features cached in `path` (a `save_real` file) as the reference."""
        path = Path(path)
        try:
            with np.load(path) as data:
                if "features" not in data.files:
                    raise ValueError(
                        f"Real-feature cache {path} has no 'features' array (found {data.files})."
                    )
                f = torch.from_numpy(data["features"]).float()
        except (OSError, EOFError, KeyError, ValueError) as err:  # truncated, or not an npz at all
            if str(path) in str(err):
                raise
            raise ValueError(
                f"Real-feature cache {path} is not readable ({type(err).__name__}: {err}); it is a cache "
                "(eval.fid.cache_dir): delete it and the features are computed again."
            ) from None
        if f.ndim != 2 or f.shape[1] != self.extractor.num_features:
            raise ValueError(
                f"Real-feature cache {path}: 'features' has shape {tuple(f.shape)}, expected "
                f"[N, {self.extractor.num_features}] for extractor {self.name}."
            )
        self._pending = ("features", f.to(self.kid.device))

    def load_ref_stats(self, path: str | Path) -> None:
        """Use EDM-style reference statistics (mu, sigma) for FID; KID is then not computed."""
        self._pending = ("stats", load_ref_stats(path, self.extractor.num_features))
        self.kid_enabled = False

    def load_or_compute_real(self, images: Iterable[Tensor], cache_file: str | Path | None = None) -> bool:
        """Real features from `cache_file` if it exists, else from `images` (this rank's share) and then
        cached there. Returns whether the cache was used. Collective under DDP when computing."""
        if cache_file is not None and Path(cache_file).is_file():
            self.load_real(cache_file)
            return True
        for x in images:
            self.update_real(x)
        if cache_file is not None:
            self.save_real(cache_file)
        return False
