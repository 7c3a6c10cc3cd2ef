"""Preemption: checkpoints are all-or-nothing, and SIGTERM / SIGUSR1 stop a run with a checkpoint that
a resumed run continues from."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import cli_env, compose_config, run_cli

from ctdm.callbacks import PREEMPTED_EXIT_CODE, AtomicCheckpointIO
from ctdm.train import train

KILLED_DURING_SAVE = """
import sys, time, torch
from ctdm.callbacks import PREEMPTED_EXIT_CODE, AtomicCheckpointIO
path, marker = sys.argv[1], sys.argv[2]
io = AtomicCheckpointIO()
io.save_checkpoint({"version": 1, "w": torch.arange(100000)}, path)
def slow_save(obj, f, *args, **kwargs):  # half a checkpoint on disk, then the kill arrives
    f.write(b"the first bytes of a checkpoint")
    f.flush()
    open(marker, "w").close()
    time.sleep(120)
torch.save = slow_save
io.save_checkpoint({"version": 2, "w": torch.arange(100000) * 2}, path)
"""


def test_sigkill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    path, marker = tmp_path / "last.ckpt", tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DURING_SAVE, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the save never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["version"] == 1 and torch.equal(checkpoint["w"], torch.arange(100000))
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".last.ckpt.")]
    assert len(partial) == 1 and partial[0].read_bytes() == b"the first bytes of a checkpoint"


def test_a_failed_write_keeps_the_target_and_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"version": 1}, path)

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"version": 2}, path)
    assert torch.load(path, weights_only=False)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_sigusr1_stops_like_sigterm_with_a_checkpoint(tmp_path):
    overrides = ["debug=smoke", "logger=csv", "trainer.max_steps=8", "trainer.val_check_interval=8"]
    stop = ["+callbacks.stop._target_=helpers.SignalAtStep", "+callbacks.stop.step=3"]
    with pytest.raises(SystemExit):
        train(compose_config(overrides + stop + ["+callbacks.stop.signal=SIGUSR1"], tmp_path))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert not (tmp_path / "summary.json").exists()
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # handlers restored


@pytest.mark.slow
def test_sigterm_to_a_cli_run_then_resume_reaches_max_steps(tmp_path):
    steps = 40
    marker = tmp_path / "training"
    run = [
        "debug=smoke",
        "logger=csv",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
    ]
    slow = [
        "+callbacks.slow._target_=helpers.SlowSteps",
        "+callbacks.slow.seconds=0.1",
        f"+callbacks.slow.marker={marker}",
    ]
    env = cli_env()
    first = tmp_path / "first"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctdm.train", *run, *slow, f"hydra.run.dir={first}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert "Traceback" not in output, output
    last = first / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=False)["global_step"]
    assert 3 <= stopped_at < steps, output
    assert not (first / "summary.json").exists()
    # Not 0: Hydra multirun and schedulers must not count it as finished; it says how to resume.
    assert proc.returncode == PREEMPTED_EXIT_CODE == 75, output
    assert f"ckpt_path={last}" in output and "Resume it with:" in output, output
    assert not (first / ".ctdm.lock").exists()  # the folder is free for the resumed run

    resumed = run_cli([*run, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'resumed'}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        == steps
    )
    assert (tmp_path / "resumed" / "summary.json").exists()
    print(f"stopped at step {stopped_at}, exit code {proc.returncode}")
