"""Real mounts for the kernel tests: a daemon in a subprocess, loud failures, sure teardown.

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

import pytest

from sessionfs import keys
from sessionfs.demo import write_legacy_store
from sessionfs.fs.mount import is_mounted
from sessionfs.migrate import migrate
from sessionfs.store import Store, open_store

__all__ = ["ENTRIES", "Mount", "base", "make_store_folder", "mnt", "scratch_root", "store_folder",
           "wait_for"]

ROOT = Path(__file__).resolve().parent.parent
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

    def __init__(self, store_folder: Path, mountpoint: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.store_folder = store_folder
        self.mp = mountpoint
        self.args = args
        self.env = env
        self.log_path = mountpoint.parent / f"{mountpoint.name}.daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> Mount:
        self.mp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(self.env or {}))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sessionfs", "mount", str(self.store_folder),
                 str(self.mp), "-f", *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(ROOT))
        proc = self.proc
        if not wait_for(lambda: is_mounted(self.mp) or proc.poll() is not None, timeout):
            self.stop()
            raise AssertionError(f"mount did not appear within {timeout}s\n{self.diagnostics()}")
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}\n{self.diagnostics()}")
        # the mount table entry appears before INIT is answered; one stat waits for it
        os.stat(self.mp)
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
        assert "Traceback" not in log and "internal error" not in log, self.diagnostics()

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


# -- pytest fixtures (import them into a test module to use them) ---------------------------------
MAIN = "agent:main:main"
JAMES = "agent:main:telegram:direct:james"
CRON = "agent:main:cron:14bbd904"
ENTRIES: dict[str, dict[str, Any]] = {
    MAIN: {"sessionId": "m-1", "updatedAt": 1_767_225_600_000, "thinkingLevel": "low",
           "label": "Einkaufsliste 🛒", "deliveryContext": {"channel": "telegram", "to": "1"}},
    JAMES: {"sessionId": "j-1", "updatedAt": 1_767_225_900_000, "thinkingLevel": "off",
            "inputTokens": 12, "estimatedCostUsd": 0.25},
    CRON: {"sessionId": "c-1", "updatedAt": 1_767_225_000_000, "thinkingLevel": "high"},
}


@pytest.fixture
def base() -> Iterator[Path]:
    folder = scratch_root()
    yield folder
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["legacy", "directory"])
def store_folder(request: pytest.FixtureRequest, base: Path) -> Path:
    return make_store_folder(base, request.param, ENTRIES)


@pytest.fixture
def mnt(store_folder: Path) -> Iterator[Mount]:
    with Mount(store_folder, store_folder.parent / "mnt") as mount:
        yield mount
    mount.assert_no_internal_errors()
