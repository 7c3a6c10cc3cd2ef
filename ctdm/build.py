"""A run's objects built from its config, in one place for every entry point (as lightning-hydra-template
shares its instantiators between train and eval): `python -m ctdm.train`, `python -m ctdm.evaluate`, the
diagnostics, the benchmarks and the experiment reports.

    module = build_module(cfg)                  # loss terms + DiffusionModule + likelihood settings
    run = build_run(cfg, module, callbacks)     # data, loggers (given the resolved config), trainer
    module = load_module("<run>/checkpoints/last.ckpt")   # a trained module from its checkpoint alone
    law = build_data(module.run_config).law     # and the exact law of its data (None for images)

Every object is built by Hydra from its `_target_`; the order of the calls is the entry points' (what a
user can get wrong is built before any data is read).
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from ctdm.checkpoint import check_network, load_checkpoint
from ctdm.module import DiffusionModule
from ctdm.tracking import IDENTITY_KEYS, declared_floats, run_identity

log = logging.getLogger(__name__)


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config as plain resolved data without Hydra's own node: what checkpoints carry
    (`ctdm_config`) and the loggers record as hyperparameters."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def build_module(cfg: DictConfig) -> DiffusionModule:
    """`cfg.model`'s DiffusionModule with the loss terms of `cfg.loss` and `cfg.diffusion.likelihood`."""
    loss = instantiate(cfg.loss, _convert_="all")
    return instantiate(cfg.model, loss=loss, likelihood=OmegaConf.to_container(cfg.diffusion.likelihood))


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]


def build_data(cfg: DictConfig | dict):
    """The DataModule of `cfg.data` (the first object that reads files, e.g. data.path)."""
    return instantiate(cfg["data"])


def build_samplers(cfg: DictConfig | dict) -> dict:
    """{name: ready sampler} of `cfg.eval.samplers` (a run's config or a checkpoint's stored one)."""
    return {name: instantiate(node) for name, node in cfg["eval"]["samplers"].items()}


def build_loggers(cfg: DictConfig, identity: dict | None = None) -> list:
    """The loggers of `cfg.logger`, with their null name/group/tags/job_type keys set from the run's
    identity (default: ctdm.tracking.run_identity; keys a logger's config sets, like the CSV logger's
    name, are kept)."""
    if identity is None:
        identity = run_identity(cfg, HydraConfig.get() if HydraConfig.initialized() else None)
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        filled = {k: identity[k] for k in IDENTITY_KEYS if k in node and node[k] is None}
        logger = instantiate(node, **filled)
        # Lightning passes anonymous=None, which W&B warns about on every run (it has no effect).
        getattr(logger, "_wandb_init", {}).pop("anonymous", None)
        loggers.append(logger)
    return loggers


@dataclass
class Run:
    """What `trainer.fit` or `trainer.validate` needs: the module, its data, the trainer (with its
    callbacks and loggers)."""

    module: DiffusionModule
    datamodule: L.LightningDataModule
    callbacks: list
    loggers: list
    trainer: L.Trainer


def build_run(cfg: DictConfig, module: DiffusionModule, callbacks: list, identity: dict | None = None) -> Run:
    """The run around a built module: the data (read now, so a missing file fails before the loggers
    write; the module takes its variances unless a checkpoint gave them), the module's stored config,
    group choices and identity, the loggers (`identity`, default ctdm.tracking.run_identity; given the
    resolved config with one number type per key, and the evaluated run's record if any: W&B's run
    config, the CSV logger's hparams.yaml) and the trainer."""
    datamodule = build_data(cfg)
    if module.data_var.numel() == 0:
        module.set_data_var(datamodule.data_var)
    module.run_config = resolved_config(cfg)  # travels in every checkpoint
    if HydraConfig.initialized():  # and the config groups it came from (ctdm.evaluate recomposes them)
        choices = OmegaConf.to_container(HydraConfig.get().runtime.choices)
        module.run_choices = {k: v for k, v in choices.items() if v is not None}
    if identity is None:
        identity = run_identity(cfg, HydraConfig.get() if HydraConfig.initialized() else None)
    module.run_identity = {k: identity[k] for k in IDENTITY_KEYS}  # an evaluation joins this run's group
    loggers = build_loggers(cfg, identity)
    hparams = declared_floats(module.run_config)
    if "trained_run" in identity:
        hparams["trained_run"] = identity["trained_run"]
    for logger in loggers:
        logger.log_hyperparams(hparams)
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar it is told not to show
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Run(module, datamodule, callbacks, loggers, trainer)


def load_module(path: str | Path, cfg: DictConfig | None = None, key: str = "ckpt_path") -> DiffusionModule:
    """The trained module of a ctdm checkpoint, in eval mode: built from `cfg` (default: the config stored
    in the checkpoint, which also becomes its `run_config`), checked against the checkpoint's weights,
    then given them (the EMA average when the run had one: ctdm.callbacks.ema). `key` names the file in
    errors."""
    checkpoint = load_checkpoint(path, key)
    stored = cfg is None
    cfg = OmegaConf.create(checkpoint["ctdm_config"]) if stored else cfg
    module = build_module(cfg)
    check_network(checkpoint, module, OmegaConf.to_container(cfg.model, resolve=True), path, key)
    module.on_load_checkpoint(checkpoint)  # sizes the data_var buffer from the checkpoint
    module.load_state_dict(checkpoint["state_dict"])
    if stored:
        module.run_config = checkpoint["ctdm_config"]
    return module.eval()


def check_before_fit(cfg: DictConfig, run: Run) -> None:
    """What would otherwise fail during fit, after the first steps or at the end: the optimizer and LR
    schedule the module builds from its partials (model.optimizer, model.lr_scheduler), the checkpoint
    folders (written at the first validation), whether a training step and the sample evaluation fit
    in memory; and the CDL's cost is printed."""
    module = run.module
    try:
        optimizer = module.optimizer_factory(params=module.parameters())
    except (ValueError, TypeError) as err:
        raise ValueError(f"model.optimizer ({_target(cfg.model.optimizer)}): {err}") from None
    if module.lr_scheduler_factory is not None:
        try:
            module.lr_scheduler_factory(optimizer=optimizer)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.lr_scheduler ({_target(cfg.model.lr_scheduler)}): {err}") from None
    names = list((cfg.get("callbacks") or {}).keys())
    for name, callback in zip(names, run.callbacks, strict=False):
        folder = getattr(callback, "dirpath", None) or getattr(
            getattr(callback, "path", None), "parent", None
        )
        if folder is not None:
            check_writable(folder, f"callbacks.{name}.dirpath")
    check_step_memory(cfg, run)
    for callback in run.callbacks:
        check_memory = getattr(callback, "check_memory", None)
        if check_memory is not None:
            check_memory(run.module, run.datamodule, run.trainer)


def check_step_memory(cfg: DictConfig, run: Run) -> None:
    """Refuse a training step that cannot fit in memory on one rank, estimated from the rows its loss
    terms hold (ctdm.losses.memory, the network's cost per row measured on two rows on the CPU), and log
    what a CDL term adds to the base loss's step."""
    import torch

    from ctdm.evaluation.budget import available_bytes
    from ctdm.losses import memory
    from ctdm.samplers.memory import default_memory_budget

    module, trainer = run.module, run.trainer
    run.datamodule.setup("fit")
    shape = tuple(run.datamodule.x_val.shape[1:])
    world = max(1, trainer.num_nodes * trainer.num_devices)
    batch = max(1, -(-int(cfg.data.batch_size) // world))  # each rank's share of the global batch
    per_row = memory.bytes_per_row(module.eps, shape, torch.device("cpu"))
    device = trainer.strategy.root_device
    available, where = available_bytes(device)
    budget = default_memory_budget(device)  # what max_batch auto chooses from, as at the step
    terms = module.loss_terms
    memory.check_step_fits(
        terms, batch, per_row, memory.parameter_bytes(module), available=available, where=where, budget=budget
    )
    cost = memory.describe_cost(terms, batch, per_row, budget)
    if cost:
        log.info(cost)


def _target(node) -> str:
    return str(node.get("_target_", "?")) if isinstance(node, DictConfig) else "?"


def check_writable(folder: str | Path, key: str) -> None:
    """Make `folder` and write a file into it, or fail naming the key (before any training step)."""
    probe = Path(folder) / f".write_test.{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"{key}={str(folder)!r}: cannot write there ({err.strerror or err}: {err.filename or folder}); "
            "checkpoints would fail at the first validation. Choose a writable folder."
        ) from None
