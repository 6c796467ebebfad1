"""Mounting and unmounting for real: daemon mode, pre-checks, signals, dead daemons, read-only."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.fs.mount import is_mounted
from tests.mountutil import (
    ENTRIES,
    MAIN,
    ROOT,
    Mount,
    _mountinfo,
    force_unmount,
    make_store_folder,
    wait_for,
)


def cli(*argv: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], capture_output=True,
                          text=True, timeout=timeout, env=environment, cwd=str(ROOT), check=False)


def daemon_pid(mountpoint: Path) -> int:
    status = (mountpoint / ".sessionfs" / "status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("pid: "))[5:])


def test_daemon_mode_returns_once_the_mount_is_live(store_folder: Path) -> None:
    mountpoint = store_folder.parent / "mnt"
    mountpoint.mkdir()
    try:
        result = cli("mount", str(store_folder), str(mountpoint))
        assert result.returncode == 0, result.stderr
        assert is_mounted(mountpoint)  # no waiting: live when the command returns
        assert len(os.listdir(mountpoint)) == len(ENTRIES) + 1
        pid = daemon_pid(mountpoint)
        assert pid != os.getpid()
        result = cli("umount", str(mountpoint))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(mountpoint)
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)
    finally:
        force_unmount(mountpoint)


@pytest.mark.parametrize("case", ["missing", "not-empty", "mounted", "no-store", "bad-store",
                                  "no-libfuse", "bad-log"])
def test_mount_refuses_with_one_clear_line(base: Path, case: str) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    env = None
    expected = {"missing": "does not exist", "not-empty": "is not empty",
                "mounted": "already mounted", "no-store": "no session store",
                "bad-store": "not valid JSON", "no-libfuse": "apt install fuse3",
                "bad-log": "cannot write the log"}[case]
    store_arg = str(folder)
    other = None
    extra: list[str] = []
    if case == "missing":
        mountpoint.rmdir()
    elif case == "not-empty":
        (mountpoint / "file").write_text("x")
    elif case == "mounted":
        other = Mount(folder, mountpoint).start()
    elif case == "no-store":
        store_arg = str(base / "elsewhere")
    elif case == "bad-store":
        (folder / "sessions.json").write_text('{"agent:main:main": {broken')
    elif case == "no-libfuse":
        env = {"FUSE_LIBRARY_NAME": "no-such-fuse-library"}
    elif case == "bad-log":
        extra = ["--log", str(base / "no-such-folder" / "sessionfs.log")]
    try:
        result = cli("mount", store_arg, str(mountpoint), *extra, env=env)
    finally:
        if other is not None:
            other.stop()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sessionfs: error: ") and expected in lines[0], lines[0]
    assert not is_mounted(mountpoint) or case == "mounted"


def test_daemon_logs_rejected_writes_to_the_log_file(store_folder: Path) -> None:
    """In the background the daemon's stderr is gone; ``--log`` keeps what ``-f`` prints."""
    mountpoint = store_folder.parent / "mnt"
    mountpoint.mkdir()
    log_file = store_folder.parent / "daemon.log"
    try:
        result = cli("mount", str(store_folder), str(mountpoint), "--log",
                     os.path.relpath(log_file, ROOT))  # relative to the caller, not to "/"
        assert result.returncode == 0, result.stderr
        target = mountpoint / keys.encode(MAIN) / "meta.json"
        before = target.read_bytes()
        with pytest.raises(OSError) as excinfo:
            target.write_bytes(b'{"sessionId": 5}')
        assert excinfo.value.errno == errno.EINVAL
        assert target.read_bytes() == before
        assert wait_for(lambda: log_file.exists() and "rejected write" in log_file.read_text(), 5)
        line = next(line for line in log_file.read_text().splitlines() if "rejected" in line)
        assert f"/{keys.encode(MAIN)}/meta.json" in line and "EINVAL" in line, line
        assert log_file.stat().st_mode & 0o777 == 0o600  # it names sessions
        log_file.rename(log_file.with_suffix(".1"))  # logrotate: the next line starts a new file
        with pytest.raises(OSError):
            target.write_bytes(b"[]")
        assert wait_for(lambda: log_file.exists() and "rejected write" in log_file.read_text(), 5)
    finally:
        force_unmount(mountpoint)


def test_no_dev_fuse_is_reported(base: Path) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.fail("needs unshare and root to hide /dev/fuse in a private mount namespace")
    folder = make_store_folder(base, "legacy", ENTRIES)
    (base / "mnt").mkdir()
    script = (f"mount -t tmpfs tmpfs /dev && cd {ROOT} && PYTHONPATH={ROOT} "
              f"{sys.executable} -m sessionfs mount {folder} {base / 'mnt'}")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result
    assert "no /dev/fuse" in result.stderr


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly(store_folder: Path, signo: int) -> None:
    mount = Mount(store_folder, store_folder.parent / "mnt").start()
    try:
        mount.kill(signo)
        assert mount.proc is not None and mount.proc.returncode == 0, mount.diagnostics()
        assert not is_mounted(mount.mp)
    finally:
        mount.stop()


def test_killed_daemon_then_umount_and_remount(store_folder: Path) -> None:
    mount = Mount(store_folder, store_folder.parent / "mnt").start()
    try:
        mount.kill(signal.SIGKILL)
        with pytest.raises(OSError) as excinfo:
            os.listdir(mount.mp)
        assert excinfo.value.errno == errno.ENOTCONN
        # with and without a STORE (one argument: the default store, which is not even there)
        for argv in (["mount", str(store_folder), str(mount.mp)], ["mount", str(mount.mp)]):
            result = cli(*argv, env={"HOME": str(store_folder.parent / "home")})
            assert result.returncode == 1
            assert result.stderr.splitlines() == [
                f"sessionfs: error: {mount.mp} is still mounted by a daemon that is gone "
                f"(transport endpoint is not connected): run sessionfs umount {mount.mp}"]
        result = cli("ls", str(mount.mp / "sessions.json"))  # any command: the same advice
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"sessionfs: error: {mount.mp}/sessions.json: Transport endpoint is not connected: "
            f"the mount at {mount.mp} lost its daemon; run sessionfs umount {mount.mp}"]
        result = cli("umount", str(mount.mp))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(mount.mp)
        again = Mount(store_folder, mount.mp).start()
        try:
            assert mount.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
        finally:
            again.stop()
    finally:
        mount.stop()


def test_umount_of_something_not_mounted_fails(base: Path) -> None:
    result = cli("umount", str(base))
    assert result.returncode == 1
    assert "is not mounted" in result.stderr


def store_snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def assert_every_write_fails_with_erofs(mount: Mount) -> None:
    folder = mount.dir(MAIN)
    attempts = [
        lambda: mount.meta(MAIN).write_text("{}"),
        lambda: open(mount.meta(MAIN), "r+b").close(),
        lambda: os.truncate(mount.meta(MAIN), 0),
        lambda: os.unlink(mount.meta(MAIN)),
        lambda: os.mkdir(mount.mp / "agent--main--new"),
        lambda: os.rename(folder, mount.mp / "agent--main--new"),
        lambda: (folder / "scratch").write_text("x"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as excinfo:
            attempt()
        assert excinfo.value.errno == errno.EROFS


def test_read_only_mount(store_folder: Path) -> None:
    before = store_snapshot(store_folder)
    with Mount(store_folder, store_folder.parent / "mnt", "--read-only") as mount:
        assert mount.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
        assert_every_write_fails_with_erofs(mount)
        status = (mount.mp / ".sessionfs" / "status").read_text()
        assert "read-only: yes (" in status
    assert store_snapshot(store_folder) == before


def test_a_read_only_mount_lists_its_files_read_only(store_folder: Path) -> None:
    """``ls -l`` shows what a write will meet: -r-------- in a read-only mount (issue 14.16),
    -rw------- where meta.json can be saved."""
    with Mount(store_folder, store_folder.parent / "mnt", "--read-only") as mount:
        listing = subprocess.run(["ls", "-l", str(mount.dir(MAIN))], capture_output=True,
                                 text=True, check=True).stdout
        assert [line.split()[0] for line in listing.splitlines()[1:]] == ["-r--------"]
        assert os.stat(mount.meta(MAIN)).st_mode & 0o777 == 0o400
        assert os.stat(mount.dir(MAIN)).st_mode & 0o777 == 0o700
        with pytest.raises(OSError) as excinfo:  # the kernel's ro still answers first
            os.open(mount.meta(MAIN), os.O_WRONLY)
        assert excinfo.value.errno == errno.EROFS
    with Mount(store_folder, store_folder.parent / "mnt") as mount:
        assert os.stat(mount.meta(MAIN)).st_mode & 0o777 == 0o600


def test_store_the_library_opens_read_only(store_folder: Path) -> None:
    sqlite = store_folder.parent / "agent" / "openclaw-agent.sqlite"
    sqlite.parent.mkdir()
    sqlite.write_bytes(b"SQLite format 3\0")
    before = store_snapshot(store_folder)
    with Mount(store_folder, store_folder.parent / "mnt") as mount:
        assert_every_write_fails_with_erofs(mount)
        status = (mount.mp / ".sessionfs" / "status").read_text()
        assert "read-only: yes (openclaw has imported this store into SQLite" in status
    assert store_snapshot(store_folder) == before


def test_migrate_then_serve_as_directory_store(base: Path) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    with Mount(folder, base / "mnt", "--migrate") as mount:
        assert (folder / "sessions.d").is_dir()
        assert "layout: directory" in (mount.mp / ".sessionfs" / "status").read_text()
        mount.meta(MAIN).write_bytes(jsonfmt.dumps(dict(ENTRIES[MAIN], thinkingLevel="x")))
        assert mount.store().layout == "directory"
        assert mount.store().get(MAIN)["thinkingLevel"] == "x"


def test_worker_thread_options_sessionfs_manages_are_refused(store_folder: Path) -> None:
    """Idle libfuse workers must not exit (each keeps a Python thread state): a usage error,
    before anything is mounted."""
    mountpoint = store_folder.parent / "mnt"
    mountpoint.mkdir()
    result = cli("mount", str(store_folder), str(mountpoint), "-o", "ro,max_idle_threads=0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sessionfs: error: -o max_idle_threads: sessionfs keeps libfuse's worker threads "
        "for the life of the mount"]
    assert not is_mounted(mountpoint)


# -- errors that tell the fix ------------------------------------------------------------------
def test_already_mounted_hint_is_shell_quoted(base: Path) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    mountpoint = base / "my mount's dir"
    with Mount(folder, mountpoint):
        result = cli("mount", str(folder), str(mountpoint))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"sessionfs: error: {mountpoint} is already mounted (unmount it first: "
        f"sessionfs umount '{base}/my mount'\"'\"'s dir')"]


@pytest.mark.parametrize("mode,group,hint", [
    (0o600, "root", "/dev/fuse is crw------- root:root: as root, chmod 0666 /dev/fuse "
                    "(Debian's default)"),
    (0o660, "users", "/dev/fuse is crw-rw---- root:users: join group users (as root: "
                     "usermod -aG users nobody, then log in again)"),
])
def test_dev_fuse_without_access_says_what_is_missing(base: Path, mode: int, group: str,
                                                      hint: str) -> None:
    """An ordinary user who may not open /dev/fuse (libfuse3 opens it in the caller's process)
    is told which permission or group is missing. A private /dev holds a copy of the node."""
    folder = make_store_folder(base, "legacy", ENTRIES)
    (base / "mnt").mkdir()
    subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)
    base.chmod(0o755)
    script = (f"mount -t tmpfs tmpfs /dev && mknod -m {mode:o} /dev/fuse c 10 229 && "
              f"chgrp {group} /dev/fuse && cd {ROOT} && PYTHONPATH={ROOT} exec setpriv "
              f"--reuid 65534 --regid 65534 --clear-groups {sys.executable} -m sessionfs mount "
              f"{folder} {base / 'mnt'}")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        f"sessionfs: error: cannot open /dev/fuse: Permission denied ({hint})"]
    assert not is_mounted(base / "mnt")


# -- umount recognises its own mounts ------------------------------------------------------------
def test_umount_refuses_a_tmpfs_and_leaves_it_mounted(base: Path) -> None:
    target = base / "tmp"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "h1-tmpfs", str(target)],
                   check=True)
    try:
        (target / "keep").write_text("x")
        result = cli("umount", str(target))
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"sessionfs: error: {target} is not a sessionfs mount (tmpfs from h1-tmpfs is "
            "mounted there); left alone"]
        assert is_mounted(target) and (target / "keep").read_text() == "x"
    finally:
        subprocess.run(["umount", str(target)], check=False)


OTHER_FUSE = r"""
import errno, stat, sys, mfusepy
class Empty(mfusepy.Operations):
    use_ns = True
    def getattr(self, path, fh=None):
        if path != "/":
            raise mfusepy.FuseOSError(errno.ENOENT)
        return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
    def readdir(self, path, fh):
        return [".", ".."]
mfusepy.FUSE(Empty(), sys.argv[1], foreground=True, **dict(a.split("=") for a in sys.argv[2:]))
"""


@pytest.mark.parametrize("names", [["fsname=otherfs", "subtype=other"],
                                   ["fsname=sessionfs:/imitation"]])
def test_umount_refuses_another_fuse_filesystem(base: Path, names: list[str]) -> None:
    """Another FUSE filesystem, even one whose source imitates ours, is left alone."""
    target = base / "other"
    target.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", OTHER_FUSE, str(target), *names],
                            env=dict(os.environ, FUSE_LIBRARY_NAME="fuse3"),
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: is_mounted(target), 20), proc.stderr
        result = cli("umount", str(target))
        assert result.returncode == 1
        fstype = "fuse.other" if len(names) == 2 else "fuse"
        source = names[0].removeprefix("fsname=")
        assert result.stderr.splitlines() == [
            f"sessionfs: error: {target} is not a sessionfs mount ({fstype} from {source} is "
            "mounted there); left alone"]
        assert is_mounted(target)
    finally:
        force_unmount(target)
        proc.wait(timeout=20)


def test_umount_recognises_a_live_and_a_dead_sessionfs_mount(base: Path) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    for dead in (False, True):
        mount = Mount(folder, base / "mnt").start()
        try:
            if dead:
                mount.kill(signal.SIGKILL)
            result = cli("umount", str(mount.mp))
            assert result.returncode == 0, result.stderr
            assert not is_mounted(mount.mp)
        finally:
            mount.stop()


# -- a mount never contains its own store ------------------------------------------------------
@pytest.mark.parametrize("where", ["sessions.d/x", "x", "link/x", "store-inside"])
def test_mount_nested_with_its_store_is_refused(base: Path, where: str) -> None:
    """A mountpoint inside the store's folder (or the store inside the mountpoint) would
    deadlock in the kernel: refused before mounting, on resolved paths (``link`` is a symlink
    to the store's folder)."""
    folder = make_store_folder(base, "directory", ENTRIES)
    (base / "link").symlink_to(folder)
    if where == "store-inside":
        mountpoint = base
        expected = (f"the store's folder {folder} is inside the mountpoint {base}: the mount "
                    "would hide its own store and hang; choose another mountpoint")
    else:
        mountpoint = (base if where == "link/x" else folder) / where
        mountpoint.mkdir()
        shown = folder / "x" if where == "link/x" else mountpoint  # the parent is resolved
        expected = (f"mountpoint {shown} is inside the store's folder {folder}: the mount "
                    "would contain itself and hang; choose a mountpoint outside it")
    before = store_snapshot(folder)
    result = cli("mount", str(folder), str(mountpoint), timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"sessionfs: error: {expected}"]
    assert not is_mounted(mountpoint)
    assert store_snapshot(folder) == before


# -- read-only said at mount time --------------------------------------------------------------
def test_mount_says_when_the_store_will_be_read_only(base: Path) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    try:
        result = cli("mount", str(folder), str(mountpoint), "--read-only")
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            f"sessionfs: note: serving {folder / 'sessions.json'} read-only (--read-only): "
            "writes fail with EROFS"]
        assert cli("umount", str(mountpoint)).returncode == 0
        sqlite = base / "agent" / "openclaw-agent.sqlite"
        sqlite.parent.mkdir()
        sqlite.write_bytes(b"SQLite format 3\0")
        result = cli("mount", str(folder), str(mountpoint))
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            f"sessionfs: note: serving {folder / 'sessions.json'} read-only: openclaw has "
            f"imported this store into SQLite ({sqlite}); the old files are only a retained "
            "migration source and rewriting them makes the gateway refuse to start; writes "
            "fail with EROFS"]
        assert cli("umount", str(mountpoint)).returncode == 0
        sqlite.unlink()
        result = cli("mount", str(folder), str(mountpoint))
        assert result.returncode == 0 and result.stderr == "", result.stderr
    finally:
        force_unmount(mountpoint)


def test_mount_says_when_the_store_folder_is_not_writable(base: Path) -> None:
    """A read-only bind of the store's folder: root cannot write it either."""
    folder = make_store_folder(base, "directory", ENTRIES)
    view = base / "ro-view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(view)], check=True)
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        result = cli("mount", str(view), str(mountpoint))
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            f"sessionfs: note: {view} is not writable by root: the store is read-only for you "
            "and every write through the mount will fail (EACCES)"]
    finally:
        force_unmount(mountpoint)
        subprocess.run(["umount", str(view)], check=False)


# -- cancelling a mount that is not ready yet (issue 14.3) ---------------------------------------
#: ``sessionfs mount`` whose daemon holds (as a slow store or a locked agent database makes it)
#: until ``HOLD/release`` exists, saying so in ``HOLD/held.<pid>``: before it mounts
#: (``serve``), or mounted but inside the kernel's INIT, before it reports ready (``init``).
SLOW_MOUNT = """
import importlib, os, sys, time
from pathlib import Path
mounting = importlib.import_module("sessionfs.fs.mount")
hold, stage, real = Path(sys.argv[1]), sys.argv[2], mounting._serve
def wait():
    (hold / f"held.{os.getpid()}").touch()
    while not (hold / "release").exists():
        time.sleep(0.01)
def slow(store, mountpoint, options, ready=None, log_handler=None):
    if stage == "serve":
        wait()
        return real(store, mountpoint, options, ready, log_handler)
    def held_ready():
        wait()
        ready()
    return real(store, mountpoint, options, held_ready, log_handler)
mounting._serve = slow
from sessionfs.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaps counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] in {"Z", "X"}
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("stage", ["serve", "init"])
@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_cancelling_a_mount_before_it_is_ready_leaves_nothing(base: Path, signo: int,
                                                              stage: str) -> None:
    folder = make_store_folder(base, "legacy", ENTRIES)
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    hold = base / "hold"
    hold.mkdir()
    stderr = base / "mount.stderr"
    with open(stderr, "wb") as err:
        command = subprocess.Popen(
            [sys.executable, "-c", SLOW_MOUNT, str(hold), stage, "mount", str(folder),
             str(mountpoint)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    daemon = 0
    try:
        assert wait_for(lambda: any(hold.glob("held.*")), 20), stderr.read_text()
        daemon = int(next(hold.glob("held.*")).name.split(".")[1])
        # a wait of more than a second says what it waits for
        doing = {"serve": "open the store and mount it",
                 "init": "answer the kernel's first request (INIT)"}[stage]
        assert wait_for(lambda: f"to {doing} at" in stderr.read_text(), 20), stderr.read_text()
        line = stderr.read_text().splitlines()[-1]
        assert line.startswith(f"sessionfs: waiting for the daemon (pid {daemon}) to {doing} "
                               f"at {mountpoint} (")
        assert line.endswith(" s; Ctrl-C cancels)")
        assert is_mounted(mountpoint) == (stage == "init")
        command.send_signal(signo)
        if stage == "init":  # the daemon is inside INIT: let it finish that (libfuse's way)
            (hold / "release").touch()
        assert command.wait(timeout=30) == {signal.SIGINT: 130, signal.SIGTERM: 128 + 15,
                                            signal.SIGKILL: -9}[signo]
        (hold / "release").touch()  # a daemon that survived would (go on to) mount now
        assert wait_for(lambda: _gone(daemon), 20), f"daemon {daemon} survived its command"
        assert not is_mounted(mountpoint), _mountinfo()
        assert os.listdir(mountpoint) == []
    finally:
        (hold / "release").touch()
        if command.poll() is None:
            command.kill()
            command.wait()
        if daemon and not _gone(daemon):
            os.kill(daemon, signal.SIGKILL)
        force_unmount(mountpoint)
