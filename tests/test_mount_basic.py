"""Through the kernel: what the tree shows, and how writes to meta.json commit or fail."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, Mount


def store_files(mount: Mount) -> dict[str, tuple[bytes, int, int]]:
    """Every file of the store folder: bytes, inode and mtime (to prove nothing was written)."""
    found = {}
    for path in sorted(mount.store_folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            st = path.stat()
            found[str(path.relative_to(mount.store_folder))] = (path.read_bytes(), st.st_ino,
                                                                 st.st_mtime_ns)
    return found


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)


def test_tree(mnt: Mount) -> None:
    names = set(os.listdir(mnt.mp))
    assert names == {".sessionfs"} | {keys.encode(key) for key in ENTRIES}
    store = mnt.store()
    for key, entry in ENTRIES.items():
        folder = os.stat(mnt.dir(key))
        assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o700
        assert folder.st_mtime_ns == entry["updatedAt"] * 1_000_000
        assert (folder.st_uid, folder.st_gid) == (os.getuid(), os.getgid())
        assert os.listdir(mnt.dir(key)) == ["meta.json"]
        record = store.read(key)
        file = os.stat(mnt.meta(key))
        assert stat.S_ISREG(file.st_mode) and stat.S_IMODE(file.st_mode) == 0o600
        assert file.st_size == len(record.data)
        assert file.st_mtime_ns == record.mtime_ns
        assert mnt.meta(key).read_bytes() == record.data == jsonfmt.dumps(entry)
    by_activity = sh(f"ls -t {mnt.mp}").stdout.split()
    assert by_activity == [keys.encode(k) for k in sorted(
        ENTRIES, key=lambda k: -ENTRIES[k]["updatedAt"])]


def test_control_folder(mnt: Mount) -> None:
    assert sorted(os.listdir(mnt.mp / ".sessionfs")) == ["errors", "status"]
    status = (mnt.mp / ".sessionfs" / "status").read_text()
    store = mnt.store()
    assert f"store: {store.path}\n" in status
    assert f"layout: {store.layout}\n" in status
    assert "sessions: 3\n" in status and "read-only: no\n" in status
    assert mnt.errors() == ""
    # writes into the folder (a restore of a backup) are accepted and discarded
    (mnt.mp / ".sessionfs" / "errors").write_text("x")
    assert mnt.errors() == ""
    (mnt.mp / ".sessionfs" / "new").write_text("x")
    assert (mnt.mp / ".sessionfs" / "new").read_bytes() == b""
    os.unlink(mnt.mp / ".sessionfs" / "new")
    assert sorted(os.listdir(mnt.mp / ".sessionfs")) == ["errors", "status"]
    assert (mnt.mp / ".sessionfs" / "status").read_text() == status
    with pytest.raises(OSError) as excinfo:
        os.rmdir(mnt.mp / ".sessionfs")
    assert excinfo.value.errno == errno.EACCES


def test_shell_write_commits_and_reads_back_exactly(mnt: Mount) -> None:
    raw = '{"sessionId":"m-2","updatedAt":1767225600001}'
    result = sh(f"echo '{raw}' > {mnt.meta(MAIN)}")
    assert result.returncode == 0, result.stderr
    entry = {"sessionId": "m-2", "updatedAt": 1767225600001}
    assert mnt.store().get(MAIN) == entry
    assert mnt.store().read(MAIN).data == jsonfmt.dumps(entry)  # canonical on disk
    assert mnt.meta(MAIN).read_bytes() == (raw + "\n").encode()  # what was written
    assert os.stat(mnt.meta(MAIN)).st_size == len(raw) + 1
    if mnt.store().layout == "legacy":
        assert b'"sessionId": "m-2"' in (mnt.store_folder / "sessions.json").read_bytes()


def test_syntax_error_fails_at_write_and_keeps_the_store(mnt: Mount) -> None:
    before = store_files(mnt)
    result = sh(f"echo '{{broken' > {mnt.meta(MAIN)}")
    assert result.returncode == 1 and "Invalid argument" in result.stderr
    fd = os.open(mnt.meta(MAIN), os.O_WRONLY | os.O_TRUNC)
    with pytest.raises(OSError) as excinfo:
        os.write(fd, b'{"sessionId": x')
    assert excinfo.value.errno == errno.EINVAL
    with pytest.raises(OSError) as excinfo:
        os.close(fd)
    assert excinfo.value.errno == errno.EINVAL
    assert store_files(mnt) == before
    assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    errors = mnt.errors().splitlines()
    assert len(errors) == 2 and all(f"/{keys.encode(MAIN)}/meta.json EINVAL" in e
                                    for e in errors)
    assert "rejected write" in mnt.log()


def test_incomplete_entry_fails_at_close_and_fsync(mnt: Mount) -> None:
    before = store_files(mnt)
    fd = os.open(mnt.meta(MAIN), os.O_WRONLY | os.O_TRUNC)
    assert os.write(fd, b'{"sessionId": "m-1", "updatedAt": 1') == 35
    with pytest.raises(OSError) as excinfo:
        os.fsync(fd)
    assert excinfo.value.errno == errno.EINVAL
    with pytest.raises(OSError) as excinfo:
        os.close(fd)
    assert excinfo.value.errno == errno.EINVAL
    fd = os.open(mnt.meta(MAIN), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b'{"sessionId": "m-1"}\n')  # valid JSON, not an entry (no updatedAt)
    with pytest.raises(OSError) as excinfo:
        os.close(fd)
    assert excinfo.value.errno == errno.EINVAL
    assert store_files(mnt) == before
    assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    assert "updatedAt" in mnt.errors().splitlines()[-1]


def test_unchanged_entry_writes_nothing(mnt: Mount) -> None:
    before = store_files(mnt)
    mnt.meta(MAIN).write_bytes(jsonfmt.dumps(ENTRIES[MAIN]))
    mnt.meta(MAIN).write_text(jsonfmt.stringify(ENTRIES[MAIN], indent=None) + "\n")
    assert store_files(mnt) == before


def test_append_offsets_and_truncate(mnt: Mount) -> None:
    path = mnt.meta(JAMES)
    original = path.read_bytes()
    assert sh(f"echo >> {path}").returncode == 0
    assert path.read_bytes() == original + b"\n"
    result = sh(f"echo '\"x\"' >> {path}")
    assert result.returncode == 1 and "Invalid argument" in result.stderr
    with open(path, "r+b") as f:  # overwrite in the middle, no O_TRUNC
        text = f.read()
        f.seek(text.index(b'"j-1"'))
        f.write(b'"j-9"')
    assert mnt.store().get(JAMES)["sessionId"] == "j-9"
    with open(path, "r+b") as f:  # ftruncate then rewrite, as vim does
        f.truncate(0)
        f.write(b'{"sessionId": "j-10", "updatedAt": 5}')
    assert mnt.store().get(JAMES) == {"sessionId": "j-10", "updatedAt": 5}
    with pytest.raises(OSError) as excinfo:
        os.truncate(path, 10)  # truncate(2) with no open file commits at once
    assert excinfo.value.errno == errno.EINVAL
    assert mnt.store().get(JAMES) == {"sessionId": "j-10", "updatedAt": 5}


def test_entry_over_the_size_limit_fails_with_efbig(mnt: Mount) -> None:
    before = store_files(mnt)
    blob = b'{"sessionId": "m-1", "updatedAt": 1, "pad": "' + b"x" * (17 << 20) + b'"}'
    fd = os.open(mnt.meta(MAIN), os.O_WRONLY | os.O_TRUNC)
    with pytest.raises(OSError) as excinfo:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
    assert excinfo.value.errno == errno.EFBIG
    with pytest.raises(OSError):
        os.close(fd)
    assert store_files(mnt) == before


def test_metadata_calls_are_accepted_without_effect(mnt: Mount) -> None:
    path = mnt.meta(MAIN)
    before = os.stat(path)
    os.chmod(path, 0o644)
    os.chown(path, os.getuid(), os.getgid())
    os.utime(path, (1, 1))
    assert sh(f"touch {path}").returncode == 0
    after = os.stat(path)
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert after.st_mtime_ns == before.st_mtime_ns
    for call in (lambda: os.getxattr(path, "user.x"),
                 lambda: os.setxattr(path, "user.x", b"1"),
                 lambda: os.removexattr(path, "user.x")):
        with pytest.raises(OSError) as excinfo:
            call()
        assert excinfo.value.errno in (errno.ENOTSUP, errno.ENODATA)
    assert os.listxattr(path) == []
    assert sh(f"ls -l {mnt.mp} {path}").returncode == 0


def test_links_nodes_and_foreign_files_are_refused(mnt: Mount) -> None:
    folder = mnt.dir(MAIN)
    for call in (lambda: os.link(folder / "meta.json", folder / "hard"),
                 lambda: os.symlink("target", folder / "link"),
                 lambda: os.mkfifo(folder / "fifo"),
                 lambda: os.mkdir(folder / "sub"),
                 lambda: (mnt.mp / "notes.txt").write_text("x")):
        with pytest.raises(OSError) as excinfo:
            call()
        assert excinfo.value.errno == errno.EPERM
    os.symlink("user@host.1:2", folder / ".#meta.json")  # an Emacs lock link is scratch
    assert os.readlink(folder / ".#meta.json") == "user@host.1:2"
    (mnt.mp / ".meta.json.swp").write_bytes(b"swap")  # editor scratch at the root
    assert (mnt.mp / ".meta.json.swp").read_bytes() == b"swap"
    os.unlink(mnt.mp / ".meta.json.swp")
    assert sorted(mnt.store().keys()) == sorted(ENTRIES)


def test_scratch_files_live_in_memory(mnt: Mount) -> None:
    folder = mnt.dir(MAIN)
    (folder / "notes.txt").write_text("hello")
    with open(folder / "notes.txt", "a") as f:
        f.write(" world")
    assert (folder / "notes.txt").read_text() == "hello world"
    assert sorted(os.listdir(folder)) == ["meta.json", "notes.txt"]
    assert not any(p.name == "notes.txt" for p in Path(mnt.store_folder).rglob("*"))
    os.unlink(folder / "notes.txt")
    assert os.listdir(folder) == ["meta.json"]


def test_folder_time_follows_a_write_at_once(mnt: Mount) -> None:
    folder = mnt.dir(CRON)
    assert os.stat(folder).st_mtime_ns == ENTRIES[CRON]["updatedAt"] * 1_000_000  # cached now
    newer = dict(ENTRIES[CRON], updatedAt=1_767_300_000_000)
    mnt.meta(CRON).write_bytes(jsonfmt.dumps(newer))
    assert os.stat(folder).st_mtime_ns == newer["updatedAt"] * 1_000_000
    assert sh(f"ls -t {mnt.mp}").stdout.split()[0] == keys.encode(CRON)
