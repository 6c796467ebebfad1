"""Other users, and the filesystem around the store: permissions, symlinks, umask.

* A mount is invisible to other users unless mounted with ``--allow-other``. Without it every
  directory is 0700 and every file 0600, owned by the mounting user; with it, the mount shows
  the store's own owner, group and permission bits (of ``sessions.d``, or of ``sessions.json``),
  so it lets in exactly whom the store lets in: nobody else for a 0700 store, readers for a
  0755 one, the store's owner through a root mount. A root mount needs no
  ``user_allow_other`` in /etc/fuse.conf (only fusermount3, i.e. non-root mounts, checks it).
* Symlinks planted in ``sessions.d`` (a session folder, a meta.json, a hashed name's ``key``
  file) and a symlinked lock or temp path never redirect a read or a write outside the store,
  through the library or the mount; no key names a path outside ``sessions.d``.
* Whatever the umask, what sessionfs creates is 0600 (files) and 0700 (directories).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionfs import atomic, jsonfmt, keys
from sessionfs.demo import write_legacy_store
from sessionfs.errors import InvalidKey, LockTimeout, SessionfsError, SessionNotFound, StoreCorrupt
from sessionfs.migrate import migrate, rollback
from sessionfs.store import open_store
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, ROOT, Mount, make_store_folder, wait_for

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
ENTRY = {"sessionId": "u-1", "updatedAt": 1_767_225_600_000}
LONG_KEY = "agent:main:" + "long-" * 60  # > 200 name bytes: a hashed name with a key file


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30,
                          check=False)


def tree(folder: Path) -> dict[str, Any]:
    """Everything under ``folder`` (without following links): to prove nothing changed."""
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir",)
        else:
            st = path.lstat()
            found[rel] = ("file", path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return found


def mount_options(mountpoint: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            after = fields[fields.index("-") + 3]  # super options
            return set(fields[5].split(",")) | set(after.split(","))
    raise AssertionError(f"{mountpoint} not in mountinfo")


# ------------------------------------------------------------------------------------------------
# Other users
# ------------------------------------------------------------------------------------------------
def _open_to_nobody(base: Path) -> None:
    """Let uid 65534 walk down to the mountpoint, so that any EACCES comes from the mount."""
    os.chmod(base, 0o711)
    result = as_nobody("stat", "-c", "%a", str(base))
    assert result.returncode == 0, result.stderr


def test_mount_is_invisible_to_other_users_by_default(base: Path) -> None:
    _open_to_nobody(base)
    folder = make_store_folder(base, "directory", ENTRIES)
    before = tree(folder)
    with Mount(folder, base / "mnt") as mount:
        assert "allow_other" not in mount_options(mount.mp)
        for argv in (["stat", str(mount.mp)], ["ls", str(mount.mp)],
                     ["cat", str(mount.meta(MAIN))], ["ls", str(mount.dir(MAIN))],
                     ["cat", str(mount.mp / ".sessionfs" / "status")],
                     ["mkdir", str(mount.dir("agent:main:intruder"))],
                     ["sh", "-c", f"echo '{{}}' > {mount.meta(JAMES)}"],
                     ["rm", "-rf", str(mount.dir(CRON))],
                     ["mv", str(mount.dir(CRON)), str(mount.dir("agent:main:moved"))]):
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert "Permission denied" in result.stderr, (argv, result.stderr)
        # the same commands work for the owner: the test can tell the difference
        assert sorted(os.listdir(mount.mp)) == sorted(
            [".sessionfs", *(keys.encode(k) for k in ENTRIES)])
        assert mount.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    # unmounted, the same user reaches the (empty) mountpoint: the refusals came from the mount
    result = as_nobody("stat", "-c", "%a", str(base / "mnt"))
    assert result.returncode == 0, result.stderr
    assert tree(folder) == before


def test_allow_other_shows_the_mount_but_modes_keep_others_out(base: Path) -> None:
    """``--allow-other`` (fine for a root mount without user_allow_other in /etc/fuse.conf):
    other users reach the mount, and ``default_permissions`` applies its modes: the root is
    drwx------ root, so they can stat it and nothing else. chmod is accepted without effect."""
    _open_to_nobody(base)
    folder = make_store_folder(base, "directory", ENTRIES)
    before = tree(folder)
    with Mount(folder, base / "mnt", "--allow-other") as mount:
        options = mount_options(mount.mp)
        assert {"allow_other", "default_permissions"} <= options, options
        result = as_nobody("stat", "-c", "%a %u %g %F", str(mount.mp))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["700", str(os.getuid()), str(os.getgid()), "directory"]
        denied = (["ls", str(mount.mp)], ["stat", str(mount.dir(MAIN))],
                  ["cat", str(mount.meta(MAIN))], ["cat", str(mount.mp / ".sessionfs/errors")],
                  ["mkdir", str(mount.dir("agent:main:intruder"))],
                  ["sh", "-c", f"echo '{{}}' > {mount.meta(JAMES)}"],
                  ["rm", "-f", str(mount.meta(CRON))])
        for argv in denied:
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert "Permission denied" in result.stderr, (argv, result.stderr)
        os.chmod(mount.mp, 0o755)  # accepted, but the modes are the mount's own
        os.chmod(mount.dir(MAIN), 0o755)
        os.chmod(mount.meta(MAIN), 0o644)
        assert stat.S_IMODE(os.stat(mount.mp).st_mode) == 0o700
        time.sleep(1.1)  # past the attribute timeout: the kernel asks the daemon again
        for argv in denied[:3]:
            result = as_nobody(*argv)
            assert "Permission denied" in result.stderr, (argv, result.stderr)
        assert stat.S_IMODE(os.stat(mount.meta(MAIN)).st_mode) == 0o600
        assert len(os.listdir(mount.mp)) == len(ENTRIES) + 1
    assert tree(folder) == before


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_allow_other_shares_what_the_store_grants(base: Path, layout: str) -> None:
    """A store others may read (sessions.d 0755, sessions.json 0644) is readable through an
    ``--allow-other`` mount, not writable; without ``--allow-other`` nothing is."""
    _open_to_nobody(base)
    folder = make_store_folder(base, layout, ENTRIES)
    shared = folder / ("sessions.d" if layout == "directory" else "sessions.json")
    os.chmod(shared, 0o755 if layout == "directory" else 0o644)
    os.chmod(folder, 0o755)  # the folder on the way too: others read it on disk (sessions.json)
    for meta in shared.glob("*/meta.json"):  # and each session (sessionfs made them 0700/0600)
        os.chmod(meta.parent, 0o755)
        os.chmod(meta, 0o644)
    if layout == "legacy":
        assert as_nobody("cat", str(shared)).returncode == 0
    before = tree(folder)
    with Mount(folder, base / "mnt", "--allow-other") as mount:
        result = as_nobody("stat", "-c", "%a %u", str(mount.mp), str(mount.dir(MAIN)),
                           str(mount.meta(MAIN)), str(mount.mp / ".sessionfs/status"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["755", "0", "755", "0", "644", "0", "644", "0"]
        result = as_nobody("ls", str(mount.mp))
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.split()) == sorted(keys.encode(k) for k in ENTRIES)
        result = as_nobody("cat", str(mount.meta(MAIN)))
        assert result.returncode == 0, result.stderr
        assert result.stdout.encode() == jsonfmt.dumps(ENTRIES[MAIN])
        assert as_nobody("cat", str(mount.mp / ".sessionfs/status")).returncode == 0
        for argv in (["sh", "-c", f"echo '{{}}' > {mount.meta(JAMES)}"],
                     ["mkdir", str(mount.dir("agent:main:intruder"))],
                     ["rm", "-f", str(mount.meta(CRON))]):
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert "Permission denied" in result.stderr, (argv, result.stderr)
    with Mount(folder, base / "mnt") as mount:  # the same store without --allow-other
        for argv in (["ls", str(mount.mp)], ["cat", str(mount.meta(MAIN))]):
            result = as_nobody(*argv)
            assert "Permission denied" in result.stderr, (argv, result.stderr)
    assert tree(folder) == before


def test_allow_other_lets_the_store_owner_in_through_a_root_mount(base: Path) -> None:
    """Root mounts a store uid 65534 owns (0700): its owner can read and write through the
    mount, a third user cannot even list it."""
    _open_to_nobody(base)
    folder = make_store_folder(base, "directory", ENTRIES)
    subprocess.run(["chown", "-R", "65534:65534", str(folder)], check=True)
    changed = dict(ENTRIES[MAIN], label="by the owner")
    with Mount(folder, base / "mnt", "--allow-other") as mount:
        result = as_nobody("stat", "-c", "%a %u %g", str(mount.dir(MAIN)))
        assert result.stdout.split() == ["700", "65534", "65534"], result.stderr
        result = as_nobody("cat", str(mount.meta(MAIN)))
        assert result.stdout.encode() == jsonfmt.dumps(ENTRIES[MAIN]), result.stderr
        path = mount.meta(MAIN)
        result = subprocess.run([*NOBODY, "sh", "-c", f"cat > {path}"], input=jsonfmt.dumps(
            changed), capture_output=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        assert open_store(folder).read(MAIN).entry == changed
        other = subprocess.run(["setpriv", "--reuid", "65533", "--regid", "65533",
                                "--clear-groups", "ls", str(mount.mp)],
                               capture_output=True, text=True, timeout=30, check=False)
        assert "Permission denied" in other.stderr, other.stderr


def test_allow_other_as_a_user_says_what_fuse_conf_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fusermount3 refuses allow_other to non-root users without ``user_allow_other``: the
    mount says so first (root mounts need nothing)."""
    import importlib

    mount_module = importlib.import_module("sessionfs.fs.mount")  # the package exports mount()
    conf = tmp_path / "fuse.conf"
    conf.write_text("# user_allow_other\nmount_max = 1000\n")
    monkeypatch.setattr(mount_module, "FUSE_CONF", str(conf))
    monkeypatch.setattr(mount_module.os, "geteuid", lambda: 1000)
    options = mount_module.MountOptions(allow_other=True)
    with pytest.raises(mount_module.MountError) as excinfo:
        mount_module._check_allow_other(options)
    assert "user_allow_other" in str(excinfo.value) and str(conf) in str(excinfo.value)
    conf.write_text("user_allow_other\n")
    mount_module._check_allow_other(options)
    monkeypatch.setattr(mount_module.os, "geteuid", lambda: 0)
    conf.write_text("")
    mount_module._check_allow_other(options)


# ------------------------------------------------------------------------------------------------
# Symlinks in and around the store
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def planted(base: Path) -> dict[str, Path]:
    """A directory store plus things outside it that a planted link could reach."""
    folder = make_store_folder(base, "directory", ENTRIES)
    outside = base / "outside"
    outside.mkdir()
    (outside / "meta.json").write_bytes(jsonfmt.dumps({"sessionId": "o-1", "updatedAt": 1}))
    (outside / "victim").write_bytes(b"precious\n")
    return {"folder": folder, "sd": folder / "sessions.d", "outside": outside,
            "victim": outside / "victim"}


def test_symlinked_session_folder_is_not_a_session(planted: dict[str, Path]) -> None:
    sd, outside = planted["sd"], planted["outside"]
    evil = "agent:main:evil"
    os.symlink(outside, sd / keys.encode(evil))
    outside_before = tree(outside)
    store = open_store(planted["folder"])
    assert evil not in store.keys() and sorted(store.keys()) == sorted(ENTRIES)
    with pytest.raises(SessionfsError) as excinfo:
        store.read(evil)
    assert excinfo.value.errno in (errno.ENOENT, errno.EIO)
    for write in (lambda: store.put(evil, ENTRY), lambda: store.rename(MAIN, evil),
                  lambda: store.update(lambda m: {**m, evil: ENTRY})):
        with pytest.raises(StoreCorrupt) as excinfo:
            write()
        assert "symlink" in str(excinfo.value)
    with pytest.raises(SessionNotFound):
        store.delete(evil)
    with pytest.raises(SessionNotFound):
        store.rename(evil, "agent:main:elsewhere")
    assert tree(outside) == outside_before
    assert store.load() == ENTRIES
    with Mount(planted["folder"], planted["folder"].parent / "mnt") as mount:
        assert keys.encode(evil) not in os.listdir(mount.mp)
        for probe in (lambda: os.stat(mount.dir(evil)), lambda: os.listdir(mount.dir(evil)),
                      lambda: os.stat(mount.meta(evil)), lambda: mount.meta(evil).read_bytes()):
            with pytest.raises(FileNotFoundError):  # nothing of the outside shows through
                probe()
        with pytest.raises(OSError) as excinfo:
            os.rename(mount.dir(MAIN), mount.dir(evil))
        assert excinfo.value.errno == errno.EIO
        try:
            os.mkdir(mount.dir(evil))  # a folder is only a promise; the write must fail
        except OSError as exc:
            assert exc.errno in (errno.EEXIST, errno.EIO), exc
        else:
            with pytest.raises(OSError) as excinfo:
                mount.meta(evil).write_bytes(jsonfmt.dumps(ENTRY))
            assert excinfo.value.errno == errno.EIO
        assert "symlink" in mount.log()
        assert mount.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    assert tree(outside) == outside_before
    assert os.readlink(sd / keys.encode(evil)) == str(outside)
    assert open_store(planted["folder"]).load() == ENTRIES


def test_symlinked_meta_json_is_never_followed(planted: dict[str, Path]) -> None:
    sd, outside, victim = planted["sd"], planted["outside"], planted["victim"]
    link = sd / keys.encode(JAMES) / "meta.json"
    link.unlink()
    os.symlink(outside / "meta.json", link)
    outside_before = tree(outside)
    # through the mount: the damaged session reads EIO, the others are untouched and listed
    with Mount(planted["folder"], planted["folder"].parent / "mnt") as mount:
        names = set(os.listdir(mount.mp))
        assert {keys.encode(MAIN), keys.encode(CRON)} <= names
        for probe in (lambda: mount.meta(JAMES).read_bytes(),
                      lambda: mount.meta(JAMES).write_bytes(jsonfmt.dumps(ENTRY)),
                      lambda: os.unlink(mount.meta(JAMES)),
                      lambda: os.rename(mount.dir(JAMES), mount.dir("agent:main:moved"))):
            with pytest.raises(OSError) as excinfo:
                probe()
            assert excinfo.value.errno == errno.EIO, probe
        assert mount.meta(CRON).read_bytes() == jsonfmt.dumps(ENTRIES[CRON])
    assert tree(outside) == outside_before
    # through the library: reads refuse the link, a write replaces it with a real file
    store = open_store(planted["folder"])
    with pytest.raises(StoreCorrupt):
        store.read(JAMES)
    assert store.load() == {k: v for k, v in ENTRIES.items() if k != JAMES}
    assert store.put(JAMES, ENTRY)
    assert not link.is_symlink() and link.read_bytes() == jsonfmt.dumps(ENTRY)
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    assert tree(outside) == outside_before
    # and a delete removes the link, never its target
    os.unlink(link)
    os.symlink(victim, link)
    store.delete(JAMES)
    assert not (sd / keys.encode(JAMES)).exists()
    assert tree(outside) == outside_before


def test_symlinked_key_file_of_a_hashed_name(planted: dict[str, Path]) -> None:
    """A long key's exact key lives in ``key``; a link there names nothing and writes nothing
    outside, and the error is one clear line (library: a SessionfsError; CLI: exit 1)."""
    sd, outside = planted["sd"], planted["outside"]
    store = open_store(planted["folder"])
    store.put(LONG_KEY, ENTRY)
    name = keys.encode(LONG_KEY)
    assert keys.is_hashed(name)
    key_file = sd / name / keys.KEY_FILE
    decoy = outside / "key"
    decoy.write_bytes(LONG_KEY.encode())  # following the link would even "match"
    key_file.unlink()
    os.symlink(decoy, key_file)
    outside_before = tree(outside)
    assert LONG_KEY not in store.keys()
    with pytest.raises(SessionfsError):
        store.read(LONG_KEY)
    # the CLI: refused in one line (exit 1), or repaired (exit 0): never a traceback
    result = cli("put", str(planted["folder"]), LONG_KEY, "-",
                 stdin=jsonfmt.dumps(dict(ENTRY, updatedAt=2)))
    assert len(result.stderr.splitlines()) == 1, result.stderr.decode()
    assert result.returncode in (0, 1)
    if result.returncode == 1:
        assert result.stderr.startswith(b"sessionfs: error: ")
    assert tree(outside) == outside_before
    # the library: a SessionfsError, or the link replaced by a real file inside the store
    try:
        store.put(LONG_KEY, dict(ENTRY, updatedAt=3))
    except SessionfsError:
        assert key_file.is_symlink()
    else:
        assert not key_file.is_symlink() and key_file.read_bytes() == LONG_KEY.encode()
        assert store.get(LONG_KEY) == dict(ENTRY, updatedAt=3)
    assert tree(outside) == outside_before


@pytest.mark.parametrize("layout", ["legacy", "directory"])
@pytest.mark.parametrize("target", ["existing", "dangling"])
def test_symlinked_lock_never_redirects(base: Path, layout: str, target: str) -> None:
    folder = make_store_folder(base, layout, ENTRIES)
    outside = base / "outside"
    outside.mkdir()
    victim = outside / "victim"
    if target == "existing":
        victim.write_bytes(b"precious\n")
    lock = folder / "sessions.json.lock"
    os.symlink(victim, lock)
    outside_before = tree(outside)
    # a fresh link is someone's lock (by the 30 s rule): wait, then time out; never write it
    store = open_store(folder, lock_timeout=0.3)
    with pytest.raises(LockTimeout) as excinfo:
        store.put(MAIN, ENTRY)
    assert excinfo.value.errno == errno.EBUSY
    assert tree(outside) == outside_before and lock.is_symlink()
    # an old one is stale: the link itself is removed and replaced, its target never touched
    old = time.time() - 120
    os.utime(lock, (old, old), follow_symlinks=False)
    assert store.put(MAIN, ENTRY)
    assert not lock.exists() and not lock.is_symlink()
    assert tree(outside) == outside_before
    # the same through a mount
    os.symlink(victim, lock)
    os.utime(lock, (old, old), follow_symlinks=False)
    with Mount(folder, base / "mnt") as mount:
        mount.meta(JAMES).write_bytes(jsonfmt.dumps(ENTRY))
        assert open_store(folder).get(JAMES) == ENTRY
    assert not lock.is_symlink()
    assert tree(outside) == outside_before


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_symlinked_temp_path_never_redirects(base: Path, layout: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp name has a random part; were it guessed and planted as a link, the write fails
    (O_CREAT|O_EXCL|O_NOFOLLOW) instead of writing through it."""
    folder = make_store_folder(base, layout, ENTRIES)
    outside = base / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"precious\n")
    fixed = uuid.UUID(int=42)
    monkeypatch.setattr(atomic.uuid, "uuid4", lambda: fixed)
    store = open_store(folder)
    for key in (MAIN, "agent:main:brand-new"):
        target = (folder / "sessions.json" if layout == "legacy"
                  else folder / "sessions.d" / keys.encode(key) / "meta.json")
        target.parent.mkdir(exist_ok=True)
        planted = atomic.temp_name(target)
        os.symlink(victim, planted)
        before = tree(folder)
        with pytest.raises(OSError) as excinfo:
            store.put(key, ENTRY)
        assert excinfo.value.errno == errno.EEXIST
        assert victim.read_bytes() == b"precious\n"
        assert tree(folder) == before
        os.unlink(planted)
        if layout == "directory" and key != MAIN:
            os.rmdir(target.parent)
    assert open_store(folder).load() == ENTRIES


HOSTILE_KEYS = ["..", ".", "../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "/", "//",
                "sessions.d", ".sessionfs-order.json", "sessions.json.lock", "meta.json",
                "key", "~", "~root", "%2e%2e", "%2E%2E%2Fx", "..\\..\\x", "\\", "-rf", "--",
                ":", "::", ":..", "..:..", "a\x00b", "\x00", "\n", " ", "é/..", "🙂/../..",
                "../" * 80, "x/" * 150, "." * 300, "%" * 100]


@settings(deadline=None, max_examples=300, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.one_of(st.text(max_size=300), st.sampled_from(HOSTILE_KEYS),
                     st.lists(st.sampled_from(["..", ".", "/", ":", "-", "%", "~", "a", "é",
                                               "\x00"]), max_size=120).map("".join)))
def test_no_key_names_a_path_outside_sessions_d(key: str) -> None:
    root = Path("/store/sessions.d")
    try:
        name = keys.encode(key)
    except InvalidKey:
        assert key == "" or any(0xD800 <= ord(c) <= 0xDFFF for c in key)
        return
    assert name and "/" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith((".", "-"))
    assert len(name.encode()) <= keys.MAX_NAME_BYTES and name.isascii()
    assert os.path.normpath(root / name).startswith(str(root) + "/")
    assert (root / name).parent == root
    decoded = keys.decode(name)
    assert decoded == key or (decoded is None and keys.matches(name, key))


def test_hostile_keys_land_inside_sessions_d(base: Path) -> None:
    """Through the library, then the mount: every key is one folder of sessions.d."""
    folder = make_store_folder(base, "directory", ENTRIES)
    around = sorted(p.name for p in base.iterdir())
    beside = sorted(p.name for p in folder.iterdir())
    sd = folder / "sessions.d"
    store = open_store(folder)
    for number, key in enumerate(HOSTILE_KEYS):
        assert store.put(key, dict(ENTRY, sessionId=f"u-h{number}", updatedAt=number))
    assert sorted(p.name for p in base.iterdir()) == around
    assert sorted(p.name for p in folder.iterdir()) == beside
    expected = {**ENTRIES, **{k: dict(ENTRY, sessionId=f"u-h{n}", updatedAt=n)
                              for n, k in enumerate(HOSTILE_KEYS)}}
    assert store.load() == expected
    names = {keys.encode(k) for k in expected}
    assert {p.name for p in sd.iterdir() if not p.name.startswith(".")} == names
    for path in sd.rglob("*"):
        assert path.resolve().is_relative_to(sd.resolve())
        assert len(path.relative_to(sd).parts) <= 2
    with Mount(folder, base / "mnt") as mount:
        assert set(os.listdir(mount.mp)) == names | {".sessionfs"}
        for key in HOSTILE_KEYS:
            assert mount.meta(key).read_bytes() == store.read(key).data
        mount.meta("../../etc/passwd").write_bytes(jsonfmt.dumps(ENTRY))
        for number, key in enumerate(("../mounted", "/mounted/../..", "a/../../x")):
            entry = dict(ENTRY, sessionId=f"u-new-{number}")  # a new session: an id of its own
            os.mkdir(mount.dir(key))
            mount.meta(key).write_bytes(jsonfmt.dumps(entry))
            assert open_store(folder).get(key) == entry
    assert sorted(p.name for p in base.iterdir()) == ["mnt", "mnt.daemon.log", "sessions"]
    assert sorted(p.name for p in folder.iterdir()) == beside
    assert not Path("/mounted").exists()


# ------------------------------------------------------------------------------------------------
# umask
# ------------------------------------------------------------------------------------------------
def assert_private(folder: Path) -> None:
    """Every file 0600, every directory 0700, below ``folder``."""
    checked = 0
    for path in folder.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        assert stat.S_IMODE(mode) == want, f"{path}: {oct(stat.S_IMODE(mode))}"
        checked += 1
    assert checked >= 1


def cli(*argv: str, stdin: bytes = b"", umask: int | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], input=stdin,
                          capture_output=True, env=env, cwd=str(ROOT), timeout=60, check=False,
                          umask=-1 if umask is None else umask)


@pytest.fixture
def umask_set() -> Iterator[Any]:
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(previous)


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o277], ids=oct)
def test_library_creates_private_files_whatever_the_umask(base: Path, umask: int,
                                                          umask_set: Any) -> None:
    folder = base / "sessions"
    folder.mkdir(mode=0o700)
    umask_set(umask)
    write_legacy_store(folder, ENTRIES)
    store = open_store(folder)
    store.put("agent:main:new", dict(ENTRY, sessionId="u-new"))  # legacy rewrite
    assert_private(folder)
    migrate(folder)  # staging, sessions.d, one folder per session, the backup
    store = open_store(folder)
    store.put("agent:main:new-2", dict(ENTRY, sessionId="u-new-2"))
    store.put(LONG_KEY, ENTRY)  # a hashed name and its key file
    store.rename("agent:main:new-2", LONG_KEY + ":moved")
    store.delete(CRON)
    assert_private(folder)
    result = cli("put", str(folder), "agent:main:from-cli", "-",
                 stdin=jsonfmt.dumps(dict(ENTRY, sessionId="u-cli")),
                 umask=umask)
    assert result.returncode == 0, result.stderr
    assert_private(folder)
    rollback(folder)
    open_store(folder).put("agent:main:after-rollback", dict(ENTRY, sessionId="u-after"))
    assert_private(folder)
    assert stat.S_IMODE((folder / "sessions.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("layout", ["legacy", "directory"])
@pytest.mark.parametrize("umask", [0o000, 0o077], ids=oct)
def test_mount_daemon_creates_private_files_whatever_the_umask(
        base: Path, layout: str, umask: int, umask_set: Any) -> None:
    folder = make_store_folder(base, layout, ENTRIES)
    open_store(folder).put(LONG_KEY, dict(ENTRY, updatedAt=1))
    umask_set(umask)
    mount = Mount(folder, base / "mnt")
    mount.start()  # the daemon inherits the umask
    umask_set(0o022)
    try:
        status = Path(f"/proc/{mount.proc.pid}/status").read_text()  # type: ignore[union-attr]
        assert f"Umask:\t{umask:04o}" in status
        os.mkdir(mount.dir("agent:main:fresh"))
        mount.meta("agent:main:fresh").write_bytes(jsonfmt.dumps(dict(ENTRY, sessionId="fresh")))
        mount.meta(LONG_KEY).write_bytes(jsonfmt.dumps(ENTRY))  # rewrites meta.json (+ key)
        mount.meta(MAIN).write_bytes(jsonfmt.dumps(ENTRY))
        os.rename(mount.dir(JAMES), mount.dir("agent:main:renamed"))
        tmp = mount.dir(CRON) / "meta.json.tmp"
        tmp.write_bytes(jsonfmt.dumps(ENTRY))
        os.rename(tmp, mount.meta(CRON))
        assert wait_for(lambda: open_store(folder).get(CRON) == ENTRY, 5)
    finally:
        mount.stop()
    assert_private(folder)
    store = open_store(folder)
    assert store.get("agent:main:renamed") == ENTRIES[JAMES]
    assert store.get(LONG_KEY) == ENTRY
