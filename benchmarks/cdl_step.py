"""Cost and noise of the Contrastive Diffusion Loss per training step, each estimator side by side.

For each way of computing the CDL at batch 128 on the 2-D MLP it prints:
  evals        network evaluations per step (the MSE's 128 included)
  ms/step      one optimizer step (forward, backward, Adam; the median of alternating timings), and
               /floor against one forward + backward + Adam over as many evaluations in a single batch
  logit sd     the noise of one item's classifier logit: its standard deviation over redraws, averaged
               over 64 held-out points (half clean, half noised at a zeta from the CDL's distribution),
               with the exact denoiser of the eight Gaussians (8g) and of the dino, so the spread is the
               Monte-Carlo estimator's alone (mean over the points, and their median)
Cases: the MSE alone; the authors' CDL (2 items x 128 points, independent draws for log p and
log p_zeta), as their per-item loop and as ctdm's one batched call; ctdm's CDL on every item with M
shared points, with plain draws and with the lower-variance draws of `ctdm.diffusion.Draws`
(stratified levels, antithetic noise, levels focused above zeta). The authors' work per step is 640
evaluations: every item with M = 2 costs the same.
Usage: python benchmarks/cdl_step.py [--repeats 30] [--small]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ctdm.data import dino, eight_gaussians
from ctdm.diffusion import Draws, Reference, cdl_logit, nll
from ctdm.diffusion.channel import noise_data
from ctdm.losses import ContrastiveDiffusionLoss, DenoisingMSE
from ctdm.nets import ResidualMLP

BATCH = 128
PLAIN, STRAT, FOCUS = Draws(), Draws(stratified=True), Draws(stratified=True, focused=True)


def logit_std(law, points, share_draws, draws, held_out=64, repeats=64):
    """Standard deviation (nats) of one logit estimate over `repeats` redraws, per held-out point
    (mean and median over the points). One vectorised call; the law's exact denoiser."""
    gen = torch.Generator().manual_seed(1)
    ref = Reference.from_data_var(law.sample(20000, torch.Generator().manual_seed(0)).var(0))
    x = law.sample(held_out, gen)
    zeta = ContrastiveDiffusionLoss().zeta.sample(held_out, reference=ref, generator=gen)
    noised = noise_data(x, zeta, torch.randn(x.shape, generator=gen))
    z = torch.where(torch.arange(held_out)[:, None] % 2 == 0, x, noised)
    logits = cdl_logit(
        law.eps,
        z.repeat(repeats, 1),
        zeta.repeat(repeats),
        ref,
        n_points=points,
        share_draws=share_draws,
        generator=gen,
        draws=draws,
    )
    sd = logits.view(repeats, held_out).std(0)
    return sd.mean().item(), sd.median().item()


def timed_pair(step, floor, repeats):
    """Median ms of `step` and of `floor`, timed alternately one call at a time (a shared, loaded CPU
    slows both alike, so their ratio holds)."""
    for _ in range(3):
        step(), floor()
    times = {step: [], floor: []}
    for _ in range(repeats):
        for fn in (step, floor):
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return [1e3 * statistics.median(times[fn]) for fn in (step, floor)]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per case")
    parser.add_argument("--small", action="store_true", help="a quick pass: few steps, cases and redraws")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    laws = {"8g": eight_gaussians(), "dino": dino()}
    data = laws["8g"].sample(20000, torch.Generator().manual_seed(0))
    ref = Reference.from_data_var(data.var(0))
    net = ResidualMLP(2)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    mse = DenoisingMSE()

    def batch():
        return data[torch.randint(0, len(data), (BATCH,))]

    def step_with(terms):
        def step():
            x = batch()
            loss = sum(term(net, x, None, ref)[0] for term in terms)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    def paper_loop():
        # One backward per CDL sample, log p and log p_zeta estimated separately (their structure).
        x = batch()
        opt.zero_grad()
        mse(net, x)[0].backward()
        zeta_dist = ContrastiveDiffusionLoss().zeta
        for i in range(2):
            xi = x[i : i + 1]
            zeta = zeta_dist.sample(1, reference=ref)
            clean = bool(torch.rand(()) < 0.5)
            z = xi if clean else noise_data(xi, zeta, torch.randn_like(xi))
            logit = nll(net, z, ref, n_points=BATCH, zeta=zeta) - nll(net, z, ref, n_points=BATCH)
            F.softplus(-(1.0 if clean else -1.0) * logit).mean().backward()
        opt.step()

    def floor(points):
        def step():
            z, a = torch.randn(points, 2), torch.randn(points)
            opt.zero_grad()
            net(z, a).pow(2).mean().backward()
            opt.step()

        return step

    def every_item(m, draws):
        return step_with([mse, ContrastiveDiffusionLoss(samples="all", points=m, draws=draws)])

    # (name, step, network evaluations per step, points, shared draws, draws); points 0: no CDL
    paper = ContrastiveDiffusionLoss(samples=2, points=BATCH, share_draws=False)
    cases = [
        ("mse", step_with([mse]), BATCH, 0, None, None),
        ("paper, loop", paper_loop, 5 * BATCH, BATCH, False, PLAIN),
        ("paper", step_with([mse, paper]), 5 * BATCH, BATCH, False, PLAIN),
        ("all x 2", every_item(2, PLAIN), 5 * BATCH, 2, True, PLAIN),
        ("all x 2 stratified", every_item(2, STRAT), 5 * BATCH, 2, True, STRAT),
        (
            "all x 2 antithetic",
            every_item(2, Draws(antithetic=True)),
            5 * BATCH,
            2,
            True,
            Draws(antithetic=True),
        ),
        ("all x 2 focused", every_item(2, Draws(focused=True)), 5 * BATCH, 2, True, Draws(focused=True)),
        ("all x 2 strat+focused", every_item(2, FOCUS), 5 * BATCH, 2, True, FOCUS),
    ]
    for m in (4, 8, 16):
        evals = BATCH + 2 * BATCH * m
        cases += [
            (f"all x {m}", every_item(m, PLAIN), evals, m, True, PLAIN),
            (f"all x {m} strat+focused", every_item(m, FOCUS), evals, m, True, FOCUS),
        ]
    held_out, redraws, repeats = (16, 16, 3) if args.small else (64, 64, args.repeats)
    if args.small:
        cases = cases[:2] + [c for c in cases if c[0] in ("all x 2", "all x 2 strat+focused")]
    base = None
    print(
        f"threads={torch.get_num_threads()} batch={BATCH} repeats={repeats} held-out={held_out} x {redraws}"
    )
    print(
        f"{'step':24s} {'evals':>6s} {'ms/step':>8s} {'/floor':>7s} {'/mse':>6s}"
        f" {'8g sd':>7s} {'median':>7s} {'dino sd':>8s} {'median':>7s}"
    )
    for name, step, evals, points, shared, draws in cases:
        ms, floor_ms = timed_pair(step, floor(evals), repeats)
        base = base or ms
        noise = ""
        if points:
            for law in laws.values():
                mean, median = logit_std(law, points, shared, draws, held_out, redraws)
                noise += f" {mean:7.2f} {median:7.2f}"
        print(f"{name:24s} {evals:6d} {ms:8.2f} {ms / floor_ms:6.2f}x {ms / base:5.1f}x{noise}")


if __name__ == "__main__":
    main()
