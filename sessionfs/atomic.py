"""Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync the directory.

A reader of the target always sees either the old bytes or the new ones, never a mix, and a
crash leaves at most a ``*.tmp`` file that ``check`` reports and the next start may clean.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import uuid
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "atomic_write", "fsync_dir", "make_dir", "pid_alive",
           "remove_orphan_temps", "sync_filesystem", "temp_name", "write_all"]

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


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
            write_all(fd, data)
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


#: ``<name>.<pid>.<uuid>.tmp``: ours, openclaw's store temps and the lock's staging file.
_TEMP_NAME = re.compile(r".+\.(\d+)\.[0-9a-fA-F-]{32,36}\.tmp")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of those temp names (errors name the store instead)."""
    return _TEMP_NAME.fullmatch(name) is not None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (EPERM: it does, owned by someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(directory: Path, *, prefix: str = "") -> list[Path]:
    """Delete temp files in ``directory`` whose writing process is gone; returns them.

    A live pid (even a reused one) keeps its file: removing a temp file another process is
    still writing would make its rename fail.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match is None or not name.startswith(prefix) or pid_alive(int(match.group(1))):
            continue
        path = directory / name
        if path.is_symlink() or path.is_file():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed
