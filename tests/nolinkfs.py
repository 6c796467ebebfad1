"""A passthrough FUSE filesystem without hard links, as some network and FUSE filesystems are.

``python -m tests.nolinkfs BACKING MOUNTPOINT`` serves BACKING at MOUNTPOINT in the foreground;
``link(2)`` there fails with EPERM (what vfat answers), everything else the lock and the stores
use passes through, ``O_EXCL`` included. Unmount with ``fusermount3 -u MOUNTPOINT``.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import mfusepy


class NoLinkFS(mfusepy.Operations):
    use_ns = True

    def __init__(self, backing: str) -> None:
        self.backing = backing

    def _path(self, path: str) -> str:
        return self.backing + path

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._path(path))
        return {key: getattr(st, key) for key in (
            "st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size",
            "st_atime_ns", "st_mtime_ns", "st_ctime_ns")} | {
            "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._path(path))

    def link(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._path(target))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._path(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._path(old), self._path(new))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode, follow_symlinks=False)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._path(path), uid, gid, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._path(path), ns=times, follow_symlinks=False)
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._path(path), length)
        return 0

    def open(self, path: str, flags: int) -> int:
        return os.open(self._path(path), flags | os.O_NOFOLLOW)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY | os.O_CREAT) -> int:
        return os.open(self._path(path), flags | os.O_CREAT | os.O_NOFOLLOW, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        os.fsync(fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._path(path))
        return {key: getattr(sv, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    mfusepy.FUSE(NoLinkFS(os.path.realpath(backing)), mountpoint, foreground=True,
                 nothreads=False, attr_timeout=0.0, entry_timeout=0.0, negative_timeout=0.0)


if __name__ == "__main__":
    main()
