"""Through the kernel: what inotify sees on a mount (as the README says).

inotify reports what passes through this machine's VFS: writes made through the mount produce
events; changes the gateway (or any writer of the store) makes behind it produce none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from pathlib import Path

from sessionfs import jsonfmt
from tests.mountutil import ENTRIES, MAIN, Mount, make_store_folder

IN_MODIFY, IN_CLOSE_WRITE, IN_CREATE = 0x2, 0x8, 0x100
IN_NONBLOCK = os.O_NONBLOCK
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def watch(path: Path) -> int:
    fd = _libc.inotify_init1(IN_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    wd = _libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE)
    assert wd >= 0, os.strerror(ctypes.get_errno())
    return fd


def events(fd: int, timeout: float) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    while select.select([fd], [], [], timeout)[0]:
        data = os.read(fd, 65536)
        offset = 0
        while offset < len(data):
            _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
            found.append((mask, name))
            offset += 16 + length
        timeout = 0.2
    return found


def test_inotify_sees_writes_through_the_mount_not_behind_it(base: Path) -> None:
    folder = make_store_folder(base, "directory", ENTRIES)
    with Mount(folder, base / "mnt") as mount:
        fd = watch(mount.dir(MAIN))
        try:
            mount.meta(MAIN).write_bytes(jsonfmt.dumps(dict(ENTRIES[MAIN], label="mounted")))
            seen = events(fd, 2.0)
            assert any(mask & IN_MODIFY and name == "meta.json" for mask, name in seen), seen
            assert any(mask & IN_CLOSE_WRITE and name == "meta.json" for mask, name in seen)
            mount.store().put(MAIN, dict(ENTRIES[MAIN], label="gateway"))  # behind the mount
            assert events(fd, 1.5) == []
            assert b'"gateway"' in mount.meta(MAIN).read_bytes()  # yet a new read sees it
        finally:
            os.close(fd)
