"""DiffusionModule: the LightningModule that holds the parameterised network and the weighted loss terms.

The Lightning glue only: what a step computes is ctdm.objective's (the weighted terms, the validation
metrics, the non-finite guard) and what it costs ctdm.training_cost's, both plain Python.
"""

from collections.abc import Callable, Mapping

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from ctdm.diffusion import EpsPrediction, LikelihoodSettings, Parameterization, Reference
from ctdm.losses import LossTerm
from ctdm.objective import NonFiniteGuard, Objective, step_seed
from ctdm.training_cost import CHECKPOINT_KEY, CountedEps, StepClock, TrainingCost


class DiffusionModule(L.LightningModule):
    """A noise predictor `eps(z, logsnr)` trained on sum_k weight_k * term_k.

    net: module mapping (its input [N, *shape], logsnr [N]) -> its prediction.
    parameterization: builds the reading of `net` as a noise predictor from `net`, e.g.
        `ctdm.diffusion.VPrediction` or `functools.partial(EDMPrecond, sigma_data=0.5)` (Hydra:
        `_partial_: true`); default EpsPrediction. See ctdm.diffusion.parameterizations.
    loss: {name: LossTerm}; every term is evaluated and logged, the objective uses their weights.
    optimizer / lr_scheduler: partials (Hydra `_partial_: true`) taking params / the optimizer.
    likelihood: the ITD reference and validation points (ctdm.diffusion.LikelihoodSettings, or a mapping
        of its fields: diffusion.likelihood); its defaults come from the training data's variances.
    compile: torch.compile the network (`nn.Module.compile`, in place: checkpoints are the same with and
        without it); a mapping gives torch.compile's arguments, e.g. {"mode": "max-autotune"}.
    channels_last: convolution weights in NHWC layout (UNets on GPUs: tensor-core convolutions).
    The data variances are a buffer, so they travel in checkpoints with the weights.

    Training cost (ctdm.training_cost): `cost_base` is the cost of the checkpoint chain this run resumed
    (zero from scratch), `cost_this_run` what this process trained: the wall time from the start of each
    training batch to the end of its optimizer step (or of its backward pass, when gradients accumulate),
    the optimizer steps, and the rows the loss terms sent through the network. `training_cost`, their sum,
    is logged (train/seconds, train/rows_forward, train/rows_backward) and stored in checkpoints.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: Mapping[str, LossTerm],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        parameterization: Callable[[nn.Module], Parameterization] = EpsPrediction,
        likelihood: LikelihoodSettings | Mapping | None = None,
        val_seed: int = 0,
        skip_nonfinite: bool = False,
        max_skipped_fraction: float = 0.01,
        compile: bool | Mapping = False,
        channels_last: bool = False,
    ):
        super().__init__()
        self.loss = Objective(loss, likelihood)  # the terms and the validation metrics, Lightning-free
        self.nonfinite = NonFiniteGuard(skip_nonfinite, max_skipped_fraction)
        self.parameterization = parameterization(prepared_net(net, compile, channels_last))
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_seed = val_seed
        self.register_buffer("data_var", torch.empty(0))
        self.run_config: dict | None = None  # the composed config, stored in checkpoints by train.py
        self.run_choices: dict | None = None  # and the config-group choices that composed it
        self.run_identity: dict | None = None  # and its tracker identity (ctdm.tracking.run_identity)
        # Training noise of step s on rank r is drawn from step_seed(noise_seed, s, r) (train.py sets
        # the run's seed), so a resumed run draws exactly what a straight run would.
        self.noise_seed = 0
        self.cost_base, self.cost_this_run = TrainingCost(), TrainingCost()
        self.clock = StepClock()

    @property
    def net(self) -> nn.Module:
        return self.parameterization.net

    @property
    def loss_terms(self) -> dict[str, LossTerm]:
        return self.loss.terms

    @property
    def likelihood(self) -> LikelihoodSettings:
        return self.loss.likelihood

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite loss (model.skip_nonfinite), kept in checkpoints."""
        return self.nonfinite.skipped

    def eps(self, z: Tensor, logsnr: Tensor) -> Tensor:
        """Noise prediction eps_hat(z, a) for z [N, *shape] and continuous log-SNR levels [N]."""
        return self.parameterization.eps(z, logsnr)

    # -- the likelihood reference -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.data_var.numel() == 0 and datamodule is not None:
            self.set_data_var(datamodule.data_var)

    def set_data_var(self, data_var: Tensor) -> None:
        """Per-dimension variances of the training data, [*shape] (from the DataModule, computed once)."""
        self.data_var = data_var.detach().to(self.device, torch.float32).clone()
        self._reference = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint["state_dict"].get("data_var")
        if saved is not None:  # shape the buffer so the checkpoint's values load into it
            self.data_var = torch.empty_like(saved, device=self.device)
            self._reference = None
        self.nonfinite.skipped = checkpoint.get("ctdm_skipped_steps", 0)
        self.cost_base = TrainingCost.from_checkpoint(checkpoint)  # what the chain cost up to this step

    @property
    def reference(self) -> Reference:
        if getattr(self, "_reference", None) is None:
            if self.data_var.numel() == 0:
                raise RuntimeError(
                    "DiffusionModule has no data variances yet: call set_data_var(datamodule.data_var)."
                )
            self._reference = self.likelihood.reference(self.data_var)
        return self._reference

    def on_fit_start(self) -> None:
        self.plan_chunks()

    def on_validation_start(self) -> None:
        self.plan_chunks()

    def plan_chunks(self) -> None:
        """Rows per network call for the terms with max_batch "auto" (and val/nll, val/cdl) on this
        device, from this network's memory per row measured here (Objective.plan_chunks): never through
        the eps function a step hands the terms, which the cost counter wraps."""
        if self.data_var.numel():
            self.loss.plan_chunks(self.parameterization.eps, tuple(self.data_var.shape), self.device)

    # -- training -----------------------------------------------------------------------------
    @property
    def training_cost(self) -> TrainingCost:
        """The cost of the checkpoint chain up to now: the resumed checkpoint's and this run's."""
        return self.cost_base + self.cost_this_run

    def objective(
        self, x: Tensor, generator: torch.Generator | None = None, step: int | None = None, eps_fn=None
    ):
        """sum_k weight_k term_k(x) and every term's logs; terms not due at `step` are skipped. The terms
        query `eps_fn` (default: self.eps)."""
        return self.loss(eps_fn or self.eps, x, generator, self.reference, step)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor | None:
        step = self.global_step
        generator = torch.Generator(device=batch.device).manual_seed(
            step_seed(self.noise_seed, step, self.global_rank)
        )
        # Every rank runs the same rows on its share of the batch: each counts them world_size times.
        counted = CountedEps(self.eps, self.cost_this_run, self.trainer.world_size)
        loss, logs = self.objective(batch, generator, step=step, eps_fn=counted)
        # Means over the global batch (one collective under DDP): the logs do not depend on the number of
        # ranks, and every rank takes the same NaN decision, so none waits on a rank that skipped backward.
        means = torch.stack([loss.detach(), *logs.values()]).float()
        means = self.trainer.strategy.reduce(means, reduce_op="mean")
        total, terms = means[0], dict(zip(logs, means[1:], strict=True))
        # A skipped step returns None: no backward pass and no optimizer update.
        finite = self.nonfinite.admits(step, total, terms, self.trainer.max_steps)
        if finite:
            self.log("train/loss", total, prog_bar=True)
            self.log_dict({f"train/{k}": v for k, v in terms.items()})
        if self.nonfinite.skip:
            self.log("train/skipped_steps", float(self.skipped_steps))
        return loss if finite else None

    # Timed: from the start of a batch (after the callbacks' on_train_batch_start) to the end of its backward
    # pass and of its optimizer step; the callbacks' on_train_batch_end (checkpoints, sample evaluations)
    # and validation come after, untimed.
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.clock.start()

    def on_after_backward(self) -> None:
        self.cost_this_run.seconds += self.clock.lap(self.device)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.cost_this_run.seconds += self.clock.lap(self.device)
        self.cost_this_run.steps += 1

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.clock.stop()
        cost = self.training_cost  # cumulative, so the last logged values are the chain's totals
        self.log_dict({k: v for k, v in cost.metrics().items() if k != "train/steps"})

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        # The same levels and noise at every validation, so curves move only when the model does; each
        # DDP rank its own draws (its batch_idx counts its own share of the held-out data).
        seed = self.val_seed + batch_idx + (self.global_rank << 20)
        generator = torch.Generator(device=batch.device).manual_seed(seed)
        loss, logs = self.loss.validation(self.eps, batch, generator, self.reference)
        self.log("val/loss", loss, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ctdm_skipped_steps"] = self.skipped_steps
        checkpoint[CHECKPOINT_KEY] = self.training_cost.to_checkpoint()
        wandb = [lg for lg in self.loggers if isinstance(lg, WandbLogger)] if self._trainer else []
        if wandb and wandb[0].version:  # the W&B run a resumed run continues (ctdm.train)
            checkpoint["ctdm_wandb_id"] = wandb[0].version
        if self.run_config is not None:
            checkpoint["ctdm_config"] = self.run_config
        if self.run_choices:  # Hydra's group choices: ctdm.evaluate recomposes the same config groups
            checkpoint["ctdm_choices"] = self.run_choices
        if self.run_identity:  # the run's name and group: ctdm.evaluate's W&B run joins them
            checkpoint["ctdm_identity"] = self.run_identity


def prepared_net(net: nn.Module, compile: bool | Mapping, channels_last: bool) -> nn.Module:
    """`net` in channels-last layout and compiled, as model.channels_last and model.compile ask."""
    if not isinstance(compile, (bool, Mapping)) or not isinstance(channels_last, bool):
        raise ValueError(
            f"model.compile={compile!r}, model.channels_last={channels_last!r}: compile is true, false "
            "or a mapping of torch.compile arguments (e.g. {mode: max-autotune}); channels_last is true "
            "or false."
        )
    if channels_last:  # only 4-D weights change layout; convolutions then run and answer in NHWC
        net.to(memory_format=torch.channels_last)
    if compile:  # in place (nn.Module.compile): the state dict keeps its names, no `_orig_mod.`
        net.compile(**(compile if isinstance(compile, Mapping) else {}))
    return net
