"""The time-conditioned MLP: shapes, its starting point, and that log-SNR reaches the output."""

import pytest
import torch

from ctdm.nets import MLP, LogSNREmbedding, ResidualMLP


@pytest.mark.parametrize("dim,input_freqs", [(1, 0), (2, 4), (5, 2)])
def test_output_shape_and_zero_start(dim, input_freqs):
    net = ResidualMLP(dim, width=32, blocks=2, input_freqs=input_freqs)
    z = torch.randn(7, dim)
    out = net(z, torch.linspace(-10, 10, 7))
    assert out.shape == z.shape
    assert torch.equal(out, torch.zeros_like(z))  # zero-initialised head: eps_hat starts at 0


def test_prediction_depends_on_continuous_logsnr():
    net = ResidualMLP(2, width=32)
    torch.nn.init.normal_(net.out[-1].weight)
    z = torch.randn(1, 2).expand(3, 2)
    out = net(z, torch.tensor([0.0, 0.01, 5.0]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])


def test_embedding_is_one_to_one_over_the_range():
    emb = LogSNREmbedding(16)
    levels = torch.linspace(-20, 20, 401)
    phases = levels[:, None] * emb.freqs
    features = torch.cat([phases.sin(), phases.cos()], 1)
    distances = torch.cdist(features, features) + torch.eye(401) * 1e9
    assert distances.min() > 1e-3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="input_freqs"):
        ResidualMLP(2, input_freqs=-1)


@pytest.mark.parametrize("cls", [ResidualMLP, MLP])
@pytest.mark.parametrize("shape", [(1,), (2,), (1, 4, 4)])
def test_mlps_take_the_data_shape_and_start_at_zero(cls, shape):
    net = cls(list(shape), width=16, blocks=2)
    z = torch.randn(5, *shape)
    out = net(z, torch.linspace(-10, 10, 5))
    assert out.shape == z.shape and torch.equal(out, torch.zeros_like(z))


def test_plain_mlp_has_no_residual_path_and_depends_on_logsnr():
    net = MLP(2, width=16, blocks=3)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in net.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in net.mlp) == 4  # 3 hidden layers + output
    torch.nn.init.normal_(net.mlp[-1].weight)
    z = torch.randn(1, 2).expand(2, 2)
    out = net(z, torch.tensor([0.0, 3.0]))
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="blocks >= 1"):
        MLP(2, blocks=0)
