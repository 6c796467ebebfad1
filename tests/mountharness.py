"""Real mounts in a subprocess, for the kernel tests and for ``scripts/bench.py``: loud
failures, sure teardown. No pytest here, so the bench can import it (``tests/mountutil.py`` adds
the fixtures).

The daemon runs ``python -m sessionfs mount STORE MOUNTPOINT -f`` in its own process, so a
test can SIGKILL it for real. Mounting polls the mount table with a timeout and, on failure,
dumps the daemon's stderr and /proc/self/mountinfo. Teardown unmounts with ``fusermount3 -u``
(then ``umount -l``), waits for the daemon and reaps it. Tests never skip when /dev/fuse is
missing: they fail, because then the product cannot work either.

Everything lives under a folder outside /tmp (vim's default ``backupskip`` covers /tmp/*, which
would skip the backup step the editor tests exercise).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sessionfs import keys
from sessionfs.demo import write_legacy_store
from sessionfs.fs.mount import is_mounted
from sessionfs.migrate import migrate
from sessionfs.store import Store, open_store

__all__ = ["ROOT", "STARTED", "Mount", "force_unmount", "has_internal_errors",
           "make_store_folder", "mounted", "scratch_root", "wait_for"]

ROOT = Path(__file__).resolve().parent.parent
#: Every Mount started in this process, for the per-test traceback check; the check forgets
#: the ones that have exited.
STARTED: list[Mount] = []
SCRATCH_BASE = Path(os.environ.get("SESSIONFS_TEST_DIR", "/var/tmp"))


def scratch_root() -> Path:
    """A fresh folder outside /tmp for one test's store and mountpoint."""
    SCRATCH_BASE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="sessionfs-test-", dir=SCRATCH_BASE))


def make_store_folder(base: Path, layout: str, entries: dict[str, dict[str, Any]]) -> Path:
    """``base/sessions`` holding ``entries`` in the given layout; returns the folder."""
    folder = base / "sessions"
    write_legacy_store(folder, entries)
    if layout == "directory":
        migrate(folder)
    return folder


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def has_internal_errors(log: str) -> bool:
    """True when a daemon log shows a bug: a traceback, or the adapter's "internal error" line
    (an unexpected exception answered EIO)."""
    return "Traceback" in log or "internal error" in log


def _mountinfo() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/self/mountinfo").read_text()
    return "(no /proc/self/mountinfo)"


def force_unmount(mountpoint: Path) -> None:
    """Unmount whatever is there (live or dead); never raises."""
    for command in (["fusermount3", "-u", str(mountpoint)], ["umount", "-l", str(mountpoint)],
                    ["fusermount3", "-uz", str(mountpoint)]):
        if not is_mounted(mountpoint):
            return
        if shutil.which(command[0]):
            subprocess.run(command, capture_output=True, check=False)


class Mount:
    """One ``sessionfs mount -f`` daemon; use as a context manager or call start/stop."""

    #: Seconds :meth:`start` waits for the mount table entry by default.
    start_timeout = 20.0
    #: Run the daemon in its own session (the bench: a Ctrl-C meant for it stays with it).
    new_session = False

    def __init__(self, store_folder: Path, mountpoint: Path, *args: str,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.store_folder = store_folder
        self.mp = mountpoint
        self.args = args
        self.env = env
        self.log_path = log_path or mountpoint.parent / f"{mountpoint.name}.daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        #: Where in the log this daemon's output starts, and how far it has been checked for
        #: tracebacks (``tests/conftest.py`` checks it after every test).
        self.log_offset = 0
        self.checked_upto = 0
        #: Seconds from starting the daemon until the mount answered a stat.
        self.startup = 0.0

    def command(self) -> list[str]:
        """The daemon's command line."""
        return [sys.executable, "-m", "sessionfs", "mount", str(self.store_folder), str(self.mp),
                "-f", *self.args]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> Mount:
        timeout = self.start_timeout if timeout is None else timeout
        self.mp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(self.env or {}))
        started = time.monotonic()
        with contextlib.suppress(OSError):
            self.log_offset = self.checked_upto = self.log_path.stat().st_size
        STARTED.append(self)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                cwd=str(ROOT), start_new_session=self.new_session)
        proc = self.proc
        if not wait_for(lambda: is_mounted(self.mp) or proc.poll() is not None, timeout):
            self.stop()
            raise AssertionError(f"mount did not appear within {timeout}s\n{self.diagnostics()}")
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}\n{self.diagnostics()}")
        # the mount table entry appears before INIT is answered; one stat waits for it
        os.stat(self.mp)
        self.startup = time.monotonic() - started
        return self

    def diagnostics(self) -> str:
        return (f"--- daemon stderr ({self.log_path}) ---\n{self.log()}\n"
                f"--- /proc/self/mountinfo ---\n{_mountinfo()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def assert_no_internal_errors(self) -> None:
        """A bug in the daemon is logged with its traceback (and answered EIO): fail on it."""
        log = self.log()
        assert not has_internal_errors(log), self.diagnostics()

    def unchecked_log(self) -> str:
        """The daemon's output since the last call (from its start on the first): what
        ``tests/conftest.py`` checks for tracebacks after each test."""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            log.seek(self.checked_upto)
            data = log.read()
            self.checked_upto += len(data)
            return data.decode(errors="replace")
        return ""

    def kill(self, signo: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(signo)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        force_unmount(self.mp)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def __enter__(self) -> Mount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests -----------------------------------------------------------------------
    def store(self) -> Store:
        return open_store(self.store_folder)

    def dir(self, key: str) -> Path:
        return self.mp / keys.encode(key)

    def meta(self, key: str) -> Path:
        return self.dir(key) / "meta.json"

    def errors(self) -> str:
        return (self.mp / ".sessionfs" / "errors").read_text()


@contextlib.contextmanager
def mounted(store_folder: Path, *args: str) -> Iterator[Mount]:
    with Mount(store_folder, store_folder.parent / "mnt", *args) as mount:
        yield mount
