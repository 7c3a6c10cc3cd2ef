"""The low-dimensional sets: shapes, determinism, splits, exact laws against samples, the dino recipe."""

import math

import pytest
import torch
from conftest import CONF, compose_config
from hydra.utils import instantiate

from ctdm.data import DinoDataModule, GaussianMixture, dino, gauss1d_two_mode
from ctdm.data.toy import DINO_FILE, read_datasaurus

TOY = [
    "gauss1d_two_mode",
    "eight_gaussians",
    "moons",
    "checkerboard",
    "spirals",
    "circle",
    "swiss_roll",
    "dino",
]
MIXTURES = {"gauss1d_two_mode", "eight_gaussians", "dino"}


def _dm(name, **overrides):
    cfg = compose_config([f"data={name}"], CONF.parent / "unused").data  # with its base (_toy.yaml)
    cfg.merge_with({"train_size": 4000, "val_size": 1000, **overrides})
    dm = instantiate(cfg)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name", TOY)
def test_sets_are_seeded_split_and_in_range(name):
    a, b = _dm(name), _dm(name)
    dim = 1 if name == "gauss1d_two_mode" else 2
    assert a.shape == (dim,) and a.x_train.shape == (4000, dim) and a.x_val.shape == (1000, dim)
    assert a.x_train.dtype == torch.float32 and torch.isfinite(a.x_train).all()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)  # same seeds, same sets
    assert not torch.equal(a.x_train[:1000], a.x_val)  # train and validation are distinct draws
    c = _dm(name, train_seed=5)
    assert not torch.equal(a.x_train, c.x_train)
    torch.testing.assert_close(a.data_var, a.x_train.var(0))
    if name == "gauss1d_two_mode":  # the raw paper scale: modes at +-5
        assert (a.x_train < 0).float().mean().sub(0.5).abs() < 0.03
        assert a.x_train.abs().mean().sub(5).abs() < 0.1
    else:  # standardised sets
        torch.testing.assert_close(a.x_train.mean(0), torch.zeros(2), atol=0.06, rtol=0)
        torch.testing.assert_close(a.x_train.std(0), torch.ones(2), atol=0.06, rtol=0)
    assert (a.law is not None) == (name in MIXTURES)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_mixture_law_moments_match_its_samples_and_the_data(name):
    dm = _dm(name, train_size=50_000)
    law = dm.law
    x = law.sample(200_000, torch.Generator().manual_seed(3)).double()
    sd = law.variance().sqrt()
    torch.testing.assert_close(x.mean(0) / sd, law.mean() / sd, atol=0.01, rtol=0)
    torch.testing.assert_close(x.var(0), law.variance(), atol=0, rtol=0.02)
    torch.testing.assert_close(dm.x_train.double().var(0), law.variance(), atol=0, rtol=0.03)
    # The exact density is finite wherever the law puts its samples.
    logp = law.log_prob(x[:20_000])
    assert torch.isfinite(logp).all()


def test_gauss1d_two_mode_is_the_papers_law():
    law = gauss1d_two_mode()
    assert torch.equal(law.means, torch.tensor([[-5.0], [5.0]], dtype=torch.float64))
    assert torch.equal(law.variances, torch.ones(2, 1, dtype=torch.float64))
    assert law.variance().item() == pytest.approx(26.0)
    grid = torch.linspace(-15, 15, 30001, dtype=torch.float64)[:, None]
    assert law.log_prob(grid).exp().sum().item() * 1e-3 == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(
        gauss1d_two_mode(standardize=True).variance(), torch.ones(1, dtype=torch.float64)
    )


def test_dino_law_is_the_recipe_on_the_packaged_file():
    points = read_datasaurus(DINO_FILE)
    assert points.shape == (142, 2)
    assert points[0].tolist() == [55.3846, 97.1795]  # the first row of the Datasaurus dino
    raw = dino(standardize=False)  # no path: the packaged points
    assert isinstance(raw, GaussianMixture) and raw.means.shape == (142, 2)
    torch.testing.assert_close(raw.means[:, 0], (points[:, 0] / 54 - 1) * 4)
    torch.testing.assert_close(raw.means[:, 1], (points[:, 1] / 48 - 1) * 4)
    std = torch.tensor([0.15 * 4 / 54, 0.15 * 4 / 48], dtype=torch.float64)
    torch.testing.assert_close(raw.variances, (std**2).expand(142, 2))
    # The recipe drawn directly (pick a point, jitter in raw units, rescale) has the law's moments.
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 142, (400_000,), generator=g)
    jittered = points[idx] + 0.15 * torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    recipe = (jittered / torch.tensor([54.0, 48.0], dtype=torch.float64) - 1) * 4
    torch.testing.assert_close(recipe.mean(0), raw.mean(), atol=0.005, rtol=0)
    torch.testing.assert_close(recipe.var(0), raw.variance(), atol=0, rtol=0.01)
    law = dino(DINO_FILE)  # standardised: the same mixture, affinely mapped
    torch.testing.assert_close(law.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(law.variance(), torch.ones(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(law.means, (raw.means - raw.mean()) / raw.variance().sqrt())


def test_dino_reads_the_full_dozen_format(tmp_path):
    f = tmp_path / "dozen.tsv"
    f.write_text("dataset\tx\ty\ndino\t50\t40\naway\t1\t2\ndino\t60\t50\n")
    assert torch.equal(read_datasaurus(f), torch.tensor([[50.0, 40.0], [60.0, 50.0]], dtype=torch.float64))
    assert torch.equal(read_datasaurus(f, "away"), torch.tensor([[1.0, 2.0]], dtype=torch.float64))


@pytest.mark.parametrize(
    "content,message",
    [
        (None, r"data.path='.*nope.tsv': no such file"),
        ("a\tb\n1\t2\n", r"header \['a', 'b'\] must name columns 'x' and 'y'"),
        ("x\n1\n2\n", r"must name columns 'x' and 'y'"),
        ("x\ty\n1\t2\n3\tabc\n", r"line 3: expected finite numbers in columns x and y, got '3\\tabc'"),
        ("x\ty\n1\t2\n3\n", r"line 3: expected finite numbers"),
        ("x\ty\n", "has no data rows"),
        ("", "must name columns"),
    ],
)
def test_bad_datasaurus_files_are_named(tmp_path, content, message):
    path = tmp_path / "nope.tsv"
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        DinoDataModule(path=str(path), shape=[2])
    assert str(path) in str(err.value)


def test_sampled_sets_have_no_exact_law_but_mixtures_keep_theirs():
    assert _dm("moons").law is None
    law = _dm("eight_gaussians").law
    z = torch.randn(8, 2)
    assert law.eps(z, torch.zeros(8)).shape == (8, 2)
    assert math.isfinite(law.log_prob(z).sum().item())
