"""Checkpoints checked before they are used: readable, written by ctdm, and for the network the
config builds. Training (`ckpt_path=...`) and evaluation call these before any data is read, so a
wrong file fails in a second with its name, not deep inside Lightning's restore.
"""

import os
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


# -- resuming: what a resume may not change, and the checkpoint a requeued SLURM job continues from ------

RESUME_GROUPS = ("data", "model", "loss")  # what a checkpoint was trained on, with and for


def check_resume(
    checkpoint: dict,
    cfg: dict,
    choices: dict | None,
    path: str | Path,
    allowed: list[str] | tuple[str, ...] = (),
) -> None:
    """Refuse a resume that cannot continue the checkpoint's run: one with nothing left to train
    (`trainer.max_steps` at or below the checkpoint's step), or one whose data, model or loss option
    differs from the checkpoint's, unless `allowed` (resume_changes) names that group.

    cfg: the resolved config of this command; choices: its Hydra group choices (None without Hydra).
    """
    step, max_steps = int(checkpoint.get("global_step", 0)), int(cfg["trainer"]["max_steps"])
    if max_steps <= step:
        raise CheckpointError(
            f"trainer.max_steps={max_steps} is not above the step of ckpt_path={str(path)!r} ({step}): "
            "resuming would train nothing. Raise trainer.max_steps to continue the run, or score the "
            f"checkpoint with `python -m ctdm.evaluate ckpt_path={path}`."
        )
    unknown = sorted(set(allowed) - set(RESUME_GROUPS))
    if unknown:
        raise ValueError(f"resume_changes={list(allowed)}: {unknown} are not among {list(RESUME_GROUPS)}.")
    stored = checkpoint.get("ctdm_config") or {}
    for node in ("optimizer", "lr_scheduler"):  # restored from the checkpoint: the command's are ignored
        a, b = (stored.get("model") or {}).get(node), (cfg.get("model") or {}).get(node)
        if a is not None and b is not None and a != b:
            key, was, now = next(_leaf_differences(a, b, f"model.{node}"))
            raise CheckpointError(
                f"{key}={now!r} differs from ckpt_path={str(path)!r}, whose run had {key}={was!r}. A resume "
                f"restores the optimizer and its learning-rate schedule from the checkpoint, so this "
                f"command's {key} would be ignored (a cosine schedule set up for another trainer.max_steps "
                f"would even rise again). Resume with {key}={was!r}."
            )
    saved = _options(stored, checkpoint.get("ctdm_choices"))
    current = _options(cfg, choices)
    for group in RESUME_GROUPS:
        if group in allowed:
            continue
        use_choices = group in (checkpoint.get("ctdm_choices") or {}) and group in (choices or {})
        kind = "choice" if use_choices else "target"
        a, b = saved[group][kind], current[group][kind]
        if a is not None and b is not None and a != b:
            sep = "=" if use_choices else " "
            was, now = f"{group}{sep}{a}", f"{group}{sep}{b}"
            raise CheckpointError(
                f"ckpt_path={str(path)!r} was trained with {was}; this command chooses {now}. "
                f"Resuming continues the checkpoint's run, so its {group} must stay: use {was}, or add "
                f"resume_changes=[{group}] to go on with another {group} on purpose (e.g. fine-tuning)."
            )


def _leaf_differences(a, b, prefix: str):
    """(key, a's value, b's value) for every leaf where two nested configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for name in sorted(set(a) | set(b), key=str):
            yield from _leaf_differences(a.get(name), b.get(name), f"{prefix}.{name}")
    elif a != b:
        yield prefix, a, b


def _options(cfg: dict, choices: dict | None) -> dict:
    """{group: {"choice": the Hydra option or None, "target": what it builds}} for RESUME_GROUPS."""
    model = cfg.get("model") or {}
    loss = cfg.get("loss") or {}
    targets = {
        "data": (cfg.get("data") or {}).get("_target_"),
        "model": (model.get("net") or {}).get("_target_") if isinstance(model.get("net"), dict) else None,
        "loss": ", ".join(f"{k}: {v.get('_target_')}" for k, v in sorted(loss.items()) if isinstance(v, dict))
        or None,
    }
    choices = choices or {}
    return {g: {"choice": choices.get(g), "target": targets[g]} for g in RESUME_GROUPS}


def requeued_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint a requeued SLURM job continues from: the newer (by step) of the run folder's
    `checkpoints/last.ckpt` (written when SLURM stopped the job with SIGTERM) and Lightning's
    `hpc_ckpt_<n>.ckpt` (written by its auto-requeue handler on SIGUSR1, before the requeue). None unless
    this is a SLURM job that was requeued (SLURM_RESTART_COUNT >= 1) or Lightning's handler wrote one."""
    out = Path(output_dir)
    hpc = sorted(out.glob("hpc_ckpt_*.ckpt"))
    restarted = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if "SLURM_JOB_ID" not in os.environ or not (restarted or hpc):
        return None
    candidates = [p for p in [out / "checkpoints" / "last.ckpt", *hpc] if p.is_file()]
    steps = {}
    for p in candidates:
        try:
            steps[p] = int(load_checkpoint(p).get("global_step", 0))
        except CheckpointError:
            continue  # a file that the kill left unreadable: the other one
    return max(steps, key=steps.get) if steps else None
