"""``/<name>/transcript.jsonl``: a session's transcript, read-only, streamed from the store.

The store gives a :class:`~sessionfs.store.base.TranscriptSource` (a file-era ``.jsonl`` held
open, or the SQLite events of the session's current window); this module turns it into a file:

* ``stat`` answers the exact size without reading the content (the source measures it), and
  follows growth: a SQLite transcript's size is cached only while the store's (throttled)
  fingerprint is unchanged, a file-era one is measured by one ``fstat`` per ``stat``;
* reads stream through the source (pread-like, nothing held beyond one chunk), and an open
  file follows appends (``tail -f``): a read past the end of what it opened re-opens the
  source, and ``fstat`` of the open file reports the current size;
* transcripts go through the kernel page cache (no direct I/O): an open whose token equals the
  one the last open saw keeps the cache (``keep_cache``), any other open drops it, and a size
  change drops it too (the kernel invalidates an inode's pages when its size changes);
* every change (write, truncate, unlink, rename, setattr) fails and leaves the session as it
  was: EROFS for the content and attributes, EPERM for the name.

No FUSE import: the view holds a :class:`TranscriptLeaf` (composed, not mixed in) and the
adapter only reads the handle's ``direct_io``/``keep_cache``.
"""

from __future__ import annotations

import errno
import stat
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from sessionfs.errors import SessionfsError, SessionNotFound, TranscriptChanged
from sessionfs.fs.handles import Handle
from sessionfs.fs.paths import INNER, Where, fail, parse_path
from sessionfs.store.base import TranscriptSource

if TYPE_CHECKING:
    from sessionfs.fs.control import ErrorLog
    from sessionfs.fs.index import SessionIndex
    from sessionfs.store.base import Store

__all__ = ["TRANSCRIPT_MODE", "TRANSCRIPT_NAME", "TranscriptHandle", "TranscriptLeaf",
           "TranscriptStat"]

TRANSCRIPT_NAME = "transcript.jsonl"
#: Read-only for its owner, like every other file here (0600 files, 0700 folders).
TRANSCRIPT_MODE = stat.S_IFREG | 0o400
READ_ONLY_DETAIL = ("transcript.jsonl is read-only: the gateway appends to it and sessionfs never "
                    "changes a transcript")
_STAT_CACHE_LIMIT = 4096
#: Streaming reads go through blocks of this size, aligned, each fetched from the source once
#: (the kernel asks 256 KiB at a time, several requests in flight on different worker threads;
#: one SQL query per MiB, not per request, and never the same MiB twice).
READ_AHEAD = 1 << 20
#: Blocks an open transcript keeps (the kernel's readahead window spans up to two).
KEPT_BLOCKS = 4
#: Requests smaller than this are page refills, not streaming: the kernel's readahead asks
#: 128 KiB or more, but a repeat read of a cached transcript still finds a few single pages
#: evicted (measured: 9-50 of 51k pages after a cold read, on any FUSE mount) and asks 4 KiB
#: for each. Those are served exactly (a few events), not with a 1 MiB read-ahead query each.
STREAMING_REQUEST = 64 << 10


class TranscriptStat:
    """Size, mtime and change token of a transcript as last measured."""

    __slots__ = ("mtime_ns", "size", "token")

    def __init__(self, size: int, mtime_ns: int, token: object) -> None:
        self.size = size
        self.mtime_ns = mtime_ns
        self.token = token


class _Block:
    """One READ_AHEAD block of a transcript, being fetched (``ready`` unset) or fetched."""

    __slots__ = ("data", "error", "ready", "source")

    def __init__(self, source: TranscriptSource) -> None:
        self.source = source  # a handle that grew switches sources: blocks never mix them
        self.data = b""
        self.error: BaseException | None = None
        self.ready = threading.Event()


class TranscriptHandle(Handle):
    """An open ``transcript.jsonl``: a source, replaced by a longer one when the transcript
    grows under a reader that reached the end (``tail -f``)."""

    direct_io = False  # the page cache serves repeat reads (see keep_cache)
    noflush = True
    writable = False

    def __init__(self, leaf: TranscriptLeaf, key: str, source: TranscriptSource, *,
                 keep_cache: bool) -> None:
        self._leaf = leaf
        self.key = key
        self.keep_cache = keep_cache
        self._source = source
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, _Block] = OrderedDict()  # READ_AHEAD-aligned, recent
        self._blocks_lock = threading.Lock()

    def size(self) -> int:
        return self._source.size

    def mtime_ns(self) -> int:
        return self._source.mtime_ns

    def current(self) -> tuple[int, int]:
        """``(size, mtime_ns)`` for ``fstat``: the transcript now, never less than opened."""
        source = self._source
        latest = self._leaf.transcript_stat(self.key, quiet=True)
        if latest is not None and latest.size > source.size:
            return latest.size, latest.mtime_ns
        return source.size, source.mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        source = self._source
        if offset + size > source.size and (offset >= source.size or self._leaf.known_size(
                self.key) > source.size):
            source = self._grow()
        try:
            if size < STREAMING_REQUEST:
                return self._refill(source, size, offset)
            parts = []
            position, end = offset, min(offset + size, source.size)
            while position < end:
                block = position // READ_AHEAD
                data = self._block(source, block)[position - block * READ_AHEAD:
                                                  end - block * READ_AHEAD]
                if not data:
                    break
                parts.append(data)
                position += len(data)
            return b"".join(parts)
        except TranscriptChanged as exc:
            raise OSError(errno.ESTALE, str(exc)) from exc

    def _refill(self, source: TranscriptSource, size: int, offset: int) -> bytes:
        """A small request: from a block at hand, else exactly these bytes from the source."""
        block = offset // READ_AHEAD
        with self._blocks_lock:
            found = self._blocks.get(block)
        if found is not None and found.source is source and found.ready.is_set() and \
                found.error is None and \
                offset + size <= (block + 1) * READ_AHEAD:
            return found.data[offset - block * READ_AHEAD:offset - block * READ_AHEAD + size]
        return source.read(offset, size)

    def _block(self, source: TranscriptSource, block: int) -> bytes:
        """Block ``block`` of ``source``: fetched by the first thread that needs it; others
        wait for that fetch instead of querying the same bytes again."""
        with self._blocks_lock:
            found = self._blocks.get(block)
            mine = found is None or found.source is not source
            if found is None or mine:
                found = self._blocks[block] = _Block(source)
                self._blocks.move_to_end(block)
                while len(self._blocks) > KEPT_BLOCKS:
                    self._blocks.popitem(last=False)
            else:
                self._blocks.move_to_end(block)
        if mine:
            try:
                found.data = source.read(block * READ_AHEAD, READ_AHEAD)
            except BaseException as exc:
                found.error = exc
                with self._blocks_lock:
                    if self._blocks.get(block) is found:
                        del self._blocks[block]
                raise
            finally:
                found.ready.set()
        else:
            found.ready.wait()
            if found.error is not None:
                raise found.error
        return found.data

    def _grow(self) -> TranscriptSource:
        """Re-open the transcript; keep the longer source (appended events)."""
        with self._lock:
            source = self._source
            try:
                fresh = self._leaf.store.transcript(self.key)
            except (SessionfsError, OSError):
                return source  # gone or unreadable now: serve what was opened
            if fresh is None:
                return source
            if fresh.size > source.size:
                self._source = fresh
                with self._blocks_lock:
                    self._blocks = OrderedDict()
                self._leaf.remember_stat(self.key, fresh)
                source.close()
                return fresh
            fresh.close()
            return source

    def release(self) -> None:
        with self._lock:
            self._source.close()


class TranscriptLeaf:
    """The transcript part of the view (held by :class:`~sessionfs.fs.view.SessionView`):
    which paths are transcripts, their attributes and opens, and refusing their changes."""

    def __init__(self, store: Store, index: SessionIndex, errors: ErrorLog, *,
                 enabled: bool) -> None:
        self.store = store
        self.index = index
        self.errors = errors
        self.transcripts = enabled
        self._transcript_stats: dict[str, tuple[object, TranscriptStat | None]] = {}
        self._opened_tokens: dict[str, object] = {}  # key -> token the last open saw
        # SQLite sources hold no descriptor: one per key is shared while the fingerprint holds
        self._shared: dict[str, tuple[object, TranscriptSource]] = {}
        # File era: key -> (entry token, the transcript's candidate file names), see _file_names
        self._names: dict[str, tuple[object, tuple[str, ...]]] = {}
        self._transcript_lock = threading.Lock()

    # -- which paths -----------------------------------------------------------------------------
    def is_transcript(self, where: Where) -> bool:
        return self.transcripts and where.kind == INNER and where.name == TRANSCRIPT_NAME

    def transcript_path(self, path: str | None) -> Where | None:
        """The parsed path when it names a session's ``transcript.jsonl``, else None."""
        if not self.transcripts or path is None:
            return None
        where = parse_path(path)
        return where if self.is_transcript(where) else None

    def _transcript_key(self, top: str) -> str:
        """The key of the session folder ``top``. :raises OSError: ENOENT, no such session."""
        key = self.index.key_of(top)
        if key is None or self.index.meta_of(key) is None:
            fail(errno.ENOENT)
        return key

    # -- measuring -------------------------------------------------------------------------------
    def transcript_stat(self, key: str, *, quiet: bool = False) -> TranscriptStat | None:
        """The transcript's size/mtime/token now, or None when the session has none (or is
        gone; with ``quiet``, also when the store cannot tell).

        SQLite: cached while the store's fingerprint (checked at most every probe interval) is
        unchanged. File era: measured every time, by ``lstat`` of the file names kept for the
        entry (see :meth:`_file_names`)."""
        try:
            if self.store.transcripts_are_files:
                measured = self.store.measure_transcript_named(self._file_names(key))
                return None if measured is None else TranscriptStat(*measured)
            return self._sqlite_stat(key)
        except SessionNotFound:
            return None
        except (SessionfsError, OSError):
            if quiet:
                return None
            raise

    def _sqlite_stat(self, key: str) -> TranscriptStat | None:
        fingerprint = self.index.store_token()
        cached = self._transcript_stats.get(key)
        if cached is not None and fingerprint is not None and cached[0] == fingerprint:
            return cached[1]
        source = self.store.transcript(key)
        if source is None:
            found = None
        else:
            found = TranscriptStat(source.size, source.mtime_ns, source.token)
            source.close()
        if fingerprint is not None:
            self._cache_stat(key, fingerprint, found)
        return found

    def _file_names(self, key: str) -> tuple[str, ...]:
        """The file names ``key``'s transcript may have. They come from the entry, so they are
        kept while the index's token for the entry holds (once it is settled, as the index
        keeps attributes): a listing of a session folder (``grep -r``, ``find``) then costs a
        ``stat`` or two instead of reading and parsing the entry. :raises SessionNotFound:"""
        meta = self.index.meta_of(key)
        if meta is None:
            raise SessionNotFound(f"no session {key!r}")
        token = meta.token
        kept = self._names.get(key)
        if kept is not None and token is not None and kept[0] == token:
            return kept[1]
        names = self.store.transcript_names(key)
        if token is not None and self.index.settled(token):
            with self._transcript_lock:
                if len(self._names) > _STAT_CACHE_LIMIT * 16:
                    self._names.clear()
                self._names[key] = (token, names)
        return names

    def _cache_stat(self, key: str, fingerprint: object, found: TranscriptStat | None) -> None:
        with self._transcript_lock:
            if len(self._transcript_stats) > _STAT_CACHE_LIMIT:
                self._transcript_stats.clear()
            self._transcript_stats[key] = (fingerprint, found)

    def remember_stat(self, key: str, source: TranscriptSource) -> None:
        """A source just opened is the freshest measure there is (same fingerprint rules)."""
        if self.store.transcripts_are_files:
            return
        fingerprint = self.index.store_token()
        if fingerprint is not None:
            self._cache_stat(key, fingerprint,
                             TranscriptStat(source.size, source.mtime_ns, source.token))

    def known_size(self, key: str) -> int:
        """The size last reported for ``key`` (0 when unknown); no store access."""
        cached = self._transcript_stats.get(key)
        return cached[1].size if cached is not None and cached[1] is not None else 0

    def has_transcript(self, key: str) -> bool:
        try:
            return self.transcript_stat(key, quiet=True) is not None
        except (SessionfsError, OSError):
            return False

    def transcript_attrs(self, where: Where) -> tuple[int, int, int]:
        """``(mode, size, mtime_ns)`` of ``/<top>/transcript.jsonl``. :raises OSError: ENOENT"""
        key = self._transcript_key(where.top)
        found = self.transcript_stat(key)
        if found is None:
            fail(errno.ENOENT)
        return TRANSCRIPT_MODE, found.size, found.mtime_ns

    # -- opening ---------------------------------------------------------------------------------
    def open_transcript(self, where: Where, flags: int) -> TranscriptHandle:
        """A read-only open (the caller refused writing opens). :raises OSError: ENOENT"""
        key = self._transcript_key(where.top)
        source = self._sqlite_source(key)
        if source is None:
            source = self.store.transcript(key)
        if source is None:
            fail(errno.ENOENT)
        self.remember_stat(key, source)
        with self._transcript_lock:
            keep = self._opened_tokens.get(key) == source.token
            if len(self._opened_tokens) > _STAT_CACHE_LIMIT:
                self._opened_tokens.clear()
            self._opened_tokens[key] = source.token
        return TranscriptHandle(self, key, source, keep_cache=keep)

    def _sqlite_source(self, key: str) -> TranscriptSource | None:
        """A SQLite source opened under the current fingerprint, shared (measuring a transcript
        of 200 MB costs a count over its events; a repeat open within the probe interval of an
        unchanged store needs none). None: open one."""
        if self.store.transcripts_are_files:
            return None
        fingerprint = self.index.store_token()
        if fingerprint is None:
            return None
        shared = self._shared.get(key)
        if shared is not None and shared[0] == fingerprint:
            return shared[1]
        source = self.store.transcript(key)
        if source is not None:
            with self._transcript_lock:
                if len(self._shared) > _STAT_CACHE_LIMIT:
                    self._shared.clear()
                self._shared[key] = (fingerprint, source)
        return source

    # -- refusing changes ------------------------------------------------------------------------
    def refuse_transcript_change(self, path: str, code: int = errno.EROFS) -> None:
        """Record and raise: a transcript is never changed through the mount."""
        exc = OSError(code, f"{path}: {READ_ONLY_DETAIL}")
        self.errors.add(path, code, READ_ONLY_DETAIL)
        raise exc

    def guard_transcript_name(self, *paths: str) -> None:
        """unlink/rename/mkdir/symlink touching an existing ``transcript.jsonl``: EPERM.

        A name that is not there (the session has no transcript) stays usable as scratch."""
        for path in paths:
            where = self.transcript_path(path)
            if where is None:
                continue
            key = self.index.key_of(where.top)
            if key is not None and self.index.meta_of(key) is not None and \
                    self.has_transcript(key):
                self.refuse_transcript_change(path, errno.EPERM)


def store_status_lines(store: Store) -> list[str]:
    """Extra ``status`` lines: the generation, stale files, refused rows."""
    lines = [f"generation: {store.generation}"]
    lines += [f"stale: {path} (file era: openclaw no longer reads it; the database wins)"
              for path in store.stale_files]
    try:
        refused = store.refused_rows()
    except (SessionfsError, OSError) as exc:
        return [*lines, f"refused rows: unknown ({exc})"]
    lines.append(f"refused rows: {len(refused)}")
    lines += [f"refused: {' '.join(str(row).split())}" for row in refused]
    return lines

