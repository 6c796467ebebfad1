"""What the FUSE adapter needs of a mounted tree: :class:`MountedView`, the one interface both
views satisfy (:class:`sessionfs.fs.view.SessionView` over one store,
:class:`sessionfs.fs.state_view.StateView` over a state directory), so the adapter
(:mod:`sessionfs.fs.operations`), the glue (:mod:`sessionfs.fs.fuse_glue`) and the serve loop
(:func:`sessionfs.fs.mount.serve_view`) are written once, against this and nothing else.

Also the directory handles every view shares (:class:`DirectoryHandles`): the listing is taken
once, at ``opendir``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, Protocol

from sessionfs.fs.handles import Handle, HandleTable
from sessionfs.fs.paths import fail

__all__ = ["DirHandle", "DirectoryHandles", "MountedView"]


class DirHandle(Handle):
    """An open directory: the listing taken at ``opendir``, served by offset."""

    def __init__(self, path: str, entries: list[tuple[str, int]]) -> None:
        self.path = path
        self.entries = entries


class DirectoryHandles:
    """opendir / readdir / releasedir, the same for every view: the listing is taken once, at
    ``opendir``, from the view's own :meth:`listdir`, and kept in its handle table."""

    handles: HandleTable

    def listdir(self, path: str) -> list[tuple[str, int]]:
        raise NotImplementedError

    def opendir(self, path: str) -> int:
        return self.handles.add(DirHandle(path, self.listdir(path)))

    def dir_entries(self, fh: int) -> DirHandle:
        handle = self.handles.get(fh)
        if not isinstance(handle, DirHandle):
            fail(errno.EBADF)
        return handle

    def releasedir(self, fh: int) -> None:
        self.handles.pop(fh)


class MountedView(Protocol):
    """A mounted tree, as the adapter drives it: every method may raise OSError or
    SessionfsError (whose ``errno`` the adapter answers); paths are the mount's, ``/``-rooted.

    ``stat``/``entry_stat`` answer ``(mode, nlink, size, mtime_ns[, uid, gid])``: the owner is
    the view's :attr:`uid`/:attr:`gid` unless the tuple says otherwise."""

    handles: HandleTable

    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...

    #: Set by the adapter: ``(uid, pid)`` of the process making the current call.
    caller: Callable[[], tuple[int, int]] | None
    #: Set by the glue once mounted: drop the kernel's cached attributes and pages of a path.
    invalidate: Callable[[str], None] | None

    # -- attributes
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]: ...
    def stat(self, path: str | None, fh: int | None = None) -> tuple[int, ...]: ...
    def entry_stat(self, directory: str, name: str) -> tuple[int, ...] | None: ...
    def accept_attribute_change(self, path: str | None) -> None: ...
    def accept_metadata_change(self, path: str | None) -> None: ...
    def statfs(self) -> dict[str, int]: ...

    # -- directories
    def opendir(self, path: str) -> int: ...
    def dir_entries(self, fh: int) -> DirHandle: ...
    def releasedir(self, fh: int) -> None: ...

    # -- files
    def open(self, path: str, flags: int) -> int: ...
    def create(self, path: str, flags: int) -> int: ...
    def read(self, fh: int, size: int, offset: int) -> bytes: ...
    def write(self, fh: int, data: bytes, offset: int) -> int: ...
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None: ...
    def flush(self, fh: int) -> None: ...
    def fsync(self, fh: int) -> None: ...
    def release(self, fh: int) -> None: ...

    # -- names
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def rename(self, old: str, new: str, flags: int = 0) -> None: ...
    def symlink(self, path: str, target: str) -> None: ...
    def readlink(self, path: str) -> str: ...

    # -- deletes of open files, settled before each callback (see SessionView.settle)
    @property
    def has_dooms(self) -> bool: ...
    def settle(self, *, exempt: str | None = None, everything: bool = False) -> None: ...
