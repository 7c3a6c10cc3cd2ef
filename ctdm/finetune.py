"""The fine-tuning presets' two keys (experiment=paper_dino_finetune, paper_1d_finetune), resolved before
anything else is read: `finetune.base`, the converged base checkpoint, becomes `ckpt_path`, and
`finetune.steps`, the fine-tune's length counted after the base, becomes `trainer.max_steps` (the base's
step + finetune.steps). The resume itself is ctdm's (ckpt_path with resume_changes=[loss]: ctdm.checkpoint
checks what may change); these keys only say it the way the protocol is stated, "N steps from this base".
"""

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict


def resolve_finetune(cfg: DictConfig) -> None:
    """Set `ckpt_path` and `trainer.max_steps` from the `finetune` node, when the config has one; a missing
    or unreadable base, or a length also set by hand, is refused in one paragraph before any data is read.
    A `trainer.max_steps` that a config file sets (debug=smoke's 4) gives way to finetune.steps."""
    node = cfg.get("finetune")
    if node is None:
        return
    if OmegaConf.is_missing(node, "base"):
        raise ValueError(
            "finetune.base is not set: a fine-tuning preset trains on from a base checkpoint. Pass the base "
            "run's checkpoint, e.g. finetune.base=<run folder>/checkpoints/last.ckpt (a run of the same "
            "preset without _finetune, e.g. experiment=paper_dino loss=itd trainer.max_steps=100000)."
        )
    steps = node.steps
    if steps < 1:
        raise ValueError(
            f"finetune.steps={steps}: the number of fine-tuning steps after the base checkpoint's step, an "
            "integer >= 1."
        )
    if cfg.get("ckpt_path") is not None:
        raise ValueError(
            f"ckpt_path={cfg.ckpt_path!r} and finetune.base={node.base!r} are both set: a fine-tuning preset "
            "resumes from finetune.base. Drop ckpt_path (or use it without the fine-tuning preset)."
        )
    if _on_command_line("trainer.max_steps"):
        raise ValueError(
            f"trainer.max_steps={cfg.trainer.max_steps} is set with a fine-tuning preset, whose length is "
            f"finetune.steps={steps} after finetune.base's step (max_steps follows from the two). Set "
            "finetune.steps instead."
        )
    from ctdm.checkpoint import load_checkpoint  # torch: only for a fine-tune (a config error stays fast)

    checkpoint = load_checkpoint(node.base, key="finetune.base")
    with open_dict(cfg):
        cfg.ckpt_path = str(node.base)
        cfg.trainer.max_steps = int(checkpoint.get("global_step", 0)) + steps


def _on_command_line(key: str) -> bool:
    if not HydraConfig.initialized():
        return False
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in HydraConfig.get().overrides.task)
