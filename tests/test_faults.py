"""Faults: the mount daemon killed mid-write, a full disk, and store locks left or held by others.

Every test checks the store's bytes (or parsed entries) and the exact errno, never just
"no exception". Temp files: nothing removes an interrupted write's ``*.tmp`` at the next start
(neither the library nor the mount sweeps them); the contract these tests hold the product to
is that ``sessionfs check`` reports every one of them, and that they never hide or replace an
entry.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.errors import LockTimeout
from sessionfs.fs.mount import is_mounted
from sessionfs.lock import read_lock_info
from sessionfs.maintenance import check
from sessionfs.store import locate_store, open_store
from tests import mountutil
from tests.gateway_sim import entry_for
from tests.mountutil import ENTRIES, ROOT, Mount, force_unmount, make_store_folder

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=str(ROOT), check=False)


def temp_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.tmp")}


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``folder``: 'nothing changed' means this."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def write_through_mount(path: Path, data: bytes, *, create: bool = False) -> None:
    """open + write + close, raising the OSError of whichever step failed."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0), 0o600)
    try:
        os.write(fd, data)
    except OSError:
        os.close(fd)
        raise
    os.close(fd)


def errno_of(call: Any) -> int | None:
    try:
        call()
    except OSError as exc:
        return exc.errno
    return None


# =================================================================================================
# 1. SIGKILL of the mount daemon during a stream of writes
# =================================================================================================
KILL_KEYS = [f"agent:main:kill:{i}" for i in range(4)]
KILL_TRIALS = 30  # per layout: 60 kill points in all
PAD = 3000  # bytes per entry: a commit takes long enough to be hit in the middle


def _kill_entries() -> dict[str, dict[str, Any]]:
    entries = {key: dict(value) for key, value in ENTRIES.items()}  # left alone by the writer
    for i, key in enumerate(KILL_KEYS):
        entries[key] = entry_for(f"kill-{i}", 0, counter=0, pad="p" * PAD)
    return entries


def _start_kill_writer(mnt: Path, start: dict[str, int]) -> subprocess.Popen[str]:
    files = {keys.encode(key): [f"kill-{i}", start[key]] for i, key in enumerate(KILL_KEYS)}
    cfg = {"mnt": str(mnt), "pad": PAD, "max_seconds": 20, "files": files}
    return subprocess.Popen([sys.executable, "-m", "tests.gateway_sim", "kill-writer",
                             json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=str(ROOT))


def _wait_ready(writer: subprocess.Popen[str], mount: Mount, timeout: float = 15.0) -> None:
    assert writer.stdout is not None
    ready, _, _ = select.select([writer.stdout], [], [], timeout)
    line = writer.stdout.readline() if ready else ""
    if line.strip() != "ready":
        writer.kill()
        _, err = writer.communicate()
        lock = mount.store_folder / "sessions.json.lock"
        held = f"{lock.read_bytes()!r}, {read_lock_info(lock)}" if lock.exists() else "none"
        raise AssertionError(f"writer never completed a first write: {line!r}\n{err}\n"
                             f"store lock: {held}\n{mount.diagnostics()}")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_sigkill_daemon_during_writes(base: Path, layout: str) -> None:
    """Kill -9 the daemon at random points of a write stream; nothing is torn or lost.

    After each kill: the dead mount answers ENOTCONN, ``sessionfs umount`` clears it, every
    entry the writer touched holds either the last value whose ``close()`` succeeded or the
    one in flight, the others are byte-identical, every leftover ``*.tmp`` is reported by
    ``check`` (nothing else but a stale lock is), and a new mount serves the store, writes
    included (a kill between creating the lock file and writing its payload leaves an empty
    lock that blocks writers for 30 s; see
    ``test_a_process_killed_while_taking_the_lock_does_not_block_writers``).
    """
    entries = _kill_entries()
    folder = make_store_folder(base, layout, entries)
    mp = base / "mnt"
    untouched = {key: open_store(folder).read(key).data for key in ENTRIES}
    rng = random.Random(20260516 + len(layout))
    stats = {"inflight-committed": 0, "inflight-lost": 0, "temp-left": 0, "stale-lock": 0,
             "writes": 0}
    seen_temps: set[Path] = set()
    mount = Mount(folder, mp).start()
    try:
        for trial in range(KILL_TRIALS):
            store = open_store(folder)
            start = {key: store.get(key)["n"] for key in KILL_KEYS}
            writer = _start_kill_writer(mp, start)
            _wait_ready(writer, mount)
            time.sleep(rng.uniform(0.0, 0.12))
            mount.kill(signal.SIGKILL)
            out, err = writer.communicate(timeout=30)
            result = json.loads(out.strip().splitlines()[-1])
            where = f"trial {trial} ({layout}): {result} {err}"
            assert result.get("failure") is not None, where
            assert result["failure"]["errno"] in (errno.ENOTCONN, errno.ECONNABORTED), where
            stats["writes"] += result["ops"]

            # the dead mount: ENOTCONN, and `sessionfs umount` clears it
            assert errno_of(lambda: os.listdir(mp)) == errno.ENOTCONN, where
            done = cli("umount", str(mp))
            assert done.returncode == 0, done.stderr
            assert not is_mounted(mp)

            # every entry: old or new, never torn or missing
            store = open_store(folder)
            assert sorted(store.keys()) == sorted(entries), where
            for i, key in enumerate(KILL_KEYS):
                state = result["state"][keys.encode(key)]
                allowed = {state["confirmed"], state["inflight"]} - {None}
                value = store.get(key)["n"]
                assert value in allowed, f"{key}: {value} not in {allowed}; {where}"
                assert store.get(key) == entry_for(f"kill-{i}", value, counter=value,
                                                   pad="p" * PAD), where
                if state["inflight"] is not None:
                    stats["inflight-committed" if value == state["inflight"]
                          else "inflight-lost"] += 1
            for key, data in untouched.items():
                assert store.read(key).data == data, where
            if layout == "legacy":
                raw = (folder / "sessions.json").read_bytes()
                assert jsonfmt.dumps(jsonfmt.loads(raw)) == raw, where  # openclaw's layout

            # leftovers: every temp file is reported by check, nothing else but a stale lock
            problems = check(locate_store(folder))
            temps = temp_files(folder)
            stats["temp-left"] += len(temps - seen_temps)
            seen_temps |= temps
            reported = {p.path for p in problems if "temp file" in p.kind}
            assert reported == temps, (problems, temps)
            others = [p for p in problems if "temp file" not in p.kind]
            assert all(p.kind == "stale lock" for p in others), others
            stats["stale-lock"] += bool(others)

            # a new mount serves the store (and is the next trial's mount)
            mount = Mount(folder, mp).start()
            for key in entries:
                assert json.loads(mount.meta(key).read_bytes()) == store.get(key), where

        # the last mount writes (reclaiming any stale lock) and the CLI reports the leftovers
        key = KILL_KEYS[0]
        value = open_store(folder).get(key)["n"] + 1
        new = entry_for("kill-0", value, counter=value, pad="p" * PAD)
        mount.meta(key).write_bytes(jsonfmt.dumps(new))
        assert open_store(folder).get(key) == new
        assert not (folder / "sessions.json.lock").exists()
        report = cli("check", str(folder))
        temps = temp_files(folder)
        assert report.returncode == (1 if temps else 0), report
        for path in temps:
            assert str(path) in report.stdout, report.stdout
    finally:
        mount.stop()
    print(f"\nsigkill {layout}: {KILL_TRIALS} kills, {json.dumps(stats)}")
    assert stats["writes"] >= KILL_TRIALS


# =================================================================================================
# 2. A full disk
# =================================================================================================
PAGE = 4096
BIG_LABEL = "x" * 10_000  # an entry of ~10 KB: its temp file needs three pages
NEW, NEW2 = "agent:main:brand:new", "agent:main:brand:new2"


@pytest.fixture
def small_fs(base: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at ``base/fs`` (root only); unmounted in teardown."""
    folder = base / "fs"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(folder)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"cannot mount a tmpfs (root needed): {done.stderr}"
    try:
        yield folder
    finally:
        force_unmount(base / "mnt")  # the FUSE mount first: it works on files in the tmpfs
        for command in (["umount", str(folder)], ["umount", "-l", str(folder)]):
            if subprocess.run(command, capture_output=True, check=False).returncode == 0:
                break


def fill(folder: Path, leave_pages: int) -> Path:
    """Fill the filesystem completely, then give back ``leave_pages`` pages."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 16)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == PAGE:
                    break
                chunk = chunk[: len(chunk) // 2] if len(chunk) > PAGE else chunk
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, size - leave_pages * PAGE)
    return filler


@pytest.mark.parametrize("leave_pages", [0, 2], ids=["full", "two-pages-left"])
@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_full_disk(base: Path, small_fs: Path, layout: str, leave_pages: int) -> None:
    """ENOSPC reaches the writer (library: OSError ENOSPC; mount: close() fails with ENOSPC),
    the store keeps every byte, no temp or lock file is left, and writes work once space is
    freed. With two pages left the lock file fits and the temp file fails half-written."""
    main = mountutil.MAIN
    folder = make_store_folder(small_fs, layout, ENTRIES)
    mp = base / "mnt"
    with Mount(folder, mp) as mount:
        filler = fill(small_fs, leave_pages)
        before = tree(folder)
        store = open_store(folder)
        big = dict(ENTRIES[main], label=BIG_LABEL)
        big_new = dict(big, sessionId="big-new")  # a new session needs a sessionId of its own

        steps = {
            "library put, existing session": lambda: store.put(main, big),
            "mount write, existing session":
                lambda: write_through_mount(mount.meta(main), jsonfmt.dumps(big)),
            "mount write, new session": lambda: write_through_mount(
                mount.meta(NEW2), jsonfmt.dumps(dict(big, sessionId="big-new2")), create=True),
            "library put, new session": lambda: store.put(NEW, big_new),
        }
        os.mkdir(mount.dir(NEW2))  # the mount keeps a new, empty directory in memory only
        for step, call in steps.items():
            try:
                call()
            except OSError as exc:  # library: a plain OSError; mount: close() fails
                assert exc.errno == errno.ENOSPC, f"{step}: {exc!r}"
            else:
                raise AssertionError(f"{step}: no error on a full disk")
            if step.startswith("mount"):
                time.sleep(0.3)  # the kernel's RELEASE retries the commit: still no space
            assert tree(folder) == before, f"{step} changed the store"
            assert temp_files(small_fs) == set(), step
            assert not (folder / "sessions.json.lock").exists(), step
        assert json.loads(mount.meta(main).read_bytes()) == ENTRIES[main]

        # space again: both writers succeed
        filler.unlink()
        assert tree(folder) == before, "a failed write was committed once space came back"
        store.put(NEW, big_new)
        assert open_store(folder).get(NEW) == big_new
        write_through_mount(mount.meta(main), jsonfmt.dumps(big))
        assert open_store(folder).get(main) == big
        assert json.loads(mount.meta(main).read_bytes()) == big
        assert temp_files(small_fs) == set()
        assert check(locate_store(folder)) == []


def test_full_disk_cli_put_fails_with_one_line(base: Path, small_fs: Path) -> None:
    """The CLI's contract (README): every error is one line on stderr, exit 1."""
    folder = make_store_folder(small_fs, "legacy", ENTRIES)
    fill(small_fs, 0)
    before = tree(folder)
    entry = dict(ENTRIES[mountutil.MAIN], label=BIG_LABEL)
    done = subprocess.run([sys.executable, "-m", "sessionfs", "put", str(folder),
                           mountutil.MAIN, "-"], input=json.dumps(entry), capture_output=True,
                          text=True, env=ENV, cwd=str(ROOT), timeout=60, check=False)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sessionfs: error: "), done.stderr
    assert "No space left on device" in lines[0], lines[0]
    assert tree(folder) == before


# =================================================================================================
# 3. Store locks: stale ones are reclaimed, live ones waited for and then reported
# =================================================================================================
HOLDER = """
import sys, time
from sessionfs.lock import StoreLock
lock = StoreLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
print("released", flush=True)
sys.stdin.read()  # until killed (or the test's end closes the pipe)
"""


@contextlib.contextmanager
def lock_holder(folder: Path, hold: float = 600.0) -> Iterator[subprocess.Popen[str]]:
    """A process holding the store's ``sessions.json.lock`` for ``hold`` seconds."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / "sessions.json.lock"),
                               str(hold)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=ENV, cwd=str(ROOT))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def _put(writer: str, folder: Path, mount: Mount | None, key: str, entry: dict[str, Any],
         lock_timeout: float = 10.0) -> None:
    if writer == "library":
        open_store(folder, lock_timeout=lock_timeout).put(key, entry)
    elif writer == "cli":
        done = subprocess.run([sys.executable, "-m", "sessionfs", "put", str(folder), key, "-",
                               "--lock-timeout", str(lock_timeout)], input=json.dumps(entry),
                              capture_output=True, text=True, env=ENV, cwd=str(ROOT),
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    else:
        assert mount is not None
        write_through_mount(mount.meta(key), jsonfmt.dumps(entry))


WRITERS = ["library", "cli", "mount"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_stale_lock_of_a_killed_process_is_reclaimed(base: Path, layout: str,
                                                     writer: str) -> None:
    folder = make_store_folder(base, layout, ENTRIES)
    lock = folder / "sessions.json.lock"
    with lock_holder(folder) as holder:
        holder.kill()  # SIGKILL: no chance to remove the lock file
        holder.wait()
    info = read_lock_info(lock)
    assert info is not None and info.pid == holder.pid and info.stale, info
    assert info.age_seconds < 30  # stale because the pid is dead, not because it is old
    entry = dict(ENTRIES[mountutil.MAIN], label="after a crash")
    mount = Mount(folder, base / "mnt").start() if writer == "mount" else None
    try:
        started = time.monotonic()
        _put(writer, folder, mount, mountutil.MAIN, entry)
        assert time.monotonic() - started < 5  # reclaimed at once, not after a timeout
    finally:
        if mount is not None:
            mount.stop()
    assert open_store(folder).get(mountutil.MAIN) == entry
    assert not lock.exists()
    assert check(locate_store(folder)) == []


DIES_TAKING_THE_LOCK = """
import os, signal, sys
from sessionfs.lock import StoreLock
os.write = lambda fd, data: os.kill(os.getpid(), signal.SIGKILL)  # dies writing the payload
StoreLock(sys.argv[1]).acquire()
os.kill(os.getpid(), signal.SIGKILL)  # (a payload written some other way: die holding it)
"""


def test_a_process_killed_while_taking_the_lock_does_not_block_writers(base: Path) -> None:
    """SIGKILL between creating ``sessions.json.lock`` and writing its payload.

    The random kills of ``test_sigkill_daemon_during_writes`` hit this window about once in
    60 kills (a busy daemon can lose the GIL between ``open`` and ``write``). An empty lock
    file is judged by its mtime, so it blocks every writer, the gateway included, for 30 s:
    the mount's next commit fails with EBUSY. sessionfs cannot change how openclaw judges an
    empty lock, but it can avoid ever leaving one (publish the lock file with its payload
    already in it, e.g. write a temp file and ``link(2)`` it to the lock name).
    """
    folder = make_store_folder(base, "legacy", ENTRIES)
    lock = folder / "sessions.json.lock"
    child = subprocess.run([sys.executable, "-c", DIES_TAKING_THE_LOCK, str(lock)], env=ENV,
                           cwd=str(ROOT), capture_output=True, text=True, timeout=60,
                           check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    entry = dict(ENTRIES[mountutil.MAIN], label="after a crash while locking")
    started = time.monotonic()
    open_store(folder, lock_timeout=3.0).put(mountutil.MAIN, entry)
    assert time.monotonic() - started < 3.0
    assert open_store(folder).get(mountutil.MAIN) == entry
    assert not lock.exists()


@pytest.mark.parametrize("writer", WRITERS)
def test_live_lock_is_waited_for(base: Path, writer: str) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    mount = Mount(folder, base / "mnt").start() if writer == "mount" else None
    entry = dict(ENTRIES[mountutil.MAIN], label="after the gateway")
    try:
        with lock_holder(folder, hold=1.5) as holder:
            started = time.monotonic()
            _put(writer, folder, mount, mountutil.MAIN, entry)
            waited = time.monotonic() - started
            assert holder.stdout is not None and holder.stdout.readline().strip() == "released"
    finally:
        if mount is not None:
            mount.stop()
    assert waited >= 1.0, waited  # it did wait for the holder
    assert open_store(folder).get(mountutil.MAIN) == entry
    assert not (folder / "sessions.json.lock").exists()


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_live_lock_times_out_naming_the_holder(base: Path, layout: str) -> None:
    """Library: LockTimeout (EBUSY) with the holder's pid; CLI: exit 1, one line with the pid."""
    folder = make_store_folder(base, layout, ENTRIES)
    before = tree(folder)
    entry = dict(ENTRIES[mountutil.MAIN], label="never written")
    with lock_holder(folder) as holder:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as excinfo:
            open_store(folder, lock_timeout=1.0).put(mountutil.MAIN, entry)
        assert time.monotonic() - started >= 1.0
        assert excinfo.value.holder_pid == holder.pid
        assert excinfo.value.errno == errno.EBUSY
        assert f"pid {holder.pid}" in str(excinfo.value)
        done = subprocess.run([sys.executable, "-m", "sessionfs", "put", str(folder),
                               mountutil.MAIN, "-", "--lock-timeout", "1"],
                              input=json.dumps(entry), capture_output=True, text=True, env=ENV,
                              cwd=str(ROOT), timeout=60, check=False)
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0], done.stderr
        assert lines[0].startswith("sessionfs: error: ")
        current = tree(folder)
        assert current.pop("sessions.json.lock") is not None
        assert current == before


def test_live_lock_through_the_mount_fails_with_ebusy(base: Path) -> None:
    """The mount maps LockTimeout to EBUSY: close() fails after the mount's lock timeout (10 s,
    ``sessionfs mount`` has no option to change it); the write is not committed later either.
    Both layouts run side by side to pay the 10 s once."""
    folders = {layout: make_store_folder(base / layout, layout, ENTRIES)
               for layout in ("legacy", "directory")}
    entry = dict(ENTRIES[mountutil.MAIN], label="never written")
    results: dict[str, tuple[int | None, float]] = {}
    mounts = {layout: Mount(folder, base / layout / "mnt") for layout, folder in folders.items()}
    try:
        for mount in mounts.values():
            mount.start()
        with contextlib.ExitStack() as stack:
            holders = {layout: stack.enter_context(lock_holder(folder))
                       for layout, folder in folders.items()}
            before = {layout: tree(folder) for layout, folder in folders.items()}

            def attempt(layout: str) -> None:
                started = time.monotonic()
                code = errno_of(lambda: write_through_mount(mounts[layout].meta(mountutil.MAIN),
                                                            jsonfmt.dumps(entry)))
                results[layout] = (code, time.monotonic() - started)

            threads = [threading.Thread(target=attempt, args=(layout,)) for layout in folders]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            for layout, mount in mounts.items():
                assert results[layout][0] == errno.EBUSY, (layout, results, mount.log())
                assert results[layout][1] >= 5, results
                assert "EBUSY" in mount.errors() and f"pid {holders[layout].pid}" in mount.errors()
                assert tree(folders[layout]) == before[layout]
        # the holders are gone (killed: their locks are stale now); nothing is retried later
        time.sleep(1.0)
        for layout, folder in folders.items():
            assert open_store(folder).get(mountutil.MAIN) == ENTRIES[mountutil.MAIN], layout
            assert json.loads(mounts[layout].meta(mountutil.MAIN).read_bytes()) == \
                ENTRIES[mountutil.MAIN]
    finally:
        for mount in mounts.values():
            mount.stop()
