"""Mixed precision outside Lightning's steps: sampling runs the network under the same autocast as training.

Lightning runs training and validation steps under `trainer.precision` (`bf16-mixed`: torch.autocast
to bfloat16), but sampling in callbacks and in `ctdm.evaluate` calls the network outside those steps.
`autocast(precision, device)` gives them the same context: matrix products and convolutions in
bfloat16 (or float16), everything else (the samplers' updates, the states) in float32.
"""

from contextlib import AbstractContextManager, nullcontext

import torch

# Lightning's precision names that run the forward under autocast, and the autocast dtype.
MIXED = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Precisions without autocast: the weights themselves have the dtype (or full precision).
PLAIN = {"32-true", "32", "64-true", "64", "bf16-true", "16-true", "transformer-engine"}


def autocast(precision: str | int | None, device: torch.device | str) -> AbstractContextManager:
    """The context the network runs under for Lightning's `precision` (trainer.precision) on `device`.

    `with autocast(trainer.precision, pl_module.device): sampler(...)`: bf16-mixed / 16-mixed give
    torch.autocast; 32-true (the default), bf16-true, ... and None give a context that does nothing.
    """
    name = str(precision) if precision is not None else "32-true"
    if name in MIXED:
        return torch.autocast(device_type=torch.device(device).type, dtype=MIXED[name])
    if name in PLAIN:
        return nullcontext()
    raise ValueError(
        f"trainer.precision={precision!r} is not a precision ctdm knows; use one of "
        f"{sorted(MIXED) + sorted(PLAIN)} (e.g. bf16-mixed on GPUs, 32-true on CPUs)."
    )
