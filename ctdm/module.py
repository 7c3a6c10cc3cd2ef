"""DiffusionModule: the LightningModule that holds the denoiser network and the weighted loss terms."""

from collections.abc import Callable, Mapping

import lightning as L
import torch
from torch import Tensor, nn

from ctdm.losses import LossTerm, check_weights


class DiffusionModule(L.LightningModule):
    """A noise-prediction denoiser `eps(z, logsnr)` trained on sum_k weight_k * term_k.

    net: module mapping (z [N, *shape], logsnr [N]) -> eps_hat shaped like z.
    loss: {name: LossTerm}; every term is evaluated and logged, the objective uses their weights.
    optimizer / lr_scheduler: partials (Hydra `_partial_: true`) taking params / the optimizer.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: Mapping[str, LossTerm],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        val_seed: int = 0,
    ):
        super().__init__()
        check_weights(loss)
        self.net = net
        self.loss_terms = dict(loss)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_seed = val_seed
        self.run_config: dict | None = None  # the composed config, stored in checkpoints by train.py

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """Noise prediction eps_hat(z, a) for z [N, *shape] and continuous log-SNR levels [N]."""
        return self.net(z, logsnr)

    def objective(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        total, logs = x.new_zeros(()), {}
        for term in self.loss_terms.values():
            value, term_logs = term(self.eps, x, generator)
            total = total + term.weight * value
            logs.update(term_logs)
        return total, logs

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, logs = self.objective(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        # The same levels and noise at every validation, so curves move only when the model does.
        generator = torch.Generator(device=batch.device).manual_seed(self.val_seed + batch_idx)
        loss, logs = self.objective(batch, generator)
        self.log("val/loss", loss, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["ctdm_config"] = self.run_config
