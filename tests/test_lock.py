"""sessionfs.lock with real files and real processes: openclaw's ``sessions.json.lock`` protocol."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import lock as lockmod
from sessionfs.errors import LockTimeout
from sessionfs.lock import (
    LOCK_NAME,
    StoreLock,
    install_signal_handlers,
    iso_timestamp,
    lock_path_for,
    lock_payload,
    process_starttime,
    read_lock_info,
)
from tests.mountharness import wait_for

REPO = Path(__file__).resolve().parents[1]
OLD = 31.0  # seconds: past the 30 s staleness limit

HOLDER = """
import sys, time
from sessionfs.lock import StoreLock, install_signal_handlers
install_signal_handlers()
lock = StoreLock(sys.argv[1])
if sys.argv[2] == "with":
    with lock:
        print("ready", flush=True)
        sys.stdin.read()  # held until killed (or the test's end closes the pipe)
else:
    lock.acquire()
    print("ready", flush=True)
    sys.stdin.read()
"""

COUNTER = """
import sys, time
from pathlib import Path
from sessionfs.lock import StoreLock
lock = StoreLock(sys.argv[1], timeout=30)
counter = Path(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(100):
    with lock:
        n = int(counter.read_text())
        time.sleep(0.0002)
        counter.write_text(str(n + 1))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _spawn(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """Run CODE; its stdin is a pipe the test holds (children wait on it to be killed)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin is None else stdin, text=True,
                            env=_env())


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "child did not report ready"
    assert proc.stdout.readline().strip() == "ready"


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def _write_lock(path: Path, pid: int, created_at: str, starttime: int | None) -> None:
    path.write_bytes(lock_payload(pid, created_at, starttime))


def _dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def _live_other_pid() -> int:
    pid = os.getppid()
    assert pid != os.getpid()
    assert process_starttime(pid) is not None
    return pid


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _acquire_timed(path: Path, timeout: float) -> float:
    lock = StoreLock(path, timeout=timeout)
    t0 = time.monotonic()
    lock.acquire()
    try:
        elapsed = time.monotonic() - t0
        assert json.loads(path.read_bytes())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not path.exists()
    return elapsed


def _expect_timeout(path: Path, timeout: float) -> LockTimeout:
    t0 = time.monotonic()
    with pytest.raises(LockTimeout) as excinfo:
        StoreLock(path, timeout=timeout).acquire()
    elapsed = time.monotonic() - t0
    assert timeout <= elapsed < timeout + 1.0
    return excinfo.value


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / LOCK_NAME


# --- payload and file ---------------------------------------------------------------------


def test_payload_bytes_equal_node_json_stringify(lock_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    with StoreLock(lock_path):
        data = lock_path.read_bytes()
    record = json.loads(data)
    assert list(record) == ["pid", "createdAt", "starttime"]
    assert record["pid"] == os.getpid()
    assert record["starttime"] == process_starttime(os.getpid())
    # Node rebuilds the record from the three values, parsing createdAt as a Date and printing it
    # back, so both the layout and the timestamp format must match byte for byte.
    script = (
        "const [pid, createdAt, starttime] = process.argv.slice(1);"
        "process.stdout.write(JSON.stringify({pid: Number(pid),"
        " createdAt: new Date(createdAt).toISOString(), starttime: Number(starttime)}, null, 2))"
    )
    node_bytes = subprocess.run(
        [node, "-e", script, str(record["pid"]), record["createdAt"], str(record["starttime"])],
        capture_output=True, check=True).stdout
    assert data == node_bytes
    assert not data.endswith(b"\n")

    # The timestamp formatter on edge values (milliseconds with leading zeros, truncation).
    stamps = [0.0, 1.005, 1767225600.5, 1767225600.9999, 1799999999.042]
    node_iso = subprocess.run(
        [node, "-e", "for (const s of process.argv.slice(1))"
                     " console.log(new Date(Math.floor(Number(s) * 1000)).toISOString())",
         *map(repr, stamps)], capture_output=True, text=True, check=True).stdout.split()
    assert [iso_timestamp(s) for s in stamps] == node_iso
    # No starttime (off Linux): the key is left out, as JavaScript leaves out undefined.
    node_bytes = subprocess.run(
        [node, "-e", "process.stdout.write(JSON.stringify({pid: 7, createdAt: 'x',"
                     " starttime: undefined}, null, 2))"], capture_output=True, check=True).stdout
    assert lock_payload(7, "x", None) == node_bytes


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o777])
def test_lock_file_mode_is_0600_whatever_the_umask(lock_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with StoreLock(lock_path):
            assert stat.S_IMODE(os.lstat(lock_path).st_mode) == 0o600
    finally:
        os.umask(old)


def test_lock_path_for_uses_the_real_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert lock_path_for(tmp_path / "alias") == real.resolve() / "sessions.json.lock"


def test_process_starttime_reads_field_22_past_a_tricky_command_name() -> None:
    # The child renames itself so that its command name holds ") (" and spaces.
    child = _spawn("import sys; open('/proc/self/comm', 'w').write('a) (b c');"
                   "print('ready', flush=True); sys.stdin.read()")
    try:
        _wait_ready(child)
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "a) (b c"
        start = process_starttime(child.pid)
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        assert start is not None
        assert abs(start / os.sysconf("SC_CLK_TCK") - uptime) < 10  # just started
        assert process_starttime(child.pid) == start
    finally:
        _kill(child)
    assert process_starttime(child.pid) is None


# --- contention and staleness -------------------------------------------------------------


def test_live_holder_process_makes_us_time_out_then_sigkill_is_reclaimed(lock_path: Path) -> None:
    child = _spawn(HOLDER, str(lock_path), "with")
    try:
        _wait_ready(child)
        err = _expect_timeout(lock_path, 0.5)
        assert err.holder_pid == child.pid
        assert f"pid {child.pid}" in str(err)
        info = read_lock_info(lock_path)
        assert info is not None and info.pid == child.pid and not info.stale
        # SIGKILL cannot be handled: the file stays, and the dead-pid rule reclaims it (even
        # while the child is an unreaped zombie).
        child.kill()
        assert _acquire_timed(lock_path, 5.0) < 1.0
    finally:
        _kill(child)


def test_lock_of_a_dead_pid_is_reclaimed_at_once(lock_path: Path) -> None:
    pid = _dead_pid()
    _write_lock(lock_path, pid, iso_timestamp(), 12345)
    info = read_lock_info(lock_path)
    assert info is not None and info.stale and "not running" in info.reason
    assert _acquire_timed(lock_path, 5.0) < 0.5


def test_starttime_mismatch_is_reclaimed_and_a_match_is_respected(lock_path: Path) -> None:
    pid = _live_other_pid()
    start = process_starttime(pid)
    assert start is not None
    _write_lock(lock_path, pid, iso_timestamp(), start)
    assert _expect_timeout(lock_path, 0.3).holder_pid == pid
    _write_lock(lock_path, pid, iso_timestamp(), start + 12345)
    info = read_lock_info(lock_path)
    assert info is not None and info.stale and "reused" in info.reason
    assert _acquire_timed(lock_path, 5.0) < 0.5


@pytest.mark.parametrize(("age", "stale"), [(OLD, True), (25.0, False)])
def test_created_at_age_decides_for_a_live_pid(lock_path: Path, age: float, stale: bool) -> None:
    pid = _live_other_pid()
    _write_lock(lock_path, pid, iso_timestamp(time.time() - age), process_starttime(pid))
    payload = lock_path.read_bytes()
    info = read_lock_info(lock_path)
    assert info is not None and info.stale is stale
    assert info.age_seconds == pytest.approx(age, abs=1)
    if stale:
        assert _acquire_timed(lock_path, 5.0) < 0.5
    else:
        assert _expect_timeout(lock_path, 0.3).holder_pid == pid
        assert lock_path.read_bytes() == payload


@pytest.mark.parametrize("payload", [b"", b'{"pid": 12', b'{"pid": 1}', b"\xff\xfe"])
def test_unusable_payload_is_judged_by_mtime(lock_path: Path, payload: bytes) -> None:
    lock_path.write_bytes(payload)
    err = _expect_timeout(lock_path, 0.3)  # fresh: maybe a holder between open and write
    assert err.holder_pid in (None, 1)
    assert lock_path.read_bytes() == payload
    _age(lock_path, OLD)
    info = read_lock_info(lock_path)
    assert info is not None and info.stale and info.created_at is None
    assert _acquire_timed(lock_path, 5.0) < 0.5


def test_lock_naming_our_pid_that_we_do_not_hold_is_orphaned(lock_path: Path) -> None:
    _write_lock(lock_path, os.getpid(), iso_timestamp(), process_starttime(os.getpid()))
    info = read_lock_info(lock_path)
    assert info is not None and info.stale and "does not hold" in info.reason
    assert _acquire_timed(lock_path, 5.0) < 0.5
    with StoreLock(lock_path):  # ...but one we do hold is not
        info = read_lock_info(lock_path)
        assert info is not None and not info.stale


def test_stale_lock_replaced_before_unlink_is_not_removed(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_lock(lock_path, _dead_pid(), iso_timestamp(), 1)
    pid = _live_other_pid()
    fresh = lock_payload(pid, iso_timestamp(), process_starttime(pid))
    calls = []

    def replace(path: Path) -> None:
        # Another process reclaims the stale lock and takes a fresh one in the meantime. The new
        # file is renamed into place, so it is a different inode than the one judged stale.
        calls.append(path)
        tmp = path.with_name("fresh.tmp")
        tmp.write_bytes(fresh)
        os.rename(tmp, path)

    monkeypatch.setattr(lockmod, "_pre_unlink_hook", replace)
    err = _expect_timeout(lock_path, 0.3)
    assert calls == [lock_path]
    assert err.holder_pid == pid
    assert lock_path.read_bytes() == fresh


def test_stale_empty_lock_written_to_before_unlink_is_not_removed(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same inode, but its slow writer finally wrote the payload: not the file that was judged.
    lock_path.write_bytes(b"")
    _age(lock_path, OLD)
    pid = _live_other_pid()
    fresh = lock_payload(pid, iso_timestamp(), process_starttime(pid))
    monkeypatch.setattr(lockmod, "_pre_unlink_hook", lambda path: path.write_bytes(fresh))
    assert _expect_timeout(lock_path, 0.3).holder_pid == pid
    assert lock_path.read_bytes() == fresh


# --- in-process behaviour -----------------------------------------------------------------


def test_reentrant_in_one_thread_across_instances(tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(tmp_path)
    outer = StoreLock(tmp_path / LOCK_NAME)
    inner = StoreLock(tmp_path / "alias" / LOCK_NAME, timeout=0)
    assert not outer.held
    with outer:
        ino = os.lstat(outer.path).st_ino
        with inner, outer:
            assert inner.held and outer.held
            assert os.lstat(outer.path).st_ino == ino
        assert outer.held and os.lstat(outer.path).st_ino == ino
    assert not outer.held
    assert not outer.path.exists()
    with pytest.raises(RuntimeError):
        outer.release()


def test_two_threads_exclude_each_other(lock_path: Path) -> None:
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with StoreLock(lock_path):
            holding.set()
            done.wait(10)
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        other = StoreLock(lock_path, timeout=0.3)
        assert not other.held
        err = _expect_timeout(lock_path, 0.3)
        assert err.holder_pid == os.getpid()
        with pytest.raises(RuntimeError):
            other.release()  # not ours to release
        done.set()
        t0 = time.monotonic()
        with StoreLock(lock_path, timeout=5):  # waits for the other thread, then gets it
            assert time.monotonic() - t0 > 0.2
    finally:
        done.set()
        thread.join()

    total = [0]

    def bump() -> None:
        lock = StoreLock(lock_path, timeout=30)
        for _ in range(200):
            with lock:
                n = total[0]
                time.sleep(0)
                total[0] = n + 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert total[0] == 800
    assert not lock_path.exists()


def _count_together(folder: Path, processes: int, timeout: float) -> str:
    """``processes`` children each add 100 to one counter file under the lock, started
    together; returns the counter's final text (and checks the lock is gone)."""
    lock_path = folder / LOCK_NAME
    counter = folder / "counter"
    counter.write_text("0")
    children = [_spawn(COUNTER, str(lock_path), str(counter), stdin=subprocess.PIPE)
                for _ in range(processes)]
    try:
        for child in children:
            _wait_ready(child)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            assert child.wait(timeout) == 0
    finally:
        for child in children:
            _kill(child)
    assert not lock_path.exists()
    return counter.read_text()


def test_four_processes_hundred_increments_each_lose_nothing(tmp_path: Path) -> None:
    assert _count_together(tmp_path, 4, 45) == "400"


def test_forked_child_holds_none_of_its_parents_locks(lock_path: Path) -> None:
    with StoreLock(lock_path):
        pid = os.fork()
        if pid == 0:  # child: must see the parent as a live holder, and leave its file alone
            code = 1
            try:
                lock = StoreLock(lock_path, timeout=0.2)
                assert not lock.held
                try:
                    lock.acquire()
                except LockTimeout as err:
                    code = 0 if err.holder_pid == os.getppid() else 2
                lockmod._release_all_at_exit()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(lock_path.read_bytes())["pid"] == os.getpid()
    assert not lock_path.exists()


# --- release on exceptions and signals ----------------------------------------------------


def test_released_after_an_exception(lock_path: Path) -> None:
    lock = StoreLock(lock_path)
    with pytest.raises(ValueError), lock:
        assert lock_path.exists()
        raise ValueError("boom")
    assert not lock_path.exists()
    assert not lock.held
    assert _acquire_timed(lock_path, 0) < 0.5


@pytest.mark.parametrize("mode", ["with", "bare"])  # finally block / atexit hook
def test_released_when_the_holder_gets_sigterm(lock_path: Path, mode: str) -> None:
    child = _spawn(HOLDER, str(lock_path), mode)
    try:
        _wait_ready(child)
        assert json.loads(lock_path.read_bytes())["pid"] == child.pid
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 128 + signal.SIGTERM
    finally:
        _kill(child)
    assert not lock_path.exists()


def test_install_signal_handlers_leaves_custom_dispositions_alone() -> None:
    signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    saved = {s: signal.getsignal(s) for s in signals}
    try:
        for s in signals:
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert install_signal_handlers() == [signal.SIGTERM, signal.SIGQUIT]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        with pytest.raises(SystemExit) as excinfo:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert excinfo.value.code == 128 + signal.SIGTERM
        assert install_signal_handlers() == []  # idempotent
        for s in signals:
            signal.signal(s, signal.SIG_DFL)
        result: list[list[int]] = []
        thread = threading.Thread(target=lambda: result.append(install_signal_handlers()))
        thread.start()
        thread.join()
        assert result == [[]]  # not the main thread: nothing installed, nothing raised
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# --- symlinks -----------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True])
def test_symlink_at_the_lock_path_is_never_followed(tmp_path: Path, dangling: bool) -> None:
    lock_path = tmp_path / LOCK_NAME
    target = tmp_path / "precious"
    if not dangling:
        target.write_bytes(b"keep me")
    lock_path.symlink_to(target)

    _expect_timeout(lock_path, 0.3)  # a fresh symlink counts as a held, unreadable lock
    info = read_lock_info(lock_path)
    assert info is not None and not info.stale and "not a regular file" in info.reason
    _age(lock_path, OLD)
    with StoreLock(lock_path, timeout=5):
        assert not lock_path.is_symlink()
        assert stat.S_ISREG(os.lstat(lock_path).st_mode)
    if dangling:
        assert not target.exists()
    else:
        assert target.read_bytes() == b"keep me"


# -- a filesystem without hard links (tests/nolinkfs.py: link(2) answers EPERM, as vfat does) --
@pytest.fixture(scope="module")
def nolinks() -> Iterator[Path]:
    """A FUSE passthrough mount without hard links (this kernel has no vfat to loop-mount)."""
    base = Path(tempfile.mkdtemp(prefix="sessionfs-nolinks-", dir="/var/tmp"))
    backing, mountpoint = base / "backing", base / "mnt"
    backing.mkdir()
    mountpoint.mkdir()
    with open(base / "daemon.log", "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "tests.nolinkfs", str(backing),
                                   str(mountpoint)], env=_env(), cwd=str(REPO),
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        mounted = wait_for(lambda: os.path.ismount(mountpoint) or daemon.poll() is not None, 20)
        assert daemon.poll() is None, (base / "daemon.log").read_text()
        assert mounted, "nolinkfs did not mount"
        probe = mountpoint / "probe"
        probe.write_bytes(b"x")
        with pytest.raises(OSError) as excinfo:
            os.link(probe, mountpoint / "probe-link")
        assert excinfo.value.errno == errno.EPERM  # the point: no hard links here
        probe.unlink()
        yield mountpoint
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False, capture_output=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(10)
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nolinks_folder(nolinks: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = nolinks / request.node.name
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_writes_succeed_without_hard_links(nolinks_folder: Path) -> None:
    from sessionfs.demo import write_legacy_store
    from sessionfs.store import open_store

    lock_path = nolinks_folder / LOCK_NAME
    with StoreLock(lock_path) as held:
        info = read_lock_info(lock_path)
        assert info is not None and info.pid == os.getpid() and not info.stale
        assert held.held
    assert not lock_path.exists()
    write_legacy_store(nolinks_folder, {"agent:main:main": {"sessionId": "a", "updatedAt": 1}})
    store = open_store(nolinks_folder)
    assert store.put("agent:main:new", {"sessionId": "b", "updatedAt": 2})
    assert open_store(nolinks_folder).get("agent:main:new") == {"sessionId": "b", "updatedAt": 2}
    assert sorted(p.name for p in nolinks_folder.iterdir()) == ["sessions.json"]  # no leftovers


def test_stale_lock_is_reclaimed_without_hard_links(nolinks_folder: Path) -> None:
    lock_path = nolinks_folder / LOCK_NAME
    _write_lock(lock_path, _dead_pid(), iso_timestamp(), None)
    assert _acquire_timed(lock_path, 5.0) < 1.0
    # an empty lock is one being written: respected while fresh, reclaimed once old
    lock_path.write_bytes(b"")
    _expect_timeout(lock_path, 0.3)
    assert lock_path.exists() and lock_path.read_bytes() == b""
    _age(lock_path, OLD)
    assert _acquire_timed(lock_path, 5.0) < 1.0


def test_a_half_written_lock_counts_as_being_written(nolinks_folder: Path) -> None:
    lock_path = nolinks_folder / LOCK_NAME
    lock_path.write_bytes(lock_payload(os.getppid(), iso_timestamp(), None)[:9])  # '{\n  "pid"'
    info = read_lock_info(lock_path)
    assert info is not None and not info.stale and "may still be being written" in info.reason
    _expect_timeout(lock_path, 0.3)


def test_processes_exclude_each_other_without_hard_links(nolinks_folder: Path) -> None:
    assert _count_together(nolinks_folder, 3, 90) == "300"
