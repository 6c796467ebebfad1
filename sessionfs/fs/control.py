"""The control folder ``/.sessionfs``: ``errors`` (rejected writes) and ``status``.

Each file is rendered once per change of what it shows (:class:`ControlFiles`), never per
``stat``: its size is exact and its mtime is when its content last changed, so ``tar`` and
``rsync`` see stable attributes, and a ``stat`` costs no store read. An open file reads the
snapshot it opened.
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

__all__ = ["CONTROL_DIR", "CONTROL_FILES", "ControlFiles", "ErrorLog", "render_status"]

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

    def add(self, path: str, code: int | None, reason: str) -> None:
        when = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        reason = " ".join(reason.split())  # one line per rejection
        line = f"{when} {path} {_errno_name(code)} {reason}"
        with self._lock:
            self._lines.append(line)
            self.version += 1
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
