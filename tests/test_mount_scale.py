"""Many sessions through the kernel: listings are complete, attributes right, nothing quadratic."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import keys
from sessionfs.demo import generate_entries
from tests.mountutil import Mount, force_unmount, make_store_folder, scratch_root

COUNT = 5_000


@pytest.fixture(scope="module", params=["legacy", "directory"])
def big(request: pytest.FixtureRequest) -> Iterator[tuple[Mount, dict[str, dict[str, object]]]]:
    base = scratch_root()
    entries = generate_entries(COUNT, seed=11)
    folder = make_store_folder(base, request.param, entries)
    mount = Mount(folder, base / "mnt").start()
    try:
        yield mount, entries
    finally:
        mount.stop()
        force_unmount(base / "mnt")
        subprocess.run(["rm", "-rf", str(base)], check=False)
    mount.assert_no_internal_errors()


def test_ls_lists_every_session(big: tuple[Mount, dict[str, dict[str, object]]]) -> None:
    mount, entries = big
    names = set(os.listdir(mount.mp))
    assert names == {".sessionfs"} | {keys.encode(key) for key in entries}


def test_ls_l_gives_every_session_its_activity_time(
        big: tuple[Mount, dict[str, dict[str, object]]]) -> None:
    mount, entries = big
    for _ in range(2):  # cold, then warm
        start = time.monotonic()
        result = subprocess.run(["ls", "-l", "--time-style=+%s", str(mount.mp)],
                                capture_output=True, text=True, check=True)
        elapsed = time.monotonic() - start
        lines = [line for line in result.stdout.splitlines() if line.startswith("d")]
        assert len(lines) == COUNT
        assert elapsed < 15, f"ls -l of {COUNT} sessions took {elapsed:.1f}s"
    by_name = {keys.encode(key): entry for key, entry in entries.items()}
    for line in lines[::97]:
        fields = line.split()
        name, seconds = fields[-1], int(fields[-2])
        assert seconds == int(by_name[name]["updatedAt"]) // 1000  # type: ignore[call-overload]


def test_sorted_by_activity(big: tuple[Mount, dict[str, dict[str, object]]]) -> None:
    mount, entries = big
    newest = max(entries, key=lambda key: entries[key]["updatedAt"])  # type: ignore[arg-type,return-value]
    result = subprocess.run(["ls", "-t", str(mount.mp)], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split()[0] == keys.encode(newest)


def test_reading_every_entry(big: tuple[Mount, dict[str, dict[str, object]]]) -> None:
    mount, entries = big
    store = mount.store()
    for key in list(entries)[::50]:
        assert (mount.mp / keys.encode(key) / "meta.json").read_bytes() == store.read(key).data
    assert Path(mount.mp / ".sessionfs" / "status").read_text().count(f"sessions: {COUNT}") == 1


def _minor_faults(pid: int) -> int:
    """Minor page faults of the whole process so far (/proc/PID/stat field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


def test_requests_do_not_map_memory(big: tuple[Mount, dict[str, dict[str, object]]]) -> None:
    """Each libfuse worker keeps its Python thread state: without that, ctypes builds and
    tears down a thread state (a fresh 16 KiB mapping, faulted in) around every request."""
    mount, entries = big
    assert mount.proc is not None
    names = [keys.encode(key) for key in list(entries)[:1000]]

    def read_all() -> None:
        for name in names:
            fd = os.open(mount.mp / name / "meta.json", os.O_RDONLY)
            try:
                while os.read(fd, 65536):
                    pass
            finally:
                os.close(fd)

    read_all()  # every worker thread has served requests; caches warm
    before = _minor_faults(mount.proc.pid)
    read_all()  # ~5 requests per file (LOOKUPs, OPEN, READs, RELEASE)
    faults = _minor_faults(mount.proc.pid) - before
    assert faults < len(names), f"{faults} page faults for {len(names)} files"
