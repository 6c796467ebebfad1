"""A mark that says "sessionfs wrote these exact bytes, in canonical form" on a ``meta.json``.

Every ``meta.json`` sessionfs writes is ``serialize_entry(entry)``: exactly
``JSON.stringify(entry, null, 2)`` of the entry it holds. Readers that only need that fact (the
state mount's rendered ``sessions.json`` reuses the bytes as they are) can skip parsing and
re-serialising a file that carries the mark, which is what makes a first rendering of 80 MB of
sessions cheap.

The mark is an extended attribute (``user.sessionfs.canonical``) holding the file's inode, size,
mtime (ns) and CRC-32 as they were right after the write, set on the still-open file before it
is renamed into place. Whatever changes the bytes afterwards changes the mtime (an editor
writing in place), the inode (an editor or ``cp`` writing a new file, even one that copies
extended attributes along), the size or the checksum, so the stamp no longer matches and the
reader checks the bytes the slow way. The CRC catches what the others can miss: an in-place
edit of the same size within the filesystem's timestamp granularity (a few ms on ext4), or
with the mtime set back. Checking it costs about 30 ms per 80 MB, against the ~1 s a parse
and re-serialisation cost. Filesystems without user extended attributes get no mark.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable

__all__ = ["CANONICAL_XATTR", "is_marked", "mark_canonical", "marker", "read_marked"]

CANONICAL_XATTR = "user.sessionfs.canonical"
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _stamp(st: os.stat_result, data: bytes) -> bytes:
    return b"%d:%d:%d:%08x" % (st.st_ino, st.st_size, st.st_mtime_ns, zlib.crc32(data))


def mark_canonical(fd: int, data: bytes) -> None:
    """Mark the file open as ``fd``, to which sessionfs just wrote ``data`` (all of it).

    Best effort: a filesystem without user extended attributes (or a full one) leaves the file
    unmarked, which only costs readers a full check.
    """
    with contextlib.suppress(OSError):
        os.setxattr(fd, CANONICAL_XATTR, _stamp(os.fstat(fd), data))


def marker(data: bytes) -> Callable[[int], None]:
    """What ``atomic_write``/``create_file`` call (``after_write``) to mark a file written
    with ``data``."""
    return lambda fd: mark_canonical(fd, data)


def is_marked(fd: int, st: os.stat_result, data: bytes) -> bool:
    """Whether the open file ``fd``, whose fstat is ``st`` and bytes ``data``, still holds
    the bytes sessionfs marked canonical."""
    try:
        stamp = os.getxattr(fd, CANONICAL_XATTR)
    except OSError:
        return False
    return stamp == _stamp(st, data)


def read_marked(name: str, dir_fd: int) -> tuple[bytes, os.stat_result, bool]:
    """Bytes of ``name`` in an open directory (never through a symlink), their stat, and
    whether they carry a matching mark.

    The stat is taken after the read: a write during the read moves the mtime past the
    stamp, so torn bytes are never reported as marked.

    :raises OSError: as ``open``/``read`` do (ENOENT, ELOOP for a symlink, ...).
    """
    fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    try:
        expected = os.fstat(fd).st_size
        data = os.read(fd, expected + 1)
        if len(data) > expected:  # grew meanwhile: read on to the end (then not marked)
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        st = os.fstat(fd)
        marked = len(data) == st.st_size == expected and is_marked(fd, st, data)
        return data, st, marked
    finally:
        os.close(fd)
