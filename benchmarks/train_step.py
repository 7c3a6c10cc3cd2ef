"""Where a training step's time goes on the default 2-D setup, measured side by side in one run.

Prints ms per step for: a bare PyTorch loop (index the tensor, MSE loss, backward, Adam), the same
through Lightning's Trainer with ctdm's DataModule and DiffusionModule, and the DataLoader alone
with ctdm's one-index-op batches against torch's default per-row fetch and collate.
Usage: python benchmarks/train_step.py [--steps 400] [--batch 256]
"""

import argparse
import logging
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from ctdm.data import ToyDataModule, eight_gaussians
from ctdm.losses import DenoisingMSE
from ctdm.module import DiffusionModule
from ctdm.nets import ResidualMLP


def bare_loop(x_train, steps, batch):
    net, loss = ResidualMLP(2), DenoisingMSE()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    start = time.perf_counter()
    for _ in range(steps):
        x = x_train[torch.randint(0, len(x_train), (batch,))]
        value, _ = loss(net, x)
        opt.zero_grad()
        value.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


class _Timer(L.Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 20:  # skip warm-up
            self.start = time.perf_counter()

    def on_train_end(self, trainer, *args):
        self.per_step = (time.perf_counter() - self.start) / (trainer.global_step - 20)


def lightning_loop(steps, batch):
    dm = ToyDataModule(eight_gaussians(), [2], batch_size=batch)
    model = DiffusionModule(
        ResidualMLP(2), {"mse": DenoisingMSE()}, lambda params: torch.optim.Adam(params, 2e-3)
    )
    timer = _Timer()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps + 20,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    return timer.per_step


def loader_time(loader, n_batches):
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == n_batches:
            break
    return (time.perf_counter() - start) / n_batches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)

    dm = ToyDataModule(eight_gaussians(), [2], batch_size=args.batch)
    dm.setup()
    bare = bare_loop(dm.x_train, args.steps, args.batch)
    lit = lightning_loop(args.steps, args.batch)
    ours = loader_time(dm.train_dataloader(), 70)
    default = loader_time(DataLoader(TensorDataset(dm.x_train), batch_size=args.batch, shuffle=True), 70)

    print(f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps}")
    print(f"bare PyTorch step          {1e3 * bare:8.2f} ms")
    print(f"Lightning step (ctdm)      {1e3 * lit:8.2f} ms   ratio to bare {lit / bare:.2f}x")
    print(f"DataLoader batch, ctdm     {1e3 * ours:8.3f} ms")
    print(f"DataLoader batch, default  {1e3 * default:8.3f} ms   ratio to ctdm {default / ours:.1f}x")


if __name__ == "__main__":
    main()
