"""Sequential vs parallel (Picard / ParaDiGMS) sampling: overhead, memory, and a GPU comparison.

Default run, on the default 2-D setup: trains the default 2-D model briefly (the default config's net,
loss and optimizer, plain loop), or loads `--ckpt`, then for 1000-step DDPM and its parallel version
(window 1000, tolerance 0.1) on 2,000 samples prints: passes, NFE per sample, wall time, squared MMD
against fresh data, the pass at which the parallel sampler's MMD first falls below --threshold, and
the sampler's time against the bare network forward over exactly the same evaluations (the same batch
sizes, replayed): the overhead ratio, sampler wall / bare network time. The same with the exact
mixture denoiser (the limit a trained model can approach). `--profile` adds torch.profiler's table of
the parallel sampler's operations on the trained net.
Then the parallel sampler's peak tensor memory per sample (ctdm.samplers.memory.TensorMemory) against
its window, on 1000 steps of a 3x32x32 shape with a trivial eps_fn, beside the full trajectory.
`--gpu-compare`: instead, ParaDDPM (windows 32 and 1000) against sequential DDPM on the CIFAR-10-size
UNet (unet_cifar's sizes, random weights: the wall clock of the same work, not sample quality), batch
64, in one run on the best device here, naming it, with the peak GPU memory of each.
Usage: python benchmarks/sampling.py [--train-steps 3000] [--samples 2000] [--steps 1000] [--profile]
       python benchmarks/sampling.py --memory-only
       python benchmarks/sampling.py --gpu-compare [--steps 1000] [--batch 64] [--windows 32 1000]
           [--max-passes 20] [--max-batch 2048] [--width 128]   (CPU check: --steps 20 --batch 2 --width 8)
"""

import argparse
import os
import time
from pathlib import Path

import torch
from _device import synchronize
from hydra import compose, initialize_config_dir

import ctdm.config  # noqa: F401  (stores the config schema that conf/config.yaml composes on)
from ctdm.build import build_data, build_module, load_module
from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.nets import UNet
from ctdm.samplers import DDPMSampler, ParallelSampler
from ctdm.samplers.memory import TensorMemory

CONF = Path(__file__).resolve().parents[1] / "conf"


def trained_model(train_steps: int, ckpt: str | None):
    if ckpt:
        return load_module(ckpt, key="--ckpt"), f"loaded {ckpt}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"trainer.max_steps={train_steps}"])
    model = build_module(cfg)
    torch.manual_seed(0)
    datamodule = build_data(cfg)
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
def run(label, eps_fn, sampler, seeds, reference, threshold, profile=False):
    recorder, curve = Recorder(eps_fn), []

    def hook(p, x, info):
        curve.append((p, float(mmd2(x, reference))))

    kwargs = {"hook": hook} if isinstance(sampler, ParallelSampler) else {}
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            samples, stats = sampler(recorder, (reference.shape[1],), seeds, **kwargs)
        print(f"torch.profiler, {label} (the hook's MMD included):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        recorder.sizes.clear()
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


@torch.no_grad()
def memory_per_sample(steps: int, windows: list[int], shape=(3, 32, 32), samples: int = 2, passes: int = 3):
    """Peak tensor memory of ParaDDPM per sample (MB) against its window, trivial eps_fn, first passes."""
    state_mb = 4 * torch.Size(shape).numel() / 2**20
    print(
        f"\nParaDDPM {steps} steps, shape {list(shape)}, {samples} samples, peak tensor memory over the "
        f"first {passes} passes (eps_fn = 0.1 z): the full trajectory and noise would be "
        f"{2 * (steps + 1) * state_mb:.1f} MB per sample"
    )
    print(f"{'window':>8} {'MB/sample':>10} {'states/sample':>14}")
    for window in windows:
        sampler = ParallelSampler(DDPMSampler(steps=steps), window=window, max_passes=passes)
        with TensorMemory() as memory:
            sampler(lambda z, logsnr: 0.1 * z, shape, torch.arange(samples))
        per_sample = memory.peak / samples / 2**20
        print(f"{min(window, steps):>8} {per_sample:>10.2f} {per_sample / state_mb:>14.0f}", flush=True)


@torch.no_grad()
def gpu_compare(args):
    """ParaDDPM against sequential DDPM on the CIFAR-10-size UNet, side by side on one device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = f"CPU ({torch.get_num_threads()} threads)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    shape = (3, 32, 32)
    net = UNet(list(shape), width=args.width, mult=[1, 2, 2, 2], blocks=2, attn_resolutions=[16], dropout=0.1)
    for module in net.modules():  # re-draw the zero-initialised output layers, so eps depends on z
        if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
            module.reset_parameters()
    net = net.to(device).eval()
    params = sum(p.numel() for p in net.parameters()) / 1e6
    print(
        f"device: {name}; UNet width {args.width} ({params:.1f}M parameters, random weights), batch "
        f"{args.batch}, {args.steps} steps, max_batch {args.max_batch} rows per network call"
    )
    seeds = torch.arange(args.batch)
    sequential = DDPMSampler(steps=args.steps)
    samplers = [(f"ddpm {args.steps}", sequential)] + [
        (
            f"para_ddpm w{min(w, args.steps)} tol{args.tolerance}",
            ParallelSampler(
                sequential,
                window=w,
                tolerance=args.tolerance,
                max_passes=args.max_passes,
                max_batch=args.max_batch,
            ),
        )
        for w in args.windows
    ]
    print(
        f"{'sampler':<28} {'passes':>6} {'NFE':>7} {'wall s':>9} {'s/pass':>8} {'speed-up':>9} "
        f"{'peak GB':>8} converged"
    )
    first = None
    for label, sampler in samplers:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        samples, stats = sampler(net, shape, seeds, device=device)
        synchronize(device)
        wall = time.perf_counter() - start
        first = first or wall
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        print(
            f"{label:<28} {stats.passes:>6} {stats.nfe:>7.0f} {wall:>9.2f} {wall / stats.passes:>8.3f} "
            f"{first / wall:>9.2f} {peak:>8.2f} "
            f"{stats.converged}",
            flush=True,
        )
        assert samples.shape == (args.batch, *shape) and torch.isfinite(samples).all()
    print(
        "speed-up: the sequential sampler's wall time over this one's; with --max-passes the parallel run "
        "stops early (converged False): its wall time is then a lower bound. Random weights: pass counts "
        "are not a trained model's; the time per pass and the memory are."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--ckpt", default=None, help="a DiffusionModule checkpoint instead of training")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=1e-3, help="MMD threshold for 'pass below'")
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of the parallel run")
    parser.add_argument("--memory-only", action="store_true", help="only the memory-per-window table")
    parser.add_argument("--memory-windows", type=int, nargs="+", default=[8, 32, 128, 1000])
    parser.add_argument("--gpu-compare", action="store_true", help="ParaDDPM vs DDPM on the CIFAR-10 UNet")
    parser.add_argument("--batch", type=int, default=64, help="--gpu-compare: samples")
    parser.add_argument("--windows", type=int, nargs="+", default=[32, 1000], help="--gpu-compare")
    parser.add_argument("--width", type=int, default=128, help="--gpu-compare: UNet width (128: unet_cifar)")
    parser.add_argument("--max-passes", type=int, default=None, help="--gpu-compare: cap on Picard passes")
    parser.add_argument("--max-batch", type=int, default=2048, help="--gpu-compare: rows per network call")
    args = parser.parse_args()

    if args.gpu_compare:
        return gpu_compare(args)
    if args.memory_only:
        return memory_per_sample(args.steps, args.memory_windows)
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
            profile=args.profile and name == "trained net",
        )
        print(f"  max |parallel - sequential| over samples ({name}): {float((par - seq).abs().max()):.2e}")
    print(
        "NFE: network evaluations per sample; passes: sequential depth; <thresh: first Picard pass with "
        f"MMD^2 <= {args.threshold:g}; bare s: eps_fn alone on the same batch sizes; ratio = wall / bare."
    )
    memory_per_sample(args.steps, args.memory_windows)


if __name__ == "__main__":
    main()
