"""Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync the directory.

A reader of the target always sees either the old bytes or the new ones, never a mix, and a
crash leaves at most a ``*.tmp`` file that ``check`` reports and the next start may clean.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import uuid
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "atomic_write", "fsync_dir", "make_dir", "sync_filesystem",
           "temp_name"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def temp_name(target: Path) -> Path:
    """``<target>.<pid>.<uuid>.tmp``: openclaw's own naming, so its orphan cleanup knows ours."""
    return target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4()}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(directory: Path) -> None:
    """Create ``directory`` with mode 0700 whatever the umask; an existing one is fine."""
    try:
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(directory, DIR_MODE)


def atomic_write(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``target`` with ``data`` atomically; the file ends up mode 0600.

    :param durable: fsync the file and the directory (off only for bulk writes that sync the
        whole filesystem once afterwards, such as migration staging).
    :raises OSError: whatever the filesystem says (ENOSPC, EACCES, ...); the temp file is
        removed and ``target`` is untouched.
    """
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(target.parent)


def sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding ``path`` (syncfs): one sync for many freshly written files.

    Falls back to a global sync where syncfs is unavailable.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
