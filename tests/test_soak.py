"""The soak: one minute of mixed mount + library traffic on both layouts, then a full check.

Also the deterministic form of what the soak's reader thread checks: a reader that opened
``meta.json`` before a save never sees a torn entry, whatever stats the file meanwhile.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import jsonfmt
from sessionfs.fs.namespace import UNLINK_GRACE
from tests import mountutil
from tests.mountutil import ENTRIES, MAIN, ROOT, Mount, make_store_folder, wait_for

SOAK = ROOT / "scripts" / "soak.py"


def test_soak_one_minute_both_layouts(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(SOAK), "--minutes", "1", "--layout", "both",
                             "--json", str(report)], capture_output=True, text=True,
                            timeout=240, cwd=str(ROOT), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    data = json.loads(report.read_text())
    assert data["ok"] is True
    summary = result.stdout.strip().splitlines()[-1]
    assert summary == data["summary"] and summary.endswith(": OK"), summary
    assert [r["layout"] for r in data["results"]] == ["legacy", "directory"]
    for layout in data["results"]:
        assert layout["errors"] == 0 and layout["final_check"] == [], layout["error_samples"]
        assert layout["daemon_alive"]
        detail = layout["ops_detail"]
        # the workload really ran, through both doors, with every kind of operation
        for side in ("mount", "library"):
            for op in ("read", "write", "create", "delete", "rename", "list"):
                assert detail.get(f"{side}:{op}", 0) >= 10, (side, op, detail)
        assert layout["ops"] >= 2000
        assert layout["rss_growth_kib"] < data["rss_bound_mb"] * 1024
    print(summary)


@pytest.fixture(params=["legacy", "directory"])
def mount(request: pytest.FixtureRequest) -> Iterator[Mount]:
    base = mountutil.scratch_root()
    folder = make_store_folder(base, request.param, ENTRIES)
    with Mount(folder, base / "mnt") as mounted:
        yield mounted
    mountutil.force_unmount(base / "mnt")
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.mark.parametrize("refresh", ["stat", "fstat", "none"])
def test_reader_open_across_a_save_is_never_torn(mount: Mount, refresh: str) -> None:
    """open() for reading, another process saves a shorter entry, ``ls -l`` (or the reader's
    own fstat, as ``cat`` and Python do) refreshes the size, then the reader reads: it must get
    the whole entry it opened (or the whole new one), never a cut-off mix."""
    path = mount.meta(MAIN)
    old = path.read_bytes()
    new = {"sessionId": "short", "updatedAt": 1}
    os.stat(path)  # as any `ls -l` would have: the kernel knows the size
    reader = os.open(path, os.O_RDONLY)
    try:
        writer = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.write(writer, json.dumps(new).encode())
        os.close(writer)
        if refresh == "stat":
            os.stat(path)
        elif refresh == "fstat":
            os.fstat(reader)
        got = b""
        while chunk := os.read(reader, 65536):
            got += chunk
    finally:
        os.close(reader)
    assert got in (old, json.dumps(new).encode(), jsonfmt.dumps(new)), (
        f"reader got {len(got)} bytes: {got[-40:]!r}")
    assert mount.store().get(MAIN) == new


def test_readers_racing_truncating_saves_read_whole_entries(mount: Mount) -> None:
    """What the soak's reader met as an empty ``meta.json`` of a stored session: a reader
    served through the page cache while another process saves with ``open(..., "wb")`` (the
    kernel sets the size to 0 at that open, on its own) read 0 bytes. Readers keep reading
    while a save comes every 1.3 s (each reader would otherwise be old enough for the page
    cache): every read is a whole entry."""
    path = mount.meta(MAIN)
    entry = json.loads(path.read_bytes())
    stop = threading.Event()
    bad: list[bytes] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            reads[0] += 1
            try:
                json.loads(data)
            except ValueError:
                bad.append(data[:60])

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for number in range(5):
            time.sleep(1.3)
            with open(path, "wb") as stream:  # O_TRUNC, then the bytes
                stream.write(json.dumps(dict(entry, label="v" * (number + 1))).encode())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert reads[0] > 100
    assert not bad, f"{len(bad)} of {reads[0]} reads were not whole entries: {bad[:3]}"
    assert mount.store().get(MAIN)["label"] == "vvvvv"


def test_fstat_of_an_open_entry_deleted_through_the_mount(mount: Mount) -> None:
    """What the soak's reader met as ``cat: Stale file handle``: a file open while its session
    is deleted through the mount. Reading it still works; fstat (which ``open()`` in Python and
    ``cat`` both do) must not fail with ESTALE either (POSIX: it succeeds; libfuse documents
    ENOENT for hard_remove)."""
    fd = os.open(mount.meta(MAIN), os.O_RDONLY)
    try:
        os.unlink(mount.meta(MAIN))
        assert os.read(fd, 1 << 20) == jsonfmt.dumps(ENTRIES[MAIN])
        try:
            os.fstat(fd)
        except OSError as exc:
            assert exc.errno == errno.ENOENT, f"fstat: {exc}"
    finally:
        os.close(fd)
    # the store follows within UNLINK_GRACE (an unlink + create in that window is a save)
    assert wait_for(lambda: MAIN not in mount.store().keys(), UNLINK_GRACE + 1)
