"""Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync the directory.

A reader of the target always sees either the old bytes or the new ones, never a mix, and a
crash leaves at most a ``*.tmp`` file that ``check`` reports and the next start may clean.

This module is also the one home of who owns what sessionfs writes. Root (or any process that
may) writing someone else's store must not lock its owner out of it, so:

* a file that replaces another keeps that file's owner, group and permission bits;
* a new file or folder takes the owner and group of the folder it is created in (and so, down
  the tree, of the store folder), mode 0600 (files) or 0700 (folders) whatever the umask.

Ownership is only changed when it differs and the process may change it (root; or an owner
moving a file to one of its own groups). A process that may not is never failed for it: it
cannot give files away anyway, and where the filesystem decides ownership itself (vfat, NFS
with root squashing) the write goes ahead as the filesystem has it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from sessionfs.processes import process_alive

__all__ = ["DIR_MODE", "FILE_MODE", "TEMP_SUFFIX", "Owner", "adopt_owner", "atomic_write",
           "create_file", "folder_owner", "fsync_dir", "is_stray_temp", "is_temp_name",
           "make_dir", "remove_orphan_temps", "set_mode", "sync_filesystem",
           "temp_name", "write_all"]

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700

#: ``(uid, gid)`` a written file or folder should end up with.
Owner = tuple[int, int]

#: chown/chmod refusals that mean "not allowed here", never a reason to fail a write.
_CHOWN_REFUSED = {errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EROFS}


def folder_owner(directory: Path) -> Owner:
    """The owner and group that files and folders created inside ``directory`` take."""
    st = os.stat(directory)
    return st.st_uid, st.st_gid


def set_mode(target: int | Path, mode: int) -> None:
    """chmod an open file (descriptor) or a folder; a filesystem that decides modes itself
    (vfat without ``quiet`` answers EPERM) keeps its own, since the write matters more."""
    try:
        if isinstance(target, int):
            os.fchmod(target, mode)
        else:
            os.chmod(target, mode)
    except OSError as exc:
        if exc.errno not in _CHOWN_REFUSED:
            raise
        log.debug("cannot set mode %o on %s: %s", mode,
                  target if not isinstance(target, int) else f"fd {target}", exc.strerror)


def adopt_owner(target: int | Path, owner: Owner) -> None:
    """Give an open file (descriptor) or a path (never followed) the owner ``owner``.

    Only what differs is changed, the user only by root; a refusal is logged, never raised.
    """
    st = os.fstat(target) if isinstance(target, int) else os.lstat(target)
    uid = owner[0] if owner[0] != st.st_uid and os.geteuid() == 0 else -1
    gid = owner[1] if owner[1] != st.st_gid else -1
    if uid == -1 and gid == -1:
        return
    try:
        if isinstance(target, int):
            os.fchown(target, uid, gid)
        else:
            os.chown(target, uid, gid, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _CHOWN_REFUSED:
            raise
        level = logging.WARNING if os.geteuid() == 0 and uid != -1 else logging.DEBUG
        log.log(level, "cannot give %s to uid %d gid %d: %s",
                target if not isinstance(target, int) else f"fd {target}", owner[0], owner[1],
                exc.strerror)


# -- the one home of temp-file naming: how a temp name is made and how one is recognised -------
TEMP_SUFFIX = ".tmp"


def temp_name(target: Path) -> Path:
    """``<target>.<pid>.<uuid>.tmp``: openclaw's own naming, so its orphan cleanup knows ours
    (and :func:`remove_orphan_temps` knows theirs and the lock's staging file)."""
    return target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4()}{TEMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(directory: Path, owner: Owner | None = None) -> bool:
    """Create ``directory`` with mode 0700 whatever the umask, owned by ``owner`` (default: the
    owner of the folder it is made in); an existing one is left as it is.

    :returns: whether it was created.
    """
    try:
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:
        return False
    adopt_owner(directory, owner if owner is not None else folder_owner(directory.parent))
    set_mode(directory, DIR_MODE)
    return True


def create_file(path: Path, data: bytes, owner: Owner, *,
                after_write: Callable[[int], None] | None = None) -> None:
    """Create ``path`` (which must not exist) with ``data``, mode 0600, owned by ``owner``.

    No temp file and no fsync: for private staging folders that are synced and verified whole
    before anyone reads them.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        adopt_owner(fd, owner)
        set_mode(fd, FILE_MODE)
        write_all(fd, data)
        if after_write is not None:
            after_write(fd)
    finally:
        os.close(fd)


# -- the one home of the write loop ------------------------------------------------------------
def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replaced_owner_and_mode(target: Path) -> tuple[Owner, int]:
    """What a file written to ``target`` should have: the owner, group and permission bits of
    the regular file it replaces, or the folder's owner and mode 0600 for a new file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return (st.st_uid, st.st_gid), stat.S_IMODE(st.st_mode) & 0o777
    return folder_owner(target.parent), FILE_MODE


def atomic_write(target: Path, data: bytes, *, durable: bool = True,
                 after_write: Callable[[int], None] | None = None) -> None:
    """Replace ``target`` with ``data`` atomically.

    The file keeps the owner, group and permission bits of the file it replaces; a new file
    takes its folder's owner and group and mode 0600 (see the module docstring).

    :param durable: fsync the file and the directory (off only for bulk writes that sync the
        whole filesystem once afterwards, such as migration staging).
    :param after_write: called with the temp file's descriptor once ``data`` is written,
        before the rename (e.g. :func:`sessionfs.store.canonical.mark_canonical`).
    :raises OSError: whatever the filesystem says (ENOSPC, EACCES, ...); the temp file is
        removed and ``target`` is untouched.
    """
    owner, mode = _replaced_owner_and_mode(target)
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        try:
            adopt_owner(fd, owner)
            set_mode(fd, mode)  # after the chown, which may clear mode bits
            write_all(fd, data)
            if after_write is not None:
                after_write(fd)
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


def is_stray_temp(name: str) -> bool:
    """Whether a file name has the temp suffix at all: what ``check`` reports as left by an
    interrupted write (any writer's, not only names :func:`is_temp_name` knows)."""
    return name.endswith(TEMP_SUFFIX)


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
        if match is None or not name.startswith(prefix) or process_alive(int(match.group(1))):
            continue
        path = directory / name
        if path.is_symlink() or path.is_file():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed
