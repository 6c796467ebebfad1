"""The daemon's plumbing: forking it with a ready pipe, its log file, and its heap.

:func:`daemonize` forks and returns in the parent once the child reports the mount live (from
the filesystem's ``init``), or raises with the child's last words. The child's stderr goes up
the pipe until then, so libfuse's own complaints reach the user; until then it also lives only
as long as the command (a cancelled ``sessionfs mount`` leaves nothing mounted). The heap
functions keep a long-running daemon's memory flat; the log functions give it a file (the only
place its messages go in the background). Nothing here knows about stores or FUSE.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from sessionfs.errors import MountError, SessionfsError, UsageError

__all__ = [
    "HEAP_TRIM_SECONDS",
    "WAIT_NOTICE_SECONDS",
    "check_log_path",
    "daemonize",
    "open_log",
    "return_big_buffers_to_the_os",
    "start_heap_trimmer",
]

_READY = b"\0sessionfs-ready\0"
_CONFIRMED = b"k"  # the parent read _READY: the daemon stays
_STARTUP_TIMEOUT = 60.0
_LIBFUSE_NOISE = re.compile(r"Ignoring invalid max threads value")


# -- heap ------------------------------------------------------------------------------------
def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name is not None else None
    except OSError:
        return None


def trim_heap() -> None:
    """glibc's ``malloc_trim(0)`` now: give the heap's free pages back (after a big render)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def return_big_buffers_to_the_os() -> None:
    """Serve every allocation over 256 KiB from its own mapping (glibc ``mallopt``).

    A 16 MiB write buffer is freed when its file is closed; glibc's default *dynamic* mmap
    threshold would, after the first such free, take later big buffers from the heap, which
    it never gives back, so the daemon's RSS would ratchet up with every large save.
    """
    libc = _libc()
    try:
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD (fixing it disables the dynamic one)
        libc.mallopt(-1, 1024 * 1024)  # M_TRIM_THRESHOLD
    except AttributeError:
        return


#: How often the daemon hands freed heap back to the OS.
HEAP_TRIM_SECONDS = 15.0


def start_heap_trimmer(interval: float = HEAP_TRIM_SECONDS) -> None:
    """Call glibc's ``malloc_trim(0)`` periodically from a background thread.

    Measured under the soak's churn (sessions created and deleted ~1000 ops/s): the heap
    grows ~10 MB/min while the memory in use stays ~4 MB: freed 10-65 KB chunks in the middle
    of the heap that glibc keeps (MALLOC_ARENA_MAX and the trim threshold did not help);
    ``malloc_trim(0)`` returns them, bringing RSS back to its baseline. Started from ``init``,
    after daemonizing (threads must not exist across the fork).
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return

    def run() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    threading.Thread(target=run, name="heap-trim", daemon=True).start()


# -- log -------------------------------------------------------------------------------------
def check_log_path(path: str | None) -> None:
    """Refuse a log that could not be written before anything else happens (``--migrate``
    writes the store), without creating it yet."""
    if path is None:
        return
    if not path:
        raise UsageError("--log: expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MountError(f"cannot write the log {path}: Is a directory")
    if not os.path.isdir(folder):
        raise MountError(f"cannot write the log {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK) and not os.access(path, os.W_OK):
        raise MountError(f"cannot write the log {path}: Permission denied")


def open_log(path: str | None) -> logging.Handler | None:
    """A handler appending to ``path`` (created 0600: it names sessions), opened before
    mounting so a bad path fails early; it reopens the file when logrotate moves it away."""
    if path is None:
        return None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise MountError(f"cannot write the log {path}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s sessionfs[%(process)d]: %(message)s"))
    return handler


# -- fork ------------------------------------------------------------------------------------
#: After this many seconds without "ready" the parent says what it waits for (and again each
#: time that changes).
WAIT_NOTICE_SECONDS = 1.0


def _die_with_parent(alive_fd: int) -> None:
    """End this process unless the parent confirms it read "ready": a thread reads
    ``alive_fd``, a pipe only the parent writes to; :data:`_CONFIRMED` keeps the daemon,
    EOF first (the parent exited, even by SIGKILL, or was cancelled) ends it with SIGTERM
    (SIG_DFL before libfuse mounts, then libfuse's handler, which unmounts).

    A pipe and not ``PR_SET_PDEATHSIG``: that is a per-thread setting, which the thread that
    gets ready (a libfuse worker) could not clear for the main thread, which is inside libfuse;
    and a confirmation, since a parent killed after "ready" was written but before it was read
    never told its user that the mount is there.
    """
    def watch() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(alive_fd, 1):
                if chunk == _CONFIRMED:
                    return
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _reap(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for child ``pid`` to exit, and reap it; whether it did."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        exited = os.pidfd_open(pid)  # readable once the child has exited
    except (ChildProcessError, ProcessLookupError):
        return True
    try:
        select.select([exited], [], [], timeout)
    finally:
        os.close(exited)
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return bool(done)


def _stop_child(pid: int) -> None:
    """End a daemon that is not ready yet, and reap it: SIGTERM (libfuse, once it has mounted,
    unmounts on it), SIGKILL if it is still there after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _reap(pid, 10.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid, 10.0)


def daemonize(serve: Callable[[Callable[[], None]], int], mountpoint: str, *,
              waiting_for: Callable[[], str] | None = None,
              cleanup: Callable[[], None] | None = None) -> int:
    """Fork the daemon, which runs ``serve(ready)``; return once it calls ``ready()`` (the mount
    is live), or raise with its last words.

    Until ready the daemon lives only as long as this process: it ends itself when we exit,
    even by SIGKILL (:func:`_die_with_parent`), and a cancelled wait (Ctrl-C, SIGTERM:
    KeyboardInterrupt or SystemExit here) ends and reaps it, then runs ``cleanup`` (mount.py
    unmounts what a daemon killed mid-mount may have left) before the exception goes on.
    After :data:`WAIT_NOTICE_SECONDS` the wait says on stderr what it waits for
    (``waiting_for()``: what mount.py sees of the mount).

    :raises MountError: the daemon exited or said nothing for ``_STARTUP_TIMEOUT`` seconds.
    """
    read_fd, write_fd = os.pipe()
    alive_read, alive_write = os.pipe()  # the parent holds the write end while it waits
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_fd)
        os.close(alive_write)
        _run_daemon(serve, write_fd, alive_read)
    os.close(write_fd)
    os.close(alive_read)
    try:
        output = _wait_ready(pid, read_fd, mountpoint, waiting_for)
    except BaseException:  # timed out or cancelled (Ctrl-C, SIGTERM): nothing stays mounted
        os.close(alive_write)
        _stop_child(pid)
        if cleanup is not None:
            cleanup()
        raise
    finally:
        os.close(read_fd)
    if _READY in output:
        try:
            os.write(alive_write, _CONFIRMED)  # from now on the mount outlives the command
        finally:
            os.close(alive_write)
        return 0
    os.close(alive_write)
    os.waitpid(pid, 0)
    if cleanup is not None:
        cleanup()
    raise _failure(output, mountpoint)


def _run_daemon(serve: Callable[[Callable[[], None]], int], write_fd: int,
                alive_read: int) -> NoReturn:
    """The forked daemon: detach, run ``serve(ready)``, exit with its status; its errors go
    to the parent through ``write_fd`` (stderr) until it is ready."""
    code = 1
    try:
        # Until ready, a signal ends us at once, even inside a long C call (nothing is
        # mounted before libfuse installs its own handlers, which unmount on SIGTERM).
        for signo in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signo, signal.SIG_DFL)
        _die_with_parent(alive_read)
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(write_fd, 2)  # libfuse's own complaints reach the parent until we are up

        def ready() -> None:
            with contextlib.suppress(BrokenPipeError):  # gone: _die_with_parent ends us
                os.write(write_fd, _READY)
            os.dup2(devnull, 2)
            os.close(write_fd)

        code = serve(ready)
    except SessionfsError as exc:
        os.write(2, f"sessionfs: error: {exc}\n".encode())
    except BaseException as exc:
        os.write(2, f"sessionfs: error: {exc!r}\n".encode())
    finally:
        os._exit(code)


def _wait_ready(pid: int, read_fd: int, mountpoint: str,
                waiting_for: Callable[[], str] | None) -> bytes:
    """What the daemon wrote until it said it is ready or exited; after
    :data:`WAIT_NOTICE_SECONDS` stderr says what it waits for.

    :raises MountError: nothing for ``_STARTUP_TIMEOUT`` seconds."""
    output = b""
    started = time.monotonic()
    deadline = started + _STARTUP_TIMEOUT
    said = ""
    while _READY not in output:
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:  # the daemon is ended by the caller, as for a cancel
            raise MountError(f"timed out waiting for the mount at {mountpoint}")
        if now - started >= WAIT_NOTICE_SECONDS:
            doing = waiting_for() if waiting_for is not None else "mount"
            if doing != said:
                said = doing
                print(f"sessionfs: waiting for the daemon (pid {pid}) to {doing} at "
                      f"{mountpoint} ({now - started:.0f} s; Ctrl-C cancels)",
                      file=sys.stderr, flush=True)
            step = min(remaining, 1.0)
        else:
            step = min(remaining, started + WAIT_NOTICE_SECONDS - now)
        if not select.select([read_fd], [], [], step)[0]:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        output += chunk
    return output


def _failure(output: bytes, mountpoint: str) -> MountError:
    """Why the daemon exited before it was ready, from its last words."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()
             if line.strip() and not _LIBFUSE_NOISE.search(line)]
    libfuse = [line for line in lines if line.startswith(("fuse:", "fusermount"))]
    if libfuse:  # libfuse's own words say more than its exit status
        return MountError(f"could not mount {mountpoint}: {libfuse[-1]}")
    reason = lines[-1].removeprefix("sessionfs: error: ") if lines else "the daemon exited"
    return MountError(reason if reason.startswith("could not mount") else
                      f"could not mount {mountpoint}: {reason}")
