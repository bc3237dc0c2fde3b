"""Locks that let several processes write one dataset: run locks and configuration claims.

Both are ``flock(2)`` locks on small files under ``DATASET/_locks`` and
``DATASET/_claims`` (a leading ``_`` hides them from Parquet readers). The kernel
drops a flock lock when its holder exits, even after ``kill -9``, so a free lock means
its holder is gone: that is how leftovers of a crashed writer are told from files a
live writer is still producing. Lock files are never deleted (deleting a lock file
while another process waits on it would let two processes hold "the same" lock).
We use ``fcntl.flock`` directly rather than a lock library because exactly these
semantics are needed: no soft-lock fallback and no lock file removed on release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from perfscope.errors import StoreError

LOCKS_DIR = "_locks"
CLAIMS_DIR = "_claims"


class FileLockHandle:
    """An exclusive ``flock`` on ``path``, held until ``release`` (or the process ends)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Unlock and close the lock file (once; later calls do nothing)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def try_lock(path: Path, *, wait_s: float = 0.0, poll_s: float = 0.02) -> FileLockHandle | None:
    """Lock ``path`` (created if needed), waiting up to ``wait_s``; None if it stays held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return FileLockHandle(path, fd)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            return None
        time.sleep(poll_s)


def run_lock_path(root: Path, run_id: str) -> Path:
    """The lock a process holds while it writes (and compacts) run ``run_id``."""
    return root / LOCKS_DIR / f"run-{run_id}.lock"


class ConfigClaims:
    """Claims on the configurations of one device, shared by every process collecting
    into the dataset, so concurrent collectors split a grid instead of each measuring
    all of it.

    A configuration is claimed by locking one of 256 slot files (chosen by its
    config id) and, once its row is stored, recorded as done in the slot's ``.done``
    log. A claim that finds the configuration recorded since this object was created
    answers ``DONE``; one whose slot another process holds answers ``BUSY`` (try again
    later: a collector that dies frees its slot).
    """

    DONE = "done"
    BUSY = "busy"

    def __init__(self, root: Path, device_key: str) -> None:
        self.directory = root / CLAIMS_DIR / f"device={device_key}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # only what is recorded from now on counts: earlier rows are the caller's to judge
            self._start = {p.name: p.stat().st_size for p in self.directory.glob("*.done")}
        except OSError as exc:
            raise StoreError(f"cannot set up claims in {self.directory}: {exc.strerror or exc}") from None

    def claim(self, config_id: str, *, wait_s: float = 0.0) -> Claim | str:
        """A held ``Claim``, or ``DONE`` / ``BUSY``."""
        slot = config_id[:2] if len(config_id) >= 2 else "00"
        try:
            lock = try_lock(self.directory / f"{slot}.lock", wait_s=wait_s)
        except OSError as exc:
            raise StoreError(f"cannot claim a configuration in {self.directory}: {exc.strerror or exc}") from None
        if lock is None:
            return self.BUSY
        done_log = self.directory / f"{slot}.done"
        if config_id in self._recorded(done_log):
            lock.release()
            return self.DONE
        return Claim(config_id, lock, done_log)

    def _recorded(self, done_log: Path) -> set[str]:
        try:
            with open(done_log, "rb") as fh:
                fh.seek(self._start.get(done_log.name, 0))
                return set(fh.read().decode("ascii", "replace").split())
        except FileNotFoundError:
            return set()


class Claim:
    """A configuration this process measures now; ``release(done=True)`` once its row is stored."""

    def __init__(self, config_id: str, lock: FileLockHandle, done_log: Path) -> None:
        self.config_id, self._lock, self._done_log = config_id, lock, done_log

    def release(self, *, done: bool) -> None:
        """Release the claim; with ``done`` the configuration is first logged as stored (best
        effort: if the log cannot be written, as on a full disk, a collector running at once
        may measure it again, but no row is lost)."""
        try:
            if done:
                fd = os.open(self._done_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, f"{self.config_id}\n".encode())
                finally:
                    os.close(fd)
        except OSError:
            pass
        finally:
            self._lock.release()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal still counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
