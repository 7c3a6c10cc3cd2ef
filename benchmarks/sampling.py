"""Sequential vs parallel (Picard / ParaDiGMS) DDPM on the default 2-D setup, side by side in one run.

Trains the default 2-D model briefly (the default config's net, loss and optimizer, plain loop), or
loads `--ckpt`, then for 1000-step DDPM and its parallel version (window 1000, tolerance 0.1) on
2,000 samples prints: passes, NFE per sample, wall time, squared MMD against fresh data, the pass at
which the parallel sampler's MMD first falls below --threshold, and the sampler's time against the
bare network forward over exactly the same evaluations (the same batch sizes, replayed): the overhead
ratio. The same with the exact mixture denoiser (the limit a trained model can approach).
Usage: python benchmarks/sampling.py [--train-steps 3000] [--samples 2000] [--steps 1000]
"""

import argparse
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import ctdm.config  # noqa: F401  (stores the config schema that conf/config.yaml composes on)
from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.samplers import DDPMSampler, ParallelSampler

CONF = Path(__file__).resolve().parents[1] / "conf"


def trained_model(train_steps: int, ckpt: str | None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"trainer.max_steps={train_steps}"])
    model = instantiate(cfg.model, loss=instantiate(cfg.loss, _convert_="all"))
    if ckpt:
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
        return model.eval(), f"loaded {ckpt}"
    torch.manual_seed(0)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    if hasattr(model, "set_data_var"):  # the likelihood reference, as Lightning's setup would give it
        var = getattr(datamodule, "data_var", None)
        model.set_data_var(var if var is not None else datamodule.x_train.var(0))
    config = model.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    scheduler = config["lr_scheduler"]["scheduler"] if isinstance(config, dict) else None
    start, step = time.perf_counter(), 0
    while step < train_steps:
        for batch in datamodule.train_dataloader():
            loss, _ = model.objective(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step == train_steps:
                break
    return (
        model.eval(),
        f"trained {train_steps} steps in {time.perf_counter() - start:.0f} s, last loss {loss:.3f}",
    )


class Recorder:
    """eps_fn wrapper that records the batch size of every call (to replay the bare forward)."""

    def __init__(self, eps_fn):
        self.eps_fn, self.sizes = eps_fn, []

    def __call__(self, z, logsnr):
        self.sizes.append(len(z))
        return self.eps_fn(z, logsnr)


@torch.no_grad()
def bare_forward_seconds(eps_fn, sizes: list[int], dim: int) -> float:
    """Time of eps_fn alone on the recorded batch sizes (inputs prepared beforehand)."""
    inputs = {n: (torch.randn(n, dim), torch.empty(n).uniform_(-10, 10)) for n in set(sizes)}
    start = time.perf_counter()
    for n in sizes:
        eps_fn(*inputs[n])
    return time.perf_counter() - start


@torch.no_grad()
def run(label, eps_fn, sampler, seeds, reference, threshold):
    recorder, curve = Recorder(eps_fn), []

    def hook(p, x, info):
        curve.append((p, float(mmd2(x, reference))))

    kwargs = {"hook": hook} if isinstance(sampler, ParallelSampler) else {}
    samples, stats = sampler(recorder, (reference.shape[1],), seeds, **kwargs)
    bare = bare_forward_seconds(eps_fn, recorder.sizes, reference.shape[1])
    value = float(mmd2(samples, reference))
    hit = next((p for p, m in curve if m <= threshold), None)
    below = "-" if not curve else (str(hit) if hit is not None else "never")
    print(
        f"{label:<34} {stats.passes:>6} {stats.nfe:>9.0f} {stats.seconds:>8.2f} {value:>10.2e} {below:>8} "
        f"{bare:>8.2f} {stats.seconds / bare:>7.2f}",
        flush=True,
    )
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--ckpt", default=None, help="a DiffusionModule checkpoint instead of training")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=1e-3, help="MMD threshold for 'pass below'")
    args = parser.parse_args()

    law = eight_gaussians()
    reference = law.sample(args.samples, torch.Generator().manual_seed(12345))
    floor = float(mmd2(law.sample(args.samples, torch.Generator().manual_seed(54321)), reference))
    model, how = trained_model(args.train_steps, args.ckpt)
    print(f"model: {how}; torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"MMD^2 of fresh data against the same reference (sampling-noise floor): {floor:.2e}")
    seeds = torch.arange(args.samples)
    sequential = DDPMSampler(steps=args.steps)
    parallel = ParallelSampler(sequential, window=args.window, tolerance=args.tolerance)
    print(
        f"{'sampler / denoiser':<34} {'passes':>6} {'NFE':>9} {'wall s':>8} {'MMD^2':>10} {'<thresh':>8} "
        f"{'bare s':>8} {'ratio':>7}"
    )
    for name, eps_fn in (("trained net", model.eps), ("exact mixture", law.eps)):
        seq = run(f"ddpm {args.steps} / {name}", eps_fn, sequential, seeds, reference, args.threshold)
        par = run(
            f"para_ddpm w{args.window} tol{args.tolerance} / {name}",
            eps_fn,
            parallel,
            seeds,
            reference,
            args.threshold,
        )
        print(f"  max |parallel - sequential| over samples ({name}): {float((par - seq).abs().max()):.2e}")
    print(
        "NFE: network evaluations per sample; passes: sequential depth; <thresh: first Picard pass with "
        f"MMD^2 <= {args.threshold:g}; bare s: eps_fn alone on the same batch sizes; ratio = wall / bare."
    )


if __name__ == "__main__":
    main()
