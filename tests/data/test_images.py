"""Image sets: [-1, 1] range, seeded splits, the real torchvision loaders on files in their layouts."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ctdm.data import CIFAR10DataModule, DigitsDataModule, ImageFolderDataModule, MNISTDataModule, fake
from ctdm.data.images import to_model_range
from ctdm.plotting import plot_samples


def _rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.flatten(1).tolist()}


def test_digits_range_split_and_determinism():
    a, b = DigitsDataModule(), DigitsDataModule()
    a.setup(), b.setup()
    assert (
        a.shape == (1, 8, 8) and a.images_train.shape == (1500, 1, 8, 8) and a.x_val.shape == (297, 1, 8, 8)
    )
    assert a.x_val.min() == -1 and a.x_val.max() == 1  # 0..16 mapped onto [-1, 1] exactly
    assert torch.equal(a.images_train, b.images_train) and torch.equal(a.x_val, b.x_val)
    train = to_model_range(a.images_train, 16)
    assert (
        len(_rows(train) & _rows(a.x_val)) < 5
    )  # held out images are not training images (a few duplicates exist)
    c = DigitsDataModule(split_seed=1)
    c.setup()
    assert not torch.equal(a.x_val, c.x_val)
    torch.testing.assert_close(a.data_var, train.var(0))
    batch = next(iter(a.train_dataloader()))
    assert batch.shape == (128, 1, 8, 8) and batch.dtype == torch.float32 and batch.abs().max() <= 1


def test_train_size_subset_and_bad_sizes():
    dm = DigitsDataModule(train_size=100)
    dm.setup()
    assert dm.images_train.shape[0] == 100
    with pytest.raises(ValueError, match="data.val_size=1797 leaves no training images"):
        DigitsDataModule(val_size=1797).setup()
    with pytest.raises(ValueError, match="data.train_size"):
        DigitsDataModule(train_size=0)
    with pytest.raises(ValueError, match=r"data.shape=\[8, 8\] must be \[channels, height, width\]"):
        DigitsDataModule(shape=[8, 8])
    with pytest.raises(ValueError, match=r"images have shape \[1, 8, 8\] but data.shape=\[1, 16, 16\]"):
        DigitsDataModule(shape=[1, 16, 16]).setup()


def test_global_batch_must_divide_the_world_size():
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    ranks = dict(global_rank=0, global_step=0, accumulate_grad_batches=1)  # what the loader reads
    dm.trainer = SimpleNamespace(world_size=4, **ranks)
    assert next(iter(dm.train_dataloader())).shape[0] == 16  # 64 global over 4 ranks
    dm.trainer = SimpleNamespace(world_size=3, **ranks)
    with pytest.raises(ValueError, match=r"data.batch_size=64 .* world size \(3 ranks\)"):
        dm.train_dataloader()


def test_cifar10_reads_torchvision_layout(tmp_path):
    fake.write_cifar10(tmp_path, train_per_batch=8, test=16)
    dm = CIFAR10DataModule(root=str(tmp_path), check_integrity=False, val_size=10, batch_size=8)
    dm.setup()
    assert dm.images_train.shape == (40, 3, 32, 32) and dm.images_train.dtype == torch.uint8
    assert dm.x_val.shape == (10, 3, 32, 32) and dm.x_val.min() >= -1 and dm.x_val.max() <= 1
    # Channel planes land in the right place: the first training image is the first written one.
    first = torch.from_numpy(fake.blobs(8, 3, 32, seed=0)[0]).permute(2, 0, 1)
    assert torch.equal(dm.images_train[0], first)
    test_images = torch.from_numpy(fake.blobs(16, 3, 32, seed=5)).permute(0, 3, 1, 2)
    assert _rows(dm.x_val) <= _rows(
        to_model_range(test_images, 255)
    )  # held-out images come from the test batch
    assert dm.law is None and dm.data_var.shape == (3, 32, 32)


def test_cifar10_integrity_check_is_on_by_default(tmp_path):
    fake.write_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="data.check_integrity=false") as err:
        CIFAR10DataModule(root=str(tmp_path)).setup()
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("cls", [CIFAR10DataModule, MNISTDataModule])
def test_missing_root_names_the_path_and_the_download_flag(tmp_path, cls):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"data.download=False\. Pass data.download=true") as err:
        cls(root=str(root)).setup()
    assert f"data.root='{root}'" in str(err.value)


def test_mnist_reads_raw_idx_files(tmp_path):
    fake.write_mnist(tmp_path, train=32, test=16)
    dm = MNISTDataModule(root=str(tmp_path), val_size=8, batch_size=8)
    dm.setup()
    assert dm.images_train.shape == (32, 1, 28, 28) and dm.x_val.shape == (8, 1, 28, 28)
    assert torch.equal(dm.images_train[3, 0], torch.from_numpy(fake.blobs(32, 1, 28, seed=0)[3, ..., 0]))
    assert next(iter(dm.train_dataloader())).shape == (8, 1, 28, 28)


def test_hflip_mirrors_about_half_the_batch_and_symmetrises_the_variance(tmp_path):
    fake.write_cifar10(tmp_path, train_per_batch=40)
    kw = dict(root=str(tmp_path), check_integrity=False, val_size=4, batch_size=200)
    plain, flipped = CIFAR10DataModule(hflip=False, **kw), CIFAR10DataModule(hflip=True, **kw)
    plain.setup(), flipped.setup()
    torch.manual_seed(0)
    x = flipped.train_dataloader().dataset.__getitems__(list(range(200)))
    ref = to_model_range(flipped.images_train, 255)
    same = (x == ref).flatten(1).all(1)
    mirrored = (x == ref.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and 60 < mirrored.sum() < 140
    torch.testing.assert_close(flipped.data_var, flipped.data_var.flip(-1))
    torch.testing.assert_close(plain.data_var, ref.var(0))
    assert not torch.allclose(plain.data_var, plain.data_var.flip(-1))


def test_image_folder_crops_resizes_and_splits(tmp_path):
    fake.write_image_folder(tmp_path, n=12, size=20)
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=8, shape=[3, 8, 8], val_size=3, batch_size=4)
    dm.setup()
    assert dm.images_train.shape == (9, 3, 8, 8) and dm.x_val.shape == (3, 3, 8, 8)
    assert dm.x_val.abs().max() <= 1
    grey = ImageFolderDataModule(
        root=str(tmp_path), resolution=20, shape=[1, 20, 20], val_size=2, hflip=False
    )
    grey.setup()
    assert grey.images_train.shape == (10, 1, 20, 20)


def test_image_folder_center_crop_keeps_the_middle(tmp_path):
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 255  # a white centre square flanked by black
    for i in range(3):
        Image.fromarray(wide).save(tmp_path / f"{i}.png")
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=10, shape=[3, 10, 10], val_size=1)
    dm.setup()
    assert (dm.images_train == 255).all()


def test_image_folder_bad_input_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root=.*is not a folder"):
        ImageFolderDataModule(root=str(tmp_path / "none"), resolution=8, shape=[3, 8, 8]).setup()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        ImageFolderDataModule(root=str(tmp_path), resolution=8, shape=[3, 8, 8]).setup()
    fake.write_image_folder(tmp_path, n=4, size=20)
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"mixes image sizes: .*20x20 .*24x24"):
        ImageFolderDataModule(root=str(tmp_path), resolution=8, shape=[3, 8, 8]).setup()
    with pytest.raises(ValueError, match=r"data.shape=\[3, 8, 8\] must be .* data.resolution=16"):
        ImageFolderDataModule(root=str(tmp_path), resolution=16, shape=[3, 8, 8])


def test_plot_samples_draws_image_grids_and_keeps_points(tmp_path):
    dm = DigitsDataModule()
    dm.setup()
    path = plot_samples(dm.x_val[:20], dm.x_val, tmp_path / "grid.png", "digits")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = torch.rand(5, 3, 8, 8) * 2 - 1
    assert plot_samples(rgb, rgb, tmp_path / "rgb.png") is not None
    assert plot_samples(torch.randn(50, 2), torch.randn(80, 2), tmp_path / "pts.png") is not None
    assert plot_samples(torch.randn(50, 5), torch.randn(80, 5), tmp_path / "none.png") is None
