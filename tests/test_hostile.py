"""Hostile input: what a user (or a broken tool) can throw at meta.json, at names and at the store.

Every hostile input must end in a clear errno (EINVAL or EFBIG, at ``write()`` when the bytes can
no longer become valid JSON, else at ``close()``), leave every byte, inode and mtime of the store
as it was, and leave the daemon serving: the next valid write through the same path works. The
same inputs go through the library (``parse_entry``) and the CLI (``sessionfs put``: exit 1, one
line on stderr).

Mounts are per module and layout (two daemons), never per example. Lone-surrogate escapes such
as ``"\\ud800"`` are valid JSON (``JSON.parse`` accepts them and ``JSON.stringify`` writes them
back as the same escape): sessionfs accepts them, in the library, the CLI and the mount alike,
and stores exactly what node would write.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from sessionfs import jsonfmt, keys
from sessionfs.entry import DEFAULT_MAX_ENTRY_BYTES, parse_entry
from sessionfs.errors import EntryTooLarge, InvalidEntry, InvalidJSON, SessionfsError
from sessionfs.store import open_store
from tests import mountutil
from tests.conftest import node_stringify
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, ROOT, Mount, make_store_folder, wait_for

LAYOUTS = ["legacy", "directory"]
MiB = 1 << 20
VALID: dict[str, Any] = {"sessionId": "h-1", "updatedAt": 1_767_225_600_000, "label": "ok"}

HYPOTHESIS = settings(deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.large_base_example,
                                             HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------------------
# Store snapshots: bytes, inode and mtime of every file, mode and mtime of every directory
# ------------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", st.st_mode, st.st_mtime_ns)
        else:
            found[rel] = ("file", path.read_bytes(), st.st_ino, st.st_mtime_ns, st.st_mode)
    top = folder.stat()
    found["."] = ("dir", top.st_mode, top.st_mtime_ns)
    return found


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


# ------------------------------------------------------------------------------------------------
# Hostile documents. ``early``: the bytes can no longer become valid JSON once they are all
# written, so the daemon must refuse at write(); ``late``: syntactically valid JSON (wrong shape,
# duplicate keys, ...) that only the commit at close() can refuse; None: either is fine.
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    kind: str
    data: bytes
    stage: str | None  # "write", "close" or None (either)
    error: type[SessionfsError]  # what parse_entry raises

    def __repr__(self) -> str:  # keep hypothesis' falsifying examples readable
        shown = self.data if len(self.data) <= 120 else self.data[:120] + b"..."
        return f"Hostile({self.kind!r}, {shown!r}, {len(self.data)} bytes)"


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def acceptable(data: bytes) -> bool:
    """An oracle independent of sessionfs: would openclaw keep these bytes as an entry?"""
    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):
            return False
        value = json.loads(text, object_pairs_hook=no_dupes, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict):
        return False
    sid, upd = value.get("sessionId"), value.get("updatedAt")
    if not (isinstance(sid, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", sid)):
        return False  # openclaw's /^[a-z0-9][a-z0-9._-]{0,127}$/i: ASCII letters only
    if isinstance(upd, bool) or not isinstance(upd, int | float):
        return False
    try:
        return 0 <= float(upd) < float("inf")  # JSON.parse reads 1e400 and 10**400 as Infinity
    except OverflowError:
        return False


SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters='"\\',
                                  exclude_categories=["Cc", "Cs"]), max_size=12)
FIELD_NAMES = st.sampled_from(["label", "model", "x", "deliveryContext", "inputTokens", "ü"])
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False, width=32), SAFE_TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(SAFE_TEXT, inner, max_size=3)), max_leaves=8)


@st.composite
def entry_text(draw: st.DrawFn) -> bytes:
    """A valid entry's text, compact or indented, with a few extra fields."""
    entry = {"sessionId": draw(st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,20}\Z")),
             "updatedAt": draw(st.integers(0, 2**53))}
    entry.update(draw(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=3)))
    indent = draw(st.sampled_from([None, 2]))
    return json.dumps(entry, indent=indent, ensure_ascii=False).encode()


def _in_a_string(text: bytes, index: int, insert: bytes) -> bytes:
    """``text`` with ``insert`` inside the string literal of its ``sessionId`` or ``updatedAt``
    key (both always there, never escaped), at one of its positions."""
    spots = [m.start() + 1 + i for m in re.finditer(rb'"(?:sessionId|updatedAt)"', text)
             for i in range(len(m.group()) - 1)]
    at = spots[index % len(spots)]
    return text[:at] + insert + text[at:]


BAD_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xc1\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf8\x88\x80\x80\x80", b"\x80", b"\xbf", b"\xe2\x82", b"\xf0\x9f\x98",
            b"\xf4\x90\x80\x80", b"\xe0\x80\xaf"]
# Syntax JSON does not have (JSON5, JavaScript, Python literals); each is dead at write().
NOT_JSON_VALUES = [b"NaN", b"Infinity", b"-Infinity", b"+1", b"01", b".5", b"1.", b"0x10",
                   b"undefined", b"'x'", b"True", b"None", b"nan", b"-", b"1e", b"--1",
                   b"\"a\nb\"", b"\"a\tb\"", b"\"\x00\"", b"\"\\x41\"", b"\"\\u12\"", b"[1,]",
                   b"{\"a\":1,}", b"{a:1}", b"/* c */1", b"1 // c\n"]
WRONG_SESSION_IDS: list[Any] = [1, None, True, [], {}, "", " ", "../x", "a/b", "-a", ".a",
                                "a" * 129, "é", "a b", "a\u0000",
                                # letters only under Unicode case folding: JavaScript's /i
                                # (openclaw's check) does not match them
                                "\u212aelvin", "\u017fession", "a\u0130", "x\u0131"]
WRONG_UPDATED_AT: list[Any] = ["1", None, True, False, [], {}, -1, -0.5, "NaN"]
NON_OBJECTS = st.one_of(JSON_SCALARS, st.lists(JSON_VALUES, max_size=3))


KINDS = ["random", "garbage-in-entry", "bad-utf8", "not-json", "bom", "control-char",
         "duplicate", "deep", "non-object", "wrong-types", "truncated", "whitespace"]


@st.composite
def hostile(draw: st.DrawFn, kind: str) -> Hostile:
    """One hostile document of a kind (see :class:`Hostile`)."""
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=300))
        assume(not acceptable(data))
        strict = _strictly_invalid(data)
        return Hostile(kind, data, None, InvalidJSON if strict else SessionfsError)
    if kind == "garbage-in-entry":
        text = draw(entry_text())
        at = draw(st.integers(0, len(text)))
        data = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
        assume(not acceptable(data))
        return Hostile(kind, data, None, SessionfsError)
    if kind == "bad-utf8":
        text = draw(entry_text())
        data = _in_a_string(text, draw(st.integers(0, 20)), draw(st.sampled_from(BAD_UTF8)))
        return Hostile(kind, data, "write", InvalidJSON)
    if kind == "not-json":
        value = draw(st.sampled_from(NOT_JSON_VALUES))
        where = draw(st.sampled_from(["updatedAt", "extra", "top", "nested"]))
        sid = draw(st.from_regex(r"\A[a-z0-9]{1,8}\Z"))
        if where == "updatedAt":
            data = b'{"sessionId":"' + sid.encode() + b'","updatedAt":' + value + b"}"
        elif where == "extra":
            data = b'{"sessionId":"' + sid.encode() + b'","updatedAt":1,"x":' + value + b"}"
        elif where == "nested":
            data = b'{"sessionId":"' + sid.encode() + b'","updatedAt":1,"x":[{"y":' + value \
                + b"}]}"
        else:
            data = value
        # a bare '-', '1e' or '1.' could still become a number: refused at close()
        late = where == "top" and value in (b"-", b"1e", b"1.")
        return Hostile(f"not-json:{value!r}", data, "close" if late else "write", InvalidJSON)
    if kind == "bom":
        return Hostile(kind, b"\xef\xbb\xbf" + draw(entry_text()), "write", InvalidJSON)
    if kind == "control-char":
        char = bytes([draw(st.integers(0, 0x1F))])
        return Hostile(kind, _in_a_string(draw(entry_text()), draw(st.integers(0, 20)), char),
                       "write", InvalidJSON)
    if kind == "duplicate":
        field = draw(st.sampled_from(["sessionId", "updatedAt", "label", "nested"]))
        if field == "nested":
            data = b'{"sessionId":"d-1","updatedAt":1,"deliveryContext":{"to":"1","to":"2"}}'
        else:
            again = draw(st.sampled_from({"sessionId": [b'"d-1"', b'"d-2"'],
                                          "updatedAt": [b"1", b"2"],
                                          "label": [b'"x"', b'"y"']}[field]))
            data = (b'{"sessionId":"d-1","updatedAt":1,"label":"x","' + field.encode() + b'":'
                    + again + b"}")
        return Hostile(kind, data, "close", InvalidJSON)
    if kind == "deep":
        depth = draw(st.sampled_from([513, 600, 5000, 100_000]))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        closed = draw(st.booleans())
        inner = opener * depth + (b"1" + closer * depth if closed else b"")
        if draw(st.booleans()):
            data = b'{"sessionId":"d-1","updatedAt":1,"x":' + inner + b"}"
        else:
            data = inner
        return Hostile(f"deep:{depth}", data, "write", InvalidJSON)
    if kind == "non-object":
        value = draw(NON_OBJECTS)
        return Hostile(kind, json.dumps(value, ensure_ascii=False).encode(), "close",
                       InvalidEntry)
    if kind == "wrong-types":
        entry: dict[str, Any] = {"sessionId": "w-1", "updatedAt": 1}
        broken = draw(st.sampled_from(["sessionId", "updatedAt", "both", "missing-sessionId",
                                       "missing-updatedAt", "overflow"]))
        if broken in ("sessionId", "both"):
            entry["sessionId"] = draw(st.sampled_from(WRONG_SESSION_IDS))
        if broken in ("updatedAt", "both"):
            entry["updatedAt"] = draw(st.sampled_from(WRONG_UPDATED_AT))
        if broken == "missing-sessionId":
            del entry["sessionId"]
        if broken == "missing-updatedAt":
            del entry["updatedAt"]
        data = compact(entry)
        if broken == "overflow":  # JSON.parse reads 1e400 as Infinity: not a finite time
            data = data.replace(b'"updatedAt":1', b'"updatedAt":' + draw(st.sampled_from(
                [b"1e400", b"-1e400", b"1" + b"0" * 400])))
        return Hostile(f"wrong-types:{broken}", data, "close", InvalidEntry)
    if kind == "truncated":
        text = draw(entry_text())
        cut = draw(st.integers(1, len(text) - 1))
        return Hostile(kind, text[:cut], "close", InvalidJSON)
    # whitespace only: a valid prefix of anything, empty as a document
    return Hostile(kind, draw(st.sampled_from([b" ", b"\n", b" \t\r\n" * 50])), "close",
                   InvalidJSON)


# The documented cases, always run (hypothesis adds random variations around them).
EXPLICIT = [
    Hostile("not-json:NaN", b'{"sessionId":"a","updatedAt":NaN}', "write", InvalidJSON),
    Hostile("not-json:Infinity", b'{"sessionId":"a","updatedAt":1,"x":Infinity}', "write",
            InvalidJSON),
    Hostile("bad-utf8", b'{"sessionId":"a","updatedAt":1,"l":"\xc3("}', "write", InvalidJSON),
    Hostile("duplicate", b'{"sessionId":"a","updatedAt":1,"updatedAt":1}', "close", InvalidJSON),
    Hostile("deep:100000", b"[" * 100_000 + b"]" * 100_000, "write", InvalidJSON),
    Hostile("deep:100000", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "write", InvalidJSON),
    Hostile("non-object", b'["sessionId","a","updatedAt",1]', "close", InvalidEntry),
    Hostile("wrong-types:overflow", b'{"sessionId":"a","updatedAt":1' + b"0" * 400 + b"}",
            "close", InvalidEntry),
    Hostile("wrong-types:sessionId", b'{"sessionId":"../../etc","updatedAt":1}', "close",
            InvalidEntry),
    Hostile("wrong-types:kelvin-sign", '{"sessionId":"\u212aelvin","updatedAt":1}'.encode(),
            "close", InvalidEntry),
]


def _strictly_invalid(data: bytes) -> bool:
    """Random bytes that are not even JSON (as opposed to JSON that is not an entry)."""
    try:
        json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return True
    return False


# ------------------------------------------------------------------------------------------------
# The per-module mounts
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=LAYOUTS)
def hmount(request: pytest.FixtureRequest) -> Iterator[Mount]:
    base = mountutil.scratch_root()
    folder = make_store_folder(base, request.param, ENTRIES)
    mount = Mount(folder, base / "mnt")
    try:
        mount.start()
        yield mount
    finally:
        mount.stop()
        shutil.rmtree(base, ignore_errors=True)


_counter = itertools.count(1)


def _write_through(path: Path, data: bytes, chunk: int, flags: int) -> tuple[str, int | None]:
    """open/write in chunks/close; returns (stage that failed, errno) or ("ok", None)."""
    fd = os.open(path, flags, 0o600)
    stage, code = "ok", None
    try:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view[:chunk])
            except OSError as exc:
                stage, code = "write", exc.errno
                break
            assert written > 0
            view = view[written:]
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            if stage == "ok":
                stage, code = "close", exc.errno
    return stage, code


def _assert_alive_and_writable(mount: Mount, key: str, path: Path) -> None:
    assert mount.proc is not None and mount.proc.poll() is None, mount.diagnostics()
    number = next(_counter)  # a new session needs a sessionId of its own
    good = dict(VALID, sessionId=f"h-{number}", updatedAt=VALID["updatedAt"] + number)
    path.write_bytes(compact(good))
    assert mount.store().get(key) == good, "a valid write after the hostile one did not land"


def _last_error_line(mount: Mount) -> str:
    lines = mount.errors().splitlines()
    return lines[-1] if lines else ""


def _expect_rejected(mount: Mount, case: Hostile, stage: str, code: int | None,
                     where: str) -> None:
    assert stage != "ok", f"{case!r} was accepted through {where}"
    assert code == errno.EINVAL, f"{case!r}: {errno.errorcode.get(code or 0)} at {stage}"
    if case.stage is not None:
        assert stage == case.stage, f"{case!r}: refused at {stage}, expected at {case.stage}"


# ------------------------------------------------------------------------------------------------
# 1. Through the kernel
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@settings(HYPOTHESIS, max_examples=12)
@given(data=st.data())
def test_mount_refuses_hostile_meta_json(hmount: Mount, kind: str, data: st.DataObject) -> None:
    case = data.draw(hostile(kind), label="case")
    how = data.draw(st.sampled_from(["existing", "new", "rename"]), label="how")
    chunk = data.draw(st.sampled_from([1, 7, 64, 4096, 65536, MiB]), label="chunk")
    check_mount_refuses(hmount, case, how, chunk)


@pytest.mark.parametrize("how", ["existing", "new", "rename"])
@pytest.mark.parametrize("case", EXPLICIT, ids=lambda c: c.kind)
def test_mount_refuses_documented_cases(hmount: Mount, case: Hostile, how: str) -> None:
    check_mount_refuses(hmount, case, how, 4096)


def check_mount_refuses(hmount: Mount, case: Hostile, how: str, chunk: int) -> None:
    """Random and structured garbage into meta.json: EINVAL, store untouched, daemon serving."""
    folder = hmount.store_folder
    chunk = max(chunk, len(case.data) // 64)  # 100k-deep documents in a bounded number of writes
    before = snapshot(folder)
    errors_before = hmount.errors()
    if how == "existing":
        key, target = MAIN, hmount.meta(MAIN)
        refused = key
        stage, code = _write_through(target, case.data, chunk, os.O_WRONLY | os.O_TRUNC)
        _expect_rejected(hmount, case, stage, code, "an existing meta.json")
    elif how == "new":
        key = refused = f"agent:main:hostile:{next(_counter)}"
        target = hmount.meta(key)
        os.mkdir(target.parent)
        stage, code = _write_through(target, case.data, chunk,
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        _expect_rejected(hmount, case, stage, code, "a new session")
        assert key not in hmount.store().keys()
        # Retrying in the same folder at once is test_mount_retry_after_a_refused_create; here
        # the daemon proves itself with a new session.
        key = f"agent:main:hostile:{next(_counter)}"
        target = hmount.meta(key)
        os.mkdir(target.parent)
    else:  # jq ... > tmp && mv tmp meta.json
        key, target = JAMES, hmount.meta(JAMES)
        refused = key
        tmp = target.parent / "meta.json.tmp"
        tmp.write_bytes(case.data)  # a scratch file takes anything (memory only)
        with pytest.raises(OSError) as excinfo:
            os.rename(tmp, target)
        assert excinfo.value.errno == errno.EINVAL, case
        assert tmp.read_bytes() == case.data  # the failed rename left the scratch file
        tmp.unlink()
    assert snapshot(folder) == before, f"{case!r} changed the store"
    line = _last_error_line(hmount)
    assert hmount.errors() != errors_before and " EINVAL " in line, line
    assert f"/{keys.encode(refused)}/meta.json" in line, line
    _assert_alive_and_writable(hmount, key, target)


def test_mount_retry_after_a_refused_create(hmount: Mount) -> None:
    """mkdir, a first save that is refused, then the corrected save at once (the user's next
    command): it must create the session, not fail with ENOENT."""
    key = f"agent:main:retry:{next(_counter)}"
    os.mkdir(hmount.dir(key))
    stage, code = _write_through(hmount.meta(key), b'{"sessionId": oops}', 4096,
                                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert (stage, code) == ("write", errno.EINVAL)
    assert key not in hmount.store().keys()
    number = next(_counter)  # a new session needs a sessionId of its own
    good = dict(VALID, sessionId=f"h-{number}", updatedAt=VALID["updatedAt"] + number)
    hmount.meta(key).write_bytes(compact(good))  # no sleep: well within the entry timeout
    assert hmount.store().get(key) == good


@settings(HYPOTHESIS, max_examples=60)
@given(name=st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=40),
    st.from_regex(r"\A[a-z%0-9A-F.~:-]{1,30}\Z"),
    st.sampled_from(["..", ".", "a%2x", "a---b", "a%2d", "%61gent--main--main", "-a", ".a",
                     "a" * 255, "a~" + "0" * 32, "a" * 160 + "~" + "0" * 32])))
def test_mount_mkdir_accepts_exactly_canonical_names(hmount: Mount, name: str) -> None:
    """mkdir succeeds only for names that decode to a key (and are spelled canonically);
    everything else is EINVAL (or EEXIST for '.', '..' and existing sessions). Never touches
    the store: a new folder is only a promise until meta.json is written."""
    assume(len(name.encode()) <= 255)
    before = snapshot(hmount.store_folder)
    try:
        decoded = keys.decode(name)
        canonical = decoded is not None and keys.encode(decoded) == name
    except SessionfsError:
        decoded, canonical = None, False
    existing = {keys.encode(k) for k in hmount.store().keys()} | {".", ".."}
    event("existing" if name in existing else "canonical" if canonical else "not canonical")
    path = hmount.mp / name
    try:
        os.mkdir(path)
    except OSError as exc:
        if name in existing:
            assert exc.errno == errno.EEXIST, (name, exc)
        else:
            assert not canonical, f"mkdir {name!r} refused: {exc}"
            assert exc.errno == errno.EINVAL, (name, exc)
    else:
        assert canonical and name not in existing, f"mkdir {name!r} was accepted"
        assert os.listdir(path) == []
        os.rmdir(path)
    assert snapshot(hmount.store_folder) == before
    assert name in existing or not os.path.lexists(path)


BAD_NAMES = {
    # name: errno of mkdir, of rename(session dir -> name), of creating a file at the root
    "..": (errno.EEXIST, errno.EBUSY, errno.EISDIR),
    "a%2x": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a%2": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a---b": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a%2d": (errno.EINVAL, errno.EINVAL, errno.EPERM),  # lower-case hex
    "a%3Ab": (errno.EINVAL, errno.EINVAL, errno.EPERM),  # ':' is '--'
    "%61gent--main--x": (errno.EINVAL, errno.EINVAL, errno.EPERM),  # 'agent--main--x' spelled
    "agent--main--main%0": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "-rf": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a b": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "ünï": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a\nb": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a\\b": (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a" * 201: (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a" * 255: (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a" * 256: (errno.EINVAL, errno.EINVAL, errno.EPERM),  # FUSE passes > NAME_MAX names on
    "a" * 1025: (errno.EINVAL, errno.EINVAL, errno.EPERM),
    "a" * 4096: (errno.ENAMETOOLONG,) * 3,  # ... up to PATH_MAX, where the kernel stops them
    "a" * 160 + "~" + "0" * 32: (errno.EINVAL, errno.EINVAL, errno.EPERM),  # hashed shape
}
# Other spellings of the existing sessions: never a second way in.
ALIASES = {"%61gent--main--main": MAIN, "agent--main--ma%69n": MAIN,
           "agent--main--cron--14bbd90%34": CRON, "agent%3Amain%3Amain": MAIN,
           "Agent--main--main": None}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=lambda n: n if len(n) < 20 else
                         f"{n[:6]}..{len(n)}")
def test_mount_refuses_bad_names(hmount: Mount, name: str) -> None:
    mkdir_errno, rename_errno, create_errno = BAD_NAMES[name]
    before = snapshot(hmount.store_folder)
    listing = sorted(os.listdir(hmount.mp))
    target = hmount.mp / name
    with pytest.raises(OSError) as excinfo:
        os.mkdir(target)
    assert excinfo.value.errno == mkdir_errno
    with pytest.raises(OSError) as excinfo:
        os.rename(hmount.dir(CRON), target)
    assert excinfo.value.errno == rename_errno
    with pytest.raises(OSError) as excinfo:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
    assert excinfo.value.errno == create_errno
    if name != "..":
        with pytest.raises(OSError) as excinfo:
            os.stat(target)
        assert excinfo.value.errno in (errno.ENOENT, errno.ENAMETOOLONG)
    # inside a session folder any other name is a scratch file (memory only), but never a
    # folder, and '..' is the root
    inner = hmount.dir(JAMES) / name
    with pytest.raises(OSError) as excinfo:
        os.mkdir(inner)
    assert excinfo.value.errno in ((errno.EEXIST,) if name == ".." else
                                   (errno.ENAMETOOLONG,) if len(name) > 4000 else
                                   (errno.EPERM,))
    if name == "..":
        with pytest.raises(IsADirectoryError):
            os.open(inner, os.O_WRONLY | os.O_CREAT, 0o600)
    elif len(name) <= 4000:
        inner.write_bytes(b"scratch")
        assert inner.read_bytes() == b"scratch"
        inner.unlink()
    assert snapshot(hmount.store_folder) == before
    assert sorted(os.listdir(hmount.mp)) == listing
    assert json.loads(hmount.meta(CRON).read_bytes()) == hmount.store().get(CRON)


@pytest.mark.parametrize("alias", list(ALIASES))
def test_mount_other_spellings_of_a_key_do_not_exist(hmount: Mount, alias: str) -> None:
    before = snapshot(hmount.store_folder)
    path = hmount.mp / alias
    for probe in (lambda: os.stat(path), lambda: os.listdir(path),
                  lambda: (path / "meta.json").read_bytes(),
                  lambda: (path / "meta.json").write_bytes(compact(VALID))):
        with pytest.raises(FileNotFoundError):
            probe()
    expected = errno.EINVAL if ALIASES[alias] is not None else None
    for op in (lambda: os.mkdir(path), lambda: os.rename(hmount.dir(JAMES), path)):
        if expected is None:  # a different key (keys are case-sensitive): a normal name
            continue
        with pytest.raises(OSError) as excinfo:
            op()
        assert excinfo.value.errno == expected
    with pytest.raises(OSError) as excinfo:  # nor can an existing session be renamed onto it
        os.rename(hmount.meta(JAMES), path / "meta.json")
    assert excinfo.value.errno == errno.ENOENT
    assert snapshot(hmount.store_folder) == before


def test_mount_100mb_write_is_efbig_and_memory_stays_bounded(hmount: Mount) -> None:
    """100 MB into meta.json: EFBIG once past 16 MiB, nothing stored, the daemon alive with its
    memory bounded by the limit (one 16 MiB buffer and its copies, not 100 MB)."""
    assert hmount.proc is not None
    pid = hmount.proc.pid
    before = snapshot(hmount.store_folder)
    rss_before = rss_kib(pid)
    hwm_before = rss_kib(pid, "VmHWM")
    prefix = b'{"sessionId":"big-1","updatedAt":1,"x":"'
    block = b"a" * MiB
    fd = os.open(hmount.meta(MAIN), os.O_WRONLY | os.O_TRUNC)
    accepted, failure = 0, None
    started = time.monotonic()
    try:
        accepted += os.write(fd, prefix)
        for _ in range(100):
            try:
                accepted += os.write(fd, block)
            except OSError as exc:
                failure = exc.errno
                break
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    elapsed = time.monotonic() - started
    assert failure == errno.EFBIG
    assert DEFAULT_MAX_ENTRY_BYTES - MiB <= accepted <= DEFAULT_MAX_ENTRY_BYTES
    assert elapsed < 30
    assert snapshot(hmount.store_folder) == before
    assert " EFBIG " in _last_error_line(hmount)
    peak_growth = (max(rss_kib(pid, "VmHWM"), hwm_before) - rss_before) // 1024
    after_growth = (rss_kib(pid) - rss_before) // 1024
    # one 16 MiB buffer, the incoming 1 MiB requests and a copy at most: well under 100 MB
    assert peak_growth < 64, f"daemon peak RSS grew by {peak_growth} MiB"
    assert after_growth < 40, f"daemon RSS still {after_growth} MiB above where it started"
    _assert_alive_and_writable(hmount, MAIN, hmount.meta(MAIN))
    # a scratch file is bounded too (2 x limit + 1 MiB), and never reaches the store
    scratch = hmount.dir(MAIN) / "big.tmp"
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with pytest.raises(OSError) as excinfo:
            for _ in range(100):
                os.write(fd, block)
        assert excinfo.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    scratch.unlink()
    assert rss_kib(pid) // 1024 - rss_before // 1024 < 80


@pytest.mark.parametrize("data", [b"", b"  \n"], ids=["empty", "whitespace"])
def test_mount_truncating_to_nothing_is_refused(hmount: Mount, data: bytes) -> None:
    """``: > meta.json`` and ``truncate -s 0``: an empty entry is never stored. A shell's
    redirection closes its first descriptor before writing, so a 0-byte save cannot be refused
    at close(); it is refused at release (logged in .sessionfs/errors), and truncate(2) without
    an open file fails with EINVAL."""
    before = snapshot(hmount.store_folder)
    stage, code = _write_through(hmount.meta(JAMES), data, 4096, os.O_WRONLY | os.O_TRUNC)
    if data:
        assert (stage, code) == ("close", errno.EINVAL)
    else:
        assert (stage, code) == ("ok", None)  # nothing was written: nothing to refuse at close
    assert wait_for(lambda: f"/{keys.encode(JAMES)}/meta.json" in _last_error_line(hmount), 5)
    assert snapshot(hmount.store_folder) == before
    with pytest.raises(OSError) as excinfo:
        os.truncate(hmount.meta(JAMES), 10)
    assert excinfo.value.errno == errno.EINVAL
    assert snapshot(hmount.store_folder) == before
    assert json.loads(hmount.meta(JAMES).read_bytes()) == hmount.store().get(JAMES)


# Valid JSON that looks hostile: accepted everywhere, stored exactly as node's JSON.stringify.
ODD_BUT_VALID = {
    "lone-high-surrogate": rb'{"sessionId":"s-1","updatedAt":1,"label":"\ud800"}',
    "lone-low-surrogate": rb'{"sessionId":"s-1","updatedAt":1,"label":"a\udfffb"}',
    "reversed-pair": rb'{"sessionId":"s-1","updatedAt":1,"label":"\udc00\ud800"}',
    "surrogate-in-key": rb'{"sessionId":"s-1","updatedAt":1,"\udbff":{"\ud800x":1}}',
    "escaped-pair": rb'{"sessionId":"s-1","updatedAt":1,"label":"\ud83d\ude00"}',
    "overflow-elsewhere": b'{"sessionId":"s-1","updatedAt":1,"x":1e400,"y":-1e999}',
    "depth-512": b'{"sessionId":"s-1","updatedAt":1,"x":' + b"[" * 511 + b"]" * 511 + b"}",
    "big-ints": b'{"sessionId":"s-1","updatedAt":9007199254740993,"n":123456789012345678901}',
    "escapes": rb'{"sessionId":"s-1","updatedAt":0,"s":"\u0000\u001f\"\\\/\b\f\n\r\t\u2028"}',
}


@pytest.mark.parametrize("name", list(ODD_BUT_VALID))
def test_lone_surrogates_and_other_odd_json_is_accepted_consistently(
        hmount: Mount, name: str, tmp_path: Path) -> None:
    """Decision: what JSON.parse accepts is accepted (lone surrogates included) and stored as
    ``JSON.stringify`` writes it, identically through the library, the CLI and the mount."""
    data = ODD_BUT_VALID[name].replace(b'"s-1"', f'"s-{name}"'.encode(), 1)  # one per session
    expected = node_stringify(data)
    entry = parse_entry(data)  # the library
    assert jsonfmt.dumps(entry) == expected
    key = f"agent:main:odd:{name}"
    os.mkdir(hmount.dir(key))
    hmount.meta(key).write_bytes(data)  # the mount
    store = hmount.store()
    assert store.read(key).data == expected
    assert hmount.meta(key).read_bytes() == data  # what was written is what reads back
    cli_data = data.replace(f'"s-{name}"'.encode(), f'"s-{name}-cli"'.encode(), 1)
    result = cli("put", str(hmount.store_folder), key + ":cli", "-", stdin=cli_data)  # the CLI
    assert result.returncode == 0, result.stderr
    assert store.read(key + ":cli").data == node_stringify(cli_data)
    if store.layout == "directory":
        assert (store.path / keys.encode(key) / "meta.json").read_bytes() == expected


# ------------------------------------------------------------------------------------------------
# 2. The library and the CLI with the same inputs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@settings(HYPOTHESIS, max_examples=40)
@given(data=st.data())
def test_parse_entry_refuses_hostile_bytes(kind: str, data: st.DataObject) -> None:
    check_parse_entry_refuses(data.draw(hostile(kind), label="case"))


@pytest.mark.parametrize("case", EXPLICIT, ids=lambda c: c.kind)
def test_parse_entry_refuses_documented_cases(case: Hostile) -> None:
    check_parse_entry_refuses(case)


def check_parse_entry_refuses(case: Hostile) -> None:
    with pytest.raises(SessionfsError) as excinfo:
        parse_entry(case.data)
    assert isinstance(excinfo.value, case.error), (case, excinfo.value)
    assert isinstance(excinfo.value, InvalidJSON | InvalidEntry)
    assert excinfo.value.errno == errno.EINVAL
    assert str(excinfo.value) and "\n" not in str(excinfo.value)


def test_parse_entry_size_limit_is_checked_before_parsing() -> None:
    data = b'{"sessionId":"a","updatedAt":1,"x":"' + b"a" * (100 * MiB)
    started = time.monotonic()
    with pytest.raises(EntryTooLarge) as excinfo:
        parse_entry(data)
    assert excinfo.value.errno == errno.EFBIG
    assert time.monotonic() - started < 1.0
    ok = b'{"sessionId":"a","updatedAt":1,"x":"' + b"a" * (16 * MiB - 40) + b'"}'
    assert len(ok) <= DEFAULT_MAX_ENTRY_BYTES
    assert parse_entry(ok)["x"] == "a" * (16 * MiB - 40)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("entry", [
    [], "x", None, {"sessionId": "a"}, {"updatedAt": 1}, {"sessionId": "../x", "updatedAt": 1},
    {"sessionId": "a", "updatedAt": float("nan")}, {"sessionId": "a", "updatedAt": float("inf")},
    {"sessionId": "a", "updatedAt": -1}, {"sessionId": "a", "updatedAt": True},
    {"sessionId": 5, "updatedAt": 1}, {"sessionId": "a", "updatedAt": "1"},
    {"sessionId": "a", "updatedAt": 10**400},  # Infinity in JavaScript
    {"sessionId": "\u017fx", "updatedAt": 1},  # not [a-z] for JavaScript's /i
], ids=lambda e: repr(e)[:40])
def test_store_put_refuses_invalid_entries(layout: str, entry: Any, tmp_path: Path) -> None:
    folder = make_store_folder(tmp_path, layout, ENTRIES)
    before = snapshot(folder)
    store = open_store(folder)
    for key in (MAIN, "agent:main:new"):
        with pytest.raises(InvalidEntry) as excinfo:
            store.put(key, entry)
        assert excinfo.value.errno == errno.EINVAL
    assert snapshot(folder) == before


def cli(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], input=stdin,
                          capture_output=True, env=env, cwd=str(ROOT), timeout=120, check=False)


CLI_CASES = {
    "random": (b"\x8f\x00garbage\xff{", errno.EINVAL),
    "bad-utf8": (b'{"sessionId":"a","updatedAt":1,"l":"\xed\xa0\x80"}', errno.EINVAL),
    "nan": (b'{"sessionId":"a","updatedAt":NaN}', errno.EINVAL),
    "infinity": (b'{"sessionId":"a","updatedAt":1,"x":-Infinity}', errno.EINVAL),
    "duplicate": (b'{"sessionId":"a","updatedAt":1,"updatedAt":2}', errno.EINVAL),
    "deep-100k": (b"[" * 100_000 + b"]" * 100_000, errno.EINVAL),
    "deep-obj-100k": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, errno.EINVAL),
    "array": (b"[1,2,3]", errno.EINVAL),
    "string": (b'"agent"', errno.EINVAL),
    "wrong-type": (b'{"sessionId":["a"],"updatedAt":1}', errno.EINVAL),
    "overflow": (b'{"sessionId":"a","updatedAt":1e400}', errno.EINVAL),
    "overflow-int": (b'{"sessionId":"a","updatedAt":1' + b"0" * 400 + b"}", errno.EINVAL),
    "kelvin-sign": ('{"sessionId":"\u212a","updatedAt":1}'.encode(), errno.EINVAL),
    "bom": (b'\xef\xbb\xbf{"sessionId":"a","updatedAt":1}', errno.EINVAL),
    "empty": (b"", errno.EINVAL),
    "100mb": (b'{"sessionId":"a","updatedAt":1,"x":"' + b"a" * (100 * MiB) + b'"}',
              errno.EFBIG),
}


@pytest.fixture(scope="module", params=LAYOUTS)
def cli_store(request: pytest.FixtureRequest) -> Iterator[Path]:
    base = mountutil.scratch_root()
    try:
        yield make_store_folder(base, request.param, ENTRIES)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_put_refuses_with_one_line(cli_store: Path, name: str) -> None:
    data, code = CLI_CASES[name]
    before = snapshot(cli_store)
    for key in (MAIN, "agent:main:cli-new"):
        result = cli("put", str(cli_store), key, "-", stdin=data)
        assert result.returncode == 1, result.stderr
        assert result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sessionfs: error: "), lines
        if code == errno.EFBIG:
            assert "over the limit" in lines[0]
        else:
            assert "not valid JSON" in lines[0] or "entry" in lines[0] or "field" in lines[0]
    assert snapshot(cli_store) == before


# ------------------------------------------------------------------------------------------------
# 3. A malformed sessions.json behind a live mount
# ------------------------------------------------------------------------------------------------
DAMAGE = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "not-an-object": lambda good: b"[" + good + b"]",
    "null": lambda good: b"null",
    "garbage": lambda good: b"\x00" * 64,
}
REASONS = {"empty": "file is empty", "truncated": "not valid JSON",
           "not-an-object": "expected an object", "null": "expected an object",
           "garbage": "not valid JSON"}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_malformed_sessions_json_behind_a_live_mount(damage: str) -> None:
    base = mountutil.scratch_root()
    try:
        _malformed_store(base, damage)
    finally:
        mountutil.force_unmount(base / "mnt")
        shutil.rmtree(base, ignore_errors=True)


def _malformed_store(base: Path, damage: str) -> None:
    timeout = 0.5
    folder = make_store_folder(base, "legacy", ENTRIES)
    legacy = folder / "sessions.json"
    good = legacy.read_bytes()
    with Mount(folder, base / "mnt", "--timeout", str(timeout)) as mount:
        assert (mount.meta(MAIN)).read_bytes() == open_store(folder).read(MAIN).data
        bad = DAMAGE[damage](good)
        legacy.write_bytes(bad)  # damaged in place, as a crashed writer or a stray `>` would

        def fails_with_eio() -> bool:
            try:
                os.listdir(mount.mp)
            except OSError as exc:
                return exc.errno == errno.EIO
            return False

        assert wait_for(fails_with_eio, timeout + 2.0), "listing never failed"
        for probe in (lambda: os.listdir(mount.mp), lambda: mount.meta(MAIN).read_bytes(),
                      lambda: os.stat(mount.meta(JAMES)),
                      lambda: mount.meta(CRON).write_bytes(compact(VALID)),
                      lambda: os.mkdir(mount.dir("agent:main:new")),
                      lambda: os.rename(mount.dir(MAIN), mount.dir("agent:main:moved")),
                      lambda: os.unlink(mount.meta(JAMES))):
            with pytest.raises(OSError) as excinfo:
                probe()
            assert excinfo.value.errno == errno.EIO, probe
        assert (mount.mp / ".sessionfs" / "status").read_text().count("sessions: unknown") == 1
        assert legacy.read_bytes() == bad, "the damaged store was written to"
        assert sorted(p.name for p in folder.iterdir()) == ["sessions.json"]
        log = mount.log()
        line = next((line for line in log.splitlines() if str(legacy) in line
                     and REASONS[damage] in line), None)
        assert line is not None, log
        assert line.startswith("sessionfs: ")
        assert mount.proc is not None and mount.proc.poll() is None
        # fixed: back within the timeout, and nothing was lost
        legacy.write_bytes(good)
        fixed_at = time.monotonic()

        def recovered() -> bool:
            try:
                return len(os.listdir(mount.mp)) == len(ENTRIES) + 1 and (
                    mount.meta(MAIN).read_bytes() == jsonfmt.dumps(ENTRIES[MAIN]))
            except OSError:
                return False

        assert wait_for(recovered, timeout + 0.5, interval=0.01)
        assert time.monotonic() - fixed_at <= timeout + 0.5
        assert legacy.read_bytes() == good
        mount.meta(CRON).write_bytes(compact(VALID))
        assert open_store(folder).get(CRON) == VALID
