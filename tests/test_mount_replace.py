"""Through the kernel: tools that replace meta.json by unlink + create (install, tar -x).

An ``unlink`` of meta.json followed by a create in the same folder within
:data:`~sessionfs.fs.namespace.UNLINK_GRACE` is a save: the store keeps the old entry until the
new one commits, and for good when the new one is refused. A plain ``rm`` still deletes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.fs.namespace import UNLINK_GRACE
from tests import mountutil
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, Mount, wait_for
from tests.test_mount_editors import EDITED, store_watch

INVALID = b'{"updatedAt": "not a number"}\n'  # valid JSON, refused by the entry's validation


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def session_tar(mount: Mount, key: str, data: bytes) -> Path:
    """A tar of one session folder (``NAME/meta.json`` holding ``data``), outside the mount."""
    source = mount.store_folder.parent / "tar-src" / keys.encode(key)
    source.mkdir(parents=True)
    (source / "meta.json").write_bytes(data)
    archive = mount.store_folder.parent / "session.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=keys.encode(key))
    return archive


def test_install_of_an_invalid_file_keeps_the_session(mnt: Mount) -> None:
    before = mnt.store().read(MAIN).data
    bad = mnt.store_folder.parent / "bad.json"
    bad.write_bytes(INVALID)
    with store_watch(mnt) as problems:
        result = run(["install", "-m", "600", str(bad), str(mnt.meta(MAIN))])
        time.sleep(UNLINK_GRACE + 0.3)  # past the grace: the refusal kept the entry for good
    assert result.returncode != 0, result
    assert problems == []
    assert mnt.store().read(MAIN).data == before
    assert mnt.meta(MAIN).read_bytes() == before
    assert "EINVAL" in mnt.errors()


def test_install_of_a_valid_file_is_a_save(mnt: Mount) -> None:
    good = mnt.store_folder.parent / "good.json"
    good.write_bytes(jsonfmt.dumps(EDITED))
    with store_watch(mnt) as problems:
        result = run(["install", "-m", "600", str(good), str(mnt.meta(MAIN))])
        time.sleep(UNLINK_GRACE + 0.3)
    assert result.returncode == 0, result
    assert problems == []  # never missing from the store, never anything but old or new
    assert mnt.store().get(MAIN) == EDITED
    assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(EDITED)


@pytest.mark.parametrize("valid", [False, True])
def test_tar_x_over_a_session(mnt: Mount, valid: bool) -> None:
    before = mnt.store().read(MAIN).data
    archive = session_tar(mnt, MAIN, jsonfmt.dumps(EDITED) if valid else INVALID)
    with store_watch(mnt) as problems:
        result = run(["tar", "-xf", str(archive), "-C", str(mnt.mp)])
        time.sleep(UNLINK_GRACE + 0.3)
    assert problems == []
    if valid:
        assert result.returncode == 0, result
        assert mnt.store().get(MAIN) == EDITED
    else:
        assert result.returncode != 0, result
        assert mnt.store().read(MAIN).data == before
        assert mnt.meta(MAIN).read_bytes() == before


def test_plain_rm_deletes_within_the_grace(mnt: Mount) -> None:
    os.unlink(mnt.meta(MAIN))
    removed = time.monotonic()
    # gone through the mount at once, as POSIX wants after unlink()
    with pytest.raises(FileNotFoundError):
        os.stat(mnt.meta(MAIN))
    with pytest.raises(FileNotFoundError):
        mnt.meta(MAIN).read_bytes()
    assert os.listdir(mnt.dir(MAIN)) == []
    assert wait_for(lambda: MAIN not in mnt.store().keys(), UNLINK_GRACE + 2)
    assert time.monotonic() - removed < UNLINK_GRACE + 1.0
    time.sleep(0.2)
    assert MAIN not in mnt.store().keys()
    with pytest.raises(FileNotFoundError):
        os.stat(mnt.meta(MAIN))
    os.rmdir(mnt.dir(MAIN))


def test_rm_r_deletes_at_once(mnt: Mount) -> None:
    result = run(["rm", "-r", str(mnt.dir(JAMES))])
    assert result.returncode == 0, result
    assert JAMES not in mnt.store().keys()  # the rmdir carried the delete out
    assert keys.encode(JAMES) not in os.listdir(mnt.mp)


def test_rm_then_write_within_the_grace_is_a_save(mnt: Mount) -> None:
    with store_watch(mnt) as problems:
        os.unlink(mnt.meta(MAIN))
        mnt.meta(MAIN).write_bytes(jsonfmt.dumps(EDITED))
        time.sleep(UNLINK_GRACE + 0.3)
    assert problems == []
    assert mnt.store().get(MAIN) == EDITED
    assert ENTRIES[JAMES] == mnt.store().get(JAMES)


def test_rm_then_an_invalid_write_keeps_the_old_entry(mnt: Mount) -> None:
    before = mnt.store().read(MAIN).data
    os.unlink(mnt.meta(MAIN))
    with pytest.raises(OSError) as excinfo:
        mnt.meta(MAIN).write_bytes(INVALID)
    assert excinfo.value.errno == errno.EINVAL
    time.sleep(UNLINK_GRACE + 0.3)
    assert mnt.store().read(MAIN).data == before


def test_legacy_meta_json_mtime_changes_only_with_its_session(base: Path) -> None:
    """In a legacy store every entry lives in sessions.json; a change to one session must not
    move the other sessions' meta.json mtimes (vim's "changed since reading", rsync, find
    -newer) (issue 8 §3)."""
    folder = mountutil.make_store_folder(base, "legacy", ENTRIES)
    with Mount(folder, base / "mnt", "--timeout", "0.2") as mount:
        before = {key: os.stat(mount.meta(key)).st_mtime_ns for key in ENTRIES}
        assert before == {key: os.stat(mount.meta(key)).st_mtime_ns for key in ENTRIES}
        # sessions.json's next mtime must differ from the one every meta.json shows now
        assert wait_for(lambda: time.time_ns() > max(before.values()) + 10**7)
        mount.store().put(JAMES, dict(ENTRIES[JAMES], label="changed"))
        changed_file = (folder / "sessions.json").stat().st_mtime_ns
        assert wait_for(lambda: os.stat(mount.meta(JAMES)).st_mtime_ns != before[JAMES], 5)
        assert os.stat(mount.meta(JAMES)).st_mtime_ns == changed_file
        time.sleep(0.3)  # past the attribute timeout: every answer below is fresh
        after = {key: os.stat(mount.meta(key)).st_mtime_ns for key in ENTRIES}
        assert after == dict(before, **{JAMES: changed_file})
        # and a write through the mount moves only that session's mtime too
        (mount.meta(MAIN)).write_bytes(jsonfmt.dumps(EDITED))
        time.sleep(0.3)
        final = {key: os.stat(mount.meta(key)).st_mtime_ns for key in ENTRIES}
        assert final[MAIN] == (folder / "sessions.json").stat().st_mtime_ns
        assert {k: v for k, v in final.items() if k != MAIN} == {
            k: v for k, v in after.items() if k != MAIN}
        with open(mount.meta(CRON), "rb") as reader:  # fstat of an open file agrees
            assert os.fstat(reader.fileno()).st_mtime_ns == before[CRON]
    mount.assert_no_internal_errors()
