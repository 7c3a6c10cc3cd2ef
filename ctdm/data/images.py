"""Image sets scaled to [-1, 1]: scikit-learn digits, MNIST, CIFAR-10 and folders of images.

Each DataModule loads its images once as an integer tensor [N, C, H, W] (uint8 for photos) and serves
whole batches with one index operation; the optional horizontal flip is drawn per sample, vectorised.
Held-out images (`x_val`, also the evaluation reference) are a seeded subset of `val_size` images of
the test split (MNIST, CIFAR-10) or of images held out from the set (digits, image folders).
"""

import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import CIFAR10, MNIST

from ctdm.data.datamodule import BatchedDataModule, _TensorRows
from ctdm.data.fake import offline_route

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def to_model_range(images: Tensor, max_value: float) -> Tensor:
    """Integer pixel values in [0, max_value] -> float32 in [-1, 1]."""
    return images.float() * (2.0 / max_value) - 1.0


class _ImageRows(Dataset):
    """Training images kept as integers; a batch is indexed, scaled and (optionally) flipped at once."""

    def __init__(self, images: Tensor, max_value: float, hflip: bool):
        self.images, self.max_value, self.hflip = images, max_value, hflip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        x = to_model_range(self.images[torch.as_tensor(indices)], self.max_value)
        if self.hflip:
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


class ImageDataModule(BatchedDataModule):
    """Shared logic of the image sets; subclasses implement `load() -> (train, test or None)`.

    shape: [C, H, W] the config declares (and the model config reads); checked against the files.
    val_size: held-out images (from the test split when there is one, else held out of the set).
    train_size: null for every training image, or a seeded subset of that many.
    hflip: random horizontal flips in training (`data_var` is then over the flipped set too).
    """

    max_value = 255.0

    def __init__(
        self,
        shape: list[int],
        val_size: int = 2000,
        train_size: int | None = None,
        batch_size: int = 128,
        hflip: bool = False,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__(batch_size, num_workers, pin_memory)
        if len(shape) != 3:
            raise ValueError(f"data.shape={list(shape)} must be [channels, height, width] for an image set.")
        for key, value in (("val_size", val_size), ("train_size", train_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"data.{key} must be a positive integer, got {value!r}.")
        self.shape = tuple(shape)
        self.val_size, self.train_size = val_size, train_size
        self.hflip, self.split_seed = hflip, split_seed
        self.law = None  # no exact law for images
        self.images_train: Tensor | None = None
        self.x_val: Tensor | None = None
        self._data_var: Tensor | None = None

    def load(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.images_train is not None:
            return
        train, test = self.load()
        if tuple(train.shape[1:]) != self.shape:
            raise ValueError(
                f"{type(self).__name__}: the images have shape {list(train.shape[1:])} but data.shape="
                f"{list(self.shape)}; set data.shape to match (the model reads it)."
            )
        g = torch.Generator().manual_seed(self.split_seed)
        if test is None:  # hold out val_size images of the set itself
            if self.val_size >= len(train):
                raise ValueError(
                    f"data.val_size={self.val_size} leaves no training images out of {len(train)}; lower it."
                )
            perm = torch.randperm(len(train), generator=g)
            test, train = train[perm[: self.val_size]], train[perm[self.val_size :]]
        else:
            test = test[torch.randperm(len(test), generator=g)[: self.val_size]]
        if self.train_size is not None and self.train_size < len(train):
            train = train[torch.randperm(len(train), generator=g)[: self.train_size]]
        self.images_train = train
        self.x_val = to_model_range(test, self.max_value)
        self._data_var = self._variance(train)

    def _variance(self, images: Tensor, chunk: int = 4096) -> Tensor:
        """Per-pixel variance over the training set in model range, accumulated in float64 chunks."""
        s1 = torch.zeros(self.shape, dtype=torch.float64)
        s2 = torch.zeros(self.shape, dtype=torch.float64)
        for start in range(0, len(images), chunk):  # chunks bound the float64 copy for large sets
            x = to_model_range(images[start : start + chunk], self.max_value).double()
            s1 += x.sum(0)
            s2 += x.pow(2).sum(0)
        if self.hflip:  # the model trains on the set and its mirror image in equal shares
            s1, s2 = (s1 + s1.flip(-1)) / 2, (s2 + s2.flip(-1)) / 2
        n = len(images)
        return ((s2 - s1**2 / n) / (n - 1)).float()

    @property
    def data_var(self) -> Tensor:
        self.setup()
        return self._data_var

    def train_dataloader(self) -> DataLoader:
        return self._loader(_ImageRows(self.images_train, self.max_value, self.hflip), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(_TensorRows(self.x_val), shuffle=False)


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16, shipped with scikit-learn)."""

    max_value = 16.0

    def __init__(self, shape: list[int] = (1, 8, 8), val_size: int = 297, **kwargs):
        super().__init__(shape, val_size, **kwargs)

    def load(self):
        from sklearn.datasets import load_digits

        images = torch.from_numpy(load_digits().images).to(torch.uint8)  # [1797, 8, 8]
        return images[:, None], None


class _TorchvisionDataModule(ImageDataModule):
    """A torchvision data set read from `root`; clear errors when its files are missing."""

    name = ""
    option: str | None = None

    def __init__(self, shape: list[int], root: str, download: bool = False, **kwargs):
        super().__init__(shape, **kwargs)
        self.root, self.download = str(root), download

    def _dataset(self, train: bool):
        raise NotImplementedError

    def load(self):
        try:
            return self._images(self._dataset(True)), self._images(self._dataset(False))
        except Exception as err:  # torchvision fails in many ways; find the file it could not read
            bad = self._bad_file()
            if bad is not None:
                raise ValueError(f"{self.name} under data.root={self.root!r}: {bad}") from err
            if not isinstance(err, (RuntimeError, OSError)):
                raise
            self._not_found(err)

    def _bad_file(self) -> str | None:
        """'<file>: what is wrong with it' for the first file of the set that is present but unreadable."""
        return None

    def _not_found(self, err: Exception):
        raise FileNotFoundError(
            f"{self.name} not found or incomplete under data.root={self.root!r} "
            f"(absolute: {os.path.abspath(self.root)}), with data.download={self.download}. "
            + (
                "The download failed: check the network, or put the files there yourself. "
                if self.download
                else "Pass data.download=true to fetch it (needs the internet), or point data.root "
                "at a folder that holds it. "
            )
            + self._hint()
            + f"{offline_route(self.option)} torchvision said: {err}"
        ) from err

    def _hint(self) -> str:
        return ""

    @staticmethod
    def _images(dataset) -> Tensor:
        data = torch.as_tensor(dataset.data)
        return data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2).contiguous()  # -> [N, C, H, W]


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST 28x28 through torchvision (root/MNIST/raw/*-idx*-ubyte); val images from the test split."""

    name = "MNIST"
    option = "mnist"  # the data option (conf/data/), as `python -m ctdm.data.fake` names its layout

    def __init__(self, shape: list[int] = (1, 28, 28), root: str = "data", download: bool = False, **kwargs):
        super().__init__(shape, root, download, **kwargs)

    def _dataset(self, train: bool):
        return MNIST(self.root, train=train, download=self.download)

    def _bad_file(self) -> str | None:
        folder = Path(self.root) / "MNIST" / "raw"
        for prefix in ("train", "t10k"):
            for kind, magic, ndim in (("images-idx3", 2051, 3), ("labels-idx1", 2049, 1)):
                file = folder / f"{prefix}-{kind}-ubyte"
                if not file.is_file():
                    continue
                data = file.read_bytes()
                header = 4 + 4 * ndim
                if len(data) < header or int.from_bytes(data[:4], "big") != magic:
                    return f"{file} is not an MNIST idx file (no magic number {magic} in its first bytes)."
                dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
                if len(data) != header + math.prod(dims):
                    return (
                        f"{file} is truncated or padded: its header promises {dims} values "
                        f"({header + math.prod(dims)} bytes), the file has {len(data)} bytes."
                    )
                if dims[0] == 0:
                    return f"{file} holds no items."
        return None


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10 32x32 through torchvision (root/cifar-10-batches-py); val images from the test batch.

    check_integrity: torchvision's md5 check of the real files (on by default). false reads files of
    the same layout without it: small hand-made sets in tests, or a copy you trust.
    """

    name = "CIFAR-10"
    option = "cifar10"

    def __init__(
        self,
        shape: list[int] = (3, 32, 32),
        root: str = "data",
        download: bool = False,
        check_integrity: bool = True,
        hflip: bool = True,  # CIFAR-10's standard augmentation (DDPM's), as data=cifar10 sets
        **kwargs,
    ):
        super().__init__(shape, root, download, hflip=hflip, **kwargs)
        self.check_integrity = check_integrity

    def _dataset(self, train: bool):
        cls = CIFAR10 if self.check_integrity else _UncheckedCIFAR10
        return cls(self.root, train=train, download=self.download)

    def _bad_file(self) -> str | None:
        folder = Path(self.root) / CIFAR10.base_folder
        for name, _ in CIFAR10.train_list + CIFAR10.test_list:
            file = folder / name
            if not file.is_file():
                continue
            size = file.stat().st_size
            try:
                with open(file, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
            except Exception as err:  # noqa: BLE001 (pickle fails in many ways on a damaged file)
                what = "empty" if size == 0 else f"truncated or not a CIFAR-10 batch ({size} bytes)"
                return f"cannot read the batch file {file}: it is {what} ({type(err).__name__}: {err})."
            data = entry.get("data") if isinstance(entry, dict) else None
            if data is None or np.asarray(data).ndim != 2 or np.asarray(data).shape[1] != 3 * 32 * 32:
                found = np.asarray(data).shape if data is not None else sorted(entry)[:5]
                return f"the batch file {file} holds no 'data' rows of 3072 pixels (found {found})."
            if len(data) == 0:
                return f"the batch file {file} holds no images."
        return None

    def _hint(self) -> str:
        folder = Path(self.root) / CIFAR10.base_folder
        if self.check_integrity and folder.is_dir():
            return (
                f"{folder} exists: if its files are a copy you trust that differs from the official "
                "ones (e.g. a small test set), data.check_integrity=false skips torchvision's md5 check. "
            )
        return ""


class _UncheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 with its md5 checks replaced by checks that the files exist."""

    def _check_integrity(self) -> bool:
        files = [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class ImageFolderDataModule(ImageDataModule):
    """Every image file under `root` (recursively, e.g. AFHQv2 or FFHQ folders), at `resolution`.

    All files must share one size (a mix usually means a wrong folder). `center_crop` crops the
    largest centred square first; images are then resized to resolution x resolution (Lanczos).
    `val_size` images are held out with the seed.
    """

    def __init__(
        self,
        root: str,
        resolution: int,
        shape: list[int],
        center_crop: bool = True,
        val_size: int = 1000,
        hflip: bool = True,
        **kwargs,
    ):
        super().__init__(shape, val_size, hflip=hflip, **kwargs)
        if shape[0] not in (1, 3) or list(shape[1:]) != [resolution, resolution]:
            raise ValueError(
                f"data.shape={list(shape)} must be [1 or 3, data.resolution, data.resolution] "
                f"with data.resolution={resolution}."
            )
        self.root, self.resolution, self.center_crop = str(root), resolution, center_crop

    def load(self):
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data.root={self.root!r} is not a folder (absolute: {root.resolve()}). "
                + offline_route("image_folder")
            )
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(
                f"data.root={self.root!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})."
            )
        sizes = {}
        for i, f in enumerate(files):  # headers only: cheap, and it fails before any decoding
            with self._open(f, i, len(files)) as im:
                sizes.setdefault(im.size, f)
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise ValueError(
                f"data.root={self.root!r} mixes image sizes: {f1} is {s1[0]}x{s1[1]} but {f2} is "
                f"{s2[0]}x{s2[1]}. Put images of one size in the folder (resize them beforehand)."
            )
        mode = "RGB" if self.shape[0] == 3 else "L"
        (w, h), side = next(iter(sizes)), min(next(iter(sizes)))
        box = (
            ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2) if self.center_crop else None
        )
        images = np.empty((len(files), self.resolution, self.resolution, self.shape[0]), dtype=np.uint8)
        for i, f in enumerate(files):  # decoding is per file; everything after is batched
            with self._open(f, i, len(files)) as im:
                try:
                    im = im.convert(mode).resize((self.resolution, self.resolution), Image.LANCZOS, box=box)
                except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt pixel data
                    raise self._unreadable(f, i, len(files), err) from None
                images[i] = np.asarray(im).reshape(self.resolution, self.resolution, -1)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), None

    def _open(self, file: Path, index: int, count: int) -> Image.Image:
        try:
            return Image.open(file)
        except (OSError, ValueError, SyntaxError) as err:  # not an image (PIL: UnidentifiedImageError)
            raise self._unreadable(file, index, count, err) from None

    def _unreadable(self, file: Path, index: int, count: int, err: Exception) -> ValueError:
        return ValueError(
            f"data.root={self.root!r}: cannot read image {file} (file {index + 1} of {count}, sorted by "
            f"path): {err}. Remove or replace the file (a truncated copy, or not an image despite its "
            "extension)."
        )
