"""Through the kernel: extra (scratch) files are bounded per mount and say they are temporary.

Files other than ``meta.json`` (editor swap and backup files, ``notes.txt``) live in the daemon's
memory until unmount. ``--scratch-max-bytes`` and ``--scratch-max-files`` bound them: a write,
truncate or create beyond either limit fails with ENOSPC, the reason is in
``.sessionfs/errors``, and ``.sessionfs/status`` shows the figures.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.mountutil import ENTRIES, JAMES, MAIN, Mount, make_store_folder

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def status_lines(mount: Mount) -> list[str]:
    return (mount.mp / ".sessionfs" / "status").read_text().splitlines()


def write_until_refused(path: Path, total: int, chunk: int = MIB) -> tuple[int, int | None]:
    """Write ``total`` bytes in ``chunk``s; returns (bytes written, errno that stopped it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written, failure = 0, None
    try:
        while written < total:
            try:
                written += os.write(fd, b"x" * min(chunk, total - written))
            except OSError as exc:
                failure = exc.errno
                break
    finally:
        os.close(fd)
    return written, failure


def test_extra_bytes_are_bounded_and_freed_by_unlink(base: Path) -> None:
    folder = make_store_folder(base, "directory", ENTRIES)
    store_before = sorted(p.name for p in folder.rglob("*"))
    with Mount(folder, base / "mnt", "--scratch-max-bytes", "4M") as mount:
        assert "scratch-files: 0 of 1000" in status_lines(mount)
        assert "scratch-bytes: 0 of 4194304" in status_lines(mount)
        assert ("scratch: files other than meta.json are kept in memory only, gone after "
                "unmount") in status_lines(mount)
        notes = mount.dir(MAIN) / "notes.txt"
        written, failure = write_until_refused(notes, 4 * MIB + MIB)
        assert (written, failure) == (4 * MIB, errno.ENOSPC)
        assert notes.stat().st_size == 4 * MIB
        last = mount.errors().splitlines()[-1]
        assert f"/{mount.dir(MAIN).name}/notes.txt ENOSPC" in last
        assert "--scratch-max-bytes" in last and "kept in memory only" in last
        # a new file fits in no byte, and truncate cannot grow one either
        other = mount.dir(JAMES) / "other.tmp"
        with pytest.raises(OSError) as excinfo:
            other.write_bytes(b"y")
        assert excinfo.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as excinfo:
            os.truncate(other, 10)
        assert excinfo.value.errno == errno.ENOSPC
        assert other.stat().st_size == 0
        assert "scratch-files: 2 of 1000" in status_lines(mount)
        assert f"scratch-bytes: {4 * MIB} of {4 * MIB}" in status_lines(mount)
        # shrinking gives bytes back, unlinking gives everything back
        os.truncate(notes, MIB)
        other.write_bytes(b"z" * 1000)
        assert other.read_bytes() == b"z" * 1000
        notes.unlink()
        assert "scratch-files: 1 of 1000" in status_lines(mount)
        assert "scratch-bytes: 1000 of 4194304" in status_lines(mount)
        written, failure = write_until_refused(mount.dir(MAIN) / "again.txt", 3 * MIB)
        assert (written, failure) == (3 * MIB, None)
        # the store never saw any of it
        assert sorted(p.name for p in folder.rglob("*")) == store_before
        mount.assert_no_internal_errors()


def test_daemon_memory_stays_bounded(base: Path) -> None:
    """60 MiB offered in 2 MiB files with a 4 MiB budget: the daemon keeps about 4 MiB.

    (Written in 128 KiB pieces, the size of one FUSE WRITE: the refused requests' buffers are
    freed but glibc hands heap back only at the periodic ``malloc_trim``.)"""
    folder = make_store_folder(base, "directory", ENTRIES)
    with Mount(folder, base / "mnt", "--scratch-max-bytes", "4M") as mount:
        assert mount.proc is not None
        before = rss_bytes(mount.proc.pid)
        refused = 0
        for number in range(30):
            _written, failure = write_until_refused(mount.dir(MAIN) / f"big{number}.bin",
                                                    2 * MIB, chunk=128 << 10)
            refused += failure == errno.ENOSPC
        assert refused >= 28
        grown = rss_bytes(mount.proc.pid) - before
        assert grown < 24 * MIB, f"daemon RSS grew by {grown / MIB:.1f} MiB"
        mount.assert_no_internal_errors()


def test_extra_file_count_is_bounded(base: Path) -> None:
    folder = make_store_folder(base, "directory", ENTRIES)
    with Mount(folder, base / "mnt", "--scratch-max-files", "3") as mount:
        session = mount.dir(MAIN)
        for name in ("a.txt", ".meta.json.swp", "meta.json~"):
            (session / name).write_bytes(b"1")
        with pytest.raises(OSError) as excinfo:
            (session / "d.txt").write_bytes(b"1")
        assert excinfo.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as excinfo:
            os.symlink("user@host.1:2", session / ".#meta.json")
        assert excinfo.value.errno == errno.ENOSPC
        assert sorted(os.listdir(session)) == [".meta.json.swp", "a.txt", "meta.json",
                                               "meta.json~"]
        last = mount.errors().splitlines()[-1]
        assert "ENOSPC" in last and "--scratch-max-files" in last
        assert "scratch-files: 3 of 3" in status_lines(mount)
        (session / "a.txt").unlink()
        (session / "d.txt").write_bytes(b"2")
        assert (session / "d.txt").read_bytes() == b"2"
        # renaming within the budget needs no room
        os.rename(session / "d.txt", session / "e.txt")
        assert (session / "e.txt").read_bytes() == b"2"
        mount.assert_no_internal_errors()


def test_extra_files_are_gone_after_a_remount(base: Path) -> None:
    """What the README and status say: extra files are memory only."""
    folder = make_store_folder(base, "directory", ENTRIES)
    with Mount(folder, base / "mnt") as mount:
        (mount.dir(MAIN) / "notes.txt").write_text("note\n")
        assert (mount.dir(MAIN) / "notes.txt").read_text() == "note\n"
    with Mount(folder, base / "mnt") as mount:
        assert os.listdir(mount.dir(MAIN)) == ["meta.json"]
