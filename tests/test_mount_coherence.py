"""Other writers change the store behind the mount: new opens see it, nobody sees a torn entry."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from sessionfs import jsonfmt
from sessionfs.store import open_store
from tests.mountutil import ENTRIES, JAMES, MAIN, Mount, wait_for

TIMEOUT = 1.0  # the default --timeout


def test_changes_behind_the_mount_are_visible_within_the_timeout(mnt: Mount) -> None:
    other = open_store(mnt.store_folder)
    assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    os.stat(mnt.meta(JAMES))  # cached by the kernel now
    changed = dict(ENTRIES[MAIN], label="changed by the gateway", inputTokens=123456)
    other.put(MAIN, changed)
    other.put("agent:main:brand:new", {"sessionId": "n", "updatedAt": 1})
    other.delete(JAMES)
    start = time.monotonic()
    assert wait_for(lambda: mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(changed), 2 * TIMEOUT)
    assert wait_for(lambda: os.stat(mnt.meta(MAIN)).st_size == len(jsonfmt.dumps(changed)),
                    2 * TIMEOUT)
    assert wait_for(lambda: "agent--main--brand--new" in os.listdir(mnt.mp), 2 * TIMEOUT)
    assert wait_for(lambda: not mnt.meta(JAMES).exists(), 2 * TIMEOUT)
    assert time.monotonic() - start < 1.5 * TIMEOUT + 0.5


def test_an_open_after_a_lookup_reads_the_entry_as_it_is_now(mnt: Mount) -> None:
    """A LOOKUP reads a settled entry for its attributes and keeps the bytes for the open
    that follows; a change in between (same size, new inode) must not be served stale."""
    # every entry settled (changed longer ago than the probe's 0.1 s): the LOOKUP keeps what
    # it reads
    newest = max(p.stat().st_mtime_ns for p in [mnt.store_folder, *mnt.store_folder.rglob("*")])
    assert wait_for(lambda: time.time_ns() - newest > 200_000_000)
    os.stat(mnt.meta(JAMES))  # LOOKUP of the folder and of meta.json: the entry was read
    before = jsonfmt.dumps(ENTRIES[JAMES])
    label = dict(ENTRIES[JAMES], label="x" * 8)
    changed = jsonfmt.dumps(label)
    open_store(mnt.store_folder).put(JAMES, label)  # behind the mount
    assert mnt.meta(JAMES).read_bytes() == changed
    assert mnt.meta(JAMES).read_bytes() != before


def test_two_mounts_of_one_store(store_folder: Path) -> None:
    with Mount(store_folder, store_folder.parent / "a") as first, \
            Mount(store_folder, store_folder.parent / "b") as second:
        second.meta(MAIN).read_bytes()
        edited = dict(ENTRIES[MAIN], thinkingLevel="from-a")
        first.meta(MAIN).write_bytes(jsonfmt.dumps(edited))
        assert wait_for(lambda: json.loads(second.meta(MAIN).read_bytes()) == edited, 2)


def test_readers_never_see_a_torn_entry(mnt: Mount) -> None:
    small = dict(ENTRIES[MAIN], label="small")
    large = dict(ENTRIES[MAIN], label="large " + "x" * 300_000)
    accepted = (jsonfmt.dumps(small), jsonfmt.dumps(large), jsonfmt.dumps(ENTRIES[MAIN]))
    stop = threading.Event()

    def churn() -> None:
        other = open_store(mnt.store_folder)
        while not stop.is_set():
            other.put(MAIN, large)
            other.put(MAIN, small)

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    bad = []
    try:
        deadline = time.monotonic() + 3
        reads = 0
        while time.monotonic() < deadline:
            data = mnt.meta(MAIN).read_bytes()
            reads += 1
            if data not in accepted:
                bad.append(len(data))
            os.stat(mnt.meta(MAIN))  # keep the kernel's cached size moving too
    finally:
        stop.set()
        writer.join(10)
    assert reads > 20
    assert bad == []
