"""Cost of the Contrastive Diffusion Loss per training step on the 2-D MLP, side by side in one run.

Prints ms per optimizer step (forward, backward, Adam) with batch 128 for:
  mse                     the DDPM MSE loss alone
  mse+cdl paper, loop     the authors' way: 2 samples, 128 points each, log p and log p_zeta as
                          separate estimates, a Python loop with one backward pass per sample
  mse+cdl paper           ctdm, the same work (2 x 128 points, independent draws) in one batched call
  mse+cdl paper, shared   ctdm with shared draws for log p and log p_zeta
  mse+cdl all x M         ctdm, CDL on all 128 samples with M = 16, 4, 2 shared points each
and, for each, the floor: one forward + backward + Adam step over as many network evaluations
as the step makes, in a single batch, and the noise of the step's classifier logit: its standard
deviation over repeated estimates on held-out points (eight Gaussians, the exact denoiser, so the
spread is the Monte-Carlo estimator's alone), in nats. Usage: python benchmarks/cdl_step.py [--repeats 30]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ctdm.data import eight_gaussians
from ctdm.diffusion import Reference, cdl_logit, nll
from ctdm.diffusion.channel import noise_data
from ctdm.losses import ContrastiveDiffusionLoss, DenoisingMSE
from ctdm.nets import ResidualMLP

BATCH = 128


def logit_std(law, ref, points, share_draws, held_out=64, repeats=64):
    """Standard deviation (nats) of one logit estimate over `repeats` redraws, averaged over held-out
    points, half clean and half noised at a zeta from the CDL's distribution. One vectorised call."""
    gen = torch.Generator().manual_seed(1)
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
    )
    return logits.view(repeats, held_out).std(0).mean().item()


def timed(step, repeats):
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1e3 * (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    law = eight_gaussians()
    data = law.sample(20000, torch.Generator().manual_seed(0))
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

    # (name, step, network evaluations per step, CDL items per step, points, shared draws)
    cases = [
        ("mse", step_with([mse]), BATCH, 0, 0, None),
        ("mse+cdl paper, loop", paper_loop, BATCH + 2 * 2 * BATCH, 2, BATCH, False),
        (
            "mse+cdl paper",
            step_with([mse, ContrastiveDiffusionLoss(samples=2, points=BATCH, share_draws=False)]),
            5 * BATCH,
            2,
            BATCH,
            False,
        ),
        (
            "mse+cdl paper, shared",
            step_with([mse, ContrastiveDiffusionLoss(samples=2, points=BATCH)]),
            BATCH + 4 * BATCH,
            2,
            BATCH,
            True,
        ),
    ]
    for m in (16, 4, 2):
        cdl = ContrastiveDiffusionLoss(samples="all", points=m)
        cases.append((f"mse+cdl all x {m}", step_with([mse, cdl]), BATCH + 2 * BATCH * m, BATCH, m, True))
    base = None
    print(f"threads={torch.get_num_threads()} batch={BATCH} repeats={args.repeats}")
    print(
        f"{'step':24s} {'evals':>6s} {'ms/step':>8s} {'floor ms':>9s} {'/floor':>7s} {'/mse':>6s}"
        f" {'items':>6s} {'logit std':>10s}"
    )
    for name, step, evals, items, points, shared in cases:
        ms, floor_ms = timed(step, args.repeats), timed(floor(evals), args.repeats)
        base = base or ms
        noise = f"{logit_std(law, ref, points, shared):10.3f}" if items else f"{'-':>10s}"
        print(
            f"{name:24s} {evals:6d} {ms:8.2f} {floor_ms:9.2f} {ms / floor_ms:6.2f}x {ms / base:5.1f}x"
            f" {items:6d} {noise}"
        )


if __name__ == "__main__":
    main()
