"""The mounted tree without a kernel: paths, attributes, buffered writes, namespace changes."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.errors import SessionfsError
from sessionfs.fs.view import SessionView
from sessionfs.store import Store, open_store
from tests.conftest import JAMES, MAIN, SteppedClock
from tests.mountharness import wait_for

ENTRIES: dict[str, dict[str, Any]] = {
    "agent:main:main": {"sessionId": "m", "updatedAt": 1_767_225_600_000},
    "agent:main:telegram:direct:james": {"sessionId": "j", "updatedAt": 1_767_225_700_000},
    "agent:main:cron:14bbd904": {"sessionId": "c", "updatedAt": 1_767_225_500_000},
}
WR = os.O_WRONLY
TRUNC = os.O_WRONLY | os.O_TRUNC


def errno_of(excinfo: pytest.ExceptionInfo[BaseException]) -> int:
    return excinfo.value.errno  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def store(make_store: Callable[..., Store], layout: str) -> Store:
    return make_store(layout, ENTRIES)


@pytest.fixture
def view(store: Store) -> SessionView:
    return SessionView(store, timeout=0)


def meta(key: str) -> str:
    return f"/{keys.encode(key)}/meta.json"


def read_all(view: SessionView, path: str) -> bytes:
    fh = view.open(path, os.O_RDONLY)
    try:
        return view.read(fh, 1 << 30, 0)
    finally:
        view.release(fh)


def write_file(view: SessionView, path: str, data: bytes, flags: int = TRUNC) -> None:
    fh = view.open(path, flags)
    try:
        view.write(fh, data, 0)
        view.flush(fh)
    finally:
        view.release(fh)


def store_files(store: Store) -> dict[str, bytes]:
    base = store.path if store.layout == "directory" else store.path.parent
    if store.layout == "legacy":
        return {"sessions.json": store.path.read_bytes()}
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file()}


# -- the tree ------------------------------------------------------------------------------------
def test_root_lists_sessions_and_control_folder(view: SessionView) -> None:
    names = [name for name, _ in view.listdir("/")]
    assert names[:3] == [".", "..", ".sessionfs"]
    assert sorted(names[3:]) == sorted(keys.encode(k) for k in ENTRIES)


def test_attributes(view: SessionView, store: Store) -> None:
    root = view.getattr("/")
    assert stat.S_ISDIR(root["st_mode"]) and stat.S_IMODE(root["st_mode"]) == 0o700
    folder = view.getattr(f"/{keys.encode(JAMES)}")
    assert stat.S_IMODE(folder["st_mode"]) == 0o700
    assert folder["st_mtime"] == ENTRIES[JAMES]["updatedAt"] * 1_000_000
    assert folder["st_uid"] == os.getuid() and folder["st_gid"] == os.getgid()
    record = store.read(JAMES)
    file = view.getattr(meta(JAMES))
    assert stat.S_ISREG(file["st_mode"]) and stat.S_IMODE(file["st_mode"]) == 0o600
    assert file["st_size"] == len(record.data)
    assert file["st_mtime"] == record.mtime_ns
    assert read_all(view, meta(JAMES)) == record.data
    with pytest.raises(FileNotFoundError):
        view.getattr("/agent--main--nope")
    with pytest.raises(FileNotFoundError):
        view.getattr("/agent--main--nope/meta.json")


def test_control_files(view: SessionView, store: Store) -> None:
    assert [n for n, _ in view.listdir("/.sessionfs")] == [".", "..", "errors", "status"]
    status = read_all(view, "/.sessionfs/status").decode()
    assert f"store: {store.path}" in status
    assert f"layout: {store.layout}" in status
    assert "sessions: 3" in status and "read-only: no" in status
    assert read_all(view, "/.sessionfs/errors") == b""
    write_file(view, "/.sessionfs/errors", b"forged")  # a restore's write: discarded
    assert read_all(view, "/.sessionfs/errors") == b""
    with pytest.raises(PermissionError):
        view.rename("/.sessionfs/status", "/.sessionfs/moved")
    assert stat.S_IMODE(view.getattr("/.sessionfs/status")["st_mode"]) == 0o600


# -- writes --------------------------------------------------------------------------------------
def test_valid_write_commits_once_and_reads_back_exactly(view: SessionView,
                                                         store: Store) -> None:
    raw = b'{"sessionId":"m2","updatedAt":5}\n'
    write_file(view, meta(MAIN), raw)
    assert store.get(MAIN) == {"sessionId": "m2", "updatedAt": 5}
    assert store.read(MAIN).data == jsonfmt.dumps({"sessionId": "m2", "updatedAt": 5})
    assert read_all(view, meta(MAIN)) == raw
    assert view.getattr(meta(MAIN))["st_size"] == len(raw)


def test_unchanged_entry_writes_nothing(view: SessionView, store: Store) -> None:
    before = store_files(store)
    stamp = store.read(MAIN).mtime_ns
    assert wait_for(lambda: time.time_ns() > stamp + 10**7)  # a rewrite would show a new mtime
    write_file(view, meta(MAIN), jsonfmt.dumps(ENTRIES[MAIN]))
    write_file(view, meta(MAIN), b'{"sessionId": "m", "updatedAt": 1767225600000}')
    assert store_files(store) == before
    assert store.read(MAIN).mtime_ns == stamp


def test_invalid_entry_fails_at_close_and_keeps_the_store(view: SessionView,
                                                           store: Store) -> None:
    before = store_files(store)
    fh = view.open(meta(MAIN), TRUNC)
    view.write(fh, b'{"sessionId": "m"}', 0)  # valid JSON, missing updatedAt
    with pytest.raises(SessionfsError) as excinfo:
        view.flush(fh)
    assert errno_of(excinfo) == errno.EINVAL
    with pytest.raises(SessionfsError):
        view.fsync(fh)
    view.release(fh)
    assert store_files(store) == before
    assert read_all(view, meta(MAIN)) == store.read(MAIN).data
    lines = view.errors.render().decode().splitlines()
    assert len(lines) == 1  # the same failure is reported once
    assert meta(MAIN) in lines[0] and "EINVAL" in lines[0] and "updatedAt" in lines[0]


def test_syntax_error_fails_at_write(view: SessionView, store: Store) -> None:
    before = store_files(store)
    fh = view.open(meta(MAIN), TRUNC)
    view.flush(fh)  # the shell's dup2 + close before writing: nothing is committed
    with pytest.raises(SessionfsError) as excinfo:
        view.write(fh, b"{broken", 0)
    assert errno_of(excinfo) == errno.EINVAL
    with pytest.raises(SessionfsError):
        view.write(fh, b"}", 7)
    with pytest.raises(SessionfsError):
        view.flush(fh)
    view.release(fh)
    assert store_files(store) == before
    assert len(view.errors.render().splitlines()) == 1


def test_incomplete_json_waits_for_close(view: SessionView, store: Store) -> None:
    fh = view.open(meta(MAIN), TRUNC)
    assert view.write(fh, b'{"sessionId": "m", "upda', 0) == 24
    with pytest.raises(SessionfsError) as excinfo:
        view.flush(fh)
    assert errno_of(excinfo) == errno.EINVAL
    view.release(fh)
    assert store.get(MAIN) == ENTRIES[MAIN]


def test_multibyte_character_split_across_writes(view: SessionView, store: Store) -> None:
    data = '{"sessionId": "m", "updatedAt": 7, "label": "Einkaufsliste 🛒"}'.encode()
    cut = data.index("🛒".encode()) + 2
    fh = view.open(meta(MAIN), TRUNC)
    view.write(fh, data[:cut], 0)
    view.write(fh, data[cut:], cut)
    view.flush(fh)
    view.release(fh)
    assert store.get(MAIN)["label"] == "Einkaufsliste 🛒"


def test_vim_style_save_open_ftruncate_write_fsync(view: SessionView, store: Store) -> None:
    fh = view.open(meta(MAIN), os.O_WRONLY | os.O_CREAT)
    view.truncate(None, 0, fh)
    before = store.read(MAIN).data
    # a close() right after the ftruncate is `truncate -s 0`: refused, store unchanged (issue 8
    # §3); the open file stays usable and the save goes on
    with pytest.raises(SessionfsError) as excinfo:
        view.flush(fh)
    assert errno_of(excinfo) == errno.EINVAL
    assert store.read(MAIN).data == before
    data = b'{\n  "sessionId": "vim",\n  "updatedAt": 9\n}\n'
    view.write(fh, data[:10], 0)
    view.write(fh, data[10:], 10)
    view.fsync(fh)
    assert store.get(MAIN) == {"sessionId": "vim", "updatedAt": 9}
    view.flush(fh)
    view.release(fh)
    assert read_all(view, meta(MAIN)) == data


def test_truncate_by_path_acts_on_the_open_buffer(view: SessionView, store: Store) -> None:
    fh = view.open(meta(MAIN), WR)
    view.truncate(meta(MAIN), 0)
    view.write(fh, b'{"sessionId": "t", "updatedAt": 1}', 0)
    view.release(fh)
    assert store.get(MAIN) == {"sessionId": "t", "updatedAt": 1}


def test_truncate_without_handle_commits_right_away(view: SessionView, store: Store) -> None:
    with pytest.raises(SessionfsError) as excinfo:
        view.truncate(meta(MAIN), 3)
    assert errno_of(excinfo) == errno.EINVAL
    assert store.get(MAIN) == ENTRIES[MAIN]


def test_append_and_write_at_offsets(view: SessionView, store: Store) -> None:
    original = store.read(MAIN).data
    fh = view.open(meta(MAIN), os.O_WRONLY | os.O_APPEND)
    view.write(fh, b"\n\n", 0)  # O_APPEND: lands at the end whatever the offset
    view.release(fh)
    assert read_all(view, meta(MAIN)) == original + b"\n\n"
    fh = view.open(meta(MAIN), os.O_WRONLY | os.O_APPEND)
    with pytest.raises(SessionfsError) as excinfo:
        view.write(fh, b'"x"', 0)  # after a complete value: can never be valid again
    assert errno_of(excinfo) == errno.EINVAL
    view.release(fh)
    fh = view.open(meta(MAIN), os.O_RDWR)
    text = bytearray(view.read(fh, 1 << 20, 0))
    at = text.index(b'"m"')
    view.write(fh, b'"z"', at)
    view.release(fh)
    assert store.get(MAIN)["sessionId"] == "z"


def test_entry_size_limit(store: Store) -> None:
    view = SessionView(store, timeout=0, max_entry_size=100)
    fh = view.open(meta(MAIN), TRUNC)
    with pytest.raises(SessionfsError) as excinfo:
        view.write(fh, b" " * 101, 0)
    assert errno_of(excinfo) == errno.EFBIG
    view.release(fh)
    assert store.get(MAIN) == ENTRIES[MAIN]


def test_readers_get_a_snapshot(view: SessionView, store: Store) -> None:
    fh = view.open(meta(MAIN), os.O_RDONLY)
    first = view.read(fh, 5, 0)
    store.put(MAIN, {"sessionId": "other", "updatedAt": 1, "pad": "x" * 100})
    rest = view.read(fh, 1 << 20, 5)
    view.release(fh)
    assert first + rest == jsonfmt.dumps(ENTRIES[MAIN])


def test_overlay_gives_way_to_changes_behind_the_mount(view: SessionView, store: Store) -> None:
    write_file(view, meta(MAIN), b'{"sessionId":"m","updatedAt":3}')
    store.put(MAIN, {"sessionId": "m", "updatedAt": 4})
    assert read_all(view, meta(MAIN)) == store.read(MAIN).data


# -- names ---------------------------------------------------------------------------------------
def test_rename_away_keeps_the_session(view: SessionView, store: Store) -> None:
    folder = f"/{keys.encode(MAIN)}"
    original = read_all(view, meta(MAIN))
    view.rename(meta(MAIN), f"{folder}/meta.json~")
    assert store.get(MAIN) == ENTRIES[MAIN]
    with pytest.raises(FileNotFoundError):
        view.getattr(meta(MAIN))
    assert read_all(view, f"{folder}/meta.json~") == original
    assert [n for n, _ in view.listdir(folder)][2:] == ["meta.json~"]
    fh = view.create(meta(MAIN), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    view.write(fh, b'{"sessionId": "new", "updatedAt": 2}', 0)
    view.release(fh)
    assert store.get(MAIN) == {"sessionId": "new", "updatedAt": 2}
    view.unlink(f"{folder}/meta.json~")
    assert store.get(MAIN)["sessionId"] == "new"


def test_renamed_away_name_comes_back_after_the_grace_period(store: Store,
                                                             clock: SteppedClock) -> None:
    view = SessionView(store, timeout=0, hide_grace=0.05)
    view.mount_state.clock = clock
    view.rename(meta(MAIN), f"/{keys.encode(MAIN)}/backup")
    with pytest.raises(FileNotFoundError):
        view.getattr(meta(MAIN))
    clock.advance(0.04)
    with pytest.raises(FileNotFoundError):
        view.getattr(meta(MAIN))
    clock.advance(0.02)
    assert view.getattr(meta(MAIN))["st_size"] == len(store.read(MAIN).data)


def test_unlink_deletes_and_leaves_an_empty_folder(view: SessionView, store: Store,
                                                   clock: SteppedClock) -> None:
    view.mount_state.clock = clock
    folder = f"/{keys.encode(MAIN)}"
    view.unlink(meta(MAIN))
    assert [n for n, _ in view.listdir(folder)] == [".", ".."]
    with pytest.raises(FileNotFoundError):
        view.getattr(meta(MAIN))
    assert MAIN in store.keys()  # for UNLINK_GRACE: an unlink + create is a save
    clock.advance(view.unlink_grace - 0.01)
    view.settle()
    assert MAIN in store.keys()
    clock.advance(0.02)
    view.settle()
    assert MAIN not in store.keys()
    assert [n for n, _ in view.listdir(folder)] == [".", ".."]
    view.rmdir(folder)
    with pytest.raises(FileNotFoundError):
        view.getattr(folder)


def test_rmdir_of_a_session_is_refused(view: SessionView) -> None:
    with pytest.raises(OSError) as excinfo:
        view.rmdir(f"/{keys.encode(MAIN)}")
    assert errno_of(excinfo) == errno.ENOTEMPTY


def test_mkdir_then_write_creates_a_session(view: SessionView, store: Store) -> None:
    key = "agent:main:new"
    folder = f"/{keys.encode(key)}"
    view.mkdir(folder)
    assert key not in store.keys()
    assert view.getattr(folder)["st_mode"] & stat.S_IFDIR
    assert [n for n, _ in view.listdir(folder)] == [".", ".."]
    fh = view.create(f"{folder}/meta.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    view.write(fh, b'{"sessionId": "n", "updatedAt": 1}', 0)
    view.release(fh)
    assert store.get(key) == {"sessionId": "n", "updatedAt": 1}


def test_mkdir_of_a_name_no_key_has_fails_with_einval(view: SessionView) -> None:
    with pytest.raises(SessionfsError) as excinfo:
        view.mkdir("/agent:main:x")
    assert errno_of(excinfo) == errno.EINVAL
    with pytest.raises(OSError) as excinfo2:
        view.mkdir(f"/{keys.encode(MAIN)}")
    assert errno_of(excinfo2) == errno.EEXIST


def test_rename_session(view: SessionView, store: Store) -> None:
    view.rename(f"/{keys.encode(MAIN)}", "/agent--main--renamed")
    assert store.get("agent:main:renamed") == ENTRIES[MAIN]
    assert MAIN not in store.keys()
    with pytest.raises(OSError) as excinfo:
        view.rename("/agent--main--renamed", f"/{keys.encode(JAMES)}")
    assert errno_of(excinfo) in (errno.ENOTEMPTY, errno.EEXIST)
    assert store.get(JAMES) == ENTRIES[JAMES]


def test_moving_meta_between_sessions_copies_then_deletes(view: SessionView,
                                                          store: Store) -> None:
    view.rename(meta(MAIN), meta(JAMES))
    assert store.get(JAMES) == ENTRIES[MAIN]
    assert MAIN not in store.keys()


def test_scratch_renamed_onto_meta_commits_when_valid(view: SessionView, store: Store) -> None:
    folder = f"/{keys.encode(MAIN)}"
    tmp = f"{folder}/sedAbc123"
    fh = view.create(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    view.write(fh, b"{not json", 0)  # scratch files hold anything
    view.release(fh)
    with pytest.raises(SessionfsError) as excinfo:
        view.rename(tmp, meta(MAIN))
    assert errno_of(excinfo) == errno.EINVAL
    assert store.get(MAIN) == ENTRIES[MAIN]
    assert view.getattr(tmp)["st_size"] == 9
    fh = view.open(tmp, os.O_WRONLY | os.O_TRUNC)
    view.write(fh, b'{"sessionId": "sed", "updatedAt": 3}', 0)
    view.release(fh)
    view.rename(tmp, meta(MAIN))
    assert store.get(MAIN)["sessionId"] == "sed"
    with pytest.raises(FileNotFoundError):
        view.getattr(tmp)


def test_rename_flags(view: SessionView, store: Store) -> None:
    folder = f"/{keys.encode(MAIN)}"
    fh = view.create(f"{folder}/a", os.O_WRONLY | os.O_CREAT)
    view.release(fh)
    with pytest.raises(OSError) as excinfo:
        view.rename(f"{folder}/a", meta(MAIN), 2)  # RENAME_EXCHANGE
    assert errno_of(excinfo) == errno.EINVAL
    with pytest.raises(OSError) as excinfo:
        view.rename(f"{folder}/a", meta(MAIN), 1)  # RENAME_NOREPLACE onto an existing file
    assert errno_of(excinfo) == errno.EEXIST
    assert store.get(MAIN) == ENTRIES[MAIN]
    view.rename(f"{folder}/a", f"{folder}/b", 1)
    assert view.getattr(f"{folder}/b")["st_size"] == 0


def test_root_accepts_only_editor_scratch_files(view: SessionView) -> None:
    for name in ("4913", ".meta.json.swp", "x~", "#x#", "sedAbC123", "a.tmp"):
        view.release(view.create(f"/{name}", os.O_WRONLY | os.O_CREAT))
    for name in ("notes.txt", "agent--main--x"):
        with pytest.raises(OSError) as excinfo:
            view.create(f"/{name}", os.O_WRONLY | os.O_CREAT)
        assert errno_of(excinfo) == errno.EPERM


def test_links(view: SessionView) -> None:
    folder = f"/{keys.encode(MAIN)}"
    view.symlink(f"{folder}/.#meta.json", "user@host.123:456")
    assert view.readlink(f"{folder}/.#meta.json") == "user@host.123:456"
    assert stat.S_ISLNK(view.getattr(f"{folder}/.#meta.json")["st_mode"])
    with pytest.raises(OSError) as excinfo:
        view.symlink(f"{folder}/other", "target")
    assert errno_of(excinfo) == errno.EPERM
    view.unlink(f"{folder}/.#meta.json")


def test_read_only(store: Store) -> None:
    view = SessionView(store, timeout=0, read_only=True)
    before = store_files(store)
    attempts: list[Callable[[], object]] = [
        lambda: view.open(meta(MAIN), WR),
        lambda: view.create(f"/{keys.encode(MAIN)}/x", WR),
        lambda: view.unlink(meta(MAIN)),
        lambda: view.mkdir("/agent--main--x"),
        lambda: view.rename(f"/{keys.encode(MAIN)}", "/agent--main--x"),
        lambda: view.truncate(meta(MAIN), 0),
    ]
    for attempt in attempts:
        with pytest.raises(SessionfsError) as excinfo:
            attempt()
        assert errno_of(excinfo) == errno.EROFS
    assert store_files(store) == before
    assert "read-only: yes (mounted with --read-only)" in read_all(
        view, "/.sessionfs/status").decode()


def test_changes_behind_the_mount_show_up(view: SessionView, store: Store) -> None:
    store.put("agent:main:fresh", {"sessionId": "f", "updatedAt": 1})
    assert "agent--main--fresh" in [n for n, _ in view.listdir("/")]
    store.put(MAIN, {"sessionId": "changed", "updatedAt": 2})
    assert b'"changed"' in read_all(view, meta(MAIN))
    store.delete(JAMES)
    with pytest.raises(FileNotFoundError):
        view.open(meta(JAMES), os.O_RDONLY)


def test_libfuse_hide_then_rename_over_keeps_the_session(view: SessionView, store: Store,
                                                         clock: SteppedClock) -> None:
    """rename(tmp, meta.json) while meta.json is open: libfuse first renames the open file to
    .fuse_hidden…, then renames tmp over meta.json, both on one thread."""
    view.mount_state.clock = clock
    folder = f"/{keys.encode(MAIN)}"
    reader = view.open(meta(MAIN), os.O_RDONLY)
    fh = view.create(f"{folder}/tmp", os.O_WRONLY | os.O_CREAT)
    view.write(fh, b'{"sessionId": "new", "updatedAt": 2}', 0)
    view.release(fh)
    view.rename(meta(MAIN), f"{folder}/.fuse_hidden0000000100000001")
    assert store.get(MAIN) == ENTRIES[MAIN]  # not deleted: it may be a rename-over
    view.rename(f"{folder}/tmp", meta(MAIN))
    assert store.get(MAIN) == {"sessionId": "new", "updatedAt": 2}
    view.settle()
    clock.advance(view.unlink_grace + 0.1)  # past the grace: still no delete
    view.settle()
    assert store.get(MAIN) == {"sessionId": "new", "updatedAt": 2}
    assert view.read(reader, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
    view.release(reader)
    view.unlink(f"{folder}/.fuse_hidden0000000100000001")  # libfuse, at the last close
    assert store.get(MAIN)["sessionId"] == "new"
    assert [n for n, _ in view.listdir(folder)] == [".", "..", "meta.json"]


def test_libfuse_hide_for_unlink_deletes_after_the_grace(view: SessionView, store: Store,
                                                         clock: SteppedClock) -> None:
    view.mount_state.clock = clock
    folder = f"/{keys.encode(MAIN)}"
    hidden = f"{folder}/.fuse_hidden0000000200000002"
    reader = view.open(meta(MAIN), os.O_RDONLY)
    view.rename(meta(MAIN), hidden)
    with pytest.raises(FileNotFoundError):
        view.getattr(meta(MAIN))
    view.settle()
    assert MAIN in store.keys()  # within the grace a create of meta.json makes it a save
    clock.advance(view.unlink_grace - 0.01)
    view.settle()
    assert MAIN in store.keys()
    clock.advance(0.02)
    view.settle()
    assert MAIN not in store.keys()
    assert view.getattr(hidden)["st_size"] == len(jsonfmt.dumps(ENTRIES[MAIN]))
    assert view.read(reader, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
    view.release(reader)
    view.unlink(hidden)
    assert [n for n, _ in view.listdir(folder)] == [".", ".."]
    # and without any request, the timer decides (on real time)
    view.mount_state.clock = time.monotonic
    reader = view.open(meta(JAMES), os.O_RDONLY)
    view.rename(meta(JAMES), f"/{keys.encode(JAMES)}/.fuse_hidden0000000300000003")
    started = time.monotonic()
    assert wait_for(lambda: JAMES not in store.keys(), view.unlink_grace + 5)
    assert time.monotonic() - started >= view.unlink_grace
    view.release(reader)


def test_a_folder_swapped_for_a_symlink_stops_being_a_session(make_store: Callable[..., Store],
                                                              tmp_path: Any) -> None:
    """A session folder replaced by a symlink (to a folder holding a meta.json) after it was
    listed and its attributes cached is not served through the symlink: not by the listing's
    attributes, not by a lookup, not by a read."""
    store = make_store("directory", ENTRIES)
    view = SessionView(store, timeout=0)
    name = keys.encode(JAMES)
    listed = view.opendir("/")
    assert view.entry_stat("", name) is not None  # attributes cached from the real folder
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_bytes(jsonfmt.dumps({"sessionId": "evil",
                                                       "updatedAt": 99999000}))
    folder = store.path / name
    os.rename(folder, tmp_path / "moved-away")
    os.symlink(outside, folder)
    assert view.entry_stat("", name) is None  # the listing taken before the swap
    with pytest.raises(OSError) as excinfo:
        view.getattr(f"/{name}")
    assert errno_of(excinfo) == errno.ENOENT
    with pytest.raises((OSError, SessionfsError)) as excinfo:
        read_all(view, f"/{name}/meta.json")
    assert errno_of(excinfo) in (errno.ENOENT, errno.EIO)
    view.releasedir(listed)
    assert name not in {entry for entry, _ in view.listdir("/")}


def test_status_is_rendered_once_per_store_version(make_store: Callable[..., Store],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``stat`` of status reads no store: with a sessions.json beside sessions.d a render reads
    both stores whole, so it happens once per change, not per getattr (nor per open)."""
    import sessionfs.fs.view as view_module

    store = make_store("directory", ENTRIES)
    stray = dict(ENTRIES, **{MAIN: {"sessionId": "old", "updatedAt": 1}})
    (store.path.parent / "sessions.json").write_bytes(jsonfmt.dumps(stray))
    view = SessionView(store, timeout=0)
    calls = {"keys": 0, "legacy": 0}
    real_keys, real_reappeared = store.keys, view_module.reappeared_legacy

    def counting_keys() -> list[str]:
        calls["keys"] += 1
        return real_keys()

    def counting_reappeared(location: Any) -> Any:
        calls["legacy"] += 1
        return real_reappeared(location)

    monkeypatch.setattr(store, "keys", counting_keys)
    monkeypatch.setattr(view_module, "reappeared_legacy", counting_reappeared)
    first = view.getattr("/.sessionfs/status")
    for _ in range(200):
        attrs = view.getattr("/.sessionfs/status")
        assert (attrs["st_size"], attrs["st_mtime"]) == (first["st_size"], first["st_mtime"])
    data = read_all(view, "/.sessionfs/status")
    assert len(data) == first["st_size"]
    assert "1 sessions differ" in data.decode() and "sessions: 3\n" in data.decode()
    assert calls == {"keys": 1, "legacy": 1}
    assert wait_for(lambda: time.time_ns() > first["st_mtime"] + 10**7)  # a new root mtime
    store.put("agent:main:fresh", {"sessionId": "f", "updatedAt": 1})
    calls.update(keys=1, legacy=1)  # what the put itself read (its sessionId check) is not ours
    for _ in range(50):
        changed = view.getattr("/.sessionfs/status")
    assert calls == {"keys": 2, "legacy": 2}
    data = read_all(view, "/.sessionfs/status")
    assert "sessions: 4\n" in data.decode() and changed["st_size"] == len(data)
    assert changed["st_mtime"] > first["st_mtime"]
    assert calls == {"keys": 2, "legacy": 2}


def test_scratch_budget_counts_open_unlinked_files_until_their_close(store: Store) -> None:
    view = SessionView(store, timeout=0, scratch_max_bytes=100, scratch_max_files=2)
    path = f"/{keys.encode(MAIN)}/notes.txt"
    fh = view.create(path, os.O_WRONLY)
    assert view.write(fh, b"x" * 60, 0) == 60
    view.unlink(path)  # gone from the folder, but its bytes live on while it is open
    view.create(f"/{keys.encode(MAIN)}/b.tmp", os.O_WRONLY)
    with pytest.raises(OSError) as excinfo:
        view.create(f"/{keys.encode(MAIN)}/c.tmp", os.O_WRONLY)
    assert errno_of(excinfo) == errno.ENOSPC
    with pytest.raises(OSError) as excinfo:
        view.write(fh, b"y" * 41, 60)
    assert errno_of(excinfo) == errno.ENOSPC
    assert "ENOSPC" in view.errors.render().decode()
    view.release(fh)
    budget = view._scratch.budget
    assert (budget.files, budget.bytes) == (1, 0)
    view.create(f"/{keys.encode(MAIN)}/c.tmp", os.O_WRONLY)


def test_unlink_then_create_is_a_save_and_a_refusal_keeps_the_entry(
        view: SessionView, store: Store, clock: SteppedClock) -> None:
    """install, tar -x: unlink meta.json, then create it again (issue 8 §1)."""
    view.mount_state.clock = clock
    before = store.read(MAIN).data
    view.unlink(meta(MAIN))
    fh = view.create(meta(MAIN), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    view.write(fh, b'{"updatedAt": 5}', 0)
    with pytest.raises(SessionfsError) as excinfo:
        view.flush(fh)
    assert errno_of(excinfo) == errno.EINVAL
    view.release(fh)
    clock.advance(view.unlink_grace + 0.1)
    view.settle()
    assert store.read(MAIN).data == before  # refused: the old entry stays for good
    assert read_all(view, meta(MAIN)) == before
    view.unlink(meta(JAMES))
    write_file(view, meta(JAMES), b'{"sessionId": "j2", "updatedAt": 6}', os.O_WRONLY | os.O_CREAT)
    clock.advance(view.unlink_grace + 0.1)
    view.settle()
    assert store.get(JAMES) == {"sessionId": "j2", "updatedAt": 6}


def test_truncating_a_scratch_file_by_path_holds_the_views_lock(
        view: SessionView, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scratch files are shared by all their handles and changed only under the view's lock
    (issue 9 §1: ``truncate`` by path skipped it)."""
    from sessionfs.fs.handles import ScratchHandle

    path = f"/{keys.encode(MAIN)}/notes.txt"
    fh = view.create(path, os.O_WRONLY | os.O_CREAT)
    view.write(fh, b"0123456789", 0)
    view.release(fh)
    locked: list[bool] = []
    original = ScratchHandle.truncate

    def watched(handle: ScratchHandle, length: int) -> None:
        locked.append(view._lock._is_owned())  # type: ignore[attr-defined]
        original(handle, length)

    monkeypatch.setattr(ScratchHandle, "truncate", watched)
    view.truncate(path, 4)
    assert locked == [True]
    assert read_all(view, path) == b"0123"


def test_a_read_goes_through_the_page_cache_only_when_the_kernel_has_its_size(
        store: Store, clock: SteppedClock) -> None:
    """Direct I/O costs a READ more per file (the one at EOF): in a mount nothing can write
    through, a read-only open is served through the page cache when the kernel's size is
    surely the snapshot's (told by getattr, unchanged since), and with direct I/O otherwise:
    nothing told yet, a change behind the mount, another open file with other bytes."""
    view = SessionView(store, timeout=0, read_only=True)
    view.mount_state.clock = clock
    path = meta(MAIN)
    first = view.open(path, os.O_RDONLY)
    assert view.handles.get(first).direct_io  # the kernel was told no size yet
    view.release(first)
    view.getattr(path)
    reader = view.open(path, os.O_RDONLY)
    assert not view.handles.get(reader).direct_io
    assert view.read(reader, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
    shorter = {"sessionId": "s", "updatedAt": 1}
    open_store(store.path).put(MAIN, shorter)  # the gateway saves, behind the mount
    # while the page-cache reader is open, the kernel is told its size (a smaller one would
    # cut its read short); new opens get the new bytes, with direct I/O
    assert view.getattr(path)["st_size"] == len(jsonfmt.dumps(ENTRIES[MAIN]))
    newer = view.open(path, os.O_RDONLY)
    assert view.handles.get(newer).direct_io
    assert view.read(newer, 1 << 20, 0) == jsonfmt.dumps(shorter)
    assert view.read(reader, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
    view.release(newer)
    view.release(reader)
    assert view.getattr(path)["st_size"] == len(jsonfmt.dumps(shorter))
    view.getattr(path)
    still = view.open(path, os.O_RDONLY)  # the kernel may still hold an older answer
    assert view.handles.get(still).direct_io
    view.release(still)
    clock.advance(0.15)  # the new size has been the kernel's for longer than it keeps answers
    view.getattr(path)
    latest = view.open(path, os.O_RDONLY)
    assert not view.handles.get(latest).direct_io


def test_a_writable_mount_reads_with_direct_io(store: Store, clock: SteppedClock) -> None:
    """Where a writer can open with O_TRUNC, the kernel may set the size to 0 under a
    page-cache reader (test_soak's racing readers): readers always read with direct I/O."""
    view = SessionView(store, timeout=0)
    view.mount_state.clock = clock
    path = meta(MAIN)
    view.getattr(path)
    clock.advance(0.15)
    view.getattr(path)
    reader = view.open(path, os.O_RDONLY)
    assert view.handles.get(reader).direct_io
    assert view.read(reader, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
    view.release(reader)


def test_an_entry_damaged_behind_the_mount_fails_the_next_open(
        make_store: Callable[..., Store]) -> None:
    """A read-only open keeps small entries it parsed (one ``lstat`` for the next open of the
    unchanged file); a file replaced behind the mount is read and checked again."""
    store = make_store("directory", ENTRIES)
    view = SessionView(store, timeout=0)
    path = meta(MAIN)
    file = store.path / keys.encode(MAIN) / "meta.json"
    os.utime(file, ns=(time.time_ns() - 10**9,) * 2)  # settled: kept after the first open
    for _ in range(2):
        fh = view.open(path, os.O_RDONLY)
        assert view.read(fh, 1 << 20, 0) == jsonfmt.dumps(ENTRIES[MAIN])
        view.release(fh)
    assert MAIN in view.mount_state.snapshots
    damaged = file.with_name("meta.json.tmp")
    damaged.write_bytes(b'{"sessionId": "x", "updatedAt": 1')
    os.replace(damaged, file)
    with pytest.raises((OSError, SessionfsError)) as excinfo:
        view.open(path, os.O_RDONLY)
    assert errno_of(excinfo) == errno.EIO


def test_an_existence_check_reads_no_entry(make_store: Callable[..., Store],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16: renaming, unlinking and creating inside a session folder ask whether the
    session exists; in a directory store that is one lstat of its meta.json, not a read."""
    store = make_store("directory", ENTRIES)
    view = SessionView(store, timeout=0)
    top = keys.encode(MAIN)
    reads: list[str] = []
    real_open = os.open

    def counting(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(name).endswith("meta.json") and not flags & (os.O_WRONLY | os.O_RDWR):
            reads.append(str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting)
    assert view.mount_state.dir_exists(top, MAIN) == "session"
    assert view.mount_state.require_dir(top) == (MAIN, "session")
    assert reads == []
    (store.path / top / "meta.json").unlink()  # gone behind the mount: no longer a session
    assert view.mount_state.dir_exists(top, MAIN) is None
    assert reads == []
