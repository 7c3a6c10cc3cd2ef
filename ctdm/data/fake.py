"""Tiny image sets written in the on-disk layouts the real loaders read, for offline tests and smoke runs.

The real files cannot be fetched everywhere (no network on clusters or in CI); these writers make
small look-alikes so the real loading code runs unchanged: torchvision's CIFAR-10 python pickles
(use `data.check_integrity=false`, since their md5 sums differ), MNIST raw idx files, and a folder
of PNGs. Pixels are smooth random blobs, seeded.
"""

import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def blobs(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """n smooth random uint8 images [n, size, size, channels] (HWC, as image files store them)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_cifar10(root: str | Path, train_per_batch: int = 8, test: int = 16, seed: int = 0) -> Path:
    """root/cifar-10-batches-py with 5 training batches, a test batch and batches.meta."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        n = test if name == "test_batch" else train_per_batch
        images = blobs(n, 3, 32, seed + i)  # CIFAR stores rows as [3 * 32 * 32] channel planes
        entry = {"data": images.transpose(0, 3, 1, 2).reshape(n, -1), "labels": [j % 10 for j in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": labels}))
    return Path(root)


def write_mnist(root: str | Path, train: int = 32, test: int = 16, seed: int = 0) -> Path:
    """root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed, as torchvision reads)."""
    folder = Path(root) / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", train, seed), ("t10k", test, seed + 1)):
        images = blobs(n, 1, 28, s)[..., 0]
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
        )
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return Path(root)


def write_image_folder(
    root: str | Path, n: int = 12, size: int = 20, seed: int = 0, mode: str = "RGB"
) -> Path:
    """n PNG files of size x size under root/ (in two subfolders, as class folders would be)."""
    from PIL import Image

    images = blobs(n, 3 if mode == "RGB" else 1, size, seed)
    for i, image in enumerate(images):
        path = Path(root) / f"class{i % 2}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image if mode == "RGB" else image[..., 0], mode).save(path)
    return Path(root)
