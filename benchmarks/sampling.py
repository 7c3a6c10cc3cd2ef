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
`--wallclock`: sequential DDPM against ParaDDPM (full window, window=auto, or --*-windows) on trained
models: the default eight-Gaussian model and a dino model (the default MLP, --train-steps each), and a
digits UNet (unet_small, --digits-train-steps), at several batch sizes, each pair timed side by side
(interleaved, --repeats, medians), with passes, NFE, the bare network on the same calls (overhead =
wall / bare), the largest difference from the sequential samples and MMD^2 (2-D: against fresh data;
digits: pixels, median heuristic, against the held-out digits). It prints each model's measured call
times, the solver's own time per pass and the batches at which window=auto picks each window (the
crossover). `--small` is the seconds-long version the test suite runs; `--threads 1` avoids a shared
CPU's thread waits.
`--per-evaluation`: the cost of one network evaluation (sampler wall time / rows evaluated) of ParaDDPM
(full window) over sequential DDPM's, on the default eight-Gaussian model and the dino preset's MLP (no
input features) in one run, at --samples (2,000), with the rows per call of max_batch=auto and of each
--fixed-chunks (0: a whole pass in one call, what a busy CPU's fallback used to give), interleaved
--repeats times: medians and the spread (min-max) of the ratio.
Usage: python benchmarks/sampling.py [--train-steps 3000] [--samples 2000] [--steps 1000] [--profile]
       python benchmarks/sampling.py --memory-only
       python benchmarks/sampling.py --gpu-compare [--steps 1000] [--batch 64] [--windows 32 1000]
           [--max-passes 20] [--max-batch 2048] [--width 128]   (CPU check: --steps 20 --batch 2 --width 8)
       python benchmarks/sampling.py --wallclock [--threads 1] [--repeats 3] [--batches 1 4 16 64 2000]
           [--models eight_gaussians dino digits] [--digits-batches 1 4 16 64] [--small]
       python benchmarks/sampling.py --per-evaluation [--threads N] [--samples 2000] [--steps 1000]
           [--repeats 3] [--fixed-chunks 256 2048 0] [--train-steps 3000]
"""

import argparse
import os
import time

import torch
from _device import synchronize
from hydra import compose, initialize_config_dir

import ctdm.config  # noqa: F401  (stores the config schema that conf/config.yaml composes on)
from ctdm.build import build_data, build_module, load_module
from ctdm.config_dir import CONFIG_DIR
from ctdm.data.toy import eight_gaussians
from ctdm.metrics import mmd2
from ctdm.nets import UNet
from ctdm.samplers import DDPMSampler, ParallelSampler
from ctdm.samplers.memory import TensorMemory

CONF = CONFIG_DIR


def trained_model(train_steps: int, ckpt: str | None, overrides: tuple[str, ...] = ()):
    if ckpt:
        return load_module(ckpt, key="--ckpt"), f"loaded {ckpt}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"trainer.max_steps={train_steps}", *overrides])
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
def bare_forward_seconds(eps_fn, sizes: list[int], dim: int | tuple[int, ...]) -> float:
    """Time of eps_fn alone on the recorded batch sizes (inputs prepared beforehand)."""
    shape = (dim,) if isinstance(dim, int) else tuple(dim)
    inputs = {n: (torch.randn(n, *shape), torch.empty(n).uniform_(-10, 10)) for n in set(sizes)}
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


class CallLog(torch.nn.Module):
    """The network with a record of the rows of every call (to replay the bare network on the same
    calls). An nn.Module, so the sampler's measured call times are cached for it like for the net."""

    def __init__(self, net):
        super().__init__()
        self.net, self.sizes = net, []

    def eps(self, z, logsnr):
        self.sizes.append(len(z))
        return self.net.eps(z, logsnr)


# The trained models --wallclock compares on: name -> config overrides (the default model is the first).
WALLCLOCK_MODELS = {
    "eight_gaussians": (),
    "dino": ("data=dino",),
    "digits": ("data=digits", "callbacks=default"),
}


def wallclock_model(name: str, train_steps: int, small: bool):
    """(network, sample shape, reference samples, MMD bandwidth, how it was made) for one model."""
    overrides = WALLCLOCK_MODELS[name] + (("model.net.width=8",) if small and name == "digits" else ())
    torch.manual_seed(0)
    model, how = trained_model(train_steps, None, overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    datamodule = build_data(cfg)
    datamodule.setup("fit")
    if datamodule.law is not None:  # the exact law: a fresh reference, kernel width as in eval
        reference = datamodule.law.sample(2000, torch.Generator().manual_seed(12345))
        bandwidth = 0.1
    else:  # images: the held-out set, median heuristic (pixels)
        reference = datamodule.x_val.flatten(1)
        bandwidth = "median"
    return model.parameterization.eval(), tuple(datamodule.shape), reference, bandwidth, how


def _median(values):
    return float(torch.tensor(values, dtype=torch.float64).median())


@torch.no_grad()
def wallclock_rows(net, shape, batch, samplers, repeats):
    """Run every sampler `repeats` times interleaved (sequential first each round), each followed by
    the bare network on the same calls; medians of wall time, paired speed-up and overhead."""
    log_net, seeds = CallLog(net), torch.arange(batch)
    results = {label: {"wall": [], "bare": [], "speedup": []} for label, _ in samplers}
    for label, sampler in samplers:  # warm-up: measures call times (cached), records the calls
        log_net.sizes.clear()
        samples, stats = sampler(log_net, shape, seeds)
        results[label].update(samples=samples, stats=stats, sizes=list(log_net.sizes))
    for _ in range(repeats):
        for label, sampler in samplers:
            start = time.perf_counter()
            sampler(log_net, shape, seeds)
            results[label]["wall"].append(time.perf_counter() - start)
            results[label]["bare"].append(bare_forward_seconds(net.eps, results[label]["sizes"], shape))
        sequential_wall = results[samplers[0][0]]["wall"][-1]
        for label, _ in samplers:
            results[label]["speedup"].append(sequential_wall / results[label]["wall"][-1])
    return results


def crossover(times, steps: int, chunk: int, overheads: tuple[float, float]) -> str:
    """The batch sizes (powers of 2) at which window=auto picks each window, up to where it picks 1."""
    picks, batch = [], 1
    while batch <= 1 << 16:
        window = times.auto_window(batch, steps, chunk, *overheads)
        picks.append(f"{batch}:{window}")
        if window == 1:
            break
        batch *= 2
    return " ".join(picks)


def _window(option: str):
    """A --*-windows option: full (every step), auto, or a number."""
    return None if option == "full" else option if option == "auto" else int(option)


def wallclock(args):
    """Sequential DDPM against ParaDDPM on trained models: wall clock, passes, NFE and MMD side by side."""
    from ctdm.samplers.memory import default_memory_budget
    from ctdm.samplers.parallel import bookkeeping_seconds
    from ctdm.samplers.timing import call_times

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    print(
        f"wall clock, sequential DDPM vs ParaDDPM (tolerance {args.tolerance}), median of {args.repeats} "
        f"interleaved repeats; torch threads {torch.get_num_threads()}, load average {load_before[0]:.1f} "
        f"(1 min) {load_before[1]:.1f} (5 min) on {os.cpu_count()} CPUs",
        flush=True,
    )
    header = (
        f"{'model':<15} {'batch':>5} {'sampler':<16} {'window':>6} {'rows/call':>9} {'passes':>6} {'NFE':>7} "
        f"{'wall s':>8} {'speed-up':>8} {'bare s':>8} {'overhead':>8} {'max|d|':>8} {'MMD^2':>9}"
    )
    for name in args.models:
        steps_to_train = args.digits_train_steps if name == "digits" else args.train_steps
        net, shape, reference, bandwidth, how = wallclock_model(name, steps_to_train, args.small)
        steps = args.digits_steps if name == "digits" else args.steps
        batches = args.digits_batches if name == "digits" else args.batches
        windows = args.digits_windows if name == "digits" else args.wallclock_windows
        sequential = DDPMSampler(steps=steps)
        samplers = [(f"ddpm {steps}", sequential)] + [
            (
                f"para_ddpm {window}",
                ParallelSampler(sequential, window=_window(window), tolerance=args.tolerance),
            )
            for window in windows
        ]
        times = call_times(CallLog(net).eps, CallLog(net), shape)
        chunk = times.rows_per_call(default_memory_budget("cpu"))
        overheads = bookkeeping_seconds(sequential, shape, "cpu", torch.float32)
        print(
            f"\n{name}: {how}; {steps} steps; call times on {times.device}: {chunk} rows per call (best "
            f"throughput), saturation at {times.saturation_rows()} rows, "
            f"{' '.join(f'{r}:{t * 1e3:.2f}' for r, t in zip(times.rows, times.seconds, strict=True))} "
            f"(rows:ms); solver {overheads[0] * 1e3:.2f} ms a pass, sequential loop {overheads[1] * 1e3:.3f} "
            f"ms a step besides the network; window=auto picks (batch:window) "
            f"{crossover(times, steps, chunk, overheads)}",
            flush=True,
        )
        print(header)
        for batch in batches:
            results = wallclock_rows(net, shape, batch, samplers, args.repeats)
            sequential_samples = results[samplers[0][0]]["samples"]
            for label, _ in samplers:
                r, stats = results[label], results[label]["stats"]
                is_parallel = label != samplers[0][0]
                quality = (
                    f"{float(mmd2(r['samples'].flatten(1), reference, bandwidth)):>9.2e}"
                    if batch >= args.mmd_min
                    else f"{'-':>9}"
                )
                diff = float((r["samples"] - sequential_samples).abs().max())
                window = stats.extra.get("window", "-") if is_parallel else "-"
                chunk_used = (stats.extra.get("max_batch") or "all") if is_parallel else "-"
                print(
                    f"{name:<15} {batch:>5} {label:<16} {window:>6} {chunk_used:>9} {stats.passes:>6} "
                    f"{stats.nfe:>7.0f} {_median(r['wall']):>8.3f} {_median(r['speedup']):>8.2f} "
                    f"{_median(r['bare']):>8.3f} "
                    f"{_median([w / b for w, b in zip(r['wall'], r['bare'], strict=True)]):>8.2f} "
                    f"{diff:>8.1e} {quality}",
                    flush=True,
                )
    load_after = os.getloadavg()
    print(
        f"\nload average at the end {load_after[0]:.1f} (1 min) {load_after[1]:.1f} (5 min). speed-up: the "
        "sequential sampler's wall time over this one's, paired per repeat; bare s: the network alone on the "
        "same calls; overhead = wall / bare; max|d|: largest difference from the sequential samples (same "
        f"seeds); MMD^2 against {len(reference)} reference points (batches >= {args.mmd_min})."
    )


# The models --per-evaluation compares: the default config's (eight Gaussians, model=mlp with sin/cos
# input features) and experiment=paper_dino's network (the same MLP without them, on the dino).
PER_EVALUATION_MODELS = {
    "eight_gaussians": (),
    "dino": ("data=dino", "model.net.input_freqs=0"),
}


def per_evaluation(args):
    """ParaDDPM's cost per network evaluation against sequential DDPM's, both models in one run."""
    from ctdm.samplers.memory import default_memory_budget
    from ctdm.samplers.timing import call_times

    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"cost per network evaluation, ParaDDPM (full window, tolerance {args.tolerance}) / DDPM, "
        f"{args.samples} samples, {args.steps} steps, median [min-max] of {args.repeats} interleaved "
        f"repeats; torch threads {torch.get_num_threads()}, load average {load[0]:.1f} (1 min) on "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    header = f"{'model':<15} {'sampler':<22} {'rows/call':>9} {'NFE':>7} {'wall s':>8} {'us/eval':>8}"
    print(f"{header} {'ratio':>18}")
    seeds, shape = torch.arange(args.samples), (2,)
    sequential = DDPMSampler(steps=args.steps)
    for name, overrides in PER_EVALUATION_MODELS.items():
        torch.manual_seed(0)
        model, how = trained_model(args.train_steps, None, overrides)
        net = model.parameterization.eval()
        times = call_times(net.eps, net, shape)
        auto_rows = times.rows_per_call(default_memory_budget("cpu"), batch=args.samples)
        print(
            f"{name}: {how}; call times on {times.device}: "
            f"{' '.join(f'{r}:{t * 1e3:.2f}' for r, t in zip(times.rows, times.seconds, strict=True))} "
            f"(rows:ms); max_batch=auto takes {auto_rows} rows at {args.samples} samples",
            flush=True,
        )
        samplers = [
            ("ddpm", sequential),
            ("para_ddpm auto", ParallelSampler(sequential, tolerance=args.tolerance)),
        ]
        samplers += [  # 0: max_batch=null, a whole pass in one call
            (
                f"para_ddpm {rows or 'pass'}",
                ParallelSampler(sequential, tolerance=args.tolerance, max_batch=rows or None),
            )
            for rows in args.fixed_chunks
        ]
        walls = {label: [] for label, _ in samplers}
        ratios = {label: [] for label, _ in samplers}
        stats, picard = {}, {}
        for _ in range(args.repeats):
            for label, sampler in samplers:
                start = time.perf_counter()
                samples, stats[label] = sampler(net, shape, seeds)
                walls[label].append(time.perf_counter() - start)
                if label != "ddpm":
                    picard[label] = samples
            per_eval = {label: walls[label][-1] / (stats[label].nfe * args.samples) for label, _ in samplers}
            for label, _ in samplers:
                ratios[label].append(per_eval[label] / per_eval["ddpm"])
        for label, _ in samplers:
            st, wall = stats[label], _median(walls[label])
            rows = "-" if label == "ddpm" else st.extra.get("max_batch") or "all"
            spread = f"{_median(ratios[label]):.2f} [{min(ratios[label]):.2f}-{max(ratios[label]):.2f}]"
            print(
                f"{name:<15} {label:<22} {rows:>9} {st.nfe:>7.0f} {wall:>8.2f} "
                f"{wall / (st.nfe * args.samples) * 1e6:>8.2f} {spread:>18}",
                flush=True,
            )
        auto = picard["para_ddpm auto"]
        diffs = ", ".join(f"{label}: {float((s - auto).abs().max()):.1e}" for label, s in picard.items())
        print(f"{name}: largest difference from max_batch=auto's samples: {diffs}", flush=True)
    load = os.getloadavg()
    print(
        f"load average at the end {load[0]:.1f} (1 min). ratio: ParaDDPM's wall time per network "
        "evaluation over DDPM's in the same repeat (1.0: Picard's extra evaluations cost what the "
        "sequential ones do)."
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
    parser.add_argument("--wallclock", action="store_true", help="sequential vs Picard on trained models")
    parser.add_argument("--small", action="store_true", help="--wallclock: a seconds-long check (tests)")
    parser.add_argument("--models", nargs="+", default=list(WALLCLOCK_MODELS), choices=list(WALLCLOCK_MODELS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 2000])
    parser.add_argument("--wallclock-windows", nargs="+", default=["full", "auto"])
    parser.add_argument("--digits-batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--digits-windows", nargs="+", default=["100", "auto"])
    parser.add_argument("--digits-steps", type=int, default=1000)
    parser.add_argument("--digits-train-steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mmd-min", type=int, default=64, help="--wallclock: MMD from this batch size on")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--per-evaluation", action="store_true", help="ParaDDPM's cost per evaluation")
    parser.add_argument(
        "--fixed-chunks",
        type=int,
        nargs="*",
        default=[256, 2048, 0],
        help="--per-evaluation (0: a whole pass)",
    )
    args = parser.parse_args()

    if args.wallclock and args.small:
        args.train_steps = args.digits_train_steps = 20
        args.steps = args.digits_steps = 20
        args.batches, args.digits_batches, args.repeats = [1, 8], [1, 8], 1
        args.digits_windows, args.mmd_min = ["full", "auto"], 8
    if args.wallclock:
        return wallclock(args)
    if args.per_evaluation:
        return per_evaluation(args)
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
