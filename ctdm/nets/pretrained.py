"""A pretrained diffusers `UNet2DModel` (e.g. google/ddpm-cifar10-32) as a ctdm network on continuous log-SNR.

diffusers models take a discrete DDPM timestep t in {0, ..., T-1}, where level t has
alpha_bar_t = prod_{s <= t} (1 - beta_s) on the schedule the model was trained with. ctdm asks for
its prediction at any log-SNR a = log(alpha_bar / (1 - alpha_bar)): `PretrainedUNet` maps a to its
fractional timestep on that schedule (linear interpolation in log-SNR between the two neighbouring
levels, so a level of the schedule gives its exact integer timestep) and feeds it to the model's
sinusoidal timestep embedding, which is defined for fractional t. See docs/pretrained.md.

Outside the schedule's range the timestep is clamped: a log-SNR above the cleanest level (t = 0,
log-SNR 9.21 for DDPM's linear 1e-4..0.02 schedule) is answered as t = 0, one below the noisiest
(t = T-1, log-SNR -10.1) as t = T-1, as ITD's `logsnr2t` does. The network was never trained
there, so such levels get the prediction of the nearest trained level.

diffusers is an optional dependency: `pip install -e '.[pretrained]'`.
"""

import json
import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ctdm.diffusion.schedules import DDPMSchedule

log = logging.getLogger(__name__)

# diffusers' beta_schedule names for the schedules DDPMSchedule builds.
BETA_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is not installed (a ValueError too, so the CLI prints it as one paragraph)."""


def require_diffusers():
    """The diffusers module, or a one-paragraph error naming the extra that installs it."""
    try:
        import diffusers
    except ImportError as err:
        raise MissingExtraError(
            "model=pretrained_ddpm needs the diffusers package, which is an optional extra of ctdm: "
            "pip install -e '.[pretrained]' (or pip install diffusers)."
        ) from err
    return diffusers


def logsnr_to_timestep(train_logsnr: Tensor, logsnr: Tensor) -> Tensor:
    """diffusers' fractional timestep in [0, T-1] of each level in `logsnr` [N].

    train_logsnr: the schedule's levels [T] (float64, decreasing: train_logsnr[t] is timestep t's).
    Linear in log-SNR between neighbouring levels; levels outside the schedule are clamped to its
    end timesteps (above train_logsnr[0] -> 0, below train_logsnr[-1] -> T-1).
    """
    grid = train_logsnr.flip(0)  # increasing: grid[j] belongs to timestep T-1-j
    a = logsnr.to(grid.dtype).clamp(grid[0], grid[-1])
    j = torch.searchsorted(grid, a).clamp(1, len(grid) - 1)
    frac = (a - grid[j - 1]) / (grid[j] - grid[j - 1])
    return (len(grid) - j - frac).float()


class PretrainedUNet(nn.Module):
    """A diffusers `UNet2DModel`'s prediction at continuous log-SNR: (z [N, C, H, W], logsnr [N]) ->
    unet(z, timestep(logsnr)).sample, shaped like z.

    The model predicts what its scheduler says (`prediction_type`: epsilon for DDPM's models): pair
    it with model/parameterization=eps (v_prediction: =v, sample: =x0).

    path: a local folder written by `save_pretrained` (a UNet2DModel's, or a pipeline's with unet/ and
        scheduler/ subfolders), or a Hugging Face Hub id such as google/ddpm-cifar10-32 (downloaded
        once into the Hub cache; with HF_HUB_OFFLINE=1 only the cache is read).
    shape: [C, H, W] of the data (data.shape): must be the model's channels and sample size.
    schedule: the training schedule when the model comes without a scheduler_config.json; one that
        comes with it (the folder's, or its scheduler/ subfolder's) wins.
    width, blocks: `debug=smoke` shrinks every network through these; a pretrained network's size is
        fixed by its weights, so they are ignored.
    The UNet itself is `self.unet`: `module.net.unet.save_pretrained(folder)` writes a fine-tuned one
    back as a diffusers model.
    """

    def __init__(
        self,
        path: str,
        shape: list[int],
        schedule: DDPMSchedule | None = None,
        width: int | None = None,
        blocks: int | None = None,
    ):
        super().__init__()
        diffusers = require_diffusers()
        self.path = str(path)
        folder, unet_sub, scheduler_sub = _locate(self.path)
        # from_pretrained returns the model in eval mode; Lightning keeps submodules' modes, so without
        # train() fine-tuning would run with dropout off.
        self.unet = _load_unet(diffusers, self.path, folder, unet_sub).train()
        _check_shape(self.unet.config, self.path, shape)
        scheduler = _scheduler_config(diffusers, self.path, folder, scheduler_sub)
        if scheduler is not None:
            schedule = _schedule_from(scheduler, self.path)
        elif schedule is None:
            raise ValueError(
                f"model.net.path={self.path!r} has no scheduler_config.json, so pass the schedule the model "
                "was trained with as model.net.schedule (model=pretrained_ddpm uses diffusion.schedule)."
            )
        else:
            log.info("%s has no scheduler_config.json: using %s for its timesteps", self.path, schedule)
        self.schedule = schedule
        self.prediction_type = (scheduler or {}).get("prediction_type", "epsilon")
        # The training levels travel with the network's device; not saved (they come from the schedule).
        self.register_buffer("train_logsnr", schedule.logsnr.clone(), persistent=False)
        if width is not None or blocks is not None:
            log.info("model.net.width/blocks are ignored: %s has its own size", self.path)

    def timestep(self, logsnr: Tensor) -> Tensor:
        """The model's (fractional, clamped) timestep of each log-SNR level [N]."""
        return logsnr_to_timestep(self.train_logsnr, logsnr)

    def forward(self, z: Tensor, logsnr: Tensor) -> Tensor:
        return self.unet(z, self.timestep(logsnr)).sample


def _locate(path: str) -> tuple[str, str | None, str | None]:
    """(where to load from, the unet's subfolder, the scheduler's subfolder): a local folder if one exists
    at `path`, else a Hub id. A pipeline folder (model_index.json) keeps them in unet/ and scheduler/."""
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file() and (local / "unet" / "config.json").is_file():
            return str(local), "unet", "scheduler"
        if not (local / "config.json").is_file():
            found = sorted(p.name for p in local.iterdir())[:10]
            raise ValueError(
                f"model.net.path={path!r} is not a diffusers model folder: it has no config.json (nor "
                f"unet/config.json); found {found}. Give a folder written by UNet2DModel.save_pretrained "
                "(or a pipeline's save_pretrained), or a Hugging Face Hub id such as google/ddpm-cifar10-32."
            )
        return str(local), None, None
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ValueError(
            f"model.net.path={path!r}: no such folder (absolute: {local.resolve()}), and it is not a Hugging "
            "Face Hub id (owner/name). Give a folder written by UNet2DModel.save_pretrained or a Hub id "
            "such as google/ddpm-cifar10-32."
        )
    return path, None, None  # a Hub id


def _load_unet(diffusers, path: str, source: str, subfolder: str | None):
    local = Path(source).is_dir()
    if local:  # a local folder must hold a UNet2DModel, not another diffusers model
        config = json.loads((Path(source) / (subfolder or "") / "config.json").read_text())
        if config.get("_class_name") != "UNet2DModel":
            raise ValueError(
                f"model.net.path={path!r} holds a {config.get('_class_name')!r} (config.json's _class_name), "
                "not a UNet2DModel: model=pretrained_ddpm loads DDPM-style UNet2DModel folders."
            )
    try:
        unet = diffusers.UNet2DModel.from_pretrained(source, subfolder=subfolder, low_cpu_mem_usage=False)
    except (OSError, ValueError) as err:  # missing weights, Hub errors (offline, unknown id)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = (
            "the folder's weights could not be read"
            if local
            else "there is no such local folder, and it could not be fetched from the Hugging Face Hub"
            + (" (HF_HUB_OFFLINE is set and it is not in the Hub cache)" if _offline() else "")
        )
        raise ValueError(
            f"model.net.path={path!r}: {where} ({type(err).__name__}: {reason}). Offline, give a local "
            "folder written by UNet2DModel.save_pretrained (on a machine with internet: "
            "UNet2DModel.from_pretrained('google/ddpm-cifar10-32').save_pretrained(FOLDER))."
        ) from err
    config = unet.config
    if config.time_embedding_type != "positional" or config.class_embed_type or config.num_class_embeds:
        raise ValueError(
            f"model.net.path={path!r} is not an unconditional DDPM-timestep UNet (time_embedding_type="
            f"{config.time_embedding_type!r}, class_embed_type={config.class_embed_type!r}, num_class_embeds="
            f"{config.num_class_embeds!r}): model=pretrained_ddpm needs time_embedding_type 'positional' and "
            "no class embedding."
        )
    return unet


def _check_shape(config, path: str, shape) -> None:
    size = config.sample_size
    size = list(size) if isinstance(size, (list, tuple)) else [size, size]
    model_shape = [config.in_channels, *size]
    if list(shape) != model_shape or config.out_channels != config.in_channels:
        raise ValueError(
            f"model.net.path={path!r} is a UNet2DModel for {config.in_channels}-channel images of size "
            f"{size[0]}x{size[1]} predicting {config.out_channels} channels (config.json: in_channels, "
            f"sample_size, out_channels), but the data is {list(shape)} (data.shape). Use data of shape "
            f"{model_shape} (e.g. data=cifar10 for google/ddpm-cifar10-32); models that also predict their "
            "variance (out_channels = 2 x in_channels) are not supported."
        )


def _scheduler_config(diffusers, path: str, source: str, subfolder: str | None) -> dict | None:
    """The model's scheduler_config.json as a dict, None when it has none."""
    if Path(source).is_dir():
        file = Path(source) / (subfolder or "") / "scheduler_config.json"
        return json.loads(file.read_text()) if file.is_file() else None
    try:
        return dict(diffusers.DDPMScheduler.load_config(source, subfolder=subfolder))
    except (OSError, ValueError):  # the Hub repository has no scheduler_config.json
        return None


def _schedule_from(config: dict, path: str) -> DDPMSchedule:
    kind = BETA_SCHEDULES.get(config.get("beta_schedule", "linear"))
    if kind is None or config.get("trained_betas") is not None:
        raise ValueError(
            f"model.net.path={path!r}: its scheduler_config.json has beta_schedule="
            f"{config.get('beta_schedule')!r}"
            + (" with trained_betas" if config.get("trained_betas") is not None else "")
            + f"; ctdm reads the schedules {sorted(BETA_SCHEDULES)} (DDPMSchedule)."
        )
    return DDPMSchedule(
        num_steps=int(config.get("num_train_timesteps", 1000)),
        beta_start=float(config.get("beta_start", 1e-4)),
        beta_end=float(config.get("beta_end", 0.02)),
        kind=kind,
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def save_tiny_ddpm(folder: str | Path, shape: list[int], seed: int = 0, scheduler: bool = True) -> Path:
    """A tiny randomly initialised UNet2DModel for data of `shape` [C, H, W] (H divisible by 2), saved
    with `save_pretrained` into `folder`, with DDPM's scheduler_config.json (linear 1e-4..0.02, 1000
    steps) when `scheduler`: a stand-in for a real pretrained model in offline tests and smoke runs."""
    diffusers = require_diffusers()
    channels, height, width = shape
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=[height, width] if height != width else height,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    )
    unet.save_pretrained(folder)
    if scheduler:
        diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02).save_pretrained(
            folder
        )
    return Path(folder)
