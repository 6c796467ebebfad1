"""Root writing an ordinary user's store never locks the user out of it.

A file sessionfs replaces keeps the owner, group and permission bits of the file it replaces;
a new file or folder takes the store folder's owner and group (mode 0600/0700). Checked for every
write path: the library (put, delete, rename), the CLI, a mount, migrate, rollback, merge and the
lock file, each followed by the user writing the same store with the library as themselves.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import write_legacy_store
from sessionfs.lock import StoreLock
from sessionfs.migrate import merge, migrate, rollback
from sessionfs.store import open_store
from tests import mountutil
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, ROOT, Mount, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")

USER_NAME = "sessionfs-owner"
ENTRY = {"sessionId": "o-1", "updatedAt": 1_767_225_600_000}
FRESH = {"sessionId": "o-fresh", "updatedAt": 1_767_225_600_000}
LONG_KEY = "agent:main:" + "long-" * 60  # a hashed name with a key file


@pytest.fixture(scope="module")
def user() -> tuple[int, int]:
    """An ordinary user (created once if missing) and its own group: (uid, gid)."""
    try:
        record = pwd.getpwnam(USER_NAME)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                 "--shell", "/usr/sbin/nologin", USER_NAME],
                                capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: created meanwhile by a parallel run
            pytest.fail(f"useradd failed: {result.stderr}")
        record = pwd.getpwnam(USER_NAME)
    assert record.pw_uid != 0 and record.pw_gid != 0
    return record.pw_uid, record.pw_gid


@pytest.fixture
def base() -> Iterator[Path]:
    folder = mountutil.scratch_root()
    os.chmod(folder, 0o711)  # the user can walk down to the store, and no further
    yield folder
    mountutil.force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


def give_away(folder: Path, owner: tuple[int, int], file_mode: int = 0o644) -> None:
    """Hand the whole store folder to ``owner``, files ``file_mode`` (openclaw's often 0644)."""
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, *owner, follow_symlinks=False)
        if path.is_file() and not path.is_symlink():
            os.chmod(path, file_mode)


def user_store(base: Path, layout: str, owner: tuple[int, int]) -> Path:
    folder = base / "sessions"
    write_legacy_store(folder, ENTRIES)
    if layout == "directory":
        migrate(folder)
    give_away(folder, owner)
    return folder


def owner_of(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def assert_all_owned(folder: Path, owner: tuple[int, int]) -> None:
    """Every file and folder in the store folder belongs to ``owner``."""
    for path in [folder, *folder.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == owner, f"{path}: {st.st_uid}:{st.st_gid}"


USER_WRITES = """
import sys
from sessionfs.store import open_store
store = open_store(sys.argv[1])
store.put("agent:main:by-the-user", {"sessionId": "by-user", "updatedAt": 1})
for key in store.keys():
    if key != "agent:main:by-the-user":
        store.put(key, dict(store.get(key), label="touched by the user"))
store.delete("agent:main:by-the-user")
print(len(store.keys()))
"""


def assert_user_can_write(folder: Path, owner: tuple[int, int]) -> None:
    """The library, run as the user, puts, rewrites every session and deletes in its store."""
    before = set(open_store(folder).keys())
    result = subprocess.run(
        ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups",
         sys.executable, "-c", USER_WRITES, str(folder)],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd="/")
    assert result.returncode == 0, result.stderr
    store = open_store(folder)
    assert set(store.keys()) == before
    assert all(store.get(key)["label"] == "touched by the user" for key in before)


# -- the library ------------------------------------------------------------------------------
def test_library_writes_to_a_legacy_store_keep_its_owner_and_mode(
        base: Path, user: tuple[int, int]) -> None:
    folder = user_store(base, "legacy", user)
    store = open_store(folder)
    store.put(MAIN, ENTRY)
    assert owner_of(folder / "sessions.json") == (*user, 0o644)
    store.put("agent:main:new", FRESH)
    store.rename("agent:main:new", "agent:main:renamed")
    store.delete(CRON)
    assert owner_of(folder / "sessions.json") == (*user, 0o644)
    assert open_store(folder).keys() == [MAIN, JAMES, "agent:main:renamed"]
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)


def test_library_writes_to_a_directory_store_keep_its_owner(
        base: Path, user: tuple[int, int]) -> None:
    folder = user_store(base, "directory", user)
    sessions_d = folder / "sessions.d"
    store = open_store(folder)
    store.put(MAIN, ENTRY)  # a replaced meta.json keeps owner and mode
    assert owner_of(sessions_d / keys.encode(MAIN) / "meta.json") == (*user, 0o644)
    store.put("agent:main:new", FRESH)  # a new session folder and file: the folder's owner
    assert owner_of(sessions_d / keys.encode("agent:main:new")) == (*user, 0o700)
    assert owner_of(sessions_d / keys.encode("agent:main:new") / "meta.json") == (*user, 0o600)
    store.put(LONG_KEY, dict(ENTRY, sessionId="o-long"))  # a hashed name and its key file
    assert owner_of(sessions_d / keys.encode(LONG_KEY) / keys.KEY_FILE) == (*user, 0o600)
    store.rename(LONG_KEY, LONG_KEY + ":moved")
    store.rename(JAMES, LONG_KEY + ":james")
    store.rename("agent:main:new", "agent:main:renamed")
    store.delete(CRON)
    assert sorted(open_store(folder).keys()) == sorted(
        [MAIN, LONG_KEY + ":moved", LONG_KEY + ":james", "agent:main:renamed"])
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_the_lock_file_belongs_to_the_store_folders_owner(
        base: Path, layout: str, user: tuple[int, int]) -> None:
    folder = user_store(base, layout, user)
    store = open_store(folder)
    with StoreLock(store.lock_path):
        assert owner_of(folder / "sessions.json.lock") == (*user, 0o600)
        # the user's gateway can read it to judge it (a root-only 0600 file it could not)
        result = subprocess.run(["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}",
                                 "--clear-groups", "cat", str(folder / "sessions.json.lock")],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0 and '"pid"' in result.stdout, result.stderr
    assert not (folder / "sessions.json.lock").exists()


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_cli_put_keeps_the_owner(base: Path, layout: str, user: tuple[int, int]) -> None:
    folder = user_store(base, layout, user)
    for key, entry in ((MAIN, ENTRY), ("agent:main:from-cli", FRESH)):
        result = subprocess.run([sys.executable, "-m", "sessionfs", "put", str(folder), key, "-"],
                                input=jsonfmt.dumps(entry), capture_output=True, timeout=60,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT),
                                check=False)
        assert result.returncode == 0, result.stderr
    assert open_store(folder).get("agent:main:from-cli") == FRESH
    if layout == "legacy":
        assert owner_of(folder / "sessions.json") == (*user, 0o644)
    else:
        assert owner_of(folder / "sessions.d" / keys.encode(MAIN) / "meta.json") == (*user, 0o644)
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)


# -- migrate, rollback, merge -------------------------------------------------------------------
def test_migrate_rollback_and_merge_keep_the_owner(base: Path, user: tuple[int, int]) -> None:
    folder = user_store(base, "legacy", user)
    open_store(folder).put(LONG_KEY, ENTRY)
    migrate(folder)  # staging, sessions.d, every session folder, the backup
    assert owner_of(folder / "sessions.d") == (*user, 0o700)
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)

    rollback(folder)  # a new sessions.json, sessions.d moved aside
    assert owner_of(folder / "sessions.json") == (*user, 0o600)
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)

    migrate(folder)
    reappeared = base / "reappeared"  # the user's legacy-era gateway writes sessions.json again
    write_legacy_store(reappeared, {**ENTRIES, "agent:main:from-gateway": FRESH})
    shutil.move(reappeared / "sessions.json", folder / "sessions.json")
    give_away(folder, user)
    report = merge(folder)
    assert "agent:main:from-gateway" in report.added
    assert owner_of(folder / "sessions.d" / keys.encode("agent:main:from-gateway")) == (*user,
                                                                                          0o700)
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)


# -- the mount ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_a_root_mount_writes_the_users_store_as_theirs(
        base: Path, layout: str, user: tuple[int, int]) -> None:
    folder = user_store(base, layout, user)
    with Mount(folder, base / "mnt") as mount:
        mount.meta(MAIN).write_bytes(jsonfmt.dumps(ENTRY))
        os.mkdir(mount.dir("agent:main:fresh"))
        mount.meta("agent:main:fresh").write_bytes(jsonfmt.dumps(FRESH))
        os.rename(mount.dir(JAMES), mount.dir("agent:main:renamed"))
        assert wait_for(lambda: open_store(folder).get("agent:main:fresh") == FRESH, 5)
    store = open_store(folder)
    assert store.get(MAIN) == ENTRY and "agent:main:renamed" in store.keys()
    if layout == "legacy":
        assert owner_of(folder / "sessions.json") == (*user, 0o644)
    else:
        assert owner_of(folder / "sessions.d" / keys.encode(MAIN) / "meta.json") == (*user, 0o644)
        assert owner_of(folder / "sessions.d" / keys.encode("agent:main:fresh")) == (*user, 0o700)
    assert_all_owned(folder, user)
    assert_user_can_write(folder, user)
