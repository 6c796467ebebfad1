"""The control folder ``/.sessionfs``: ``errors`` (rejected writes) and ``status``.

Each file is rendered once per change of what it shows (:class:`ControlFiles`), never per
``stat``: its size is exact and its mtime is when its content last changed, so ``tar`` and
``rsync`` see stable attributes, and a ``stat`` costs no store read. An open file reads the
snapshot it opened.

Restoring a backup of the whole mount (``tar -x``, ``cp -r``, ``rsync -a``) writes these files
back. Such writes are accepted and discarded (:class:`RestoreSinks`), so the tools exit 0 while
the files keep showing this mount's own state: see the class for each tool's sequence.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from sessionfs.fs.scratch import is_libfuse_hidden

__all__ = ["CONTROL_DIR", "CONTROL_FILES", "ControlFiles", "ErrorLog", "RestoreSinks", "SinkFile",
           "render_status"]

CONTROL_DIR = ".sessionfs"
CONTROL_FILES = ("errors", "status")

log = logging.getLogger("sessionfs.fs")


def _errno_name(code: int | None) -> str:
    return errno.errorcode.get(code or 0, "EIO")


class ErrorLog:
    """The latest rejected writes, newest last; each is also logged (the ``-f`` log)."""

    def __init__(self, limit: int = 200) -> None:
        self._lines: deque[str] = deque(maxlen=limit)
        self._lock = threading.Lock()
        #: Bumped by every :meth:`add`: what the rendered ``errors`` file is cached on.
        self.version = 0

    def add(self, path: str, code: int | None, reason: str, *, quiet: bool = False) -> None:
        """Record a rejection; ``quiet`` skips the log line (a standing notice, not an event)."""
        when = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        reason = " ".join(reason.split())  # one line per rejection
        line = f"{when} {path} {_errno_name(code)} {reason}"
        with self._lock:
            self._lines.append(line)
            self.version += 1
        if not quiet:
            log.warning("rejected write to %s: %s (%s)", path, reason, _errno_name(code))

    def render(self) -> bytes:
        with self._lock:
            return "".join(f"{line}\n" for line in self._lines).encode("utf-8", "replace")


def render_status(*, store_path: os.PathLike[str] | str, layout: str, sessions: int | str,
                  read_only_reason: str | None, timeout: float, max_entry_size: int,
                  warnings: tuple[str, ...] = (), scratch: tuple[int, int, int, int] | None = None
                  ) -> bytes:
    """``status``: one ``name: value`` line per fact, for people and for ``grep``.

    ``scratch``: extra files and bytes held, and their limits. Nothing here changes from one
    read to the next unless the mount's state does (no clock): see :class:`ControlFiles`.
    """
    read_only = "no" if read_only_reason is None else f"yes ({read_only_reason})"
    lines = [
        f"store: {os.fspath(store_path)}",
        f"layout: {layout}",
        f"sessions: {sessions}",
        f"read-only: {read_only}",
        f"timeout: {timeout:g}",
        f"max-entry-size: {max_entry_size}",
        f"pid: {os.getpid()}",
    ]
    if scratch is not None:
        files, max_files, used, max_bytes = scratch
        lines += [
            f"scratch-files: {files} of {max_files}",
            f"scratch-bytes: {used} of {max_bytes}",
            "scratch: files other than meta.json are kept in memory only, gone after unmount",
        ]
    lines += [f"warning: {' '.join(warning.split())}" for warning in warnings]
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


class ControlFiles:
    """The control files' bytes, rendered again only when their token changes.

    ``token`` is a cheap summary of everything a file shows (the store's fingerprint, counters);
    the mtime moves only when a new rendering differs from the last one.
    """

    def __init__(self, started_ns: int) -> None:
        self._started_ns = started_ns
        self._cache: dict[str, tuple[Hashable, bytes, int]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, token: Hashable, render: Callable[[], bytes]) -> tuple[bytes, int]:
        """``(content, mtime_ns)`` of ``name``; ``render()`` runs only for a new token."""
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] == token:
            return cached[1], cached[2]
        data = render()
        with self._lock:
            cached = self._cache.get(name)
            if cached is None:
                mtime_ns = self._started_ns
            elif cached[1] == data:
                mtime_ns = cached[2]
            else:
                mtime_ns = max(time.time_ns(), cached[2] + 1)
            self._cache[name] = (token, data, mtime_ns)
        return data, mtime_ns



@dataclass(slots=True)
class SinkFile:
    """A file written into ``/.sessionfs``: only its size and time are kept, never its bytes."""

    size: int = 0
    mtime_ns: int = field(default_factory=time.time_ns)
    opens: int = 0
    #: A control file's name hidden by ``unlink`` (monotonic deadline), None for other names.
    hides_until: float | None = None


class RestoreSinks:
    """Names a restore writes into ``/.sessionfs``: accepted, their bytes discarded.

    What each tool does with a backup that holds ``.sessionfs/status`` (measured):

    * ``cp -r``/``cp -a``: ``open(status, O_WRONLY|O_TRUNC)``, write, close, then
      ``utimens``/``chmod``/``chown``: the open is accepted, the writes go nowhere;
    * ``rsync -a``: ``mkstemp(.sessionfs/.status.XXXXXX)``, write, ``rename`` onto ``status``:
      the temp name exists (as a sink) until it is renamed or unlinked; renaming a sink onto a
      control file drops it;
    * ``tar -x``: ``open(status, O_CREAT|O_EXCL)`` fails (EEXIST), tar unlinks ``status`` and
      creates it again: ``unlink`` hides the control file behind an empty sink until that
      create's last close, or :attr:`HIDE_SECONDS` if no create follows (the kernel must not
      find the name again, or tar would unlink it forever).
    """

    LIMIT = 64
    HIDE_SECONDS = 2.0

    def __init__(self) -> None:
        self._files: dict[str, SinkFile] = {}
        self._lock = threading.Lock()

    def _entry(self, name: str) -> SinkFile | None:
        """The entry for ``name`` (under the lock), dropping a hiding that ran out."""
        sink = self._files.get(name)
        if sink is not None and sink.hides_until is not None \
                and time.monotonic() >= sink.hides_until:
            del self._files[name]
            return None
        return sink

    def get(self, name: str) -> SinkFile | None:
        """The sink called ``name``; None also for a hidden control file (see :meth:`hidden`)."""
        with self._lock:
            sink = self._entry(name)
            return None if sink is None or sink.hides_until is not None else sink

    def hidden(self, name: str) -> bool:
        """Control file ``name`` was unlinked and not created again yet: it does not exist."""
        with self._lock:
            sink = self._entry(name)
            return sink is not None and sink.hides_until is not None

    def names(self) -> list[str]:
        """Listed sinks (a re-created control file is listed as the control file already; a
        sink libfuse hid because it was unlinked while open is gone from the folder, as on any
        filesystem, even before its last close)."""
        with self._lock:
            return [name for name in self._files
                    if name not in CONTROL_FILES and not is_libfuse_hidden(name)]

    def create(self, name: str) -> SinkFile:
        """A new (or emptied) sink called ``name``. :raises OSError: ENOSPC past :attr:`LIMIT`"""
        with self._lock:
            sink = self._files.get(name)
            if sink is None:
                if len(self._files) >= self.LIMIT:
                    raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: at most "
                                  f"{self.LIMIT} files can be written into {CONTROL_DIR}")
                sink = self._files[name] = SinkFile()
            sink.size = 0
            sink.mtime_ns = time.time_ns()
            sink.hides_until = None  # created: it exists (until its last close)
            return sink

    def hide(self, name: str) -> None:
        """``unlink`` of control file ``name``: hidden until it is created again."""
        with self._lock:
            self._files[name] = SinkFile(hides_until=time.monotonic() + self.HIDE_SECONDS)

    def unlink(self, name: str) -> bool:
        with self._lock:
            return self._files.pop(name, None) is not None

    def rename(self, old: str, new: str) -> None:
        """:raises OSError: ENOENT when ``old`` is no sink"""
        with self._lock:
            sink = self._files.pop(old, None)
            if sink is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            if new in CONTROL_FILES:
                self._files.pop(new, None)  # the control file shows again, unchanged
            else:
                self._files[new] = sink

    def opened(self, sink: SinkFile) -> None:
        with self._lock:
            sink.opens += 1

    def closed(self, name: str, sink: SinkFile) -> None:
        """The last close of a re-created control file ends its hiding."""
        with self._lock:
            sink.opens -= 1
            if sink.opens == 0 and name in CONTROL_FILES and self._files.get(name) is sink:
                del self._files[name]
