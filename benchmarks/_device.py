"""What the benchmark scripts share: a helper module, not a benchmark (`make bench` runs [!_]*.py)."""

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock reading covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
