"""The builder: a checkpoint alone gives back its trained module (the network, weights and config it was
trained with), its samplers and its data; a wrong file or network fails naming the key."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from ctdm.build import build_data, build_module, build_samplers, load_module, resolved_config
from ctdm.checkpoint import CheckpointError
from ctdm.evaluation import MMDScorer, evaluate_samplers


def test_a_checkpoint_gives_back_its_module(smoke_run):
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert not module.training and module.run_config == saved["ctdm_config"]
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, saved["state_dict"][name], rtol=0, atol=0)
    assert module.data_var.shape == (2,)  # sized from the checkpoint, not from data
    z, a = torch.randn(5, 2), torch.linspace(-5, 5, 5)
    fresh = build_module(OmegaConf.create(saved["ctdm_config"]))
    assert not torch.allclose(fresh.eps(z, a), module.eps(z, a))  # the weights are the trained ones


def test_the_stored_config_rebuilds_the_runs_evaluation(smoke_run):
    """The run's own sample evaluation, rebuilt from its checkpoint alone, gives its logged metrics."""
    module = load_module(smoke_run / "checkpoints" / "last.ckpt")
    cfg = module.run_config
    datamodule = build_data(cfg)
    datamodule.setup("fit")
    ev = cfg["eval"]
    result = evaluate_samplers(
        list(build_samplers(cfg).values()),
        module.parameterization,
        MMDScorer(datamodule.x_val, ev["mmd_bandwidth"], ev["mmd_units"]),
        tuple(datamodule.shape),
        num_samples=ev["num_samples"],
        seed=ev["seed"],
        threshold=ev["mmd_threshold"],
    )
    logged = json.loads((smoke_run / "summary.json").read_text())["metrics"]
    for key, value in result.metrics.items():
        if not key.endswith("/seconds"):
            assert value == pytest.approx(logged[key], rel=1e-6), key


def test_a_wrong_file_or_network_names_the_key(smoke_run, tmp_path):
    with pytest.raises(CheckpointError, match=r"^--ckpt='.*absent.ckpt': no such file"):
        load_module(tmp_path / "absent.ckpt", key="--ckpt")
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    cfg = OmegaConf.create(torch.load(ckpt, weights_only=False)["ctdm_config"])
    cfg.model.net.width = 32
    with pytest.raises(CheckpointError, match=r"was saved from another network: it holds model.net.width=16"):
        load_module(ckpt, cfg)


def test_resolved_config_leaves_hydra_out(make_cfg):
    resolved = resolved_config(make_cfg())
    assert "hydra" not in resolved and resolved["eval"]["num_samples"] == resolved["data"]["val_size"]
