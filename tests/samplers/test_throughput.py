"""Automatic rows per network call and window=auto: the choices, their memory budget, the cache, and
that they never change what the parallel sampler computes."""

import json
import logging
import time

import pytest
import torch
from torch import nn

from ctdm.data.toy import eight_gaussians
from ctdm.samplers import DDIMSampler, DDPMSampler, HeunSampler, ParallelSampler, parallel, throughput, timing
from ctdm.samplers.memory import TensorMemory
from ctdm.samplers.throughput import CallTimes, Chunks
from ctdm.samplers.timing import call_times, measure_call_times

LAW = eight_gaussians()


@pytest.fixture(autouse=True)
def one_thread():
    """torch on one thread: with several, a busy machine can trip the stall watch (`Chunks`) and change
    the rows per call these tests count (the watch is tested on its own below)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _MLP(nn.Module):
    """A small noise predictor whose rows are independent (as every denoiser's)."""

    def __init__(self, width: int = 64):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.out = nn.Linear(width, 2)

    def eps(self, z, logsnr):
        return 0.1 * self.out(self.net(torch.cat([z, logsnr[:, None] / 10], 1))) + 0.5 * z


class _Calls(nn.Module):
    """The network with a record of the rows of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.sizes = net, []

    def eps(self, z, logsnr):
        self.sizes.append(len(z))
        return self.net.eps(z, logsnr)


def _linear_times(fixed: float = 1.0, rows_per_second: float = 64.0, top: int = 1 << 14) -> CallTimes:
    """A made-up device: t(R) = fixed + R / rows_per_second."""
    rows = [1 << i for i in range(top.bit_length())]
    return CallTimes(rows, [fixed + r / rows_per_second for r in rows], bytes_per_row=100.0, device="made up")


@pytest.fixture
def fixed_times(monkeypatch):
    """ParallelSampler's plan sees `times` (and no bookkeeping time) instead of measuring the device."""

    def use(times: CallTimes):
        monkeypatch.setattr(parallel, "call_times", lambda *args, **kwargs: times)
        monkeypatch.setattr(parallel, "bookkeeping_seconds", lambda *args, **kwargs: (0.0, 0.0))

    return use


# --- the choices, on made-up devices -----------------------------------------------------------------


def _knee_times(knee: int = 64) -> CallTimes:
    """A made-up device: a call costs 1 up to `knee` rows, then in proportion to its rows."""
    rows = [1 << i for i in range(15)]
    return CallTimes(rows, [max(1.0, r / knee) for r in rows], bytes_per_row=100.0, device="made up")


def test_picard_advance_is_a_conservative_fit_to_the_measured_advance_per_pass():
    measured = {4: 1.94, 8: 3.42, 16: 6.13, 32: 11.4, 64: 20.4, 128: 31.2, 256: 38.5, 1000: 40.0}  # docs
    for window, advance in measured.items():
        assert 0.7 * advance <= throughput.picard_advance(window, 1000) <= advance, window
    assert throughput.picard_advance(1, 1000) == throughput.picard_advance(2, 1000) == 1.0


def test_auto_window_puts_a_small_batchs_pass_at_the_devices_saturation_point():
    # 4 samples, a flat cost up to 64 rows: windows up to 16 cost one step and advance a(W) steps;
    # wider ones cost W/16 steps and advance less than that much more.
    assert _knee_times(64).auto_window(4, steps=100, chunk=None) == 16
    assert _knee_times(64).auto_window(2, steps=100, chunk=None) == 32
    # A device that is never saturated: the whole trajectory in one pass.
    assert _knee_times(1 << 20).auto_window(4, steps=100, chunk=None) == 100


@pytest.mark.parametrize("batch", [1, 4, 64, 4096])
def test_auto_window_is_one_on_a_saturated_device(batch):
    saturated = CallTimes([1 << i for i in range(15)], [float(1 << i) for i in range(15)], 100.0)
    assert saturated.auto_window(batch, steps=1000, chunk=None) == 1
    # Here 32 samples saturate it: a window of 2 costs 1.5 steps for the 1 step it advances.
    assert _knee_times(64).auto_window(32, steps=100, chunk=None) == 1


def test_auto_window_shrinks_as_the_batch_grows_and_counts_the_chunks_a_pass_is_split_into():
    times = _knee_times(64)
    windows = [times.auto_window(batch, steps=100, chunk=None) for batch in (1, 2, 4, 8, 16, 32)]
    assert windows == sorted(windows, reverse=True) and windows[0] > windows[-1] == 1, windows
    # Chunks of 8 rows: a pass of 4 x W rows is W/2 calls of cost 1, never cheaper than W/2 steps.
    assert times.auto_window(4, steps=100, chunk=8) == 1


def test_auto_window_counts_the_samplers_own_time_per_pass_and_per_step():
    times = _knee_times(64)
    assert times.auto_window(4, steps=100, chunk=None, pass_overhead=10.0) == 1  # passes cost 11 steps
    # Overheads on both: the network is a smaller share of a pass, wider windows pay.
    assert times.auto_window(4, steps=100, chunk=None, pass_overhead=10.0, step_overhead=10.0) > 16


def test_rows_per_call_is_the_smallest_near_the_best_throughput_within_the_memory_budget():
    times = _linear_times(fixed=1.0, rows_per_second=64.0, top=1 << 14)
    throughput = [r / t for r, t in zip(times.rows, times.seconds, strict=True)]
    best = max(throughput)
    chosen = times.rows_per_call()
    assert throughput[times.rows.index(chosen)] >= 0.95 * best
    assert throughput[times.rows.index(chosen) - 1] < 0.95 * best  # the next smaller size is not
    assert times.rows_per_call(memory_budget=100.0 * 37 / 0.9) == 37  # 100 bytes per row, 10% headroom
    assert times.rows_per_call(memory_budget=1.0) == 1
    # A CPU slower for the largest calls (past its caches): the peak, not the largest size.
    cache_edge = CallTimes([512, 1024, 2048, 4096], [0.5, 1.0, 2.0, 5.0], 10.0)
    assert cache_edge.rows_per_call() == 512


def _flat_from_256_to_4096() -> CallTimes:
    """A CPU core: 0.1 ms a call up to 100 rows, then 1 us a row, and 3 us a row past 4096 (the caches)."""
    rows = [1 << i for i in range(16)]
    return CallTimes(rows, [max(1e-4, r * 1e-6) if r <= 4096 else 3e-6 * r for r in rows], 100.0, "cpu")


def test_rows_per_call_are_the_sequential_samplers_call_where_that_is_as_fast():
    times = _flat_from_256_to_4096()
    assert times.near_best_rows() == [128, 256, 512, 1024, 2048, 4096]  # 128: 0.13 ms, within 5%
    assert times.rows_per_call() == 128  # no batch: the smallest near-best size, as before
    # A pass of N samples x W steps in calls of N rows: each costs what the sequential sampler's does.
    assert [times.rows_per_call(batch=n) for n in (1, 100, 500, 2000, 4096)] == [128, 128, 500, 2000, 4096]
    assert times.rows_per_call(batch=100_000) == 4096  # not past the caches: cheaper than sequential
    assert times.rows_per_call(memory_budget=100.0 * 300 / 0.9, batch=2000) == 300  # the budget binds


def test_contended_rows_stay_below_the_caches_and_never_below_the_sequential_call():
    healthy = _flat_from_256_to_4096()
    assert healthy.contended_rows(batch=16) == 4096  # the largest near-best size, not a whole pass
    assert healthy.contended_rows(batch=10_000) == 10_000  # the sequential call waits as often
    assert healthy.contended_rows(memory_budget=100.0 * 1000 / 0.9, batch=16) == 1000
    noise = CallTimes([1, 2, 4], [1e-4, 1e-2, 1e-2], 100.0, "cpu", contended=True)
    assert noise.contended_rows(batch=16) == throughput.MIN_ROWS and noise.contended_rows(batch=5000) == 5000
    assert noise.rows_per_call(batch=16) == throughput.MIN_ROWS  # a contended measurement, with a batch


@pytest.mark.parametrize("batch,rows", [(20, 128), (600, 600)])
def test_automatic_chunks_of_a_large_batch_are_its_sequential_calls(fixed_times, batch, rows):
    fixed_times(_flat_from_256_to_4096())
    net = _Calls(_MLP())
    sampler = ParallelSampler(DDPMSampler(steps=10), tolerance=0.1, memory_budget=1e9)
    samples, stats = sampler(net, (2,), torch.arange(batch))
    assert stats.extra["max_batch"] == rows and max(net.sizes) == rows
    explicit, _ = ParallelSampler(DDPMSampler(steps=10), tolerance=0.1, max_batch=None)(
        net, (2,), torch.arange(batch)
    )
    torch.testing.assert_close(samples, explicit, rtol=0, atol=1e-6)


def test_noise_only_adds_time_so_each_size_keeps_the_least_time_at_it_or_above():
    times = CallTimes([1, 2, 4, 8], [1.0, 9.0, 1.5, 2.0], 1.0)  # a disturbed measurement at 2 rows
    assert times.seconds == [1.0, 1.5, 1.5, 2.0]
    assert times.call_seconds(3) == 1.5 and times.call_seconds(16) == 4.0  # beyond: the last throughput


def test_a_contended_cpu_is_detected_and_not_chunked():  # (the fixture restores the threads)
    def contended(z, logsnr):  # one row: a single-threaded path; more: waits for a busy CPU's threads
        if len(z) > 1:
            time.sleep(0.01)
        return z

    assert not measure_call_times(contended, (2,), max_rows=8).contended  # one thread waits for nobody
    torch.set_num_threads(2)
    times = measure_call_times(contended, (2,), max_rows=64)
    assert times.contended and times.rows_per_call() is None  # no chunking, unless memory bounds it
    assert times.rows_per_call(memory_budget=1000 / 0.9 * max(times.bytes_per_row, 1e-9)) == 1000
    healthy = measure_call_times(lambda z, logsnr: 0.5 * z, (2,), max_rows=64)
    assert not healthy.contended and healthy.rows_per_call() is not None


# --- the samples do not change -----------------------------------------------------------------------


def test_automatic_chunking_gives_the_samples_of_the_same_explicit_max_batch():
    net, seeds = _Calls(_MLP()), torch.arange(24)
    base = DDPMSampler(steps=40)
    # A budget of 50 rows' activations (and the 10% headroom): the pass of 24 x 40 rows is split.
    per_row = call_times(net.eps, net, (2,)).bytes_per_row  # measures now (its calls are recorded too)
    net.sizes.clear()
    auto = ParallelSampler(base, tolerance=0.1, memory_budget=50.5 / 0.9 * per_row)
    samples, stats = auto(net, (2,), seeds)
    chunk = stats.extra["max_batch"]
    assert chunk <= 50 and max(net.sizes) == chunk < 24 * 40
    explicit, explicit_stats = ParallelSampler(base, tolerance=0.1, max_batch=chunk)(net, (2,), seeds)
    assert torch.equal(samples, explicit) and explicit_stats.passes == stats.passes
    whole, _ = ParallelSampler(base, tolerance=0.1, max_batch=None)(net, (2,), seeds)
    torch.testing.assert_close(samples, whole, rtol=0, atol=1e-6)  # batch-dependent kernels: rounding
    sequential, _ = base(net, (2,), seeds)
    tiny, _ = ParallelSampler(base, tolerance=1e-6, memory_budget=50.5 / 0.9 * per_row)(net, (2,), seeds)
    torch.testing.assert_close(tiny, sequential, rtol=0, atol=1e-5)


def test_rows_per_call_respect_the_memory_budget():
    net = _Calls(_MLP(width=128))
    per_row = call_times(net.eps, net, (2,)).bytes_per_row
    largest = {}
    for rows in (40, 160):
        net.sizes.clear()
        budget = (rows + 0.5) * per_row
        sampler = ParallelSampler(DDPMSampler(steps=50), tolerance=0.1, memory_budget=budget)
        sampler(net, (2,), torch.arange(30))
        largest[rows] = max(net.sizes)
        # The network's peak memory in its largest call, measured apart, is within the budget.
        with TensorMemory() as memory, torch.no_grad():
            net.net.eps(torch.randn(largest[rows], 2), torch.zeros(largest[rows]))
        assert memory.peak <= budget, (memory.peak, budget)
    assert largest[40] <= 40 < largest[160] <= 160, largest  # the budget binds, and a larger one allows more


@pytest.mark.parametrize("batch,window", [(2, 32), (8, 8), (64, 1)])
def test_window_auto_gives_the_samples_of_the_same_explicit_window(fixed_times, batch, window):
    fixed_times(_knee_times(64))  # flat up to 64 rows: a pass of batch x W <= 64 rows costs one step
    base, seeds = DDPMSampler(steps=200), torch.arange(batch)
    samples, stats = ParallelSampler(base, window="auto", tolerance=0.1)(LAW.eps, (2,), seeds)
    assert stats.extra["window"] == window
    explicit, explicit_stats = ParallelSampler(base, window=window, tolerance=0.1)(LAW.eps, (2,), seeds)
    assert torch.equal(samples, explicit)
    assert (stats.passes, stats.nfe) == (explicit_stats.passes, explicit_stats.nfe)


def test_bookkeeping_is_measured_once_and_a_pass_costs_more_than_a_step():
    base = DDPMSampler(steps=40)
    per_pass, per_step = parallel.bookkeeping_seconds(base, (2,), "cpu", torch.float32)
    assert parallel.bookkeeping_seconds(base, (2,), "cpu", torch.float32) == (per_pass, per_step)
    assert per_pass > per_step > 0  # some 40 small operations a pass, 8 a step


def test_window_auto_on_a_measured_device_matches_the_sequential_sampler_at_tiny_tolerance():
    net, seeds = _MLP(), torch.arange(16)
    base = DDPMSampler(steps=40)
    sequential, _ = base(net, (2,), seeds)
    samples, stats = ParallelSampler(base, window="auto", tolerance=1e-6)(net, (2,), seeds)
    assert 1 <= stats.extra["window"] <= 40 and stats.converged
    torch.testing.assert_close(samples, sequential, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "base", [DDPMSampler(steps=30), DDIMSampler(steps=20, eta=0.5), HeunSampler(steps=8, S_churn=5)]
)
@pytest.mark.parametrize("max_passes", [None, 5])
def test_window_one_as_a_plain_loop_is_the_picard_iteration_bit_for_bit(monkeypatch, base, max_passes):
    def run():
        seen = []
        sampler = ParallelSampler(base, window=1, tolerance=0.1, max_passes=max_passes, max_batch=None)
        hook = lambda p, x, info: seen.append((p, x.clone(), dict(info)))  # noqa: E731
        samples, stats = sampler(LAW.eps, (2,), torch.arange(7), hook=hook)
        return samples, stats, seen

    fast = run()
    monkeypatch.setattr(ParallelSampler, "_one_step_per_pass", ParallelSampler._picard)
    general = run()
    assert torch.equal(fast[0], general[0])
    assert (fast[1].passes, fast[1].nfe, fast[1].converged) == (
        general[1].passes,
        general[1].nfe,
        general[1].converged,
    )
    assert [(p, i) for p, _, i in fast[2]] == [(p, i) for p, _, i in general[2]]
    assert all(torch.equal(a, b) for (_, a, _), (_, b, _) in zip(fast[2], general[2], strict=True))


@pytest.mark.parametrize("ahead", [1, 3 * 2 * 5, 10**9])
def test_noise_drawn_ahead_of_the_windows_changes_nothing(monkeypatch, ahead):
    sampler = ParallelSampler(DDPMSampler(steps=50), window=8, tolerance=0.05, max_batch=None)
    want, want_stats = sampler(LAW.eps, (2,), torch.arange(5))
    monkeypatch.setattr(parallel, "NOISE_AHEAD_ELEMENTS", ahead)  # in values: 1 step, 3 steps, all
    got, stats = sampler(LAW.eps, (2,), torch.arange(5))
    assert torch.equal(got, want) and stats.passes == want_stats.passes


def _sleepy_eps(sizes: list, busy: dict):
    """LAW.eps recording its rows, and 5 ms slower per call while busy["on"] (a CPU busier than torch's
    threads: every call waits for a thread)."""

    def eps(z, logsnr):
        sizes.append(len(z))
        if busy["on"]:
            time.sleep(0.005)
        return LAW.eps(z, logsnr)

    return eps


def test_chunks_that_stall_on_a_busy_cpu_switch_to_the_fallback_rows_for_the_run(caplog):
    times = _linear_times(fixed=1e-5, rows_per_second=1e8)  # a fast device: a call of 10 rows, 10 us
    sizes, busy = [], {"on": False}
    chunks = Chunks(_sleepy_eps(sizes, busy), 10, watch=times, fallback=40)
    z, logsnr = torch.randn(100, 2), torch.linspace(-5, 5, 100)
    want = LAW.eps(z, logsnr)
    assert torch.equal(chunks(z, logsnr), want) and sizes == [10] * 10
    busy["on"], sizes[:] = True, []
    with caplog.at_level(logging.WARNING, logger="ctdm.samplers.throughput"):
        assert torch.equal(chunks(z, logsnr), want)
    assert sizes == [10, 10, 10, 40, 30], sizes  # three slow calls in a row, then the fallback's rows
    assert chunks.rows == 40 and "torch.set_num_threads(1)" in caplog.text
    assert not times.contended  # the measurement is left alone: the next run watches again


@pytest.mark.parametrize("threads,watched", [(1, False), (2, True)])
def test_automatic_chunks_are_watched_when_torch_runs_on_several_cpu_threads(fixed_times, threads, watched):
    # A fast CPU whose throughput is flat from 512 to 2048 rows (past its caches, twice the rows take
    # 2.8x as long).
    rows = [1 << i for i in range(15)]
    fixed_times(CallTimes(rows, [1e-5 * max(1, r / 512) * max(1, r / 2048) ** 0.5 for r in rows], 100))
    sizes, busy = [], {"on": True}
    sampler = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1, memory_budget=1e9)
    torch.set_num_threads(threads)
    samples, stats = sampler(_sleepy_eps(sizes, busy), (2,), torch.arange(300))
    chunk = sizes[0]
    assert chunk == 512 and (max(sizes) > chunk) == watched, (chunk, max(sizes))
    # Stalled: calls of the largest near-best size, not the whole 6,000-row pass the memory allows.
    assert stats.extra["max_batch"] == (2048 if watched else chunk) and max(sizes) <= 2048
    explicit, _ = ParallelSampler(DDPMSampler(steps=20), tolerance=0.1, max_batch=chunk)(
        LAW.eps, (2,), torch.arange(300)
    )
    assert torch.equal(samples, explicit)


# --- what the user is told ---------------------------------------------------------------------------


def test_a_window_that_cannot_pay_on_this_device_is_reported(fixed_times, caplog):
    fixed_times(_linear_times(fixed=1.0, rows_per_second=64.0))
    with caplog.at_level(logging.INFO, logger="ctdm.samplers.parallel"):
        ParallelSampler(DDPMSampler(steps=50), tolerance=0.1)(LAW.eps, (2,), torch.arange(64))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, caplog.text
    # 64 x 50 rows cost 26 steps of 64 rows; a pass of 50 steps advances about 5 at most.
    assert "a pass costs about 26.0 sequential steps" in warned[0].message, warned[0].message
    assert "window=auto picks 1" in warned[0].message
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ctdm.samplers.parallel"):  # 2 samples: a pass is cheap
        ParallelSampler(DDPMSampler(steps=50), tolerance=0.1)(LAW.eps, (2,), torch.arange(2))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING], caplog.text
    assert "a pass costs about" in caplog.text


# --- the cache ---------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder and memo; measuring returns a made-up curve (the cache is what is tested)."""
    monkeypatch.setenv("CTDM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(timing, "_MEMO", {})
    measured = []

    def measure(eps_fn, shape, *args, **kwargs):
        measured.append(tuple(shape))
        return _linear_times()

    monkeypatch.setattr(timing, "measure_call_times", measure)
    return tmp_path / timing.CACHE_FILE, measured


def test_call_times_are_measured_once_per_device_and_network_and_kept_on_disk(cache, monkeypatch):
    path, measured = cache
    net = _MLP(width=16)
    first = call_times(net.eps, net, (2,))
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 1 and "_MLP.eps" in next(iter(entries)) and measured == [(2,)]
    monkeypatch.setattr(timing, "_MEMO", {})  # a new process: read back from disk
    assert call_times(net.eps, _MLP(width=16), (2,)) == first  # same shapes, other weights: same entry
    assert measured == [(2,)]
    call_times(net.eps, _MLP(width=32), (2,))  # another network
    call_times(net.eps, net, (3,))  # another sample shape
    assert measured == [(2,), (2,), (3,)] and len(json.loads(path.read_text())["entries"]) == 3


def test_a_plain_function_is_measured_once_per_process_and_not_written(cache):
    path, measured = cache
    first = call_times(LAW.eps, LAW.eps, (2,))
    assert call_times(LAW.eps, LAW.eps, (2,)) is first and len(measured) == 1
    assert not path.exists()


def test_a_contended_measurement_is_not_written(cache, monkeypatch, caplog):
    path, _ = cache
    contended = CallTimes([1, 2], [1e-4, 1e-2], 10.0, "cpu", contended=True)
    monkeypatch.setattr(timing, "measure_call_times", lambda *args, **kwargs: contended)
    net = _MLP(width=16)
    with caplog.at_level(logging.WARNING, logger="ctdm.samplers.timing"):
        assert call_times(net.eps, net, (2,)) is contended
    assert "torch.set_num_threads(1)" in caplog.text and not path.exists()


def test_an_unreadable_cache_is_reported_and_measured_again(cache, caplog):
    path, measured = cache
    path.write_text("{not json")
    net = _MLP(width=16)
    with caplog.at_level(logging.WARNING, logger="ctdm.samplers.timing"):
        call_times(net.eps, net, (2,))
    assert "ignoring the unreadable call-time cache" in caplog.text and measured == [(2,)]
    assert json.loads(path.read_text())["version"] == timing.CACHE_VERSION


def test_call_times_dir_keeps_the_measurement_in_the_folder_given(cache, tmp_path):
    path, measured = cache
    run = tmp_path / "run"
    net = _MLP(width=16)
    sampler = ParallelSampler(DDPMSampler(steps=10), tolerance=0.1, call_times_dir=str(run))
    sampler(net.eps, (2,), torch.arange(4))
    assert (run / timing.CACHE_FILE).exists() and not path.exists() and measured == [(2,)]
    call_times(net.eps, net, (2,))  # the default folder is another file: measured again
    assert path.exists() and measured == [(2,), (2,)]


def test_the_run_folder_is_a_config_value_away(make_cfg, tmp_path):
    from ctdm.build import build_samplers

    cfg = make_cfg(["sampler=para_ddpm", "sampler.call_times_dir=${paths.output_dir}"])
    assert build_samplers(cfg)["selected"].call_times_dir == str(tmp_path)
    assert build_samplers(make_cfg(["sampler=para_ddpm"]))["selected"].call_times_dir is None  # the cache


def test_the_suites_subprocesses_write_call_times_to_the_sessions_folder(tmp_path):
    """A CLI subprocess the tests start inherits CTDM_CACHE_DIR from tests/conftest.py (set at import,
    whatever the test order), so its measurement lands in the session's folder, not the user's cache."""
    from conftest import SESSION_CALL_TIMES_DIR, run_cli

    code = (
        "import torch; from ctdm.samplers.timing import call_times, cache_dir; "
        "from ctdm.nets import ResidualMLP; net = ResidualMLP(2, width=8, blocks=1); "
        "call_times(net, net, (2,), extra_key='subprocess'); print(cache_dir())"
    )
    result = run_cli(["-c", code], cwd=tmp_path, module=None, env={"OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(SESSION_CALL_TIMES_DIR)
    assert "subprocess" in (SESSION_CALL_TIMES_DIR / timing.CACHE_FILE).read_text()


def test_the_cache_lives_under_ctdm_cache_dir_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CTDM_CACHE_DIR", str(tmp_path / "mine"))
    assert timing.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CTDM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert timing.cache_dir() == tmp_path / "xdg" / "ctdm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert timing.cache_dir() == tmp_path / "home" / ".cache" / "ctdm"
