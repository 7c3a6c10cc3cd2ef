"""run_identity: the W&B name, group, tags and job type a run gets from its overrides and choices."""

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from ctdm.build import build_loggers
from ctdm.tracking import run_identity


def _as_job(cfg, mode=RunMode.RUN, sweep_dir="logs/train/multiruns/2025-01-02_03-04-05", job_name="train"):
    """What Hydra's launcher sets for a job: its mode, the sweep folder and the entry point's name."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = mode
        cfg.hydra.sweep.dir = sweep_dir
        cfg.hydra.job.name = job_name
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_a_sweep_job_is_named_by_its_overrides_and_grouped_by_its_sweep(make_cfg):
    # One job of `-m loss=contrastive loss.cdl.weight=0.01,0.1 seed=0,1 paths.log_dir=/tmp/x`.
    overrides = [
        "loss=contrastive",
        "loss.cdl.weight=0.1",
        "seed=1",
        "paths.log_dir=/tmp/x",
        "ckpt_path=null",
    ]
    cfg = _as_job(make_cfg(overrides), RunMode.MULTIRUN, sweep_dir="logs/train/multiruns/cdl_weights")
    identity = run_identity(cfg, HydraConfig.get())
    assert identity == {
        "name": "loss=contrastive,loss.cdl.weight=0.1,seed=1",  # where it writes is not what it is
        "group": "cdl_weights",
        "tags": ["data=eight_gaussians", "model=mlp", "loss=contrastive", "sampler=ddpm"],
        "job_type": "train",
    }


def test_a_plain_run_is_named_by_data_and_loss_and_has_no_group(make_cfg):
    cfg = _as_job(make_cfg(["debug=smoke"]))
    assert run_identity(cfg, HydraConfig.get())["name"] == "debug=smoke"
    cfg = _as_job(make_cfg(["data=moons"]), job_name="evaluate")
    identity = run_identity(cfg, HydraConfig.get())
    assert identity == {
        "name": "data=moons",
        "group": None,
        "tags": ["data=moons", "model=mlp", "loss=mse", "sampler=ddpm"],
        "job_type": "evaluate",
    }
    cfg = _as_job(make_cfg(["paths.log_dir=/tmp/x"]))
    assert run_identity(cfg, HydraConfig.get())["name"] == "data=eight_gaussians,loss=mse"


def test_the_experiment_option_is_the_group_and_presets_are_tags():
    hydra_cfg = OmegaConf.create(
        {
            "mode": RunMode.MULTIRUN,
            "sweep": {"dir": "logs/train/multiruns/2025-01-02_03-04-05"},
            "job": {"name": "train"},
            "overrides": {"task": ["experiment=cdl_dino", "seed=2"]},
            "runtime": {
                "choices": {
                    "experiment": "cdl_dino",
                    "debug": "fast",
                    "data": "dino",
                    "loss": "contrastive",
                    "hydra/launcher": "basic",
                }
            },
        }
    )
    identity = run_identity({}, hydra_cfg)
    assert identity["group"] == "cdl_dino" and identity["name"] == "experiment=cdl_dino,seed=2"
    assert identity["tags"] == ["data=dino", "loss=contrastive", "experiment=cdl_dino", "debug=fast"]


def test_without_hydra_the_run_keeps_its_task_name():
    assert run_identity({"task_name": "notebook"}) == {
        "name": "notebook",
        "group": None,
        "tags": [],
        "job_type": "train",
    }


def test_loggers_get_the_identity_only_where_their_config_leaves_it_null(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = _as_job(make_cfg(["loss=itd", "logger.wandb.group=mine"]), RunMode.MULTIRUN)
    csv, wandb = build_loggers(cfg)
    assert isinstance(csv, L.pytorch.loggers.CSVLogger) and csv.name == "csv"
    init = wandb._wandb_init  # the keyword arguments wandb.init will get
    assert init["name"] == "loss=itd"  # logger.* overrides say how it is logged, not what it is
    assert init["group"] == "mine" and init["job_type"] == "train"
    assert init["tags"] == ["data=eight_gaussians", "model=mlp", "loss=itd", "sampler=ddpm"]
