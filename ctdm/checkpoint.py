"""Checkpoints checked before they are used: readable, written by ctdm, and for the network the
config builds. Training (`ckpt_path=...`) and evaluation call these before any data is read, so a
wrong file fails in a second with its name, not deep inside Lightning's restore.
"""

from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file and what is wrong."""


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """The checkpoint at `path` (tensors memory-mapped, on the CPU); `key` names it in errors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(
            f"{key}={str(path)!r}: no such file (absolute: {file.resolve()}). Pass a checkpoint a ctdm run "
            "wrote, e.g. <run folder>/checkpoints/last.ckpt."
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # truncated or not a torch file: torch says so in many ways
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{key}={str(path)!r} is not a readable PyTorch checkpoint ({file.stat().st_size} bytes; "
            f"torch.load: {reason}). The file is truncated or corrupt (a copy or save that did not "
            "finish?); use another checkpoint of the run, e.g. its last.ckpt."
        ) from err
    if not isinstance(checkpoint, dict) or "ctdm_config" not in checkpoint or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{key}={str(path)!r} is not a ctdm checkpoint: it has no 'ctdm_config' and 'state_dict' "
            f"(found {found}). ctdm resumes and evaluates only the checkpoints its runs write."
        )
    return checkpoint


def check_network(
    checkpoint: dict, model: nn.Module, model_cfg: dict | None, path: str | Path, key: str = "ckpt_path"
) -> None:
    """Fail when `model` (built from `model_cfg`, the resolved `model` node) is not the network the
    checkpoint holds, naming the settings that differ and the first parameter whose shape differs."""
    saved, built = checkpoint["state_dict"], model.state_dict()
    mismatch = None
    for name, tensor in built.items():
        if tensor.numel() == 0:  # sized from the data at fit time (data_var): takes the saved shape
            continue
        if name not in saved:
            mismatch = f"this config builds {name} {list(tensor.shape)}, which the checkpoint lacks"
        elif saved[name].shape != tensor.shape:
            mismatch = f"{name} is {list(saved[name].shape)} there, {list(tensor.shape)} here"
        if mismatch:
            break
    extra = [name for name in saved if name not in built]
    if mismatch is None and extra:
        mismatch = f"the checkpoint holds {extra[0]} {list(saved[extra[0]].shape)}, which this config lacks"
    if mismatch is None:
        return
    differences = _differences(checkpoint["ctdm_config"].get("model") or {}, model_cfg or {}, "model")
    settings = ""
    if differences:
        held = ", ".join(f"{k}={a!r}" for k, a, _ in differences)
        builds = ", ".join(f"{k}={b!r}" for k, _, b in differences)
        settings = f": it holds {held}, this config builds {builds}"
    raise CheckpointError(
        f"{key}={str(path)!r} was saved from another network{settings} (first mismatching parameter: "
        f"{mismatch}). Use the model settings it was trained with (stored in the checkpoint as "
        "ctdm_config), or start without ckpt_path."
    )


def _differences(saved: dict, current: dict, prefix: str) -> list[tuple[str, object, object]]:
    """(key, saved value, current value) for the network settings that differ, nested keys in full."""
    out = []
    for name in sorted(set(saved) | set(current)):
        if name in ("optimizer", "lr_scheduler"):  # training settings may change on resume
            continue
        a, b = saved.get(name), current.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}.{name}")
        elif a != b:
            out.append((f"{prefix}.{name}", a, b))
    return out
