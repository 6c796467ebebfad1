"""ctypes glue: where sessionfs patches mfusepy's libfuse3 bindings (the adapter itself is
:mod:`sessionfs.fs.operations`, which knows nothing of ctypes).

:class:`SessionFUSE` fixes the glue where mfusepy loses information: ``renameat2`` flags
(mfusepy drops them, so ``RENAME_EXCHANGE`` would destroy a file), ``ftruncate``'s file
handle, the ``direct_io``/``noflush``/``keep_cache`` flags of ``open``/``create``, and
READDIRPLUS (attributes come with the listing, so ``ls -l`` needs no LOOKUP per session). It
also binds ``fuse_invalidate_path`` to the view when the mount starts. :class:`PinnedFUSE`
keeps each libfuse worker thread's Python thread state alive.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy prefers libfuse2 otherwise

import mfusepy

from sessionfs.fs.operations import SessionOperations, to_oserror
from sessionfs.fs.viewapi import DirHandle

__all__ = ["PinnedFUSE", "SessionFUSE", "path_invalidator"]

FUSE_READDIR_PLUS = 1
FUSE_FILL_DIR_PLUS = 2


def path_invalidator() -> Callable[[str], None] | None:
    """``fuse_invalidate_path`` (libfuse ≥ 3.2) bound to this mount; call only from ``init``.

    It makes the kernel drop an inode's cached attributes (and pages). Safe inside our own
    callbacks for the session folders we pass it: it takes libfuse's tree mutex only briefly,
    and a folder has no pages whose locks a pending request could hold.
    """
    libfuse = mfusepy._libfuse
    function = getattr(libfuse, "fuse_invalidate_path", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    function.restype = ctypes.c_int
    fuse = libfuse.fuse_get_context().contents.fuse

    def invalidate(path: str) -> None:
        function(fuse, path.encode("utf-8", "surrogateescape"))

    return invalidate


def _guarded(name: str, call: Callable[[], int]) -> int:
    """Run glue code; failures become a negative errno here instead of mfusepy's EINVAL."""
    try:
        return call()
    except Exception as exc:
        error = to_oserror(name, exc)
        return -(error.errno or errno.EIO)


def _decode(fuse: mfusepy.FUSE, path: bytes | None) -> str | None:
    return None if path is None else path.decode(fuse.encoding, fuse.errors)


_PyGILState_Ensure = ctypes.pythonapi.PyGILState_Ensure
_PyGILState_Ensure.restype = ctypes.c_int
_PyGILState_Ensure.argtypes = []


class PinnedFUSE(mfusepy.FUSE):
    """mfusepy's FUSE whose libfuse worker threads keep their Python thread state.

    ctypes enters a callback from a foreign thread with ``PyGILState_Ensure`` and leaves with
    ``PyGILState_Release``; with nothing else holding the thread state, every callback creates
    one and destroys it again (a 16 KiB frame stack mapped and unmapped each time, so every
    FUSE request cost an ``mmap``, a ``munmap`` and a TLB shootdown on the other CPU: 17 % of
    the daemon's CPU under ``cat`` of many files). One extra, never released ``Ensure`` per
    thread keeps the state alive; the GIL is still released after every callback. Worker
    threads must then live as long as the mount (see ``mount.MAX_IDLE_THREADS``).
    """

    _pinned = threading.local()

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self._pinned, "done", False):
            _PyGILState_Ensure()
            self._pinned.done = True
        return super()._wrapper(func, *args, **kwargs)


class SessionFUSE(PinnedFUSE):
    """mfusepy's FUSE with the libfuse3 glue fixed where it drops information."""

    operations: SessionOperations

    def init_fuse_3(self, conn: Any, config: Any) -> None:
        """Bind ``fuse_invalidate_path`` to the view, then mfusepy's init (the adapter's
        ``init_with_config``); libfuse's context exists only inside this callback."""
        self.operations.view.invalidate = path_invalidator()
        super().init_fuse_3(conn, config)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename_with_flags(old.decode(self.encoding, self.errors),
                                                 new.decode(self.encoding, self.errors), flags)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        return self.operations.truncate(_decode(self, path), length, fh)

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        """mfusepy's getattr glue, with the ``struct stat`` filled field by field."""
        fh = fip.contents.fh if fip else None
        found = self.operations.stat(_decode(self, path), fh)
        mode, nlink, size, mtime_ns = found[:4]
        view = self.operations.view
        st = buf.contents
        st.st_dev = st.st_ino = st.st_rdev = st.st_blksize = 0
        st.st_mode, st.st_nlink = mode, nlink
        # (mode, nlink, size, mtime_ns[, uid, gid]): the owner is the view's unless it says
        st.st_uid, st.st_gid = (found[4], found[5]) if len(found) > 4 else (view.uid, view.gid)
        st.st_size, st.st_blocks = size, (size + 511) // 512
        sec, nsec = divmod(mtime_ns, 1_000_000_000)
        for stamp in (st.st_mtimespec, st.st_ctimespec, st.st_atimespec):
            stamp.tv_sec, stamp.tv_nsec = sec, nsec
        return 0

    def _file_flags(self, fip: Any) -> None:
        fi = fip.contents
        handle = self.operations.view.handles.find(fi.fh)
        if handle is not None:
            fi.direct_io = int(handle.direct_io)
            fi.noflush = int(handle.noflush)
            # transcript.jsonl: keep the kernel's pages while the transcript is unchanged
            fi.keep_cache = int(getattr(handle, "keep_cache", False))

    def _apply_file_flags(self, fip: Any) -> int:
        self._file_flags(fip)
        return 0

    def open(self, path: bytes, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.open(_decode(self, path), fi.flags)
        return _guarded("open", lambda: self._apply_file_flags(fip))

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.create(_decode(self, path), mode, fi.flags)
        return _guarded("create", lambda: self._apply_file_flags(fip))

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
                       flags: int) -> int:
        return _guarded("readdir", lambda: self._readdir(buf, filler, offset, fip, flags))

    def _readdir(self, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        """Fill from the listing taken at opendir, resuming at ``offset``; with READDIRPLUS
        every entry carries its attributes."""
        view = self.operations.view
        listing: DirHandle = view.dir_entries(fip.contents.fh)
        entries = listing.entries
        plus = bool(flags & FUSE_READDIR_PLUS)
        prefix = listing.path.rstrip("/")
        st = mfusepy.c_stat()
        st.st_uid, st.st_gid = view.uid, view.gid
        mtime, ctime, atime = st.st_mtimespec, st.st_ctimespec, st.st_atimespec
        encoding, errors = self.encoding, self.errors
        for index in range(offset, len(entries)):
            name, mode = entries[index]
            st.st_mode = mode
            fill = 0
            if plus and name != "." and name != "..":
                found = view.entry_stat(prefix, name)
                if found is not None:  # else: vanished; the kernel will LOOKUP it
                    st.st_mode, st.st_nlink, st.st_size, stamp = found[:4]
                    st.st_uid, st.st_gid = ((found[4], found[5]) if len(found) > 4
                                            else (view.uid, view.gid))
                    st.st_blocks = (found[2] + 511) // 512
                    sec, nsec = divmod(stamp, 1_000_000_000)
                    mtime.tv_sec = ctime.tv_sec = atime.tv_sec = sec
                    mtime.tv_nsec = ctime.tv_nsec = atime.tv_nsec = nsec
                    fill = FUSE_FILL_DIR_PLUS
            if filler(buf, name.encode(encoding, errors), st, index + 1, fill):
                break
        return 0
