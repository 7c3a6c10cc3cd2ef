"""Low-dimensional data laws with exact densities and exact denoisers.

A law is any object with `dim` and `sample(n, generator) -> Tensor [n, dim]`. Gaussian mixtures
also give `log_prob` and the optimal noise predictor `eps`, the analytic oracle that tests and
evaluation compare trained networks and estimators against.
"""

import math

import torch
from torch import Tensor

from ctdm.diffusion.channel import alpha_sigma


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
        if (variances <= 0).any() or (weights < 0).any() or not torch.isclose(weights.sum(), torch.tensor(1.0).double()):
            raise ValueError("GaussianMixture needs positive variances and non-negative weights summing to 1.")
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
        alpha, sigma = alpha_sigma(logsnr.double(), zd)  # [N, 1]
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
