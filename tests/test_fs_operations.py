"""The adapter without a kernel: every errno is chosen on purpose; the glue keeps its promises."""

from __future__ import annotations

import errno
import inspect
import logging
import os

import mfusepy
import pytest

from sessionfs.errors import (
    EntryTooLarge,
    InvalidJSON,
    LockTimeout,
    ReadOnlyStore,
    SessionNotFound,
    StoreCorrupt,
    StoreNotFound,
)
from sessionfs.fs.fuse_glue import SessionFUSE
from sessionfs.fs.operations import SessionOperations, errno_boundary
from sessionfs.fs.scratch import is_root_scratch_name
from sessionfs.fs.view import SessionView


class Boom:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @errno_boundary
    def getattr(self, path: str) -> None:
        raise self.exc


@pytest.mark.parametrize(("exc", "code"), [
    (InvalidJSON("x"), errno.EINVAL),
    (EntryTooLarge("x"), errno.EFBIG),
    (SessionNotFound("x"), errno.ENOENT),
    (StoreNotFound("x"), errno.ENOENT),
    (ReadOnlyStore("x"), errno.EROFS),
    (LockTimeout("lock", 1, 10.0), errno.EBUSY),
    (StoreCorrupt("p", "bad"), errno.EIO),
    (FileNotFoundError(errno.ENOENT, "gone"), errno.ENOENT),
    (PermissionError(errno.EACCES, "no"), errno.EACCES),
])
def test_errors_map_to_their_errno(exc: BaseException, code: int) -> None:
    with pytest.raises(OSError) as excinfo:
        Boom(exc).getattr("/")
    assert excinfo.value.errno == code


def test_bugs_answer_eio_with_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="sessionfs.fs"), pytest.raises(OSError) as excinfo:
        Boom(ZeroDivisionError("bug")).getattr("/")
    assert excinfo.value.errno == errno.EIO  # never mfusepy's catch-all EINVAL
    assert "internal error in getattr" in caplog.text
    assert caplog.records[0].exc_info is not None
    with pytest.raises(OSError) as excinfo:
        Boom(OSError("no errno")).getattr("/")
    assert excinfo.value.errno == errno.EIO


def test_every_callback_is_an_override_with_the_boundary() -> None:
    for name, member in vars(SessionOperations).items():
        if name.startswith("_") or not callable(member):
            continue
        assert hasattr(member, "__wrapped__") or name == "destroy", name
        if name not in ("rename_with_flags", "stat"):  # entries for the ctypes glue
            assert hasattr(mfusepy.Operations, name), name
    assert SessionOperations.use_ns is True
    # an attribute called 'lock' would be registered as the FUSE lock callback
    assert not hasattr(SessionOperations, "lock") or getattr(
        SessionOperations.lock, "libfuse_ignore", False)


def test_glue_overrides_exist_in_mfusepy() -> None:
    for name in ("rename_fuse_3", "truncate_fuse_3", "readdir_fuse_3", "open", "create"):
        assert hasattr(mfusepy.FUSE, name), name
        assert name in vars(SessionFUSE)
    assert list(inspect.signature(SessionFUSE.rename_fuse_3).parameters) == [
        "self", "old", "new", "flags"]


def test_operations_have_no_lock_attribute(make_store: object) -> None:
    store = make_store("directory")  # type: ignore[operator]
    operations = SessionOperations(SessionView(store))
    assert getattr(operations, "lock", None) is None or getattr(
        operations.lock, "libfuse_ignore", False)


def test_xattrs_are_not_supported_never_enosys(make_store: object) -> None:
    store = make_store("directory")  # type: ignore[operator]
    operations = SessionOperations(SessionView(store))
    for call in (lambda: operations.getxattr("/", "user.x"),
                 lambda: operations.setxattr("/", "user.x", b"1", 0),
                 lambda: operations.removexattr("/", "user.x")):
        with pytest.raises(OSError) as excinfo:
            call()
        assert excinfo.value.errno == errno.ENOTSUP
    assert list(operations.listxattr("/")) == []
    for call in (lambda: operations.mknod("/x", 0o600, 0),
                 lambda: operations.link("/a", "/b")):
        with pytest.raises(OSError) as excinfo:
            call()
        assert excinfo.value.errno == errno.EPERM
    with pytest.raises(OSError) as excinfo:
        operations.rename_with_flags("/a", "/b", 2)  # RENAME_EXCHANGE
    assert excinfo.value.errno == errno.EINVAL
    assert operations.chmod("/", 0o777) == 0
    assert operations.utimens("/", None) == 0
    with pytest.raises(OSError) as excinfo:
        operations.chmod("/agent--main--nope", 0o600)
    assert excinfo.value.errno == errno.ENOENT


def test_root_scratch_names() -> None:
    for name in ("4913", ".meta.json.swp", ".#x", "#x#", "x~", "sedAb12Cd", "x.tmp",
                 "tmpabc_12", "a.json.vsctmp"):
        assert is_root_scratch_name(name), name
    for name in ("notes", "agent--main--main", ".sessionfs", "sed"):
        assert not is_root_scratch_name(name), name


def test_o_flags_are_what_the_view_expects() -> None:
    assert os.O_ACCMODE == 3
