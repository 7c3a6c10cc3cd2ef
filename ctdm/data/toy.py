"""Low-dimensional data laws with exact densities and exact denoisers.

A law is any object with `dim` and `sample(n, generator) -> Tensor [n, dim]`. The Gaussian mixtures
(gauss1d_two_mode, eight_gaussians, dino) also give `log_prob` and the optimal noise predictor
`eps`, the analytic oracle that tests and evaluation compare trained networks and estimators
against; the other 2-D sets (moons, checkerboard, spirals, circle, swiss roll) are SampledLaws.
"""

import csv
import math
from pathlib import Path

import torch
from torch import Tensor

from ctdm.diffusion.channel import channel_scales


class GaussianMixture:
    """sum_k weights[k] N(means[k], diag(variances[k])); means and variances are [K, d]."""

    def __init__(self, means: Tensor, variances: Tensor, weights: Tensor | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        variances = torch.as_tensor(variances, dtype=torch.float64).expand_as(means).clone()
        if weights is None:
            weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if means.dim() != 2 or weights.shape != (means.shape[0],):
            raise ValueError(
                f"GaussianMixture needs means [K, d], variances [K, d] and weights [K]; got "
                f"{tuple(means.shape)}, {tuple(variances.shape)}, {tuple(weights.shape)}."
            )
        if (
            (variances <= 0).any()
            or (weights < 0).any()
            or not torch.isclose(weights.sum(), torch.tensor(1.0).double())
        ):
            raise ValueError(
                "GaussianMixture needs positive variances and non-negative weights summing to 1."
            )
        self.means, self.variances, self.weights = means, variances, weights

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def variance(self) -> Tensor:
        """Per-dimension variance of the mixture (law of total variance)."""
        second_moment = self.weights @ (self.variances + self.means**2)
        return second_moment - self.mean() ** 2

    def standardized(self) -> "GaussianMixture":
        """The same law affinely mapped to zero mean and unit variance per dimension (still exact)."""
        mu, sd = self.mean(), self.variance().sqrt()
        return GaussianMixture((self.means - mu) / sd, self.variances / sd**2, self.weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.variances[k].sqrt() * noise).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density [N] in nats at points x [N, d]."""
        return self._component_log_probs(x.double(), self.means, self.variances).logsumexp(1).to(x.dtype)

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """The optimal noise prediction E[eps | z_a = z] for z [N, d] at levels logsnr [N].

        z | k ~ N(alpha m_k, alpha^2 v_k + sigma^2), and E[eps | z, k] = sigma (z - alpha m_k) / that
        variance; the answer is their mix under the posterior over components.
        """
        zd = z.double()
        alpha, sigma = channel_scales(logsnr.double(), zd)  # [N, 1]
        alpha, sigma = alpha[:, None], sigma[:, None]  # [N, 1, 1] against components [K, d]
        means = alpha * self.means  # [N, K, d]
        variances = alpha**2 * self.variances + sigma**2
        posterior = self._component_log_probs(zd, means, variances).softmax(1)  # [N, K]
        eps_k = sigma * (zd[:, None] - means) / variances
        return (posterior[..., None] * eps_k).sum(1).to(z.dtype)

    def _component_log_probs(self, x: Tensor, means: Tensor, variances: Tensor) -> Tensor:
        """log(weight_k N(x; mean_k, variance_k)) as [N, K]; means/variances [K, d] or [N, K, d]."""
        diff2 = (x[:, None] - means) ** 2 / variances
        log_norm = variances.log().sum(-1) + self.dim * math.log(2 * math.pi)
        return self.weights.log() - 0.5 * (diff2.sum(-1) + log_norm)


def eight_gaussians(radius: float = 4.0, std: float = 0.5, standardize: bool = True) -> GaussianMixture:
    """Eight equal Gaussians on a circle (the FFJORD toy set), standardised by default."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angles.cos(), angles.sin()], 1)
    law = GaussianMixture(means, torch.full_like(means, std**2))
    return law.standardized() if standardize else law


def gauss1d_two_mode(separation: float = 5.0, std: float = 1.0, standardize: bool = False) -> GaussianMixture:
    """0.5 N(-separation, std^2) + 0.5 N(separation, std^2): the paper's 1-D set (raw scale by default)."""
    law = GaussianMixture(torch.tensor([[-separation], [separation]]), torch.full((2, 1), std**2))
    return law.standardized() if standardize else law


# The 142 (x, y) points of Alberto Cairo's dino (Matejka & Fitzmaurice's Datasaurus Dozen), shipped
# with the package so `data=dino` needs nothing beside it.
DINO_FILE = Path(__file__).with_name("assets") / "datasaurus_dino.tsv"


def dino(
    path: str | None = None,
    jitter: float = 0.15,
    dataset: str = "dino",
    standardize: bool = True,
) -> GaussianMixture:
    """The Datasaurus dino as the exact law of the paper's recipe (docs/oracles.md).

    Drawing a point of the file uniformly, adding N(0, jitter^2) and mapping x -> (x/54 - 1)*4,
    y -> (y/48 - 1)*4 is a mixture of one diagonal Gaussian per point. `path` is a tab- or
    comma-separated file with a header naming columns x and y (and optionally `dataset`, as in the
    full DatasaurusDozen.tsv, whose rows are then filtered to `dataset`); None reads the packaged
    points (DINO_FILE).
    """
    points = read_datasaurus(DINO_FILE if path is None else path, dataset)
    scale = torch.tensor([4 / 54, 4 / 48], dtype=torch.float64)
    means = (points / torch.tensor([54.0, 48.0], dtype=torch.float64) - 1) * 4
    law = GaussianMixture(means, (jitter * scale) ** 2)
    return law.standardized() if standardize else law


def read_datasaurus(path: str, dataset: str = "dino") -> Tensor:
    """The (x, y) points [K, 2] (float64) of a Datasaurus-format file, with errors that name the file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"data.path={str(path)!r}: no such file. The dino set reads the Datasaurus points from a "
            "tab-separated file with columns x and y (e.g. datasaurus_dino.tsv); pass its location "
            "with data.path=/path/to/datasaurus_dino.tsv, or data.path=null for the points ctdm ships."
        )
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"data.path={str(path)!r} is not a text file (byte {err.start} is not UTF-8): the dino set reads "
            "a tab- or comma-separated table with columns x and y."
        ) from None
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    lines = [line for _, line in numbered]
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    rows = list(zip([i for i, _ in numbered], csv.reader(lines, delimiter=delimiter), strict=True))
    header = [h.strip().strip('"').lower() for h in rows[0][1]] if rows else []
    if "x" not in header or "y" not in header:
        raise ValueError(
            f"data.path={str(path)!r} is not a Datasaurus-format file: its header {header} must name "
            "columns 'x' and 'y' (tab- or comma-separated, one point per line)."
        )
    ix, iy = header.index("x"), header.index("y")
    if "dataset" in header:
        column = header.index("dataset")
        rows = [rows[0]] + [
            (i, r) for i, r in rows[1:] if len(r) > column and r[column].strip('" ') == dataset
        ]
    points = []
    for line_no, row in rows[1:]:
        try:
            point = (float(row[ix]), float(row[iy]))
        except (ValueError, IndexError):
            point = None
        if point is None or not all(math.isfinite(v) for v in point):
            raise ValueError(
                f"data.path={str(path)!r}, line {line_no}: expected finite numbers in columns x and y, got "
                f"{delimiter.join(row)!r}."
            )
        points.append(point)
    if not points:
        raise ValueError(
            f"data.path={str(path)!r} has no data rows"
            + (f" for dataset {dataset!r}." if "dataset" in header else ".")
        )
    return torch.tensor(points, dtype=torch.float64)


class SampledLaw:
    """A 2-D set known only through a vectorised sampler (no exact density).

    Subclasses draw raw points in `_draw`; `standardize` maps them to zero mean and unit variance
    with constants fixed from a large reference draw, so every split shares one affine map.
    """

    dim = 2

    def __init__(self, standardize: bool = True):
        self.shift, self.scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
        if standardize:
            ref = self._draw(1 << 18, torch.Generator().manual_seed(12345))
            self.shift, self.scale = ref.mean(0), ref.std(0)

    def _draw(self, n: int, g: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return ((self._draw(n, generator) - self.shift) / self.scale).float()


def _u(n: int, g, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _n(n: int, g, d: int = 2) -> Tensor:
    return torch.randn(n, d, generator=g, dtype=torch.float64)


class Moons(SampledLaw):
    """Two interleaving half circles (scikit-learn's make_moons) with Gaussian noise."""

    def __init__(self, noise: float = 0.05, standardize: bool = True):
        self.noise = noise
        super().__init__(standardize)

    def _draw(self, n, g):
        t = _u(n, g, 0, math.pi)
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        return torch.stack([x, y], 1) + self.noise * _n(n, g)


class Checkerboard(SampledLaw):
    """Uniform on the dark squares of a 4x4 board on [-2, 2]^2 (the FFJORD checkerboard)."""

    def _draw(self, n, g):
        x = _u(n, g, -2, 2)
        y = _u(n, g) - 2 * torch.randint(0, 2, (n,), generator=g) + x.floor().remainder(2)
        return torch.stack([x, y], 1)


class Spirals(SampledLaw):
    """Two interleaved spirals (the FFJORD 2spirals set)."""

    def __init__(self, noise: float = 0.1, standardize: bool = True):
        self.noise = noise
        super().__init__(standardize)

    def _draw(self, n, g):
        t = _u(n, g).sqrt() * 3 * math.pi
        arm = torch.stack([-t.cos() * t, t.sin() * t], 1) + _u(2 * n, g).view(n, 2) * 0.5
        sign = torch.randint(0, 2, (n, 1), generator=g) * 2 - 1
        return sign * arm / 3 + self.noise * _n(n, g)


class Circle(SampledLaw):
    """Uniform angle on the unit circle with Gaussian radial noise."""

    def __init__(self, noise: float = 0.05, standardize: bool = True):
        self.noise = noise
        super().__init__(standardize)

    def _draw(self, n, g):
        theta = _u(n, g, 0, 2 * math.pi)
        r = 1 + self.noise * torch.randn(n, generator=g, dtype=torch.float64)
        return torch.stack([r * theta.cos(), r * theta.sin()], 1)


class SwissRoll(SampledLaw):
    """The 2-D swiss roll (scikit-learn's make_swiss_roll, x-z plane) with Gaussian noise."""

    def __init__(self, noise: float = 0.5, standardize: bool = True):
        self.noise = noise
        super().__init__(standardize)

    def _draw(self, n, g):
        t = 1.5 * math.pi * (1 + 2 * _u(n, g))
        return torch.stack([t * t.cos(), t * t.sin()], 1) + self.noise * _n(n, g)
