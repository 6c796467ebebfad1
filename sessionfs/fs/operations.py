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

The ctypes glue that patches mfusepy itself (flags it drops, READDIRPLUS, thread states,
``fuse_invalidate_path``) lives in :mod:`sessionfs.fs.fuse_glue`, which drives this adapter;
these two are the only modules that import mfusepy.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy prefers libfuse2 otherwise

import mfusepy

from sessionfs.errors import SessionfsError
from sessionfs.fs.viewapi import MountedView

__all__ = ["SessionOperations", "errno_boundary", "to_oserror"]

log = logging.getLogger("sessionfs.fs")

_QUIET_ERRNOS = frozenset({errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR,
                           errno.ENOTDIR, errno.EINVAL, errno.EFBIG, errno.EROFS, errno.EPERM,
                           errno.EACCES, errno.ENOTSUP, errno.ENODATA, errno.EBADF})

F = TypeVar("F", bound=Callable[..., Any])


def to_oserror(name: str, exc: BaseException) -> OSError:
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
            raise to_oserror(method.__name__, exc) from exc

    return cast(F, boundary)


overrides = mfusepy.overrides(mfusepy.Operations)


def _caller() -> tuple[int, int]:
    """``(uid, pid)`` of the process making the current FUSE call."""
    uid, _gid, pid = mfusepy.fuse_get_context()
    return int(uid), int(pid)


class SessionOperations(mfusepy.Operations):
    """One method per FUSE callback, each a single call of the view (either mount's, see
    :class:`sessionfs.fs.viewapi.MountedView`)."""

    use_ns = True

    def __init__(self, view: MountedView, *, on_init: Callable[[], None] | None = None) -> None:
        self.view = view
        self._on_init = on_init
        # who is calling: writes through the Gateway are the mounting user's (or root's) only
        view.caller = _caller

    # -- lifecycle -------------------------------------------------------------------------------
    @overrides
    @errno_boundary
    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        if config_3 is not None:
            config_3.nullpath_ok = 1  # handle callbacks work on unlinked open files too
        # (view.invalidate is bound to the mount by fuse_glue.SessionFUSE before this runs)
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

    @errno_boundary
    def stat(self, path: str | None, fh: int | None = None) -> tuple[int, ...]:
        """:meth:`getattr` as ``(mode, nlink, size, mtime_ns)`` (plus ``uid, gid`` from a view
        whose owner differs by path), for the glue's hot path."""
        return self.view.stat(path, fh)

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
