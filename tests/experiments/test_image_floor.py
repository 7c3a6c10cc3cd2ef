"""experiments.image_floor: the held-out digits scored against the training set, as samples are."""

import json

import pytest

from experiments import image_floor


def test_the_floor_scores_every_held_out_image_against_the_cached_training_features(tmp_path):
    cache = tmp_path / "fid_stats"
    out = tmp_path / "floor.json"
    args = ["--out", str(out), "eval/fid/extractor=random", f"eval.fid.cache_dir={cache}"]
    first = image_floor.main(args)
    assert first["num_samples"] == 297 and json.loads(out.read_text()) == first
    assert first["fid"] >= 0 and abs(first["kid"]) < 10 * first["kid_std"] + 1e-3
    assert len(list(cache.glob("digits_train_*.npz"))) == 1  # the training side cached, as runs cache it
    assert image_floor.main(args)["fid"] == pytest.approx(
        first["fid"], rel=1e-6
    )  # the same reference, cached
