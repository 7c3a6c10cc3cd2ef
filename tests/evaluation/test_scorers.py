"""Scorers: the data chooses them; they take samples in chunks (update/compute) and give what a one-shot
metric gives; the FID reference is the training set's, named and cached by what changes it."""

import pytest
import torch

from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.data.images import DigitsDataModule, to_model_range
from ctdm.evaluation import ImageScorer, MMDScorer, data_name, image_scorer, scorer_for, scorers
from ctdm.metrics import ImageMetrics, RandomConvFeatures, mmd2


def _digits():
    dm = DigitsDataModule(shape=[1, 8, 8], val_size=97)
    dm.setup("fit")
    return dm


def test_mmd_in_chunks_is_the_one_shot_mmd():
    law = eight_gaussians()
    reference, samples = law.sample(300, torch.Generator().manual_seed(1)), law.sample(200)
    scorer = MMDScorer(reference, bandwidth=0.2, units="paper")
    for chunk in samples.split(64):
        scorer.update(chunk)
    scores = scorer.compute()
    assert scores == {"mmd": float(mmd2(samples, reference, 0.2, "paper")), "num_samples": 200}
    scorer.reset()
    scorer.update(samples[:10])
    assert scorer.compute()["num_samples"] == 10
    normal = torch.randn(50, 2, generator=torch.Generator().manual_seed(4))
    assert scorer.baselines(50, seed=4) == {"normal_mmd": float(mmd2(normal, reference, 0.2, "paper"))}
    assert scorer.pass_score[0] == "mmd" and scorer.pass_score[1](samples) == scores["mmd"]


def test_the_data_chooses_the_scorer():
    toy = ToyDataModule(eight_gaussians(), [2], train_size=64, val_size=32)
    toy.setup("fit")
    scorer = scorer_for(toy, mmd_bandwidth="median", mmd_units="paper")
    assert isinstance(scorer, MMDScorer) and scorer.reference is toy.x_val and scorer.bandwidth == "median"
    images = scorer_for(_digits(), extractor=RandomConvFeatures())
    assert isinstance(images, ImageScorer) and images.per_rank and images.pass_score is None


def test_image_scorer_in_chunks_is_the_one_shot_fid():
    dm = _digits()
    scorer = image_scorer(dm, RandomConvFeatures(), kid_subset_size=50, kid_subsets=5, batch_size=40)
    for chunk in dm.x_val.split(30):
        scorer.update(chunk)
    scores = scorer.compute()
    direct = ImageMetrics(RandomConvFeatures(), kid_subset_size=50, kid_subsets=5)
    direct.update_real(to_model_range(dm.images_train, dm.max_value))
    direct.update_fake(dm.x_val)
    assert scores.pop("num_samples") == len(dm.x_val)
    assert scores == pytest.approx(direct.compute(), rel=1e-6)


def test_real_features_are_cached_under_a_name_that_says_what_they_are(tmp_path, monkeypatch):
    dm = _digits()
    options = {"cache_dir": tmp_path, "kid_subset_size": 50, "kid_subsets": 5}
    first = image_scorer(dm, RandomConvFeatures(), real_count=300, **options)
    (cache,) = tmp_path.iterdir()
    assert cache.name == f"digits_train_8x8px_{first.metrics.name}_n300.npz"

    def unread(*args):
        raise AssertionError("the cached features should have been used, not the images")

    monkeypatch.setattr(scorers, "to_model_range", unread)
    again = image_scorer(dm, RandomConvFeatures(), real_count=300, **options)
    for scorer in (first, again):
        scorer.update(dm.x_val)
    assert again.compute() == pytest.approx(first.compute(), rel=1e-6)
    with pytest.raises(AssertionError, match="cached features"):  # another count: another file
        image_scorer(dm, RandomConvFeatures(), real_count=200, **options)


def test_data_names():
    class ImageFolderDataModule:
        root = "/data/flowers"

    assert data_name(ImageFolderDataModule()) == "imagefolder-flowers"  # two folders, two caches
    assert data_name(_digits()) == "digits"
