"""The kernel adapter: mfusepy callbacks that resolve a path, make one view call, map errors.

Threads: the mount runs libfuse's multi-threaded loop. Callbacks take the GIL, so Python work
is not parallel, but a callback that waits (a commit waiting up to the lock timeout for the
gateway's store lock, a store read of a 16 MiB entry) does not stall every ``cat`` and ``ls``
behind it. The view guards its state with its own locks (see :mod:`sessionfs.fs.view`);
measured single- vs multi-threaded throughput differed by less than the noise (fuse-notes
§6.2), so responsiveness decides.

Errors: :func:`errno_boundary` wraps every callback. A :class:`SessionfsError` becomes its
``errno`` (EINVAL only ever means "not an acceptable entry"), an ``OSError`` passes through,
and anything else is logged with its traceback and answered EIO, never mfusepy's catch-all
EINVAL.

:class:`SessionFUSE` patches mfusepy's libfuse3 glue where it loses information:
``renameat2`` flags (mfusepy drops them, so ``RENAME_EXCHANGE`` would destroy a file),
``ftruncate``'s file handle, the ``direct_io``/``noflush`` flags of ``open``/``create``, and
READDIRPLUS (attributes come with the listing, so ``ls -l`` needs no LOOKUP per session).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy prefers libfuse2 otherwise

import mfusepy

from sessionfs.errors import SessionfsError
from sessionfs.fs.view import DirHandle, SessionView

__all__ = ["PinnedFUSE", "SessionFUSE", "SessionOperations", "errno_boundary"]

log = logging.getLogger("sessionfs.fs")

FUSE_READDIR_PLUS = 1
FUSE_FILL_DIR_PLUS = 2
_QUIET_ERRNOS = frozenset({errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR,
                           errno.ENOTDIR, errno.EINVAL, errno.EFBIG, errno.EROFS, errno.EPERM,
                           errno.EACCES, errno.ENOTSUP, errno.ENODATA, errno.EBADF})

F = TypeVar("F", bound=Callable[..., Any])


def _to_oserror(name: str, exc: BaseException) -> OSError:
    """The OSError the kernel should see for ``exc`` raised inside callback ``name``."""
    if isinstance(exc, SessionfsError):
        if exc.errno not in _QUIET_ERRNOS:
            log.warning("%s: %s", name, exc)
        return mfusepy.FuseOSError(exc.errno)
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc
    log.error("internal error in %s", name, exc_info=exc)
    return mfusepy.FuseOSError(errno.EIO)


_NO_SETTLE = frozenset({"rename", "rename_with_flags", "init_with_config", "destroy"})


def errno_boundary(method: F) -> F:
    """Answer every failure of a callback with a deliberately chosen errno.

    Also lets the view settle pending deletes first (see :meth:`SessionView.settle`).
    """
    parameters = list(inspect.signature(method).parameters)
    settles = method.__name__ not in _NO_SETTLE and len(parameters) > 1

    @functools.wraps(method)
    def boundary(*args: Any, **kwargs: Any) -> Any:
        try:
            view = getattr(args[0], "view", None) if args else None
            if settles and view is not None and view.has_dooms:
                view.settle()
            return method(*args, **kwargs)
        except Exception as exc:
            raise _to_oserror(method.__name__, exc) from exc

    return boundary  # type: ignore[return-value]


overrides = mfusepy.overrides(mfusepy.Operations)


class SessionOperations(mfusepy.Operations):
    """One method per FUSE callback, each a single :class:`SessionView` call."""

    use_ns = True

    def __init__(self, view: SessionView, *, on_init: Callable[[], None] | None = None) -> None:
        self.view = view
        self._on_init = on_init

    # -- lifecycle -------------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        if config_3 is not None:
            config_3.nullpath_ok = 1  # handle callbacks work on unlinked open files too
        self.view.invalidate = _path_invalidator()
        if self._on_init is not None:
            self._on_init()

    @overrides
    def destroy(self, path: str) -> None:
        self.view.settle(everything=True)  # an unlinked meta.json still within its grace
        log.debug("unmounted")

    # -- attributes ------------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self.view.getattr(path, fh)

    @overrides
    @errno_boundary
    def chmod(self, path: str, mode: int) -> int:
        self.view.accept_attribute_change(path)
        return 0

    @overrides
    @errno_boundary
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.view.accept_attribute_change(path)
        return 0

    @overrides
    @errno_boundary
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self.view.accept_attribute_change(path)
        return 0

    @overrides
    @errno_boundary
    def statfs(self, path: str) -> dict[str, int]:
        return self.view.statfs()

    # -- directories -----------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def opendir(self, path: str) -> int:
        return self.view.opendir(path)

    @overrides
    @errno_boundary
    def readdir(self, path: str, fh: int) -> mfusepy.ReadDirResult:
        return [(name, mode, 0) for name, mode in self.view.dir_entries(fh).entries]

    @overrides
    @errno_boundary
    def releasedir(self, path: str, fh: int) -> int:
        self.view.releasedir(fh)
        return 0

    @overrides
    @errno_boundary
    def mkdir(self, path: str, mode: int) -> int:
        self.view.mkdir(path)
        return 0

    @overrides
    @errno_boundary
    def rmdir(self, path: str) -> int:
        self.view.rmdir(path)
        return 0

    # -- files -----------------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def open(self, path: str, flags: int) -> int:
        return self.view.open(path, flags)

    @overrides
    @errno_boundary
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self.view.create(path, fi if isinstance(fi, int) else os.O_WRONLY)

    @overrides
    @errno_boundary
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.view.read(fh, size, offset)

    @overrides
    @errno_boundary
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return self.view.write(fh, data, offset)

    @overrides
    @errno_boundary
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self.view.truncate(path, length, fh)
        return 0

    @overrides
    @errno_boundary
    def flush(self, path: str, fh: int) -> int:
        self.view.flush(fh)
        return 0

    @overrides
    @errno_boundary
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.view.fsync(fh)
        return 0

    @overrides
    @errno_boundary
    def release(self, path: str, fh: int) -> int:
        self.view.release(fh)
        return 0

    # -- names -----------------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def unlink(self, path: str) -> int:
        self.view.unlink(path)
        return 0

    @overrides
    @errno_boundary
    def rename(self, old: str, new: str) -> int:
        self.view.rename(old, new, 0)
        return 0

    @errno_boundary
    def rename_with_flags(self, old: str, new: str, flags: int) -> int:
        """``renameat2`` (called by :class:`SessionFUSE`, which receives the flags)."""
        self.view.rename(old, new, flags)
        return 0

    @overrides
    @errno_boundary
    def symlink(self, target: str, source: str) -> int:
        # mfusepy passes (new link path, link content)
        self.view.symlink(target, source)
        return 0

    @overrides
    @errno_boundary
    def readlink(self, path: str) -> str:
        return self.view.readlink(path)

    @overrides
    @errno_boundary
    def link(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    @overrides
    @errno_boundary
    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    # -- extended attributes: not supported (ENOTSUP, never ENOSYS) -----------------------------
    @overrides
    @errno_boundary
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        raise mfusepy.FuseOSError(errno.ENOTSUP)

    @overrides
    @errno_boundary
    def setxattr(self, path: str, name: str, value: bytes, options: int,
                 position: int = 0) -> int:
        raise mfusepy.FuseOSError(errno.ENOTSUP)

    @overrides
    @errno_boundary
    def listxattr(self, path: str) -> Iterable[str]:
        self.view.accept_metadata_change(path)
        return []

    @overrides
    @errno_boundary
    def removexattr(self, path: str, name: str) -> int:
        raise mfusepy.FuseOSError(errno.ENOTSUP)


def _path_invalidator() -> Callable[[str], None] | None:
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
        error = _to_oserror(name, exc)
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

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename_with_flags(_decode(self, old), _decode(self, new), flags)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        return self.operations.truncate(_decode(self, path), length, fh)

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        """mfusepy's getattr glue, with the ``struct stat`` filled field by field."""
        fh = fip.contents.fh if fip else None
        attrs = self.operations.getattr(_decode(self, path), fh)  # type: ignore[arg-type]
        st = buf.contents
        st.st_dev = st.st_ino = st.st_rdev = st.st_blksize = 0
        st.st_mode, st.st_nlink = attrs["st_mode"], attrs["st_nlink"]
        st.st_uid, st.st_gid = attrs["st_uid"], attrs["st_gid"]
        st.st_size, st.st_blocks = attrs["st_size"], attrs["st_blocks"]
        sec, nsec = divmod(attrs["st_mtime"], 1_000_000_000)
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

    def open(self, path: bytes, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.open(_decode(self, path), fi.flags)
        return _guarded("open", lambda: self._file_flags(fip) or 0)

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.create(_decode(self, path), mode, fi.flags)
        return _guarded("create", lambda: self._file_flags(fip) or 0)

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
                    st.st_mode, st.st_nlink, st.st_size, stamp = found
                    st.st_blocks = (found[2] + 511) // 512
                    sec, nsec = divmod(stamp, 1_000_000_000)
                    mtime.tv_sec = ctime.tv_sec = atime.tv_sec = sec
                    mtime.tv_nsec = ctime.tv_nsec = atime.tv_nsec = nsec
                    fill = FUSE_FILL_DIR_PLUS
            if filler(buf, name.encode(encoding, errors), st, index + 1, fill):
                break
        return 0
