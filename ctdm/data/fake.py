"""Tiny image sets written in the on-disk layouts the real loaders read, for offline tests and smoke runs.

    python -m ctdm.data.fake cifar10 DIR       # then data=cifar10 data.root=DIR data.check_integrity=false
    python -m ctdm.data.fake mnist DIR         # then data=mnist data.root=DIR
    python -m ctdm.data.fake image_folder DIR  # then data=image_folder data.root=DIR data.resolution=20
                                               #      data.val_size=4

The real files cannot be fetched everywhere (no network on clusters or in CI); these writers make
small look-alikes so the real loading code runs unchanged: torchvision's CIFAR-10 python pickles
(use `data.check_integrity=false`, since their md5 sums differ), MNIST raw idx files, and a folder
of PNGs. Pixels are smooth random blobs, seeded. They check that a pipeline runs, not what it learns.
"""

import argparse
import pickle
import struct
from pathlib import Path

import numpy as np


def blobs(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """n smooth random uint8 images [n, size, size, channels] (HWC, as image files store them)."""
    import torch  # here, not above: errors quoting `offline_route` import this module before torch loads
    import torch.nn.functional as F

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


# data option -> (writer, the overrides that read what it writes from DIR)
KINDS = {
    "cifar10": (write_cifar10, "data=cifar10 data.root=DIR data.check_integrity=false"),
    "mnist": (write_mnist, "data=mnist data.root=DIR"),
    "image_folder": (
        write_image_folder,
        "data=image_folder data.root=DIR data.resolution=20 data.val_size=4",  # of its 12 images
    ),
}


def offline_route(kind: str | None) -> str:
    """The sentence an error about missing image files ends with: how to get going without a download."""
    if kind not in KINDS:
        return "Offline, copy the files there from a machine that has them."
    overrides = KINDS[kind][1]
    return (
        f"Offline, copy the files there from a machine that has them; for a smoke check without them, "
        f"`python -m ctdm.data.fake {kind} DIR` writes a tiny look-alike, read with `{overrides}`."
    )


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m ctdm.data.fake",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=sorted(KINDS), help="the data option whose on-disk layout to write")
    parser.add_argument("root", type=Path, help="the folder to write into (data.root)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = KINDS[args.kind][0](args.root, seed=args.seed)
    files = sum(1 for p in root.rglob("*") if p.is_file())
    overrides = KINDS[args.kind][1].replace("DIR", str(root))
    print(f"{files} files written under {root}; then: python -m ctdm.train {overrides}")
    return root


if __name__ == "__main__":
    main()
