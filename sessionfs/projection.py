"""openclaw's file-era ``sessions.json`` and transcript names, rendered from a store of any
generation (the state mount shows these; nothing here knows about FUSE).

What the file era wrote, and what a reader of it expects:

* ``sessions.json`` is ``JSON.stringify(store, null, 2)`` with no trailing newline, keys in
  store order. Tools sum floating-point costs in file order, so the order is kept exactly:
  legacy — the file itself, byte for byte; ``sessions.d`` — the order ``migrate`` recorded
  (the one ``rollback`` restores), newer sessions after it; SQLite — openclaw's reader order.
* Every entry's ``sessionFile`` names its transcript, ``<sessionId>.jsonl`` or, for a key
  ending in ``:topic:<n>``, ``<sessionId>-topic-<n>.jsonl``. Rendered entries point it at the
  transcript *inside the mount* (``transcripts_dir``), so tools that follow it read the mount.
* openclaw's SQLite import folded the routing fields into ``delivery`` (and dropped them); see
  :func:`restore_routing` for what comes back and what is lost for good.

Rendering reads every entry, so it is memoised per store version (:class:`Projector`).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sessionfs import jsonfmt
from sessionfs.errors import InvalidJSON, SessionfsError, StoreCorrupt
from sessionfs.jsonfmt.numbers import numbers_like_javascript
from sessionfs.store import Store
from sessionfs.store.base import Entry
from sessionfs.store.legacy import indent_member
from sessionfs.store.transcripts import candidate_names

__all__ = ["Projection", "Projector", "render", "restore_routing", "store_version",
           "transcript_name"]

_TOPIC = re.compile(r":topic:([^:/\x00]+)$")
_DIRECT_KEY = re.compile(r"^agent:[^:]+:[^:]+:direct:")
#: Keys openclaw's import put into ``delivery.origin`` from the route alone; an origin with
#: nothing more was synthesised by the import, not carried over from the file era.
_SYNTHETIC_ORIGIN = frozenset({"provider", "to", "accountId", "threadId"})
#: Where the file era kept ``sessionFile``: before these heavy trailing fields, if present.
_TRAILING = ("skillsSnapshot", "systemPromptReport", "sessionDiffBaseline", "delivery")


def transcript_name(key: str, entry: Entry) -> str | None:
    """The file-era transcript name: ``<sessionId>.jsonl``, or ``<sessionId>-topic-<n>.jsonl``
    for a key ending in ``:topic:<n>``; None without a usable sessionId."""
    session_id = entry.get("sessionId")
    if not isinstance(session_id, str) or not session_id or "/" in session_id \
            or "\x00" in session_id or session_id.startswith("."):
        return None
    topic = _TOPIC.search(key)
    name = (f"{session_id}-topic-{topic.group(1)}.jsonl" if topic is not None
            else f"{session_id}.jsonl")
    return name if len(name.encode("utf-8", "replace")) <= 255 else None


def _insert_after(entry: Entry, anchor: str | None, items: list[tuple[str, Any]]) -> Entry:
    """``entry`` with ``items`` placed right after ``anchor`` (at the end when absent)."""
    if not items:
        return entry
    out: Entry = {}
    placed = anchor is None or anchor not in entry
    for key, value in entry.items():
        out[key] = value
        if not placed and key == anchor:
            out.update(items)
            placed = True
    if not placed or anchor is None:
        for key, value in items:
            out[key] = value
    return out


def restore_routing(key: str, entry: Entry) -> Entry:
    """The file-era routing fields of a SQLite-era entry, rebuilt from ``delivery``.

    Derived by comparing openclaw 2026.9.6's import with its file-era input
    (``../shared/context/openclaw-sqlite-real.md`` §3.1); ``delivery`` itself is kept:

    * ``kind: "external"``: ``lastChannel`` = ``route.channel``; ``deliveryContext`` =
      ``context``; ``lastThreadId`` = ``route.thread.id``; ``channel`` = ``route.channel`` for
      group chats (``chatType: "group"``); ``lastTo`` = ``context.to`` for direct-chat keys
      (``…:<channel>:direct:<peer>``); ``origin`` when it holds more than the import derives
      from the route (an inbound message's ``surface``/``from``/``label``…), and then
      ``lastAccountId`` = its ``accountId``.
    * ``kind: "internal"``: ``lastChannel: "webchat"`` (the only internal channel the import saw).
    * ``kind: "none"`` or no ``delivery``: nothing to restore.

    Fields already present are left alone. The restored fields go right after ``chatType``.
    """
    delivery = entry.get("delivery")
    if not isinstance(delivery, dict):
        return entry
    restored: list[tuple[str, Any]] = []
    kind = delivery.get("kind")
    if kind == "internal":
        restored.append(("lastChannel", "webchat"))
    elif kind == "external":
        route: dict[str, Any] = delivery["route"] if isinstance(delivery.get("route"), dict) else {}
        context = delivery.get("context") if isinstance(delivery.get("context"), dict) else None
        origin = delivery.get("origin") if isinstance(delivery.get("origin"), dict) else None
        channel = route.get("channel") if isinstance(route.get("channel"), str) else None
        if channel is None and context is not None and isinstance(context.get("channel"), str):
            channel = context["channel"]
        if channel is not None and entry.get("chatType") == "group":
            restored.append(("channel", channel))
        if channel is not None:
            restored.append(("lastChannel", channel))
        to = context.get("to") if context is not None else None
        if to is None and isinstance(route.get("target"), dict):
            to = route["target"].get("to")
        if isinstance(to, str) and _DIRECT_KEY.match(key):
            restored.append(("lastTo", to))
        rich_origin = origin is not None and not set(origin) <= _SYNTHETIC_ORIGIN
        if rich_origin and origin is not None and "accountId" in origin:
            restored.append(("lastAccountId", origin["accountId"]))
        thread = route.get("thread")
        if isinstance(thread, dict) and "id" in thread:
            restored.append(("lastThreadId", thread["id"]))
        if context is not None:
            restored.append(("deliveryContext", context))
        if rich_origin:
            restored.append(("origin", origin))
    restored = [(name, value) for name, value in restored if name not in entry]
    return _insert_after(entry, "chatType" if "chatType" in entry else None, restored) \
        if "chatType" in entry else _before_trailing(entry, restored)


def _before_trailing(entry: Entry, items: list[tuple[str, Any]]) -> Entry:
    """``entry`` with ``items`` inserted before the first heavy trailing field."""
    if not items:
        return entry
    out: Entry = {}
    placed = False
    for key, value in entry.items():
        if not placed and key in _TRAILING:
            out.update(items)
            placed = True
        out[key] = value
    if not placed:
        out.update(items)
    return out


def with_session_file(entry: Entry, path: str) -> Entry:
    """``entry`` whose ``sessionFile`` is ``path``: replaced in place, or inserted where the
    file era kept it (before ``skillsSnapshot`` and the other heavy trailing fields)."""
    if "sessionFile" in entry:
        if entry["sessionFile"] == path:
            return entry
        return {key: (path if key == "sessionFile" else value) for key, value in entry.items()}
    return _before_trailing(entry, [("sessionFile", path)])


_TOP_KEY = b'\n  "'


def _is_canonical(entry: Entry, data: bytes) -> bool:
    """Whether ``data`` is exactly ``JSON.stringify(entry, null, 2)``, checked without the
    pure-Python number fixing: orjson's output equals it and holds nothing orjson and
    JavaScript write differently (array-index keys; exponents and 16+ digit numbers, found
    the way :mod:`sessionfs.jsonfmt` finds them)."""
    try:
        same = orjson.dumps(entry, option=orjson.OPT_INDENT_2) == data
    except TypeError:
        return False
    return same and not jsonfmt.has_index_key_member(data) and numbers_like_javascript(data)


#: Top-level member lines of canonical bytes: the outer object's members are the only lines
#: indented by exactly two spaces (deeper ones have more; no string holds a raw newline).
_SESSION_FILE_LINE = _TOP_KEY + b'sessionFile": '
_SESSION_ID_LINE = _TOP_KEY + b'sessionId": '
#: sessionFile's line (group 1) or a heavy trailing field's, where sessionFile goes before.
_SPLICE_LINES = re.compile(rb'\n  "(?:(sessionFile)|' + b"|".join(
    re.escape(name.encode()) for name in _TRAILING) + rb')": ')


def _line_value_end(data: bytes, start: int) -> int:
    """End of a one-line value starting at ``start`` (before its ',' if it has one)."""
    end = data.find(b"\n", start)
    return end - 1 if data[end - 1] == 0x2C else end  # ','


def _splice_lines(data: bytes) -> tuple[int, int]:
    """Where the top-level ``sessionFile``'s value starts and where the first heavy trailing
    field's line starts in canonical entry bytes (-1: absent), in one pass."""
    anchor = -1
    for found in _SPLICE_LINES.finditer(data):
        if found.group(1) is not None:
            return found.end(), anchor
        if anchor < 0:
            anchor = found.start()
    return -1, anchor


def _splice_session_file(data: bytes, path: str,
                         lines: tuple[int, int] | None = None) -> bytes | None:
    """Canonical entry bytes with the top-level ``sessionFile`` set to ``path``, found and
    rewritten in the bytes without serialising the entry again: replaced in place, or inserted
    before the first heavy trailing field (else last). None for a multi-line old value or an
    empty entry (serialise it instead). ``lines``: :func:`_splice_lines` of ``data``; the
    pieces are joined from memoryviews, one copy of the entry."""
    value = jsonfmt.dumps(path, indent=None)
    start, anchor = _splice_lines(data) if lines is None else lines
    view = memoryview(data)
    if start >= 0:
        if data[start:start + 1] in (b"{", b"[") and data[start + 1:start + 2] not in (b"}", b"]"):
            return None
        end = _line_value_end(data, start)
        if data[start:end] == value:
            return data
        return b"".join((view[:start], value, view[end:]))
    if anchor >= 0:
        return b"".join((view[:anchor], _SESSION_FILE_LINE, value, b",", view[anchor:]))
    if not data.startswith(b"{\n") or not data.endswith(b"\n}"):
        return None
    return b"".join((view[:-2], b",", _SESSION_FILE_LINE, value, b"\n}"))


def _string_at(data: bytes, start: int) -> str | None:
    """The one-line string value starting at ``start`` (None: not a string)."""
    if data[start:start + 1] != b'"':
        return None
    value = jsonfmt.loads(data[start:_line_value_end(data, start)])
    return value if isinstance(value, str) else None


def _marked_member(key: str, data: bytes, transcripts_dir: str
                   ) -> tuple[bytes, str | None, tuple[str, ...]] | None:
    """Member bytes, transcript name and candidate file names of an entry whose stored bytes
    are known canonical (sessionfs wrote them: :mod:`sessionfs.store.canonical`), without
    parsing them; None when the entry must be parsed after all.

    Transcript names need only ``sessionId`` and ``sessionFile`` when they are strings (other
    values count as absent there), read from their own lines."""
    if not data.startswith(b"{\n"):
        return None
    lines = _splice_lines(data)
    fields: Entry = {}
    try:
        at = data.find(_SESSION_ID_LINE)
        if at >= 0 and (session_id := _string_at(data, at + len(_SESSION_ID_LINE))) is not None:
            fields["sessionId"] = session_id
        if lines[0] >= 0 and (session_file := _string_at(data, lines[0])) is not None:
            fields["sessionFile"] = session_file
    except SessionfsError:
        return None
    name = transcript_name(key, fields)
    if name is None:
        return indent_member(data), None, ()
    spliced = _splice_session_file(data, f"{transcripts_dir}/{name}", lines)
    if spliced is None:
        return None
    return indent_member(spliced), name, tuple(candidate_names(key, fields))


def _member(key: str, entry: Entry, data: bytes | None, path: str | None,
            trusted: bool) -> bytes:
    """One entry's indented member bytes in ``sessions.json``: the stored bytes reused when
    they are the canonical form (``trusted``: the store guarantees it), else serialised."""
    if data is not None and (trusted or _is_canonical(entry, data)):
        spliced = data if path is None or entry.get("sessionFile") == path else \
            _splice_session_file(data, path)
        if spliced is not None:
            return indent_member(spliced)
    if path is not None:
        entry = with_session_file(entry, path)
    return indent_member(jsonfmt.dumps(entry))


@dataclass
class Projection:
    """One rendering of an agent's ``sessions.json`` and the transcript names beside it.

    The file is ``b"".join(parts)``, kept in pieces (each entry's member bytes, shared with the
    memo) and read piecewise: joining 80 MB up front would copy all of it once more before the
    first byte is served, and hold it twice.
    """

    version: object
    parts: list[bytes]
    mtime_ns: int
    #: transcript file name → session key, for sessions whose name is known (store order)
    names: dict[str, str] = field(default_factory=dict)
    #: changes whenever the bytes do (page-cache decisions); set by :class:`Projector`
    token: str = ""
    #: end offset of each part
    ends: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ends = list(itertools.accumulate(len(part) for part in self.parts))

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0

    @property
    def data(self) -> bytes:
        """The whole file (joined on each call: for tests and small stores)."""
        return b"".join(self.parts)

    def read(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file)."""
        if size <= 0 or offset >= self.size:
            return b""
        index = bisect.bisect_right(self.ends, offset)
        start = offset - (self.ends[index] - len(self.parts[index]))
        piece = self.parts[index][start:start + size]
        if len(piece) == size:
            return piece
        pieces: list[bytes | memoryview] = [piece]  # views: the join is the one copy
        remaining = size - len(piece)
        for part in itertools.islice(self.parts, index + 1, None):
            pieces.append(memoryview(part)[:remaining])
            remaining -= len(pieces[-1])
            if remaining <= 0:
                break
        return b"".join(pieces)


def _assemble_parts(members: list[tuple[str, bytes]]) -> list[bytes]:
    """:func:`~sessionfs.store.legacy.assemble`'s bytes as parts (a key line, then the member
    bytes as they are), so that the members are not copied into one big string."""
    if not members:
        return [b"{}"]
    members = jsonfmt.in_js_key_order(members)  # JavaScript's own key order
    parts: list[bytes] = []
    separator = b"{\n  "
    for key, member in members:
        parts.append(separator + jsonfmt.dumps(key, indent=None) + b": ")
        parts.append(member)
        separator = b",\n  "
    parts.append(b"\n}")
    return parts


def store_version(store: Store) -> object:
    """A token that changes whenever anything ``sessions.json`` shows could have changed."""
    return store.content_version()


#: Per-entry memo kept between renderings: key -> (what identifies the stored bytes, member
#: bytes, transcript name or None, the transcript file names it may have on disk). Unchanged
#: entries are not read or serialised again.
Memo = dict[str, tuple[object, bytes, str | None, tuple[str, ...]]]


def render(store: Store, transcripts_dir: str, version: object = None,
           memo: Memo | None = None) -> Projection:
    """``sessions.json`` of ``store`` as the file era would have written it now.

    ``transcripts_dir`` is the folder (inside the mount) where the transcripts are shown;
    rendered entries' ``sessionFile`` points there. Each entry's stored bytes are reused
    (indented one level, ``sessionFile`` rewritten in place) when they are its canonical
    ``JSON.stringify(entry, null, 2)``; ``memo`` (updated here) skips unchanged entries.
    """
    if version is None:
        version = store_version(store)
    whole = store.whole_document()
    if whole is not None:
        return _render_whole(store, version, *whole)
    transcript_ids = store.transcript_ids()
    if transcript_ids is not None:
        parts, names, mtime_ns = _render_rows(store, transcripts_dir, transcript_ids, memo)
    else:
        parts, names, mtime_ns = _render_entries(store, transcripts_dir, memo)
    return Projection(version, parts, mtime_ns or time.time_ns(), names)


def _render_whole(store: Store, version: object, data: bytes, mtime_ns: int) -> Projection:
    """A store that is one ``sessions.json`` (legacy) shows that file, byte for byte."""
    names: dict[str, str] = {}
    try:
        document = jsonfmt.loads(data)
    except InvalidJSON as exc:  # the store is damaged (EIO), not the caller's input
        raise StoreCorrupt(store.path, "file is empty (0 bytes)" if not data else
                           f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise StoreCorrupt(store.path, "not a JSON object")
    present = _names_in(store.path.parent)
    for key, entry in document.items():
        if isinstance(entry, dict):
            _add_name(names, key, entry, present)
    return Projection(version, [data], mtime_ns, names)


def _render_rows(store: Store, transcripts_dir: str, transcript_ids: dict[str, str],
                 memo: Memo | None) -> tuple[list[bytes], dict[str, str], int]:
    """Rows whose transcripts are named by the store (SQLite): a row is parsed only when its
    stored bytes or its transcript's id changed since the memo was made."""
    with_events = store.sessions_with_events()
    fresh: Memo = {}
    names: dict[str, str] = {}
    members: list[tuple[str, bytes]] = []
    known_memo: Memo = memo if memo is not None else {}

    def unchanged(key: str, stamp: bytes) -> bool:
        known = known_memo.get(key)
        return known is not None and known[0] == (stamp, transcript_ids.get(key))

    for key, stamp, record in store.stamped_records(unchanged):
        # a transcript is named after the sessionId whose events it shows (the row's
        # current_session_id, see SqliteStore.transcript_ids), even where the entry disagrees
        transcript_id = transcript_ids.get(key)  # None: its id is not UTF-8
        if record is None:
            _identity, member, name, _names = known_memo[key]
        else:
            entry = restore_routing(key, record.entry)
            name = transcript_name(key, {"sessionId": transcript_id})
            path = f"{transcripts_dir}/{name}" if name is not None else None
            # the store's bytes are serialize_entry(entry): canonical by construction
            member = _member(key, entry, record.data if entry is record.entry else None, path,
                             trusted=True)
        fresh[key] = ((stamp, transcript_id), member, name, ())
        if name is not None and name not in names and (
                with_events is None or transcript_id in with_events):
            names[name] = key
        members.append((key, member))
    # a damaged row is left out of sessions.json (status and check name it); its
    # transcript is intact and stays listed under its own name
    for key, transcript_id in transcript_ids.items():
        if key in fresh:
            continue
        name = transcript_name(key, {"sessionId": transcript_id})
        if name is not None and name not in names and (
                with_events is None or transcript_id in with_events):
            names[name] = key
    mtime_ns = 0
    fingerprint = store.fingerprint()
    if isinstance(fingerprint, tuple) and len(fingerprint) > 1 and isinstance(
            fingerprint[1], int):
        mtime_ns = fingerprint[1]
    _keep(memo, fresh)
    return _assemble_parts(members), names, mtime_ns


def _render_entries(store: Store, transcripts_dir: str, memo: Memo | None
                    ) -> tuple[list[bytes], dict[str, str], int]:
    """Entries in files (``sessions.d``), each read only when its file's identity changed."""
    fresh: Memo = {}
    names: dict[str, str] = {}
    members: list[tuple[str, bytes]] = []
    mtime_ns = 0
    present = _names_in(store.path.parent)
    for key in store.order():
        identity = store.entry_identity(key)
        known = memo.get(key) if memo is not None else None
        if identity is not None and known is not None and known[0] == identity:
            member, name, candidates = known[1], known[2], known[3]
            assert isinstance(identity, tuple)
            mtime_ns = max(mtime_ns, identity[2])
        elif (marked := _read_marked(store, key, transcripts_dir)) is not None:
            member, name, candidates, read_mtime_ns = marked
            mtime_ns = max(mtime_ns, read_mtime_ns)
        else:
            try:
                record = store.read(key)
            except SessionfsError:  # vanished or damaged since listing: the file skips it
                continue
            entry = record.entry
            mtime_ns = max(mtime_ns, record.mtime_ns)
            name = transcript_name(key, entry)
            candidates = tuple(candidate_names(key, entry)) if name is not None else ()
            path = f"{transcripts_dir}/{name}" if name is not None else None
            member = _member(key, entry, record.data, path, trusted=False)
        if name is not None and name not in names and any(
                candidate in present for candidate in candidates):
            names[name] = key
        if identity is not None:
            fresh[key] = (identity, member, name, candidates)
        members.append((key, member))
    with contextlib.suppress(OSError):
        mtime_ns = max(mtime_ns, os.stat(store.path).st_mtime_ns)
    _keep(memo, fresh)
    return _assemble_parts(members), names, mtime_ns


def _keep(memo: Memo | None, fresh: Memo) -> None:
    if memo is not None:
        memo.clear()
        memo.update(fresh)


def _read_marked(store: Store, key: str, transcripts_dir: str
                 ) -> tuple[bytes, str | None, tuple[str, ...], int] | None:
    """:func:`_marked_member` of a sessions.d entry whose ``meta.json`` sessionfs wrote and
    nobody changed since (plus its mtime); None: read and check it the full way."""
    unparsed = store.read_unparsed(key)
    if unparsed is None or not unparsed[2]:
        return None
    made = _marked_member(key, unparsed[0], transcripts_dir)
    return None if made is None else (*made, unparsed[1].st_mtime_ns)


def _names_in(folder: Path) -> set[str]:
    try:
        return {name for name in os.listdir(folder) if name.endswith(".jsonl")}
    except OSError:
        return set()


def _add_name(names: dict[str, str], key: str, entry: Entry, present: set[str]) -> bool:
    """Record ``key``'s file-era transcript name when one of its files is in the folder."""
    name = transcript_name(key, entry)
    if name is None or name in names:
        return False
    if any(candidate in present for candidate in candidate_names(key, entry)):
        names[name] = key
        return True
    return False


class Projector:
    """Memoised :func:`render` of one store: rendered again only when the store's version
    changed, checked at most every ``recheck`` seconds (a stat-then-read gets one rendering)."""

    def __init__(self, store: Store, transcripts_dir: str, *, recheck: float = 1.0) -> None:
        self.store = store
        self.transcripts_dir = transcripts_dir
        self.recheck = recheck
        self._current: Projection | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._memo: Memo = {}
        self._renderings = 0

    def forget(self) -> None:
        """The store was changed through this process: check the version on the next call."""
        with self._lock:
            self._checked_at = 0.0

    def get(self) -> Projection:
        now = time.monotonic()
        with self._lock:
            current = self._current
            if current is not None and now - self._checked_at < self.recheck:
                return current
        with self._render_lock:  # one rendering at a time; others wait and reuse it
            version = store_version(self.store)
            with self._lock:
                current = self._current
                if current is not None and current.version == version:
                    self._checked_at = time.monotonic()
                    return current
            fresh = render(self.store, self.transcripts_dir, version, self._memo)
            # same bytes as before (a touched file, a store change sessions.json does not
            # show): the same token, so the kernel keeps its cached pages
            if current is not None and current.parts == fresh.parts:
                fresh.token = current.token
            else:
                self._renderings += 1
                fresh.token = f"{id(self):x}.{self._renderings}"
            with self._lock:
                self._current = fresh
                self._checked_at = time.monotonic()
            return fresh
