"""One run per folder (ctdm.run_folder): the lock's holder details, stale locks taken over and named,
re-entrance, what a failed run leaves, and DDP's other ranks taking no lock. A second process into a held
folder is in tests/config/test_bad_inputs.py (through the entry points)."""

import json
import logging
import os

import pytest

from ctdm import run_folder


def test_the_lock_names_its_holder_and_goes_with_the_last_release(tmp_path):
    out = tmp_path / "run"
    assert run_folder.hold(out) is True  # made by this run: fresh
    holder = json.loads((out / ".ctdm.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] and holder["command"]
    assert run_folder.hold(out) is True  # re-entrant in one process (Hydra's callback, then train())
    run_folder.release(out)
    assert (out / ".ctdm.lock").exists()  # one hold left
    run_folder.release(out)
    assert not (out / ".ctdm.lock").exists()


def test_a_stale_lock_is_taken_over_and_named(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    dead = {"pid": 999999, "host": "node7", "started": "2026-01-01 00:00:00", "command": "old run"}
    (out / ".ctdm.lock").write_text(json.dumps(dead))  # its process died: no flock on it
    with caplog.at_level(logging.WARNING, logger="ctdm.run_folder"):
        run_folder.hold(out)
    try:
        assert "stale lock (pid 999999 on host node7, started 2026-01-01 00:00:00: old run)" in caplog.text
        assert json.loads((out / ".ctdm.lock").read_text())["pid"] == os.getpid()
    finally:
        run_folder.release(out)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_failed_run_leaves_no_folder_unless_it_holds_weights(tmp_path, checkpoint):
    out = tmp_path / "run"
    run_folder.hold(out)
    (out / "csv").mkdir()
    (out / "csv" / "metrics.csv").write_text("step\n")
    if checkpoint:
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    assert run_folder.remove_failed_run(out) is not checkpoint
    assert out.exists() is checkpoint
    run_folder.release_all(out)


def test_a_folder_it_did_not_make_is_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    assert run_folder.hold(out) is False  # not fresh
    assert run_folder.remove_failed_run(out) is False and (out / "notes.txt").exists()
    run_folder.release(out)


def test_ddp_ranks_after_the_first_take_no_lock(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert run_folder.hold(out) is False and not out.exists()
    out.mkdir()
    assert run_folder.remove_failed_run(out) is False and out.exists()  # rank 0 decides
