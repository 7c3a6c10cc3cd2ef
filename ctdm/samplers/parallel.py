"""Parallel sampling by Picard iteration (ParaDiGMS, Shih et al. 2023) over any sequential step sampler.

The sequential chain x_{k+1} = x_k + drift(x_k, k) + noise_k has the fixed point
x_{k} = x_0 + sum_{j<k} (drift(x_j, j) + noise_j). With every step's noise drawn up front (from each
sample's own generator, the same draws the sequential loop uses), the solver holds the whole
trajectory x_0..x_K, initialised to x_0, and each pass:

1. evaluates the drift of the W steps b..b+W-1 of each sample's window in ONE batched eps_fn call
   (two for Heun), optionally split over several devices;
2. rebuilds the window as x_b + cumsum(drift + noise);
3. measures each new state's change ||new - old||^2 / (step_variance_k * d), with step_variance_k the
   base sampler's per-step variance (see StepSampler: DDPM's posterior variance of the same log-SNR
   transition, also for ODE steps), and slides the window start as `window_advance` says.

Each sample has its own window, so sample i's result and pass count do not depend on the batch.
Samples that finished drop out of the batch. With the same noise the fixed point is the sequential
trajectory, so a tiny tolerance reproduces it up to float rounding.
"""

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ctdm.diffusion.checks import check_int, check_number
from ctdm.samplers.base import SamplerStats, StepSampler, as_eps_fn


def window_advance(change: Tensor, valid: Tensor, tolerance: float) -> Tensor:
    """Steps each window start moves after a pass [A], from the changes of its new states [A, W].

    change[i, j] is the squared change of state x_{b+j+1} in units of its step's variance (per
    dimension); valid[i, j] is False past the last step. The start moves past every state before the
    first one whose change is still above tolerance^2 (all valid ones if none is), and by at least one
    step: x_{b+1} is exact once x_b is, whatever its change.
    """
    above = (change > tolerance**2) & valid
    first_above = torch.where(above.any(1), above.long().argmax(1), valid.sum(1))
    return first_above.clamp(min=1)


def split_over_devices(denoiser, devices: Sequence) -> Callable:
    """An eps_fn whose batch is cut into len(devices) contiguous chunks, one per device, then re-joined.

    denoiser: a plain nn.Module answering `eps(z, logsnr)` (or `forward`), or that method of one: the
    network is replicated onto each device once (a deep copy of that module, which holds the weights).
    A LightningModule is refused: pass the network it wraps. Any other callable gets its chunk moved
    to the device and must cope with that itself.
    """
    devices = [torch.device(d) for d in devices]
    module = denoiser if isinstance(denoiser, nn.Module) else getattr(denoiser, "__self__", None)
    if not isinstance(module, nn.Module):
        fns = [as_eps_fn(denoiser)] * len(devices)
    else:
        if any(cls.__name__ == "LightningModule" for cls in type(module).__mro__):
            raise ValueError(
                "devices: splitting over devices replicates the network, so pass the plain nn.Module "
                "that holds the weights (e.g. its parameterization), not the LightningModule "
                f"{type(module).__name__}."
            )
        method = denoiser.__name__ if module is not denoiser else None
        home = next(module.parameters(), torch.empty(0)).device
        replicas = [module if dev == home else copy.deepcopy(module).to(dev) for dev in devices]
        fns = [getattr(r, method) if method else as_eps_fn(r) for r in replicas]

    def split_eps(z: Tensor, logsnr: Tensor) -> Tensor:
        chunks = torch.arange(len(z), device=z.device).tensor_split(len(devices))
        # Launch every chunk before collecting any, so asynchronous devices overlap.
        outs = [
            fn(z[idx].to(dev, non_blocking=True), logsnr[idx].to(dev, non_blocking=True))
            for fn, dev, idx in zip(fns, devices, chunks, strict=True)
            if len(idx)
        ]
        return torch.cat([o.to(z.device) for o in outs])

    return split_eps


class ParallelSampler:
    """Picard (ParaDiGMS) solver that runs a sequential StepSampler's steps in parallel.

    base: the sequential StepSampler whose steps are solved (its steps, noise and seeds);
    window: steps evaluated per pass (None: every step; clipped to the steps);
    tolerance: > 0, on the root-mean-square change per dimension in units of the step's std;
    max_passes: stop after this many passes (None: steps, always enough); devices: split each pass's
    batch over these devices (None: the device of the samples); name: None gives "para_<base name>".
    Call: sampler(eps_fn, shape, seeds, device=None, hook=None) -> (samples, stats). `hook(pass_index,
    x_last, info)` runs after every pass with the current last state of every sample [N, *shape] and
    info {"nfe": evaluations per sample so far, "active": samples still iterating}.
    """

    parallel = True

    def __init__(
        self,
        base: StepSampler,
        window: int | None = None,
        tolerance: float = 0.1,
        max_passes: int | None = None,
        devices: Sequence | None = None,
        name: str | None = None,
    ):
        if not isinstance(base, StepSampler):
            raise ValueError(
                f"base must be a sequential step sampler (DDPMSampler, DDIMSampler, HeunSampler, "
                f"EulerSampler), got {base!r}."
            )
        self.base = base
        self.steps = base.steps
        self.window = self.steps if window is None else min(check_int("window", window), self.steps)
        self.tolerance = check_number("tolerance", tolerance, positive=True)
        self.max_passes = self.steps if max_passes is None else check_int("max_passes", max_passes)
        self.devices = list(devices) if devices else None
        self.name = name if name is not None else f"para_{base.name}"

    @torch.no_grad()
    def __call__(
        self, eps_fn, shape: tuple[int, ...], seeds: Tensor, device=None, hook=None
    ) -> tuple[Tensor, SamplerStats]:
        start = time.perf_counter()
        K, W = self.steps, self.window
        eps_fn = split_over_devices(eps_fn, self.devices) if self.devices else as_eps_fn(eps_fn)
        noise = self.base.draw_noise(tuple(shape), seeds, device)  # [N, K+1, *shape]
        N, dim = noise.shape[0], max(1, noise[0, 0].numel())
        dev = noise.device
        base = self.base.on(dev, noise.dtype)
        traj = base.prior(noise[:, 0]).unsqueeze(1).repeat(1, K + 1, *([1] * len(shape)))  # [N, K+1, *shape]
        scale = self.base.step_variance.to(dev) * dim  # float64 [K]
        begin = torch.zeros(N, dtype=torch.long, device=dev)
        offsets = torch.arange(W, device=dev)
        evaluations, passes = 0, 0
        while passes < self.max_passes:
            active = (begin < K).nonzero().squeeze(1)
            if len(active) == 0:
                break
            passes += 1
            b = begin[active]  # [A]
            steps = b[:, None] + offsets  # [A, W] step indices of each window
            valid = steps < K
            steps = steps.clamp(max=K - 1)
            rows_a, rows_w = valid.nonzero(as_tuple=True)  # flattened valid (sample, step) pairs
            sample_of_row, step_of_row = active[rows_a], steps[rows_a, rows_w]
            x_in = traj[sample_of_row, step_of_row]
            n_in = noise[sample_of_row, step_of_row + 1]
            delta = base.drift(eps_fn, x_in, step_of_row, n_in) + base.noise(n_in, step_of_row)
            evaluations += int(base.nfe_per_step[step_of_row].sum())
            increments = traj.new_zeros((len(active), W, *shape))
            increments[rows_a, rows_w] = delta
            new = traj[active, b].unsqueeze(1) + increments.cumsum(1)  # new x_{b+1} .. x_{b+W}
            old = traj[active[:, None], steps + 1]
            change = (new - old).flatten(2).double().pow(2).sum(-1) / scale[steps]  # [A, W]
            traj[sample_of_row, step_of_row + 1] = new[rows_a, rows_w]
            begin[active] = b + window_advance(change, valid, self.tolerance)
            if hook is not None:
                hook_start = time.perf_counter()
                hook(passes, traj[:, K], {"nfe": evaluations / N, "active": int((begin < K).sum())})
                start += time.perf_counter() - hook_start  # the hook's time is not the sampler's
        stats = SamplerStats(
            nfe=evaluations / N,
            passes=passes,
            seconds=time.perf_counter() - start,
            converged=bool((begin >= K).all()),
            extra={"window": W, "tolerance": self.tolerance},
        )
        return traj[:, K].clone(), stats

    def __repr__(self) -> str:
        return (
            f"ParallelSampler(name={self.name!r}, base={self.base!r}, window={self.window}, "
            f"tolerance={self.tolerance})"
        )
