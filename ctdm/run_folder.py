"""One run per folder: a lock taken before anything is written, and a failed run's folder removed.

`hold(folder)` takes `<folder>/.ctdm.lock`, an exclusive `flock` on a file that names its holder (pid,
host, start time, SLURM job, command). The operating system drops the flock when its process ends, even
when killed, so a lock file whose flock is free was left by a run that died: it is *stale*, and the next
run takes it over and says whose it was. A second run into a folder whose lock is held fails at once,
naming the folder and the holder. Hydra writes `.hydra/config.yaml` before a task starts, so the lock is
taken earlier, by the Hydra callback `LockRunFolder` (conf/hydra/default.yaml); the entry points take it
again (re-entrant in one process), which covers multirun jobs and direct calls of `ctdm.train.train`.

A folder is *fresh* when the run that holds it made it (or found it empty apart from Hydra's own files).
`remove_failed_run(folder)` deletes a fresh folder of a failed run unless it holds a checkpoint: the
debris of a failed run goes, trained weights stay.

Only the launching process locks: DDP's other ranks (Lightning re-launches the command with LOCAL_RANK,
NODE_RANK or RANK set, SLURM with SLURM_PROCID) write into the folder rank 0 holds.
"""

import atexit
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

LOCK_NAME = ".ctdm.lock"
HYDRA_FILES = {".hydra", "multirun.yaml", LOCK_NAME}  # and <job name>.log: Hydra's before a task starts


class RunFolderError(ValueError):
    """The run folder is in use by another run, or cannot be written."""


@dataclass
class _Held:
    fd: int
    count: int
    fresh: bool


_held: dict[Path, _Held] = {}  # this process's locks, by resolved folder


def is_launching_process() -> bool:
    """False in the processes DDP starts beside the launching one (rank > 0 on any node)."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def _only_hydra_files(folder: Path) -> bool:
    return all(p.name in HYDRA_FILES or p.suffix == ".log" for p in folder.iterdir())


def hold(folder: str | Path, key: str = "paths.output_dir") -> bool:
    """Take the run folder's lock (making the folder), or fail naming the run that holds it; returns
    whether the folder is fresh. Re-entrant in one process: call `release` once per `hold`. DDP's other
    ranks take nothing: the launching process holds the folder for them (returns False)."""
    if not is_launching_process():
        return False
    folder = Path(folder).expanduser().absolute()
    if folder in _held:
        _held[folder].count += 1
        return _held[folder].fresh
    try:
        fresh = not folder.exists() or (folder.is_dir() and _only_hydra_files(folder))
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder / LOCK_NAME)
    except OSError as err:
        raise RunFolderError(
            f"{key}={str(folder)!r}: cannot write the run folder ({err.strerror or err}: "
            f"{err.filename or folder}). Choose a writable folder (hydra.run.dir=..., or paths.log_dir=...)."
        ) from err
    if isinstance(fd, bytes):  # the holder's details
        raise RunFolderError(
            f"{key}={str(folder)!r} is in use by another run ({_describe(fd)}). Two runs in one folder mix "
            "their logs, configs and checkpoints: wait for it to finish, or give this run its own folder "
            "(hydra.run.dir=...; the default folder names have one-second resolution)."
        )
    previous = os.read(fd, 4096)
    if previous.strip():
        log.warning(
            "Run folder %s: taking over a stale lock (%s): that run ended without releasing it (killed?)",
            folder,
            _describe(previous),
        )
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    _held[folder] = _Held(fd, 1, fresh)
    return fresh


def _lock(path: Path) -> int | bytes:
    """An fd holding the flock of `path`, or the holder's details when another process holds it."""
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 4096)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return holder
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass  # its holder removed the file as we locked it: lock the new one
        os.close(fd)
    raise OSError(errno.EAGAIN, "the lock file keeps changing", str(path))


def release(folder: str | Path) -> None:
    """Give the lock back (the last `release` of this process removes the lock file)."""
    folder = Path(folder).expanduser().absolute()
    held = _held.get(folder)
    if held is None:
        return
    held.count -= 1
    if held.count > 0:
        return
    del _held[folder]
    try:
        (folder / LOCK_NAME).unlink(missing_ok=True)  # while still holding the flock
    except OSError:
        pass
    os.close(held.fd)


@contextmanager
def held(folder: str | Path, key: str = "paths.output_dir") -> Iterator[bool]:
    """`with held(folder):` the folder locked for the block (`hold`, and `release` however it ends)."""
    fresh = hold(folder, key)
    try:
        yield fresh
    finally:
        release(folder)


def is_fresh(folder: str | Path) -> bool | None:
    """Whether this process holds `folder` and made it; None when it does not hold it."""
    held = _held.get(Path(folder).expanduser().absolute())
    return held.fresh if held is not None else None


def has_checkpoint(folder: str | Path) -> bool:
    return any(p.is_file() for p in Path(folder).rglob("*.ckpt"))


def remove_failed_run(folder: str | Path) -> bool:
    """After a failure: remove the run folder when this run made it and it holds no checkpoint (trained
    weights are kept); without the lock (a direct call), when it holds nothing but Hydra's files.
    Returns whether it was removed."""
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir() or not is_launching_process():  # the launching process decides, not rank 1
        return False
    fresh = is_fresh(folder)
    if fresh is None:
        fresh = _only_hydra_files(folder)
    if not fresh or has_checkpoint(folder):
        return False
    release_all(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return True


def remove_failed_sweep() -> bool:
    """Under -m, after a job failed (which ends the sweep): the sweep folder goes too when this process
    made it and it holds nothing but Hydra's files (the failed job's folder already went; another job's
    folder keeps it)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode is None:
        return False
    if HydraConfig.get().mode.name != "MULTIRUN":
        return False
    folder = Path(HydraConfig.get().sweep.dir).expanduser().absolute()
    if not folder.is_dir() or not _only_hydra_files(folder):
        return False
    return remove_failed_run(folder)


@atexit.register  # a run that exits early (an error, a signal) gives its locks back too
def _release_everything() -> None:
    for folder in list(_held):
        release_all(folder)


def release_all(folder: str | Path) -> None:
    folder = Path(folder).expanduser().absolute()
    if folder in _held:
        _held[folder].count = 1
        release(folder)


def _describe(content: bytes) -> str:
    try:
        holder = json.loads(content.decode())
        where = f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
        if holder.get("slurm_job"):
            where += f", SLURM job {holder['slurm_job']}"
        return f"{where}: {holder.get('command', '')}".rstrip(": ")
    except (ValueError, KeyError, UnicodeDecodeError):
        return "a holder that left no details"


class LockRunFolder(Callback):
    """Hydra callback: lock the run folder (the sweep folder under -m) before Hydra writes its config
    there, so a second run into a folder in use fails before it overwrites anything."""

    def on_run_start(self, config, **kwargs) -> None:
        self._hold(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._hold(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_run_end(self, config, **kwargs) -> None:
        release(config.hydra.run.dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        release(config.hydra.sweep.dir)

    @staticmethod
    def _hold(folder: str, key: str) -> None:
        if not is_launching_process():
            return
        try:
            hold(folder, key)
        except RunFolderError as err:
            print(f"Error: {err}", file=sys.stderr)
            sys.exit(1)


def output_dir_key() -> str:
    """How the user names this run's folder: the Hydra key when Hydra runs, else paths.output_dir."""
    mode = HydraConfig.get().mode if HydraConfig.initialized() else None
    if mode is None:
        return "paths.output_dir"
    return "hydra.sweep.dir" if mode.name == "MULTIRUN" else "hydra.run.dir"
