"""What each loss costs on a GPU at image scale, in one command: fake CIFAR-10 files at 32x32
(`python -m ctdm.data.fake cifar10`), the CIFAR UNet (conf/model/unet_cifar, 35.7M), batch 128.

1. For loss=mse, loss=itd, loss=contrastive (the image default, conf/loss/_data/cifar10.yaml, and the 2-D
   default of every item x 16 points, chunked by max_batch: auto) and loss=itd_cdl_paper, in fp32 and
   bf16-mixed: ms per training step (forward, backward, Adam; median of --steps after a warm-up), its
   ratio to the ITD step in the same precision, peak GPU memory (torch.cuda.max_memory_allocated over the
   steps), the rows per step, the rows per call max_batch: auto chose, and the ratio ctdm predicts before
   training (ctdm.losses.memory.describe_cost). Every module is built from the real configs (Hydra
   compose, ctdm.build.build_module), as `python -m ctdm.train` builds it.
2. A short end-to-end run, `python -m ctdm.train loss=contrastive data=cifar10` on the fake files with
   FID / KID of its samples (the Inception features when their weights are found offline, else the random
   features, said in the output): it prints the CDL cost line before training and its summary.

Usage: python benchmarks/gpu_cdl_memory.py [--steps 5] [--train-steps 300] [--samples 1000]
       python benchmarks/gpu_cdl_memory.py --cpu-smoke   # tiny sizes on the CPU: the script runs end to end
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _device import synchronize

ROOT = Path(__file__).resolve().parents[1]
# (name, loss overrides): the arms of the table
LOSSES = [
    ("mse", ["loss=mse"]),
    ("itd", ["loss=itd"]),
    ("contrastive (image default)", ["loss=contrastive"]),
    (
        "contrastive, 2-D default (all x 16)",
        ["loss=contrastive", "loss.cdl.samples=all", "loss.cdl.points=16"],
    ),
    ("itd_cdl_paper", ["loss=itd_cdl_paper"]),
]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import ctdm.config  # noqa: F401  (the schema, ctdm_schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def measure(overrides: list[str], precision: str, device: torch.device, steps: int) -> dict:
    """ms per training step (median), peak memory, rows and chunks of one loss setting."""
    from ctdm.build import build_data, build_module
    from ctdm.losses.memory import describe_cost
    from ctdm.precision import autocast

    cfg = compose(overrides)
    data = build_data(cfg)
    data.setup("fit")
    module = build_module(cfg)
    module.set_data_var(data.data_var)
    module.to(device).train()
    module.plan_chunks()
    optimizer = torch.optim.Adam(module.parameters(), 2e-4)
    batch = int(cfg.data.batch_size)
    loader = iter(data.train_dataloader())
    x = next(loader).to(device)
    if len(x) < batch:  # the fake set is small: repeat its images up to the batch
        x = x.repeat((batch + len(x) - 1) // len(x), *[1] * (x.dim() - 1))[:batch]
    generator = torch.Generator(device=device)
    times = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 1):
        generator.manual_seed(i)
        synchronize(device)
        start = time.perf_counter()
        with autocast(precision, device):
            loss, _ = module.objective(x, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if i:  # the first step warms up (kernels, allocator)
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    terms = module.loss_terms
    chunks = [
        f"{k}:{t.auto_chunk(t.network_rows(batch)) if t.max_batch == 'auto' else t.max_batch}"
        for k, t in terms.items()
        if hasattr(t, "max_batch")
    ]
    cost = describe_cost(terms, batch, 1.0, 1e30) or ""
    result = {
        "ms": 1e3 * statistics.median(times),
        "peak": peak,
        "rows": sum(t.network_rows(batch) for t in terms.values()),
        "chunks": " ".join(chunks) or "-",
        "predicted": cost.split("predicted step time ")[1].split("x")[0] if cost else "-",
    }
    del module, optimizer, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def end_to_end(data_overrides: list[str], args, device: torch.device, out: Path) -> None:
    from ctdm.metrics.weights import resolve_inception_weights

    if args.cpu_smoke:  # the run's code paths, not its numbers: Inception on the CPU would be most of it
        extractor = ["eval/fid/extractor=random"]
        print("FID/KID: the random features (--cpu-smoke)")
        return _run(data_overrides, extractor, args, device, out)
    try:
        weights = str(resolve_inception_weights())
        extractor = ["eval/fid/extractor=inception", f"eval.fid.weights_path={weights}"]
        print(f"FID/KID: Inception features ({weights})")
    except (OSError, ValueError, RuntimeError) as err:
        extractor = ["eval/fid/extractor=random"]
        print(
            f"FID/KID: no Inception weights offline ({str(err).splitlines()[0][:160]}): the random features"
        )
    _run(data_overrides, extractor, args, device, out)


def _run(data_overrides: list[str], extractor: list[str], args, device: torch.device, out: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ctdm.train",
        "loss=contrastive",
        *data_overrides,
        f"trainer.max_steps={args.train_steps}",
        f"trainer.val_check_interval={args.train_steps}",
        "++trainer.limit_val_batches=2",
        f"eval.num_samples={args.samples}",
        f"eval.batch_size={min(args.samples, 500)}",
        f"sampler.steps={args.sample_steps}",
        "logger=csv",
        f"paths.output_dir={out / 'run'}",
        *extractor,
        *(["trainer=gpu", "trainer.precision=bf16-mixed"] if device.type == "cuda" else ["trainer=cpu"]),
        *args.extra,
    ]
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=out, capture_output=True, text=True, env=os.environ | {"WANDB_MODE": "disabled"}
    )
    lines = (done.stdout + done.stderr).splitlines()
    keep = [line for line in lines if "CDL cost" in line or line.startswith(("Run finished", "  ", "Error"))]
    print("\n".join(keep[-30:]) or "\n".join(lines[-30:]))
    print(f"end-to-end run: exit {done.returncode}, {time.perf_counter() - start:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per case")
    parser.add_argument("--train-steps", type=int, default=300, help="steps of the end-to-end run")
    parser.add_argument("--samples", type=int, default=1000, help="samples the end-to-end run scores")
    parser.add_argument("--sample-steps", type=int, default=100, help="DDPM steps of those samples")
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (checks the script)")
    parser.add_argument("extra", nargs="*", help="more overrides for every case, e.g. model.net.width=64")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.cpu_smoke or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.cpu_smoke:
        print("no CUDA device: pass --cpu-smoke for a quick check on the CPU")
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        subprocess.run([sys.executable, "-m", "ctdm.data.fake", "cifar10", str(out / "cifar")], check=True)
        data = [
            "data=cifar10",
            f"data.root={out / 'cifar'}",
            "data.check_integrity=false",
            "data.num_workers=0",
        ]
        if args.cpu_smoke:  # a small UNet, batch 8, 2 points: the code paths, not the numbers
            args.steps, args.train_steps, args.samples, args.sample_steps = 1, 2, 16, 5
            args.precisions = ["32-true"]
            small = ["model.net.width=16", "model.net.blocks=1", "data.batch_size=4", "data.val_size=8"]
            args.extra = [*small, *args.extra]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"device: {name}, torch {torch.__version__}; batch and net: conf/ defaults + {args.extra}")
        print(
            f"{'loss':38s} {'precision':10s} {'rows':>5s} {'max_batch':>16s} {'ms/step':>9s} {'/itd':>6s} "
            f"{'predicted':>9s} {'peak GiB':>9s}"
        )
        for precision in args.precisions:
            itd_ms = None
            for name, overrides in LOSSES:
                try:
                    r = measure([*data, *overrides, *args.extra], precision, device, args.steps)
                except torch.OutOfMemoryError:
                    print(f"{name:38s} {precision:10s} out of memory")
                    torch.cuda.empty_cache()
                    continue
                itd_ms = r["ms"] if name == "itd" else itd_ms
                ratio = f"{r['ms'] / itd_ms:5.2f}x" if itd_ms else "-"
                print(
                    f"{name:38s} {precision:10s} {r['rows']:5d} {r['chunks']:>16s} {r['ms']:9.1f} "
                    f"{ratio:>6s} {r['predicted']:>9s} {r['peak'] / 2**30:9.2f}",
                    flush=True,
                )
        end_to_end([*data, *args.extra], args, device, out)


if __name__ == "__main__":
    main()
