"""Through the kernel: rm, rm -r, mkdir, mv of sessions and of meta.json, renameat2 flags."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.fs.namespace import UNLINK_GRACE
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, Mount, wait_for

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(old: os.PathLike[str], new: os.PathLike[str], flags: int) -> None:
    AT_FDCWD = -100
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)


def test_rm_meta_deletes_the_session(mnt: Mount) -> None:
    os.unlink(mnt.meta(MAIN))
    # the store follows within UNLINK_GRACE (a create in that window would make it a save)
    assert wait_for(lambda: MAIN not in mnt.store().keys(), UNLINK_GRACE + 1)
    assert os.listdir(mnt.dir(MAIN)) == []  # the emptied folder stays until rmdir
    os.rmdir(mnt.dir(MAIN))
    assert keys.encode(MAIN) not in os.listdir(mnt.mp)
    assert sorted(mnt.store().keys()) == sorted([JAMES, CRON])


def test_rm_r_deletes_the_session_and_its_scratch_files(mnt: Mount) -> None:
    (mnt.dir(JAMES) / ".meta.json.swp").write_bytes(b"swap")
    result = sh(f"rm -r '{mnt.dir(JAMES)}'")
    assert result.returncode == 0, result.stderr
    assert JAMES not in mnt.store().keys()
    assert keys.encode(JAMES) not in os.listdir(mnt.mp)


def test_rmdir_of_a_session_is_refused(mnt: Mount) -> None:
    with pytest.raises(OSError) as excinfo:
        os.rmdir(mnt.dir(MAIN))
    assert excinfo.value.errno == errno.ENOTEMPTY
    assert MAIN in mnt.store().keys()


def test_mkdir_then_write_creates_a_session(mnt: Mount) -> None:
    key = "agent:main:discord:direct:olu"
    folder = mnt.dir(key)
    os.mkdir(folder)
    assert os.listdir(folder) == []
    assert key not in mnt.store().keys()  # an empty folder is not a session
    assert keys.encode(key) in os.listdir(mnt.mp)
    (folder / "meta.json").write_text('{"sessionId": "olu-1", "updatedAt": 1767225600000}\n')
    assert mnt.store().get(key) == {"sessionId": "olu-1", "updatedAt": 1767225600000}
    assert os.stat(folder).st_mtime_ns == 1767225600000 * 1_000_000


def test_mkdir_of_a_name_that_does_not_decode_fails_with_einval(mnt: Mount) -> None:
    for name in ("agent:main:x", "has space", "UPPER%zz", "a---b"):
        with pytest.raises(OSError) as excinfo:
            os.mkdir(mnt.mp / name)
        assert excinfo.value.errno == errno.EINVAL, name
    with pytest.raises(FileExistsError):
        os.mkdir(mnt.dir(MAIN))


def test_empty_new_folder_with_an_invalid_meta_stays_no_session(mnt: Mount) -> None:
    folder = mnt.mp / "agent--main--empty"
    os.mkdir(folder)
    with pytest.raises(OSError) as excinfo:
        (folder / "meta.json").write_text('{"updatedAt": 1}')
    assert excinfo.value.errno == errno.EINVAL
    assert "agent:main:empty" not in mnt.store().keys()
    assert os.listdir(folder) == []
    os.rmdir(folder)


def test_a_refused_create_leaves_no_meta_while_its_release_is_on_the_way(mnt: Mount) -> None:
    """close() returns after FLUSH; RELEASE reaches the daemon later. A descriptor kept open
    past a refused close stands in for that window: the refused file must not be listed."""
    folder = mnt.mp / "agent--main--late"
    os.mkdir(folder)
    fd = os.open(folder / "meta.json", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b'{"updatedAt": 1}')
        second = os.dup(fd)
        with pytest.raises(OSError) as excinfo:
            os.close(second)  # FLUSH: the commit is refused (no sessionId)
        assert excinfo.value.errno == errno.EINVAL
        assert os.listdir(folder) == []
        with pytest.raises(FileNotFoundError):
            os.stat(folder / "meta.json")
    finally:
        with pytest.raises(OSError):
            os.close(fd)
    assert "agent:main:late" not in mnt.store().keys()


def test_mv_session_renames_the_key(mnt: Mount) -> None:
    before = mnt.store().read(MAIN).data
    os.rename(mnt.dir(MAIN), mnt.mp / "agent--main--renamed")
    store = mnt.store()
    assert MAIN not in store.keys()
    assert store.read("agent:main:renamed").data == before
    assert (mnt.mp / "agent--main--renamed" / "meta.json").read_bytes() == before
    result = sh(f"mv '{mnt.mp / 'agent--main--renamed'}' '{mnt.mp / 'agent--main--again'}'")
    assert result.returncode == 0, result.stderr
    assert mnt.store().read("agent:main:again").data == before


def test_mv_onto_an_existing_session_is_refused(mnt: Mount) -> None:
    with pytest.raises(OSError) as excinfo:
        os.rename(mnt.dir(MAIN), mnt.dir(JAMES))
    assert excinfo.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    result = sh(f"mv -T '{mnt.dir(MAIN)}' '{mnt.dir(JAMES)}'")
    assert result.returncode != 0
    assert mnt.store().get(JAMES) == ENTRIES[JAMES]
    assert mnt.store().get(MAIN) == ENTRIES[MAIN]
    with pytest.raises(OSError) as excinfo:
        os.rename(mnt.dir(MAIN), mnt.mp / "not a name")
    assert excinfo.value.errno == errno.EINVAL


def test_moving_meta_between_sessions_is_copy_and_delete(mnt: Mount) -> None:
    os.rename(mnt.meta(MAIN), mnt.meta(CRON))
    store = mnt.store()
    assert store.get(CRON) == ENTRIES[MAIN]
    assert MAIN not in store.keys()
    new_key = "agent:main:moved"
    os.mkdir(mnt.dir(new_key))
    os.rename(mnt.meta(CRON), mnt.meta(new_key))
    assert mnt.store().get(new_key) == ENTRIES[MAIN]
    assert CRON not in mnt.store().keys()


def test_renaming_meta_away_keeps_the_session(mnt: Mount) -> None:
    os.rename(mnt.meta(MAIN), mnt.dir(MAIN) / "backup.json")
    assert mnt.store().get(MAIN) == ENTRIES[MAIN]
    assert (mnt.dir(MAIN) / "backup.json").read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    assert os.listdir(mnt.dir(MAIN)) == ["backup.json"]
    os.rename(mnt.dir(MAIN) / "backup.json", mnt.meta(MAIN))
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]
    assert mnt.store().get(MAIN) == ENTRIES[MAIN]


def test_renameat2_flags(mnt: Mount) -> None:
    scratch = mnt.dir(MAIN) / "other.json"
    scratch.write_bytes(jsonfmt.dumps(ENTRIES[JAMES]))
    with pytest.raises(OSError) as excinfo:
        renameat2(scratch, mnt.meta(MAIN), RENAME_EXCHANGE)
    assert excinfo.value.errno == errno.EINVAL
    assert mnt.store().get(MAIN) == ENTRIES[MAIN]
    assert scratch.read_bytes() == jsonfmt.dumps(ENTRIES[JAMES])
    with pytest.raises(FileExistsError):
        renameat2(scratch, mnt.meta(MAIN), RENAME_NOREPLACE)
    renameat2(scratch, mnt.dir(MAIN) / "third.json", RENAME_NOREPLACE)
    assert (mnt.dir(MAIN) / "third.json").exists()
    assert mnt.store().get(MAIN) == ENTRIES[MAIN]


def test_unlink_while_open_deletes_and_the_open_file_still_works(mnt: Mount) -> None:
    with open(mnt.meta(MAIN), "rb") as reader:
        os.unlink(mnt.meta(MAIN))
        # libfuse renames an open file away instead of unlinking it, exactly as it does for
        # the first half of a rename over it; the delete follows after UNLINK_GRACE, never on
        # a rename-over
        assert wait_for(lambda: MAIN not in mnt.store().keys(), UNLINK_GRACE + 1)
        assert os.listdir(mnt.dir(MAIN)) == []
        os.fstat(reader.fileno())  # not ESTALE: libfuse keeps the file under a hidden name
        assert reader.read() == jsonfmt.dumps(ENTRIES[MAIN])
        os.rmdir(mnt.dir(MAIN))  # the hidden name does not keep the folder alive
        reader.seek(0)
        assert reader.read() == jsonfmt.dumps(ENTRIES[MAIN])
    with open(mnt.meta(JAMES), "rb") as reader:
        result = sh(f"rm -r '{mnt.dir(JAMES)}'")
        assert result.returncode == 0, result.stderr
        assert reader.read() == jsonfmt.dumps(ENTRIES[JAMES])
    assert sorted(mnt.store().keys()) == [CRON]
    assert sorted(os.listdir(mnt.mp)) == [".sessionfs", keys.encode(CRON)]


def test_rename_over_an_open_meta_json(mnt: Mount) -> None:
    edited = dict(ENTRIES[MAIN], thinkingLevel="high")
    tmp = mnt.dir(MAIN) / "meta.json.tmp"
    tmp.write_bytes(jsonfmt.dumps(edited))
    with open(mnt.meta(MAIN), "rb") as reader:
        os.replace(tmp, mnt.meta(MAIN))
        assert mnt.store().get(MAIN) == edited
        assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(edited)
        assert reader.read() == jsonfmt.dumps(ENTRIES[MAIN])  # its own snapshot
        os.fstat(reader.fileno())
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]
    assert mnt.store().get(MAIN) == edited


def store_snapshot(mount: Mount) -> dict[str, bytes]:
    store = mount.store()
    return {key: store.read(key).data for key in store.keys()}


def test_a_new_session_with_a_taken_session_id_is_refused(mnt: Mount) -> None:
    """``cp -r MOUNT/S MOUNT/new`` would point two keys at one transcript (issue 8 §1)."""
    before = store_snapshot(mnt)
    copy = mnt.mp / "agent--main--copy"
    result = sh(f"cp -r '{mnt.dir(MAIN)}' '{copy}'")
    assert result.returncode != 0, result
    assert store_snapshot(mnt) == before
    errors = mnt.errors()
    assert "/agent--main--copy/meta.json EEXIST" in errors
    assert "'m-1'" in errors and repr(MAIN) in errors
    # the writer learns it at close(), with EEXIST
    fd = os.open(copy / "meta.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, jsonfmt.dumps(ENTRIES[JAMES]))
    with pytest.raises(OSError) as excinfo:
        os.close(fd)
    assert excinfo.value.errno == errno.EEXIST
    # and by rename of a scratch file onto it
    (copy / "x.tmp").write_bytes(jsonfmt.dumps(ENTRIES[CRON]))
    with pytest.raises(OSError) as excinfo:
        os.rename(copy / "x.tmp", copy / "meta.json")
    assert excinfo.value.errno == errno.EEXIST
    assert store_snapshot(mnt) == before
    # a session of its own is fine, and moving meta.json takes its sessionId along
    (copy / "meta.json").write_bytes(jsonfmt.dumps(dict(ENTRIES[MAIN], sessionId="copy-1")))
    assert mnt.store().get("agent:main:copy")["sessionId"] == "copy-1"
    moved = mnt.mp / "agent--main--moved"
    os.mkdir(moved)
    os.rename(mnt.meta(CRON), moved / "meta.json")
    assert mnt.store().get("agent:main:moved") == ENTRIES[CRON]
    assert CRON not in mnt.store().keys()


@pytest.mark.parametrize("target", ["existing", "new"])
def test_a_moved_meta_json_takes_its_open_writer_along(mnt: Mount, target: str) -> None:
    """A writer holds a/meta.json; ``mv a/meta.json b/meta.json`` (started by the writer, so the
    child shares the descriptor and flushes it on exit); the writer closes. ``a`` stays gone and
    the writer's bytes land in ``b`` (issue 9 §1)."""
    dst_key = CRON if target == "existing" else "agent:main:moved"
    if target == "new":
        os.mkdir(mnt.dir(dst_key))
    written = dict(ENTRIES[MAIN], label="written while moved")
    fd = os.open(mnt.meta(MAIN), os.O_RDWR)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, jsonfmt.dumps(written))
        result = subprocess.run(["mv", str(mnt.meta(MAIN)), str(mnt.meta(dst_key))],
                                pass_fds=(fd,), capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert MAIN not in mnt.store().keys()
    finally:
        os.close(fd)
    store = mnt.store()
    assert MAIN not in store.keys()
    assert store.get(dst_key) == written
    assert sorted(os.listdir(mnt.dir(MAIN))) == []
    assert mnt.meta(dst_key).read_bytes() == jsonfmt.dumps(written)


def test_writes_to_a_deleted_meta_json_do_not_bring_it_back(mnt: Mount) -> None:
    fd = os.open(mnt.meta(MAIN), os.O_RDWR)
    try:
        os.unlink(mnt.meta(MAIN))
        assert wait_for(lambda: MAIN not in mnt.store().keys(), UNLINK_GRACE + 1)
        os.ftruncate(fd, 0)
        os.write(fd, jsonfmt.dumps(ENTRIES[MAIN]))
        os.fsync(fd)
    finally:
        os.close(fd)
    assert MAIN not in mnt.store().keys()


def test_truncate_to_nothing_fails_and_keeps_the_entry(mnt: Mount) -> None:
    """``truncate -s 0 meta.json`` (open, ftruncate, close) can never become valid: it fails
    instead of exiting 0 while the store keeps the old entry (issue 8 §3)."""
    before = mnt.store().read(MAIN).data
    result = sh(f"truncate -s 0 '{mnt.meta(MAIN)}'")
    assert result.returncode != 0, result
    assert mnt.store().read(MAIN).data == before
    assert mnt.meta(MAIN).read_bytes() == before
    assert "/meta.json EINVAL" in mnt.errors()
    with pytest.raises(OSError) as excinfo:
        os.truncate(mnt.meta(MAIN), 0)  # truncate(2) by path: no open file at all
    assert excinfo.value.errno == errno.EINVAL
    assert mnt.store().read(MAIN).data == before
    # a shell's `>` (O_TRUNC at open, then writes) and vim's open + ftruncate + write still work
    result = sh(f"printf '%s' '{jsonfmt.dumps(ENTRIES[MAIN]).decode()}' > '{mnt.meta(MAIN)}'")
    assert result.returncode == 0, result
    fd = os.open(mnt.meta(MAIN), os.O_WRONLY)
    os.ftruncate(fd, 0)
    os.write(fd, jsonfmt.dumps(ENTRIES[JAMES] | {"sessionId": "m-2"}))
    os.close(fd)
    assert mnt.store().get(MAIN)["sessionId"] == "m-2"


def test_mkdir_of_an_impossible_name_says_why_in_errors(mnt: Mount) -> None:
    with pytest.raises(OSError) as excinfo:
        os.mkdir(mnt.mp / "has space")
    assert excinfo.value.errno == errno.EINVAL
    assert "/has space EINVAL mkdir: 'has space' is not a session name: " in mnt.errors()
    with pytest.raises(OSError) as excinfo:
        os.mkdir(mnt.dir(MAIN) / "sub")
    assert excinfo.value.errno == errno.EPERM
    assert f"/{keys.encode(MAIN)}/sub EPERM mkdir: " in mnt.errors()
