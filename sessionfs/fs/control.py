"""The read-only control folder ``/.sessionfs``: ``errors`` (rejected writes) and ``status``.

Both files are rendered when opened, so a reader gets one consistent snapshot.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import threading
from collections import deque

__all__ = ["CONTROL_DIR", "CONTROL_FILES", "ErrorLog", "render_status"]

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

    def add(self, path: str, code: int | None, reason: str, *, quiet: bool = False) -> None:
        """Record a rejection; ``quiet`` skips the log line (a standing notice, not an event)."""
        when = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        reason = " ".join(reason.split())  # one line per rejection
        line = f"{when} {path} {_errno_name(code)} {reason}"
        with self._lock:
            self._lines.append(line)
        if not quiet:
            log.warning("rejected write to %s: %s (%s)", path, reason, _errno_name(code))

    def render(self) -> bytes:
        with self._lock:
            return "".join(f"{line}\n" for line in self._lines).encode("utf-8", "replace")


def render_status(*, store_path: os.PathLike[str] | str, layout: str, sessions: int | str,
                  read_only_reason: str | None, timeout: float, max_entry_size: int,
                  warnings: tuple[str, ...] = ()) -> bytes:
    """``status``: one ``name: value`` line per fact, for people and for ``grep``."""
    read_only = "no" if read_only_reason is None else f"yes ({read_only_reason})"
    lines = [
        f"store: {os.fspath(store_path)}",
        f"layout: {layout}",
        f"sessions: {sessions}",
        f"read-only: {read_only}",
        f"timeout: {timeout:g}",
        f"max-entry-size: {max_entry_size}",
        f"pid: {os.getpid()}",
        *(f"warning: {' '.join(warning.split())}" for warning in warnings),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")
