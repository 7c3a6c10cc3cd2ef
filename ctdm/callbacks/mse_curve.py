"""DenoisingMSECurve: the paper's diagnostic, denoising MSE against log-SNR on held-out data.

At every validation it plots E|eps - eps_hat(z_a, a)|^2 (summed over dimensions) over the
likelihood's integration range beside the reference Gaussian's mmse_G(a) = sum_i s(a + log l_i);
the area between the curves is the ITD estimate of -log p relative to that Gaussian. When the data
law is known exactly (the Gaussian mixtures: the DataModule's `law` has `eps`), the exact denoiser's
MSE on the same points, noise and levels is drawn too: the optimum, so the gap between model and
optimum is visible (no model can go below it except by noise on these few points). The plot,
plots/mse_logsnr.png, shows the latest validation; W&B gets the curve as a line plot over a table under
`val/mse_logsnr_curve` at every validation, so a dashboard overlays the runs' curves in one chart.
"""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from ctdm.diffusion import denoising_mse_curve
from ctdm.plotting import plt
from ctdm.tracking import wandb_line


class DenoisingMSECurve(L.Callback):
    def __init__(
        self,
        num_points: int = 512,
        num_levels: int = 100,
        max_batch: int | None = 8192,
        output_dir: str | None = None,
        seed: int = 0,
    ):
        if num_points < 1 or num_levels < 2:
            raise ValueError(
                f"mse_curve needs num_points >= 1 and num_levels >= 2, got {num_points}, {num_levels}."
            )
        self.num_points, self.num_levels, self.max_batch, self.seed = num_points, num_levels, max_batch, seed
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.last_path: Path | None = None
        self.last_curves: dict[str, Tensor] = {}
        self._exact: tuple | None = None

    def curves(self, eps_fn, x: Tensor, reference, law=None) -> dict[str, Tensor]:
        """{"levels", "model", "reference"[, "exact"]} on CPU; model and exact see the same noise."""
        half = reference.clip * reference.scale
        levels = torch.linspace(reference.loc - half, reference.loc + half, self.num_levels)

        def mse(fn) -> Tensor:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            return denoising_mse_curve(fn, x, levels, generator, self.max_batch).cpu()

        log_var = reference.log_var.expand(x.shape[1:]).flatten().cpu()
        out = {
            "levels": levels,
            "model": mse(eps_fn),
            "reference": torch.sigmoid(levels[:, None] + log_var).sum(1),
        }
        if law is not None:  # the same at every validation (same law, points, noise, levels): once
            key = (law, levels.tolist(), x.shape, float(x.sum()), x.device)
            if self._exact is None or self._exact[0] != key:  # the law's tensors live on the CPU
                self._exact = key, mse(lambda z, a: law.eps(z.cpu(), a.cpu()).to(z.device, z.dtype))
            out["exact"] = self._exact[1]
        return out

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.output_dir is None:
            return
        x = trainer.datamodule.x_val[: self.num_points].to(pl_module.device)
        law = getattr(trainer.datamodule, "law", None)
        self.last_curves = curves = self.curves(pl_module.eps, x, pl_module.reference, law)
        path = self.output_dir / "plots" / "mse_logsnr.png"  # the latest; W&B keeps every validation's
        title = f"denoising MSE on {len(x)} held-out points, step {trainer.global_step}"
        plot_mse_curve(
            curves["levels"], curves["model"], curves["reference"], path, title, curves.get("exact")
        )
        self.last_path = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                rows = [[float(a), float(m)] for a, m in zip(curves["levels"], curves["model"], strict=True)]
                chart = wandb_line(["log_snr", "mse"], rows, "log_snr", "mse", "denoising MSE vs log-SNR")
                logger.log_metrics({"val/mse_logsnr_curve": chart}, step=trainer.global_step)
                logger.log_image(key="val/mse_logsnr", images=[str(path)], step=trainer.global_step)


def plot_mse_curve(
    levels: Tensor,
    mse: Tensor,
    reference: Tensor,
    path: str | Path,
    title: str = "",
    exact: Tensor | None = None,
) -> Path:
    """Denoising MSE against log-SNR beside the reference Gaussian's MMSE (the paper's diagnostic),
    and the exact law's MSE (the optimum) when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    ax.plot(levels.numpy(), mse.numpy(), label="model, held-out data")
    if exact is not None:
        ax.plot(
            levels.numpy(),
            exact.numpy(),
            ":",
            color="k",
            lw=1.5,
            label="exact law's denoiser (optimal in expectation)",
        )
    ax.plot(levels.numpy(), reference.numpy(), "--", label="reference Gaussian (mmse_G)")
    ax.set_xlabel("log-SNR a")
    ax.set_ylabel("E |eps - eps_hat(z_a, a)|^2")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
