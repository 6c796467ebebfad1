"""Open files: ``fh`` numbers from a counter, one object per open, writes buffered per handle.

A ``meta.json`` opened for writing gets a private buffer (the entry's bytes, or nothing with
``O_TRUNC``); ``write``, ``truncate`` and ``ftruncate`` act on that buffer like on a normal file,
and nothing reaches the store until the mount commits it (:class:`Committer`) at ``flush``,
``fsync`` or ``release``.
A write after which the buffer can no longer become valid JSON, whatever follows, fails right
away with EINVAL (shells ignore errors from ``close``); so does everything after it on that
handle, and nothing is committed. Readers get the bytes as they were at ``open``.

No FUSE import here: the view and the tests drive these objects directly.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
import time
from typing import Protocol

from sessionfs import jsonfmt
from sessionfs.errors import EntryTooLarge, InvalidJSON, SessionfsError
from sessionfs.fs.control import RestoreSinks, SinkFile
from sessionfs.fs.scratch import ScratchBudget, ScratchFile

__all__ = ["Committer", "ConstHandle", "Handle", "HandleTable", "MetaHandle", "ScratchHandle",
           "SinkHandle"]


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class Handle:
    """What every open file answers; the defaults fit a read-only file."""

    fh: int = 0
    #: Files are served with FOPEN_DIRECT_IO: the kernel keeps one size and one page cache
    #: per inode, while each open here has its own snapshot or buffer. Through the page cache a
    #: reader would be cut off (or padded with zeros) at a size another open file or a stat
    #: of the changed store reported; with direct I/O it always reads its own bytes. The one
    #: exception, a read-only ``meta.json`` whose size the kernel surely holds, is
    #: :meth:`sessionfs.fs.mountstate.MountState.page_cache_safe` (it spares the READ at EOF).
    direct_io: bool = True
    noflush: bool = False
    writable: bool = False

    def size(self) -> int:
        raise NotImplementedError

    def mtime_ns(self) -> int:
        raise NotImplementedError

    def read(self, size: int, offset: int) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes, offset: int) -> int:
        raise _fail(errno.EBADF)

    def truncate(self, length: int) -> None:
        raise _fail(errno.EBADF)

    def flush(self) -> None:
        """``close()`` of one descriptor (may run several times per open file)."""

    def fsync(self) -> None:
        """``fsync``/``fdatasync``."""

    def release(self) -> None:
        """The last descriptor is gone; errors here reach nobody."""


class ConstHandle(Handle):
    """Fixed bytes: the control files."""

    noflush = True

    def __init__(self, data: bytes, mtime_ns: int) -> None:
        self._data = data
        self._mtime_ns = mtime_ns

    def size(self) -> int:
        return len(self._data)

    def mtime_ns(self) -> int:
        return self._mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        return self._data[offset:offset + size]


class SinkHandle(Handle):
    """A file written into ``/.sessionfs`` (a restore): writes are counted, their bytes dropped.

    ``sinks`` is None for a write-open of a control file itself, which changes nothing.
    """

    def __init__(self, name: str, sink: SinkFile, sinks: RestoreSinks | None, *,
                 writable: bool) -> None:
        self.name = name
        self.sink = sink
        self._sinks = sinks
        self.writable = writable
        if sinks is not None:
            sinks.opened(sink)

    def size(self) -> int:
        return self.sink.size

    def mtime_ns(self) -> int:
        return self.sink.mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        return b""

    def write(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise _fail(errno.EBADF)
        self.sink.size = max(self.sink.size, offset + len(data))
        self.sink.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, length: int) -> None:
        self.sink.size = length
        self.sink.mtime_ns = time.time_ns()

    def release(self) -> None:
        if self._sinks is not None:
            self._sinks.closed(self.name, self.sink)
            self._sinks = None


class ScratchHandle(Handle):
    """An open scratch file: reads and writes go straight to the shared in-memory file.

    Growth is charged to the mount's :class:`ScratchBudget` before it happens (ENOSPC beyond
    it); one file is also capped at ``limit`` bytes (EFBIG).
    """

    noflush = True  # nothing happens at close: spare the kernel the FLUSH round trip

    def __init__(self, file: ScratchFile, *, writable: bool, append: bool, limit: int,
                 budget: ScratchBudget | None = None, path: str = "") -> None:
        self.file = file
        self.writable = writable
        self._append = append
        self._limit = limit
        self._budget = budget
        self.path = path  # at open time, for messages
        if budget is not None:
            budget.opened(file)

    def size(self) -> int:
        return self.file.size

    def mtime_ns(self) -> int:
        return self.file.mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        return bytes(self.file.data[offset:offset + size])

    def _resize(self, size: int) -> None:
        if size > self._limit:
            raise _fail(errno.EFBIG)
        if self._budget is not None and size != len(self.file.data):
            self._budget.resize(self.file, size, self.path)

    def write(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise _fail(errno.EBADF)
        buffer = self.file.data
        if self._append:
            offset = len(buffer)
        end = offset + len(data)
        self._resize(max(end, len(buffer)))
        if offset > len(buffer):
            buffer.extend(bytes(offset - len(buffer)))
        buffer[offset:end] = data
        self.file.touch()
        return len(data)

    def truncate(self, length: int) -> None:
        self._resize(length)
        buffer = self.file.data
        if length < len(buffer):
            del buffer[length:]
        else:
            buffer.extend(bytes(length - len(buffer)))
        self.file.touch()

    def release(self) -> None:
        if self._budget is not None:
            self._budget.closed(self.file)
            self._budget = None


class Committer(Protocol):
    """What an open ``meta.json`` needs from the mount
    (:class:`sessionfs.fs.mountstate.MountState`):
    its size limit, the one commit, the error log, and to be told when its buffer changed."""

    @property
    def max_entry_size(self) -> int: ...

    def commit(self, key: str, top: str, raw: bytes, *,
               source: MetaHandle | None = None) -> bool: ...

    def reject(self, path: str, exc: SessionfsError | OSError) -> None: ...

    def buffer_changed(self, handle: MetaHandle) -> None: ...


class MetaHandle(Handle):
    """An open ``meta.json``. Read-only: a snapshot. Writable: a private, validated buffer."""

    def __init__(self, committer: Committer, key: str, top: str, data: bytes, *, mtime_ns: int,
                 writable: bool, append: bool = False, dirty: bool = False) -> None:
        self._committer = committer
        self.key = key
        self.top = top  # the directory name at open time (for messages)
        self.writable = writable
        self.noflush = not writable
        self._mtime_ns = mtime_ns
        self._append = append
        self._data: bytes | bytearray = bytearray(data) if writable else data
        self.dirty = dirty
        self.detached = False  # the session it belonged to was deleted or replaced
        self.written = False  # any write() since open
        self.resized = False  # any ftruncate() since open (O_TRUNC at open does not count)
        self.version = 0  # bumped by every change of the buffer
        self.rejected: SessionfsError | None = None  # a write-time rejection poisons the handle
        self._failed: tuple[int, SessionfsError | OSError] | None = None  # last failed commit
        # Incremental JSON prefix check over buffer[:_checked] while writes only append.
        self._checker: jsonfmt.PrefixChecker | None = None
        self._checked = 0
        self._check_off = False  # set when what is already there cannot be checked

    @property
    def path(self) -> str:
        return f"/{self.top}/meta.json"

    @property
    def creating(self) -> bool:
        """Whether this handle makes a ``meta.json`` that is not in the store visible: a writer
        whose content was neither refused (a refused create leaves no file, even while the
        kernel's asynchronous RELEASE is still on its way) nor cut off by an unlink."""
        if not self.writable or self.detached or self.rejected is not None:
            return False
        return self._failed is None or self._failed[0] != self.version

    def data(self) -> bytes:
        return bytes(self._data)

    def size(self) -> int:
        return len(self._data)

    def mtime_ns(self) -> int:
        return self._mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        return bytes(self._data[offset:offset + size])

    # -- changing the buffer ---------------------------------------------------------------------
    def _changed(self) -> None:
        self.dirty = True
        self.version += 1
        self._committer.buffer_changed(self)

    def write(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise _fail(errno.EBADF)
        if self.rejected is not None:
            raise self.rejected
        buffer = self._data
        assert isinstance(buffer, bytearray)
        if self._append:
            offset = len(buffer)
        end = offset + len(data)
        limit = self._committer.max_entry_size
        if end > limit:
            exc = EntryTooLarge(f"entry would be {end} bytes, over the limit of {limit} bytes")
            self._reject(exc)
        if offset == len(buffer):
            self._check_append(data)
        else:
            self._checker = None  # not a sequential write: validate at commit only
            self._check_off = False
        if offset > len(buffer):
            buffer.extend(bytes(offset - len(buffer)))
        buffer[offset:end] = data
        self.written = True
        self._changed()
        return len(data)

    def _check_append(self, data: bytes) -> None:
        """Reject ``data`` if the buffer could no longer become JSON once it is appended."""
        if self._check_off:
            return
        if self._checker is None or self._checked != len(self._data):
            self._checker = jsonfmt.PrefixChecker()
            self._checked = 0
            if self._data:
                try:
                    self._checker.feed(bytes(self._data))
                except InvalidJSON:  # already broken before this write: leave it to the commit
                    self._checker = None
                    self._check_off = True
                    return
                self._checked = len(self._data)
        try:
            self._checker.feed(data)
        except InvalidJSON as exc:
            self._reject(exc)
        self._checked += len(data)

    def _reject(self, exc: SessionfsError) -> None:
        self.rejected = exc
        self._committer.reject(self.path, exc)
        raise exc

    def truncate(self, length: int) -> None:
        if not self.writable:
            raise _fail(errno.EBADF)
        if self.rejected is not None:
            raise self.rejected
        limit = self._committer.max_entry_size
        if length > limit:
            raise EntryTooLarge(f"entry would be {length} bytes, over the limit of {limit} bytes")
        buffer = self._data
        assert isinstance(buffer, bytearray)
        if length < len(buffer):
            del buffer[length:]
        else:
            buffer.extend(bytes(length - len(buffer)))
        if length == 0:
            self._check_off = False
        self._checker = None
        self.resized = True
        self._changed()

    def truncate_on_open(self) -> None:
        """``O_TRUNC``: start from nothing (a modification even when the entry was empty)."""
        assert isinstance(self._data, bytearray)
        self._data.clear()
        self._checker = None
        self._check_off = False
        self._changed()

    def detach(self) -> None:
        """The file was unlinked or replaced (renamed over): like writes to an unlinked file on
        any filesystem, what this handle writes from now on reaches nothing."""
        self.detached = True
        self.dirty = False

    # -- committing ------------------------------------------------------------------------------
    def commit(self) -> None:
        """Hand the buffer to the committer if it changed; the same failure is reported once."""
        if not self.writable or not self.dirty or self.detached:
            return
        if self.rejected is not None:
            raise self.rejected
        if self._failed is not None and self._failed[0] == self.version:
            raise self._failed[1]
        version = self.version
        try:
            self._committer.commit(self.key, self.top, bytes(self._data), source=self)
        except (SessionfsError, OSError) as exc:
            self._failed = (version, exc)
            raise
        if self.version == version:
            self.dirty = False

    def flush(self) -> None:
        # A shell's ``> file`` opens, dup2()s and closes the first descriptor (a FLUSH) before
        # writing anything; committing that empty buffer would be a false rejection. Until the
        # first write, only fsync and release commit. An explicit ftruncate() does count:
        # ``truncate -s 0 meta.json`` (open, ftruncate, close) must fail at its close, not
        # report success while the store keeps the old entry.
        if self.rejected is not None:
            raise self.rejected
        if self.written or self.resized:
            self.commit()

    def fsync(self) -> None:
        self.commit()

    def release(self) -> None:
        # A failure was reported (errors file, log) when it happened; release's result is lost.
        with contextlib.suppress(SessionfsError, OSError):
            self.commit()


class HandleTable:
    """``fh`` → handle. Numbers come from a counter and are never reused within a mount."""

    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, handle: Handle) -> int:
        with self._lock:
            fh = next(self._counter)
            handle.fh = fh
            self._handles[fh] = handle
        return fh

    def get(self, fh: int | None) -> Handle:
        handle = self._handles.get(fh) if fh is not None else None
        if handle is None:
            raise _fail(errno.EBADF)
        return handle

    def find(self, fh: int | None) -> Handle | None:
        return self._handles.get(fh) if fh is not None else None

    def pop(self, fh: int) -> Handle | None:
        with self._lock:
            return self._handles.pop(fh, None)

    def __len__(self) -> int:
        return len(self._handles)

    def snapshot(self) -> list[Handle]:
        """The open handles now (a copy: safe to walk while others open and close)."""
        with self._lock:
            return list(self._handles.values())
