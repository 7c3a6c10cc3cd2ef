"""The GPU options side by side in one run, and a pretrained diffusers UNet on the device.

1. Parity on the device: a tiny saved UNet2DModel through ctdm.nets.PretrainedUNet answers the raw model's
   output at the schedule's levels (its timestep grid is a buffer that moved with the network), in fp32
   and under ctdm.precision.autocast("bf16-mixed").
2. Training step (ms, MSE on the DDPM CIFAR-10 UNet, conf/model/unet_cifar, batch --batch) for: fp32,
   bf16-mixed, bf16-mixed + channels_last, and those plus torch.compile (compile time reported apart).
3. DDPM sampling (ms per step, batch --samples) in fp32 and under bf16 autocast, with channels_last.
Usage: python benchmarks/gpu_options.py [--batch 128] [--samples 256] [--steps 20] [--no-compile] [--small]
(--small: a width-32 UNet and tiny batches, to check the script on a CPU.)
"""

import argparse
import copy
import tempfile
import time
from functools import partial

import torch
from _device import synchronize

from ctdm.diffusion import DDPMSchedule
from ctdm.losses import DenoisingMSE
from ctdm.module import DiffusionModule
from ctdm.nets import PretrainedUNet, UNet
from ctdm.nets.pretrained import save_tiny_ddpm
from ctdm.precision import autocast
from ctdm.samplers import DDPMSampler


def parity(device) -> None:
    with tempfile.TemporaryDirectory() as folder:
        save_tiny_ddpm(folder, [3, 32, 32])
        net = PretrainedUNet(folder, [3, 32, 32]).to(device).eval()
    t = torch.tensor([0, 1, 10, 500, 999], device=device)
    z = torch.randn(len(t), 3, 32, 32, device=device)
    logsnr = DDPMSchedule().logsnr.to(device)[t].float()
    with torch.no_grad():
        raw = net.unet(z, t).sample
        full = net(z, logsnr)
        with autocast("bf16-mixed", device):
            mixed = net(z, logsnr)
    print(
        f"parity on {device}: |eps - raw| max {float((full - raw).abs().max()):.2e} (fp32), "
        f"{float((mixed.float() - raw).abs().max()):.2e} (bf16-mixed, output {mixed.dtype}); "
        f"grid buffer on {net.train_logsnr.device}"
    )


def module(width: int, channels_last: bool = False, compile: bool = False) -> DiffusionModule:
    torch.manual_seed(0)
    net = UNet([3, 32, 32], width=width, mult=[1, 2, 2, 2], blocks=2, attn_resolutions=[16], dropout=0.1)
    loss = {"mse": DenoisingMSE(schedule=DDPMSchedule())}
    m = DiffusionModule(
        net, loss, partial(torch.optim.Adam, lr=2e-4), channels_last=channels_last, compile=compile
    )
    m.set_data_var(torch.full((3, 32, 32), 0.25))
    return m


def train_ms(m: DiffusionModule, precision: str, batch: int, steps: int, device) -> tuple[float, float]:
    """(seconds of the first two steps: compilation, if any; ms per step after them)."""
    m = m.to(device).train()
    opt = torch.optim.Adam(m.parameters(), 2e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)

    def step():
        with autocast(precision, device):
            loss, _ = m.objective(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(2):
        step()
    synchronize(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return first, 1e3 * (time.perf_counter() - start) / steps


def sample_ms(m: DiffusionModule, precision: str, n: int, device, steps: int = 20) -> float:
    sampler = DDPMSampler(steps=steps, schedule=DDPMSchedule())
    seeds = torch.arange(n, device=device)
    m = m.to(device).eval()
    with torch.no_grad(), autocast(precision, device):
        sampler(m.parameterization, (3, 32, 32), seeds[:2], device=device)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        samples, _ = sampler(m.parameterization, (3, 32, 32), seeds, device=device)
        synchronize(device)
    assert samples.dtype == torch.float32 and torch.isfinite(samples).all()
    return 1e3 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    width = 32 if args.small else 128
    size = sum(p.numel() for p in module(width).parameters()) / 1e6
    print(f"device: {name}; UNet width {width} ({size:.1f}M parameters); torch {torch.__version__}")
    parity(device)
    rows = [
        ("fp32", "32-true", {}),
        ("bf16-mixed", "bf16-mixed", {}),
        ("bf16-mixed + channels_last", "bf16-mixed", {"channels_last": True}),
    ]
    if not args.no_compile:
        rows += [
            ("fp32 + compile", "32-true", {"compile": True}),
            ("bf16-mixed + channels_last + compile", "bf16-mixed", {"channels_last": True, "compile": True}),
        ]
    print(f"\ntraining step, batch {args.batch} (ms/step over {args.steps} steps after 2 warm-up steps)")
    for label, precision, options in rows:
        first, ms = train_ms(module(width, **options), precision, args.batch, args.steps, device)
        print(f"  {label:40s} {ms:8.2f} ms   (first 2 steps: {first:6.1f} s)")
    print(f"\nDDPM sampling, batch {args.samples} (ms per sampler step)")
    base = module(width, channels_last=True)
    for precision in ("32-true", "bf16-mixed"):
        print(f"  {precision:40s} {sample_ms(copy.deepcopy(base), precision, args.samples, device):8.2f} ms")


if __name__ == "__main__":
    main()
