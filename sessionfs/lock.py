"""The openclaw store lock: ``sessions.json.lock`` beside the store, taken as the gateway takes it.

The gateway keeps running while sessionfs writes its store, so every write holds the gateway's
own sidecar lock (openclaw ``withSessionStoreLock``, research notes §2.3):

* the lock file is ``<realpath(store dir)>/sessions.json.lock``, mode 0600 whatever the umask,
  owned by the store folder's owner (root locking a user's store leaves a lock the user's
  gateway can read and replace). It appears complete in one step: the payload goes into a
  private ``sessions.json.lock.<pid>.<uuid>.tmp`` that is then hard-linked to the lock name.
  link(2) fails with EEXIST exactly where openclaw's ``O_CREAT|O_EXCL`` does, and nobody ever
  sees the lock empty, so a process killed while locking leaves no half-made lock;
* on a filesystem without hard links (link(2) fails with EPERM, ENOTSUP, ENOSYS, EMLINK or
  EXDEV: vfat, some network and FUSE filesystems) the lock is made as openclaw makes it:
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` on the lock name, then the payload. Exclusion is the same
  (O_EXCL is atomic there too); a reader that finds the file empty or half-written takes it as
  being written and judges it by its mtime (below), and a process killed between the create and
  the write leaves an empty lock that holds everyone off for up to 30 s, as openclaw's would.
  Neither way fsyncs: after a power cut no holder is alive, and a lost or empty lock file is
  absent or judged by its mtime. Which way works is remembered per lock path;
* it holds ``JSON.stringify({pid, createdAt, starttime}, null, 2)``: two-space indent, no
  trailing newline, ``createdAt`` as ``Date.prototype.toISOString()`` writes it
  (``2026-01-02T03:04:05.678Z``), ``starttime`` field 22 of ``/proc/<pid>/stat`` (left out, as
  JavaScript leaves out ``undefined``, where there is no ``/proc``);
* a lock is stale when its pid is not running (a zombie counts as not running), when the
  running process has another starttime (a recycled pid), or when ``createdAt`` is older than
  ``stale_after`` (30 s). A lock naming *our* pid that this process does not hold was left by
  an earlier incarnation of the pid (``exec``) and is stale too. When the payload is empty or
  malformed (a crash between ``open`` and ``write``), or the path is not a regular file at all
  (a symlink, say), the file's own mtime (``lstat``) decides, with the same 30 s limit;
* a stale lock is unlinked only if the path still names the very file that was judged:
  the judged inode is pinned open (``O_PATH``) so its number cannot be reused, and it is
  re-``lstat``-ed (device, inode, mtime, ctime, size) right before the unlink. Then the
  create is retried at once. What remains is the window between that ``lstat`` and the
  ``unlink`` itself, which the protocol cannot close (openclaw has the same window);
* otherwise the create is retried after short sleeps (5 ms growing to 100 ms, with jitter)
  until the timeout (10 s), when :class:`~sessionfs.errors.LockTimeout` names the holder's pid.

Within one process the lock is re-entrant and thread-safe: a process-wide registry keyed by
the lock file's real path holds an ``RLock`` and a depth. The file is created when the depth
goes 0→1 and removed at 1→0, and only if the path still names our file (its descriptor stays
open while held, so its inode number cannot be reused by a successor). A second thread waits
on the ``RLock`` within the same timeout. A forked child starts with an empty registry.

Release happens in ``finally`` (the context manager), from an ``atexit`` hook for locks still
held at interpreter exit, and on SIGTERM/SIGHUP/SIGQUIT once :func:`install_signal_handlers`
has turned them into ``SystemExit(128 + signo)`` (SIGINT already raises KeyboardInterrupt).
SIGKILL, a segfault or a power cut cannot be handled: the lock file stays behind and the next
contender (us or the gateway) reclaims it by the dead-pid rule, or by the 30 s rules.

Hold it briefly: the gateway treats it as stale 30 s after ``createdAt`` whoever holds it, and
its own store lock waits only 10 s. The protocol has no hostname, so it assumes every party
shares one host and one pid namespace.

Why not ``filelock``: its ``SoftFileLock`` writes its own fixed payload
(``<pid>\\n<hostname>\\n<boot-id-folded start token>\\n``), treats an empty marker as held
forever and has no ``createdAt`` or mtime-based expiry at 30 s, so speaking openclaw's format
would mean overriding its private ``_write_lock_info``/``_try_break_stale_lock``, i.e.
rewriting the protocol on top of unstable internals; the create-exclusive core it would
contribute is one ``os.open`` call.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import random
import signal
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType

from sessionfs.atomic import adopt_owner, folder_owner, set_mode, temp_name, write_all
from sessionfs.errors import LockTimeout
from sessionfs.processes import process_alive, process_starttime

__all__ = [
    "DEFAULT_STALE_AFTER",
    "DEFAULT_TIMEOUT",
    "LOCK_MODE",
    "LOCK_NAME",
    "LockInfo",
    "StoreLock",
    "install_signal_handlers",
    "iso_timestamp",
    "lock_path_for",
    "lock_payload",
    "process_starttime",
    "read_lock_info",
]

log = logging.getLogger(__name__)

LOCK_NAME = "sessions.json.lock"
DEFAULT_TIMEOUT = 10.0
DEFAULT_STALE_AFTER = 30.0
LOCK_MODE = 0o600

_FIRST_DELAY = 0.005
_MAX_DELAY = 0.1
_DELAY_GROWTH = 1.5
_MAX_IMMEDIATE_RETRIES = 100  # retries without a sleep (stale lock removed, lock vanished)
_MAX_PAYLOAD = 4096
_MAX_PID = 2**31 - 1

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_PIN_FLAGS = getattr(os, "O_PATH", 0) | _NOFOLLOW | _CLOEXEC  # pins symlinks and FIFOs too

_Snapshot = tuple[int, int, int, int, int]  # dev, ino, mtime_ns, ctime_ns, size

#: What link(2) says on a filesystem that has no hard links (or none across this directory).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                            errno.EMLINK, errno.EXDEV})


# --------------------------------------------------------------------------------------------
# Paths, payload, processes


# -- the one home of the lock path -----------------------------------------------------------
def lock_path_for(store_dir: os.PathLike[str] | str, store_file: str = "sessions.json") -> Path:
    """``<realpath(store_dir)>/<store_file>.lock`` (``sessions.json.lock`` by default): the path
    openclaw locks for the store file ``store_file`` in ``store_dir``, in every file layout."""
    return Path(os.path.realpath(store_dir)) / f"{store_file}.lock"


def _resolve_lock_path(lock_path: os.PathLike[str] | str) -> Path:
    # The directory is resolved (openclaw does so); the lock file itself never is: a symlink
    # there must not redirect anything.
    path = Path(os.fspath(lock_path))
    return Path(os.path.realpath(path.parent)) / path.name


def iso_timestamp(epoch_seconds: float | None = None) -> str:
    """``new Date(ms).toISOString()``: UTC, milliseconds (truncated, as ``Date`` keeps), ``Z``."""
    ms = time.time_ns() // 1_000_000 if epoch_seconds is None else int(epoch_seconds * 1000 // 1)
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def lock_payload(pid: int, created_at: str, starttime: int | None) -> bytes:
    """The lock file's bytes, as ``JSON.stringify({pid, createdAt, starttime}, null, 2)``.

    ``starttime=None`` is left out, as JavaScript leaves out ``undefined``.
    """
    record: dict[str, object] = {"pid": pid, "createdAt": created_at}
    if starttime is not None:
        record["starttime"] = starttime
    return json.dumps(record, indent=2, ensure_ascii=False).encode()


_own_starttime: tuple[int, int | None] | None = None


def _my_starttime() -> int | None:
    global _own_starttime
    pid = os.getpid()
    if _own_starttime is None or _own_starttime[0] != pid:
        _own_starttime = (pid, process_starttime(pid))
    return _own_starttime[1]


# --------------------------------------------------------------------------------------------
# Reading and judging a lock file


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says and whether it is stale.

    ``pid``/``created_at``/``starttime`` are as written (None when absent or malformed;
    ``created_at`` is the raw string). ``age_seconds`` is the age of ``createdAt``, or of the
    file's mtime when the payload cannot be used. ``reason`` says why it is or is not stale.
    """

    pid: int | None
    created_at: str | None
    starttime: int | None
    age_seconds: float
    stale: bool
    reason: str


@dataclass
class _Observed:
    info: LockInfo
    snapshot: _Snapshot
    pin: int | None  # descriptor keeping the judged inode allocated

    def close(self) -> None:
        if self.pin is not None:
            pin, self.pin = self.pin, None
            os.close(pin)


def _snapshot(st: os.stat_result) -> _Snapshot:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _parse_payload(
    payload: bytes,
) -> tuple[int | None, str | None, float | None, int | None]:
    """(pid, createdAt, createdAt as epoch seconds, starttime); a field is None when unusable."""
    try:
        record = json.loads(payload)
    except ValueError:  # includes UnicodeDecodeError
        return None, None, None, None
    if not isinstance(record, dict):
        return None, None, None, None
    pid = record.get("pid")
    if type(pid) is not int or not 0 < pid <= _MAX_PID:
        pid = None
    created_at = record.get("createdAt")
    created_ts = None
    if isinstance(created_at, str):
        try:
            moment = datetime.fromisoformat(created_at)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            created_ts = moment.timestamp()
        except (ValueError, OverflowError, OSError):
            pass
    else:
        created_at = None
    starttime = record.get("starttime")
    if type(starttime) is not int:
        starttime = None
    return pid, created_at, created_ts, starttime


def _judge(
    payload: bytes | None,
    st: os.stat_result,
    *,
    stale_after: float,
    held_here: bool,
    now: float,
) -> LockInfo:
    if payload is None:
        pid = created_at = created_ts = starttime = None
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "payload unreadable"
    else:
        pid, created_at, created_ts, starttime = _parse_payload(payload)
        what = "empty payload" if not payload.strip() else "malformed payload"

    if pid is None or created_ts is None:
        # A crash between open and write, or not a lock we can read: the file's age decides.
        age = now - st.st_mtime
        stale = age > stale_after
        verdict = "stale" if stale else "may still be being written"
        return LockInfo(pid, created_at, starttime, age, stale,
                        f"{what}, last modified {age:.1f}s ago ({verdict})")

    age = now - created_ts
    if pid == os.getpid() and not held_here:
        return LockInfo(pid, created_at, starttime, age, True,
                        f"names this process (pid {pid}) but this process does not hold it")
    if not process_alive(pid):
        return LockInfo(pid, created_at, starttime, age, True, f"pid {pid} is not running")
    if starttime is not None:
        live = process_starttime(pid)
        if live is not None and live != starttime:
            return LockInfo(pid, created_at, starttime, age, True,
                            f"pid {pid} was reused (starttime {starttime} in the lock, {live} now)")
    if age > stale_after:
        return LockInfo(pid, created_at, starttime, age, True,
                        f"created {age:.1f}s ago (stale after {stale_after:g}s)")
    return LockInfo(pid, created_at, starttime, age, False, f"held by pid {pid} for {age:.1f}s")


def _observe(path: Path, key: str, stale_after: float) -> _Observed | None:
    """Judge the lock file at ``path`` with its inode pinned; None when there is none."""
    for _ in range(5):  # a file replaced under our feet is simply looked at again
        pin: int | None = None
        try:
            try:
                pin = os.open(path, _PIN_FLAGS)
                st = os.fstat(pin)
            except FileNotFoundError:
                return None
            except OSError:  # no O_PATH here and a symlink/FIFO at the path: no pin
                if pin is not None:
                    os.close(pin)
                    pin = None
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    return None
            payload: bytes | None = None
            if stat.S_ISREG(st.st_mode):
                try:
                    fd = os.open(path, _READ_FLAGS)
                except FileNotFoundError:
                    return None
                except OSError:
                    fd = None  # replaced by a non-file, or no permission: unreadable
                if fd is not None:
                    try:
                        if not os.path.samestat(os.fstat(fd), st):
                            continue  # replaced since the pin: look again
                        payload = os.read(fd, _MAX_PAYLOAD + 1)
                        st = os.fstat(fd)  # mtime/size as of the read
                    finally:
                        os.close(fd)
                    if len(payload) > _MAX_PAYLOAD:
                        payload = None
            entry = _registry.get(key)
            held_here = entry is not None and entry.ident == (st.st_dev, st.st_ino)
            info = _judge(payload, st, stale_after=stale_after, held_here=held_here,
                          now=time.time())
            observed = _Observed(info, _snapshot(st), pin)
            pin = None
            return observed
        finally:
            if pin is not None:
                os.close(pin)
    return None


def read_lock_info(
    lock_path: os.PathLike[str] | str, *, stale_after: float = DEFAULT_STALE_AFTER
) -> LockInfo | None:
    """What the lock file at ``lock_path`` says, and whether it is stale; None when there is none.

    Never follows a symlink at ``lock_path`` (one is reported by its own ``lstat`` mtime).
    """
    path = _resolve_lock_path(lock_path)
    observed = _observe(path, str(path), stale_after)
    if observed is None:
        return None
    observed.close()
    return observed.info


def _pre_unlink_hook(path: Path) -> None:
    """Called between judging a lock stale and re-checking it before the unlink (a test seam)."""


def _remove_stale(path: Path, observed: _Observed) -> bool:
    """Unlink a lock judged stale if the path still names that file, unchanged.

    :returns: True when the caller should retry at once (removed, vanished or replaced),
        False when the file could not be removed (retry after a sleep).
    """
    _pre_unlink_hook(path)
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return True
    if _snapshot(current) != observed.snapshot:
        return True  # replaced or rewritten since it was judged: judge the new one
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.debug("cannot remove stale store lock %s (%s): %s", path, observed.info.reason, exc)
        return False
    log.warning("removed stale store lock %s: %s", path, observed.info.reason)
    return True


# --------------------------------------------------------------------------------------------
# The in-process registry


class _Entry:
    """In-process state of one lock file; mutated only by the thread holding ``rlock``."""

    __slots__ = ("acquired_at", "depth", "fd", "ident", "links_work", "owner", "pid", "rlock")

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.owner: int | None = None  # thread ident
        self.fd: int | None = None  # our lock file, open while held
        self.ident: tuple[int, int] | None = None  # its (st_dev, st_ino)
        self.pid = os.getpid()
        self.acquired_at = 0.0
        self.links_work = True  # until link(2) says this filesystem has no hard links


_registry: dict[str, _Entry] = {}
_registry_lock = threading.Lock()


def _entry_for(key: str) -> _Entry:
    entry = _registry.get(key)
    if entry is None:
        with _registry_lock:
            entry = _registry.setdefault(key, _Entry())
    return entry


def _remove_own_file(path: Path, entry: _Entry) -> None:
    """Unlink our lock file if the path still names it; close its descriptor either way."""
    fd, ident = entry.fd, entry.ident
    entry.fd = entry.ident = None
    try:
        if ident is None:
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            log.warning("store lock %s was removed by someone else while we held it", path)
            return
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
        else:
            log.warning("store lock %s was replaced by someone else while we held it", path)
    finally:
        if fd is not None:
            os.close(fd)


def _release_all_at_exit() -> None:
    """atexit: remove the lock files this process still holds (best effort, no locks taken)."""
    for key, entry in list(_registry.items()):
        if entry.fd is not None and entry.pid == os.getpid():
            with contextlib.suppress(OSError):
                _remove_own_file(Path(key), entry)


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks; the parent keeps them."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for entry in _registry.values():
        if entry.fd is not None:
            with contextlib.suppress(OSError):
                os.close(entry.fd)  # our copy only; the parent's descriptor stays open
    _registry.clear()


atexit.register(_release_all_at_exit)
os.register_at_fork(after_in_child=_forget_after_fork)


# --------------------------------------------------------------------------------------------
# Signals


def _exit_on_signal(signo: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signo)


def install_signal_handlers(
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT),
) -> list[int]:
    """Turn the given signals into ``SystemExit(128 + signo)`` so ``finally`` blocks release locks.

    Only signals whose disposition is still ``SIG_DFL`` are touched (a handler somebody else
    installed, or an ignored signal, is left alone). Only the main thread can install handlers;
    called from another thread it does nothing. SIGKILL cannot be caught: a lock left by a
    killed process is reclaimed by the dead-pid rule.

    :returns: the signals it installed the handler for.
    """
    installed: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return installed
    for signo in signals:
        if signal.getsignal(signo) is signal.SIG_DFL:
            signal.signal(signo, _exit_on_signal)
            installed.append(int(signo))
    return installed


# --------------------------------------------------------------------------------------------
# The lock


class _NoHardLinks(OSError):
    """link(2) is not supported where the lock lives: use the O_EXCL protocol."""


class StoreLock:
    """openclaw's store lock ``sessions.json.lock``; re-entrant and thread-safe within a process.

    Instances are cheap handles: every instance on the same file (by real path of its
    directory) shares one in-process state, so nested ``with`` blocks on two instances nest.
    """

    def __init__(
        self,
        lock_path: os.PathLike[str] | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, not {timeout!r}")
        if stale_after <= 0:
            raise ValueError(f"stale_after must be > 0, not {stale_after!r}")
        self.path = _resolve_lock_path(lock_path)
        self._key = str(self.path)
        self.timeout = float(timeout)
        self.stale_after = float(stale_after)

    def __repr__(self) -> str:
        return f"StoreLock({self._key!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether the calling thread holds this lock (through any instance on the same file)."""
        entry = _registry.get(self._key)
        return entry is not None and entry.depth > 0 and entry.owner == threading.get_ident()

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds.

        :raises LockTimeout: another live process (or thread) kept it for the whole timeout.
        :raises OSError: the lock file cannot be created (missing directory, EACCES, ENOSPC...).
        """
        start = time.monotonic()
        deadline = start + self.timeout
        entry = _entry_for(self._key)
        if not entry.rlock.acquire(timeout=self.timeout):
            raise LockTimeout(self.path, os.getpid(), time.monotonic() - start)
        if entry.depth > 0:
            entry.depth += 1
            return
        try:
            self._acquire_file(entry, start, deadline)
        except BaseException:
            entry.rlock.release()
            raise
        entry.owner = threading.get_ident()
        entry.acquired_at = time.monotonic()
        entry.depth = 1

    def _acquire_file(self, entry: _Entry, start: float, deadline: float) -> None:
        delay = _FIRST_DELAY
        immediate = 0
        holder: int | None = None
        while True:
            if self._create(entry):
                return
            retry_now = True
            observed = _observe(self.path, self._key, self.stale_after)
            if observed is not None:
                try:
                    holder = observed.info.pid
                    retry_now = observed.info.stale and _remove_stale(self.path, observed)
                finally:
                    observed.close()
            now = time.monotonic()
            if retry_now and immediate < _MAX_IMMEDIATE_RETRIES:
                immediate += 1
                continue
            if now >= deadline:
                raise LockTimeout(self.path, holder, now - start)
            time.sleep(min(deadline - now, delay * random.uniform(0.75, 1.25)))
            delay = min(_MAX_DELAY, delay * _DELAY_GROWTH)

    def _create(self, entry: _Entry) -> bool:
        """Publish our lock file; False when another one is there (see the module docstring)."""
        if entry.links_work:
            try:
                return self._create_by_link(entry)
            except _NoHardLinks as exc:
                entry.links_work = False
                log.info("no hard links for the store lock %s (%s): creating it with O_EXCL",
                         self.path, exc.strerror)
        return self._create_exclusive(entry)

    def _fill(self, fd: int) -> os.stat_result:
        """Owner, mode and payload of a lock file we just created; its stat."""
        adopt_owner(fd, folder_owner(self.path.parent))
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != LOCK_MODE:
            set_mode(fd, LOCK_MODE)
        write_all(fd, lock_payload(os.getpid(), iso_timestamp(), _my_starttime()))
        return st

    def _create_by_link(self, entry: _Entry) -> bool:
        """The complete file under a private temp name, then link(2) to the lock name.

        :raises _NoHardLinks: this filesystem cannot link (nothing was left behind).
        """
        temp = temp_name(self.path)
        fd = os.open(temp, _CREATE_FLAGS, LOCK_MODE)
        try:
            try:
                st = self._fill(fd)
                try:
                    os.link(temp, self.path, follow_symlinks=False)
                except FileExistsError:
                    os.close(fd)
                    return False
                except OSError as exc:
                    if exc.errno in _NO_HARD_LINKS:
                        raise _NoHardLinks(exc.errno, exc.strerror) from exc
                    raise
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        entry.fd, entry.ident, entry.pid = fd, (st.st_dev, st.st_ino), os.getpid()
        return True

    def _create_exclusive(self, entry: _Entry) -> bool:
        """openclaw's own way: ``O_CREAT|O_EXCL`` on the lock name, then the payload."""
        try:
            fd = os.open(self.path, _CREATE_FLAGS, LOCK_MODE)
        except FileExistsError:
            return False
        try:
            st = self._fill(fd)
        except BaseException:
            # Ours since the create, and it cannot be finished (ENOSPC...): never leave it half
            # made. The path is re-checked first: a contender may have judged it stale already.
            with contextlib.suppress(OSError):
                current = os.lstat(self.path)
                if os.path.samestat(current, os.fstat(fd)):
                    os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        entry.fd, entry.ident, entry.pid = fd, (st.st_dev, st.st_ino), os.getpid()
        return True

    def release(self) -> None:
        """Undo one :meth:`acquire`; the file goes when the outermost hold ends.

        :raises RuntimeError: the calling thread does not hold the lock.
        """
        entry = _registry.get(self._key)
        if entry is None or entry.depth == 0 or entry.owner != threading.get_ident():
            raise RuntimeError(f"release of {self._key} which this thread does not hold")
        if entry.depth > 1:
            entry.depth -= 1
            entry.rlock.release()
            return
        try:
            held_for = time.monotonic() - entry.acquired_at
            if held_for > self.stale_after:
                log.warning("store lock %s was held for %.1fs; others may have taken it as stale "
                            "after %gs", self.path, held_for, self.stale_after)
            _remove_own_file(self.path, entry)
        finally:
            entry.depth = 0
            entry.owner = None
            entry.rlock.release()

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
