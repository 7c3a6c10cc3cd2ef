"""Memory and time of one forward + backward of the CDL term on an image UNet, unchunked (as on main) and
chunked two ways, side by side; each case in a fresh interpreter so the resident peaks do not mix.

  none        every 2 x items x points row in one graph, held for the backward pass (max_batch: null)
  checkpoint  ctdm's chunked path: calls of --chunk rows, each activation-checkpointed (max_batch: N)
  two_pass    the alternative: the logits without grad, then per chunk the rows again with grad and a
              backward of their errors weighted by the softplus derivative (here only, for comparison)
  itd         the base loss alone (ITD, one point per item) at the same items, for the time ratio

Columns: resident growth (peak RSS over the step, polled), tensor peak (ctdm.samplers.memory.TensorMemory,
exact, a second step), seconds of the (first, untraced) step, and the gradient's largest relative
difference from the unchunked one on the same draws (--check). Memory per item and the step time at batch
128 are extrapolated from the items measured (printed below the table).
--ratios instead times whole training steps (loss, backward, Adam) at --batch of the MSE, the ITD and the
ITD + CDL at several samples x points, unchunked and checkpointed, against the ITD step, beside the ratio
ctdm predicts from the rows (what a run prints before training).
Usage: python benchmarks/cdl_memory.py [--net unet_cifar] [--items 1 2] [--points 16] [--chunk 32]
       [--methods none checkpoint two_pass itd] [--check] [--small]
       python benchmarks/cdl_memory.py --ratios [--net unet_small] [--batch 128] [--chunk 64] [--small]
"""

import argparse
import json
import subprocess
import sys
import threading
import time

import torch

NETS = {  # conf/model/*.yaml's networks
    "unet_cifar": dict(
        shape=(3, 32, 32), width=128, mult=(1, 2, 2, 2), blocks=2, attn_resolutions=(16,), dropout=0.1
    ),
    "unet_small": dict(shape=(1, 8, 8), width=32, mult=(1, 2, 2), blocks=2, attn_resolutions=(), dropout=0.0),
    "tiny": dict(
        shape=(1, 8, 8), width=8, mult=(1, 2), blocks=1, attn_resolutions=(), dropout=0.0, norm_groups=4
    ),
}


def build(net_name: str, seed: int = 0):
    from ctdm.diffusion import Reference
    from ctdm.nets import UNet

    torch.manual_seed(seed)
    spec = dict(NETS[net_name])
    shape = spec.pop("shape")
    net = UNet(list(shape), **spec)
    return net, Reference.standard(shape, 4.0, 4.0), shape


def two_pass_backward(term, eps_fn, x, generator, reference, chunk: int) -> None:
    """The CDL's gradient (share_draws, plain draws) in two passes: the logits without grad, then each
    chunk's errors again with grad, backward of their sum weighted by d loss / d error."""
    from ctdm.diffusion.channel import append_dims, noise_data
    from ctdm.diffusion.likelihood import _draws, _point_errors, point_errors

    count = term.items(len(x))
    x = x[:count]
    zeta = term.zeta.sample(count, generator, x.device, reference).to(x.dtype)  # as ContrastiveDiffusionLoss
    clean = torch.rand(count, generator=generator, device=x.device) < 0.5
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    z = torch.where(append_dims(clean, x.dim()), x, noise_data(x, zeta, eps))
    points = term.points
    zs, logsnr, weight, noise = _draws(z, points, reference, generator, term.draws, zeta)
    inf = torch.full((count * points,), torch.inf)
    rows = (
        torch.cat([zs, zs]),
        torch.cat([logsnr.flatten(), logsnr.flatten()]),
        torch.cat([noise, noise]),
        torch.cat([inf, zeta.repeat_interleave(points)]),
    )
    with torch.no_grad():
        err_p, err_zeta = point_errors(eps_fn, *rows, chunk).view(2, count, points)
        logit = 0.5 * (weight * (err_zeta - err_p)).mean(1)
        sign = clean.to(x.dtype) * 2 - 1
        d_logit = -sign * torch.sigmoid(-sign * logit) / count  # d mean softplus(-y logit) / d logit
        d_err = (0.5 * weight / points * d_logit[:, None]).flatten()
        coefficient = torch.cat([-d_err, d_err])  # d loss / d err_p, d loss / d err_zeta
    for first in range(0, len(coefficient), chunk):
        part = slice(first, first + chunk)
        (coefficient[part] * _point_errors(eps_fn, *(r[part] for r in rows))).sum().backward()


def step(net, ref, shape, method: str, items: int, points: int, chunk: int, seed: int = 0):
    """One forward + backward of the case on fresh gradients; returns the seconds."""
    from ctdm.losses import ContrastiveDiffusionLoss, ITDLoss

    net.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((items, *shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    start = time.perf_counter()
    if method == "itd":
        loss, _ = ITDLoss(max_batch=None)(net, x, generator, ref)
        loss.backward()
    elif method == "two_pass":
        two_pass_backward(ContrastiveDiffusionLoss(points=points), net, x, generator, ref, chunk)
    else:
        term = ContrastiveDiffusionLoss(points=points, max_batch=None if method == "none" else chunk)
        loss, _ = term(net, x, generator, ref)
        loss.backward()
    return time.perf_counter() - start


def child(args) -> None:
    from ctdm.samplers.memory import TensorMemory

    torch.set_num_threads(args.threads)
    net, ref, shape = build(args.net)
    net.train()
    step(net, ref, shape, "itd", 1, 1, 1)  # imports, first-call allocations: not the case's memory

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    peak, done = [rss()], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    before = rss()
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    seconds = step(net, ref, shape, args.method, args.items, args.points, args.chunk)
    done.set()
    thread.join()
    out = {"rss": max(peak[0], rss()) - before, "seconds": seconds}
    if args.tensor_peak:
        with TensorMemory() as memory:
            step(net, ref, shape, args.method, args.items, args.points, args.chunk)
        out["tensors"] = memory.peak
    print(json.dumps(out))


def gradient_check(net_name: str, items: int, points: int, chunk: int) -> dict:
    """Largest relative difference of each method's gradient from the unchunked one, same draws (no
    dropout, so the draws are the only randomness)."""
    net, ref, shape = build(net_name)
    net.eval()
    grads = {}
    for method in ("none", "checkpoint", "two_pass"):
        step(net, ref, shape, method, items, points, chunk)
        grads[method] = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    scale = max(g.abs().max() for g in grads["none"])
    return {
        m: float(max((a - b).abs().max() for a, b in zip(grads["none"], grads[m], strict=True)) / scale)
        for m in ("checkpoint", "two_pass")
    }


RATIO_SETTINGS = [("all", 16), (8, 16), (4, 16), (8, 8), (16, 8), (32, 4)]  # (samples, points) on the ITD


def step_ratios(net_name: str, batch: int, repeats: int, settings, chunk: int | None) -> None:
    """ms per training step (loss, backward, Adam; median of alternating timings) of the MSE, the ITD
    and the ITD + each CDL setting at `batch`, unchunked and checkpointed in calls of `chunk` rows, with
    the ratio to the ITD step and the one ctdm.losses.memory.describe_cost predicts from the rows."""
    from cdl_step import timed_pair

    from ctdm.losses import ContrastiveDiffusionLoss, DenoisingMSE, ITDLoss
    from ctdm.losses.memory import describe_cost

    net, ref, shape = build(net_name)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    x = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(1)) * 2 - 1

    def step_with(terms):
        def run():
            loss = sum(term(net, x, None, ref)[0] for term in terms.values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run

    base = {"itd": ITDLoss(max_batch=None)}
    base_step = step_with(base)
    cases = [("mse", {"mse": DenoisingMSE()})]
    for samples, points in settings:
        for max_batch in (None, chunk):
            cdl = ContrastiveDiffusionLoss(samples=samples, points=points, max_batch=max_batch)
            cases.append((f"itd + cdl {samples} x {points}, max_batch {max_batch}", {**base, "cdl": cdl}))
    print(f"net={net_name} batch={batch} threads={torch.get_num_threads()} repeats={repeats}")
    print(f"{'step':40s} {'rows':>5s} {'ms':>8s} {'itd ms':>8s} {'ratio':>6s} {'predicted':>9s}")
    for name, terms in cases:
        ms, itd_ms = timed_pair(step_with(terms), base_step, repeats)
        rows = sum(t.network_rows(batch) for t in terms.values())
        line = describe_cost(terms, batch, per_row=1.0, budget=1e30) or ""
        predicted = line.split("predicted step time ")[1].split("x")[0] if line else "-"
        print(f"{name:40s} {rows:5d} {ms:8.1f} {itd_ms:8.1f} {ms / itd_ms:5.2f}x {predicted:>9s}")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", default="unet_cifar", choices=sorted(NETS))
    parser.add_argument("--items", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=32, help="rows per chunked call")
    parser.add_argument("--methods", nargs="+", default=["none", "checkpoint", "two_pass", "itd"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-tensor-peak", dest="tensor_peak", action="store_false")
    parser.add_argument("--check", action="store_true", help="gradient parity of the chunked methods")
    parser.add_argument("--small", action="store_true", help="a tiny UNet, 1-2 items, 4 points")
    parser.add_argument("--ratios", action="store_true", help="training-step time ratios to the ITD step")
    parser.add_argument("--batch", type=int, default=128, help="batch of --ratios")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per case of --ratios")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "ITEMS", "POINTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.small:
        args.net, args.items, args.points, args.chunk, args.check = "tiny", [1, 2], 4, 3, True
    if args.ratios:
        torch.set_num_threads(args.threads)
        settings = [(2, 4), (1, 4)] if args.small else RATIO_SETTINGS
        batch, repeats = (8, 2) if args.small else (args.batch, args.repeats)
        return step_ratios(args.net, batch, repeats, settings, args.chunk)
    if args.child:
        args.method, args.items, args.points = args.child[0], int(args.child[1]), int(args.child[2])
        return child(args)
    print(
        f"net={args.net} points={args.points} chunk={args.chunk} threads={args.threads} (one CDL step each)"
    )
    print(f"{'method':11s} {'items':>5s} {'rows':>5s} {'resident':>9s} {'tensors':>8s} {'seconds':>8s}")
    results = {}
    for method in args.methods:
        for items in args.items:
            command = [sys.executable, __file__, "--child", method, str(items), str(args.points)]
            command += ["--net", args.net, "--chunk", str(args.chunk), "--threads", str(args.threads)]
            command += [] if args.tensor_peak else ["--no-tensor-peak"]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            r = results[method, items] = json.loads(done.stdout.strip().splitlines()[-1])
            rows = items if method == "itd" else 2 * items * args.points
            tensors = f"{r['tensors'] / 2**20:7.0f}M" if "tensors" in r else "-"
            print(
                f"{method:11s} {items:5d} {rows:5d} {r['rss'] / 2**20:8.0f}M {tensors:>8s} "
                f"{r['seconds']:8.2f}"
            )
    if len(args.items) > 1:
        lo, hi = min(args.items), max(args.items)
        print(f"per item ({lo} -> {hi} items), and a batch of 128 items extrapolated:")
        for method in args.methods:
            a, b = results[method, lo], results[method, hi]
            per_item = {k: (b[k] - a[k]) / (hi - lo) for k in a}
            at_128 = {k: a[k] + per_item[k] * (128 - lo) for k in a}
            memory = ", ".join(
                f"{k} {per_item[k] / 2**30:.3f} G/item -> {at_128[k] / 2**30:.1f} G"
                for k in ("rss", "tensors")
                if k in a
            )
            print(f"  {method:11s} {memory}; {per_item['seconds']:.2f} s/item -> {at_128['seconds']:.0f} s")
    if args.check:
        diffs = gradient_check(args.net, max(args.items), args.points, args.chunk)
        print(
            "gradient vs unchunked (max relative difference): "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        )


if __name__ == "__main__":
    main()
