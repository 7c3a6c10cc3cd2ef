"""run_identity: the W&B name, group, tags and job type a run gets from its overrides, its sweep and its
choices; evaluation_identity: an evaluation joins the run it scored; declared_floats: one number type."""

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from ctdm.build import build_loggers
from ctdm.tracking import declared_floats, evaluation_identity, run_identity

TAGS = ["data=eight_gaussians", "model=mlp", "loss=contrastive", "sampler=ddpm"]


def _as_job(cfg, mode=RunMode.RUN, sweep_dir="logs/train/multiruns/2025-01-02_03-04-05", job_name="train"):
    """What Hydra's launcher sets for a job: its mode, the sweep folder and the entry point's name."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = mode
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.job.name = job_name
    HydraConfig.instance().set_config(cfg)
    return cfg


def _sweep(folder, command_line):
    """The sweep folder as Hydra's sweeper leaves it before the jobs start: multirun.yaml with the sweep's
    own command line."""
    folder.mkdir(parents=True)
    OmegaConf.save({"hydra": {"overrides": {"task": command_line}}}, folder / "multirun.yaml")
    return folder


def test_a_sweep_job_is_named_by_the_swept_keys_and_grouped_by_its_sweep(make_cfg, tmp_path):
    # One job of `-m loss=contrastive loss.cdl.weight=0.01,0.1 seed=0,1 paths.log_dir=/tmp/x`.
    command = ["loss=contrastive", "loss.cdl.weight=0.01,0.1", "seed=0,1", "paths.log_dir=/tmp/x"]
    sweep = _sweep(tmp_path / "cdl_weights", command)
    job = ["loss=contrastive", "loss.cdl.weight=0.1", "seed=1", "paths.log_dir=/tmp/x", "ckpt_path=null"]
    cfg = _as_job(make_cfg(job), RunMode.MULTIRUN, sweep_dir=sweep)
    assert run_identity(cfg, HydraConfig.get()) == {
        "name": "loss.cdl.weight=0.1,seed=1",  # what the sweep varies; its fixed overrides are the group's
        "group": "loss.cdl.weight,seed/cdl_weights",
        "tags": TAGS,
        "job_type": "train",
    }
    # Without the sweep's record (another sweeper), Hydra's override_dirname: every override that says
    # what the run is, sorted (paths and ckpt_path are its exclude_keys)
    cfg = _as_job(make_cfg(job), RunMode.MULTIRUN, sweep_dir=tmp_path / "elsewhere")
    assert run_identity(cfg, HydraConfig.get())["name"] == "loss.cdl.weight=0.1,loss=contrastive,seed=1"
    assert cfg.hydra.job.override_dirname == "loss.cdl.weight=0.1,loss=contrastive,seed=1"


def test_a_plain_run_is_named_by_its_overrides_and_has_no_group(make_cfg):
    cfg = _as_job(make_cfg(["debug=smoke", "trainer.enable_progress_bar=false"]))
    assert run_identity(cfg, HydraConfig.get())["name"] == "debug=smoke"
    cfg = _as_job(make_cfg(["data=moons"]), job_name="evaluate")
    identity = run_identity(cfg, HydraConfig.get())
    assert identity == {
        "name": "data=moons",
        "group": None,
        "tags": ["data=moons", "model=mlp", "loss=mse", "sampler=ddpm"],
        "job_type": "eval",
    }
    cfg = _as_job(make_cfg(["paths.log_dir=/tmp/x"]))
    assert run_identity(cfg, HydraConfig.get())["name"] == "data=eight_gaussians,loss=mse"


def test_the_experiment_names_the_group(make_cfg, tmp_path):
    cfg = _as_job(make_cfg(["experiment=eight_gaussians", "seed=2"]))
    identity = run_identity(cfg, HydraConfig.get())
    assert identity["group"] == "eight_gaussians" and identity["name"] == "experiment=eight_gaussians,seed=2"
    assert "experiment=eight_gaussians" in identity["tags"]
    sweep = _sweep(tmp_path / "authors", ["experiment=eight_gaussians", "loss=mse,itd", "seed=0,1,2"])
    cfg = _as_job(make_cfg(["experiment=eight_gaussians", "loss=itd", "seed=2"]), RunMode.MULTIRUN, sweep)
    identity = run_identity(cfg, HydraConfig.get())
    assert identity["group"] == "eight_gaussians/authors" and identity["name"] == "loss=itd,seed=2"


def test_without_hydra_the_run_keeps_its_task_name():
    assert run_identity({"task_name": "notebook"}) == {
        "name": "notebook",
        "group": None,
        "tags": [],
        "job_type": "train",
    }


def test_loggers_get_the_identity_only_where_their_config_leaves_it_null(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = _as_job(make_cfg(["loss=itd", "logger.wandb.group=mine"]))
    csv, wandb = build_loggers(cfg)
    assert isinstance(csv, L.pytorch.loggers.CSVLogger) and csv.name == "csv"
    init = wandb._wandb_init  # the keyword arguments wandb.init will get
    assert init["name"] == "loss=itd"  # logger.* overrides say how it is logged, not what it is
    assert init["group"] == "mine" and init["job_type"] == "train"
    assert init["tags"] == ["data=eight_gaussians", "model=mlp", "loss=itd", "sampler=ddpm"]


def test_an_evaluation_joins_the_run_it_scored(make_cfg, tmp_path):
    # `python -m ctdm.evaluate ckpt_path=... sampler=para_ddpm`: ctdm.evaluate adds the checkpoint's
    # group choices (data=..., loss=...) itself; they are not the user's and stay out of the name.
    args = [
        "data=eight_gaussians",
        "loss=contrastive",
        f"ckpt_path={tmp_path}/last.ckpt",
        "sampler=para_ddpm",
    ]
    cfg = _as_job(make_cfg(args), job_name="evaluate")
    checkpoint = {
        "ctdm_identity": {"name": "loss.cdl.weight=0.1,seed=1", "group": "loss.cdl.weight,seed/sw"},
        "ctdm_choices": {"data": "eight_gaussians", "loss": "contrastive", "sampler": "ddpm"},
        "ctdm_wandb_id": "abc123",
        "global_step": 4,
    }
    own = run_identity(cfg, HydraConfig.get())
    identity = evaluation_identity(own, checkpoint, f"{tmp_path}/last.ckpt", HydraConfig.get())
    assert identity["name"] == "loss.cdl.weight=0.1,seed=1 eval sampler=para_ddpm"
    assert identity["group"] == "loss.cdl.weight,seed/sw" and identity["job_type"] == "eval"
    assert identity["trained_run"] == {
        "id": "abc123",
        "name": "loss.cdl.weight=0.1,seed=1",
        "group": "loss.cdl.weight,seed/sw",
        "ckpt_path": f"{tmp_path}/last.ckpt",
        "step": 4,
    }
    # a checkpoint from before identities were stored: named after its run folder
    old = evaluation_identity(own, {}, "runs/2025-01-02/checkpoints/last.ckpt", HydraConfig.get())
    assert old["name"].startswith("2025-01-02 eval") and old["group"] is None


def test_numbers_keep_the_type_their_class_declares():
    config = {
        "seed": 1,
        "loss": {
            "cdl": {"_target_": "ctdm.losses.ContrastiveDiffusionLoss", "weight": 1, "points": 2},
            "mse": {"_target_": "ctdm.losses.DenoisingMSE", "weight": 0.5},
        },
        "sampler": {"_target_": "ctdm.samplers.DDPMSampler", "steps": 20},
        "other": {"_target_": "no.such.Class", "weight": 1},
        "flag": True,
    }
    typed = declared_floats(config)
    assert typed["loss"]["cdl"]["weight"] == 1.0 and type(typed["loss"]["cdl"]["weight"]) is float
    assert type(typed["loss"]["cdl"]["points"]) is int and type(typed["sampler"]["steps"]) is int
    assert type(typed["seed"]) is int and typed["flag"] is True and type(typed["other"]["weight"]) is int
    assert type(config["loss"]["cdl"]["weight"]) is int  # a copy: the run's own config is unchanged
