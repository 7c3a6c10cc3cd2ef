"""What the entry points do before the heavy libraries load: the checks a config can fail, the `--help`
listing, and the console noise users cannot act on.

`python -m ctdm.train` imports Lightning, torchvision, torchmetrics, W&B and matplotlib only after
`preflight` passed, so a config error, a missing file or missing FID weights is refused in seconds
instead of ten, before a W&B run, checkpoints or a data cache are written, and the run folder Hydra made
is removed (benchmarks/time_to_error.py measures it). Composition errors and the config's own values
need no torch; the loss terms and samplers check their arguments as they are built, which loads torch
(plain torch classes, no Lightning).
"""

import logging
import warnings
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from ctdm.config import check_config


def preflight(cfg: DictConfig) -> None:
    """Everything a user can get wrong that needs no data, network or heavy library: the config's values
    (ctdm.config.check_config), the arguments of every loss term and evaluated sampler (each class checks
    its own when built; torch only), and the files the run will read (`check_files`)."""
    check_config(cfg)  # no torch needed for these two
    check_files(cfg)
    for group, nodes in (("loss", cfg.get("loss") or {}), ("eval.samplers", cfg.eval.get("samplers") or {})):
        for name, node in nodes.items():
            if "_target_" not in node:  # keys a preset set for a term or sampler this command left out
                raise ValueError(
                    f"{group}.{name} has no _target_ (only {sorted(node)}): a preset sets keys of a "
                    f"{'loss term' if group == 'loss' else 'sampler'} that this command did not select. "
                    f"Select it, or drop the node with '~{group}.{name}'."
                )
    instantiate(cfg.loss, _convert_="all")
    for node in (cfg.eval.get("samplers") or {}).values():
        instantiate(node)


def _missing(path) -> str:
    return f"(absolute: {Path(str(path)).expanduser().resolve()})"


def check_files(cfg: DictConfig) -> None:
    """The files and folders the config names exist, and image runs have their FID network: data.path (a
    file), data.root (a folder, unless data.download), and for image data the extractor's weights
    (found, or downloaded when online) and eval.fid.ref_stats. What is inside is checked by the readers."""
    data = cfg.get("data") or {}
    path = data.get("path")
    if path is not None and not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(
            f"data.path={str(path)!r}: no such file {_missing(path)}. "
            "data.path=null reads the points ctdm ships."
        )
    root = data.get("root")
    if root is not None and not data.get("download", False) and not Path(str(root)).expanduser().is_dir():
        from ctdm.data.fake import offline_route

        option = _choice("data")
        download = " Online, data.download=true fetches it." if "download" in data else ""
        raise FileNotFoundError(
            f"data.root={str(root)!r} is not a folder {_missing(root)}.{download} {offline_route(option)}"
        )
    if len(data.get("shape") or ()) == 3:  # images: FID and KID need their network
        check_fid_files(cfg.eval.get("fid") or {})


def check_fid_files(fid) -> None:
    """The FID extractor's weights (InceptionV3: eval.fid.weights_path, the torch.hub cache, or a download
    when online; TorchScriptInception: its file) and eval.fid.ref_stats, without building the network. A
    file the config names is checked without torch; only finding the default (the torch.hub cache, the
    extractor's class) loads it."""
    from ctdm.metrics import weights

    ref_stats = fid.get("ref_stats")
    if ref_stats is not None and not Path(str(ref_stats)).expanduser().is_file():
        raise FileNotFoundError(f"eval.fid.ref_stats={str(ref_stats)!r}: no such file {_missing(ref_stats)}.")
    extractor = fid.get("extractor") or {}
    if not hasattr(extractor, "get"):  # a name (eval.fid.extractor=inception): checked when it is built
        return
    if extractor.get("weights_path") is not None:  # InceptionV3's file
        weights.resolve_inception_weights(extractor.weights_path)
        return
    if extractor.get("path") is not None:  # TorchScriptInception's file
        _torchscript_file(weights, extractor.path)
        return
    from ctdm.metrics import features

    target = extractor.get("_target_")
    try:
        cls = get_object(target) if isinstance(target, str) else None
    except Exception:  # an unknown class fails with Hydra's own message when the extractor is built
        return
    if isinstance(cls, type) and issubclass(cls, features.InceptionV3):
        weights.resolve_inception_weights(None)
    elif isinstance(cls, type) and issubclass(cls, features.TorchScriptInception):
        _torchscript_file(weights, None)


def _torchscript_file(weights, path) -> None:
    try:
        weights.torchscript_file(path)
    except ValueError as err:
        raise ValueError(f"eval.fid.extractor.path: {err}") from None


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


# -- --help --------------------------------------------------------------------------------------------


def user_options() -> str:
    """The config groups and their options as `--help` lists them: without Hydra's own groups and the
    `_`-prefixed bases that options compose (`_module`, `_cdl`, `_parallel`), which are not choices."""
    if not GlobalHydra.instance().is_initialized():
        return ""
    loader = GlobalHydra.instance().config_loader()
    lines = []

    def walk(parent: str) -> None:
        for group in sorted(loader.list_groups(parent)):
            path = f"{parent}/{group}" if parent else group
            if path == "hydra" or group.startswith("_"):
                continue
            options = [o for o in loader.get_group_options(path) if not o.startswith("_")]
            if options:
                lines.append(f"{path}: {', '.join(options)}")
            walk(path)

    walk("")
    return "\n".join(lines)


if not OmegaConf.has_resolver("ctdm_user_options"):  # conf/hydra/default.yaml's help.template uses it
    OmegaConf.register_new_resolver("ctdm_user_options", user_options)


# -- console noise ---------------------------------------------------------------------------------------


def quiet_libraries() -> None:
    """Silence what users cannot act on: Lightning's device listing, tips and the "seed set" line (its INFO
    logs), deprecation warnings raised inside Lightning and torch, and the hint to add dataloader workers
    for in-memory tensors. Warnings about the user's own settings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for module in ("lightning", "torch", "torchmetrics", "wandb"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")


def compare() -> None:
    """The `ctdm-compare` console script. A console script exits with its function's return value, and
    ctdm.compare.main returns the report's path (for Python callers), which would exit 1 printing it."""
    from ctdm.compare import main

    main()
