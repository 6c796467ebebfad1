"""The open files of the state mount (:mod:`sessionfs.fs.state_view`): a rendering of
``sessions.json`` (:class:`RenderedHandle`), a transcript that follows appends
(:class:`FollowedTranscript`), and a file of an agent's ``sessions.d`` held by that agent's
own view (:class:`Delegated`). Each keeps the version it opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sessionfs.errors import SessionfsError
from sessionfs.fs.access import Shown
from sessionfs.fs.handles import Handle
from sessionfs.fs.state_agents import Agent
from sessionfs.projection import Projection
from sessionfs.store.base import TranscriptSource

__all__ = ["Delegated", "FollowedTranscript", "RenderedHandle"]


class RenderedHandle(Handle):
    """An open rendering of ``sessions.json``: fixed bytes, read with direct I/O.

    Not through the page cache: the kernel keeps one page cache per path, so two readers that
    overlap a change (one opened the old rendering, one the new) would share pages of both
    and either could read a mix (measured: 273 of 6,302 overlapping reads were invalid JSON).
    With direct I/O every read is answered from the reader's own rendering. The cost is the
    repeat read, which now reaches this process (80 MB: ~0.01 s from the page cache, ~0.1 s
    served here; see the README's state mount figures)."""

    direct_io = True
    noflush = True

    def __init__(self, projection: Projection, keep_cache: bool, access: Shown) -> None:
        self._projection = projection
        self.keep_cache = keep_cache
        self.access = access

    def size(self) -> int:
        return self._projection.size

    def mtime_ns(self) -> int:
        return self._projection.mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        return self._projection.read(size, offset)


class FollowedTranscript(Handle):
    """An open transcript: the source as it was at open (fixed size), read on demand, replaced
    by a longer one when the transcript grows under a reader that reached its end (``tail -f``
    polls ``fstat`` and reads what was appended; as the store mount's ``transcript.jsonl``)."""

    direct_io = False
    noflush = True

    def __init__(self, source: TranscriptSource, keep_cache: bool,
                 latest: Callable[[], TranscriptSource],
                 measure: Callable[[], tuple[int, int, object]], access: Shown,
                 told: Callable[[], object], agent: Agent | None = None) -> None:
        self.source = source
        self.keep_cache = keep_cache
        self.access = access
        self.agent = agent  # its store stays open while this is (AgentDirectory's retiring)
        self._latest = latest
        self._measure = measure
        self._lock = threading.Lock()
        #: an fstat reported it longer than opened (reads past the end then look again)
        self._grew = False
        #: the token of what a stat by path last told the kernel (None: nothing yet)
        self._told = told

    def size(self) -> int:
        return self.source.size

    def mtime_ns(self) -> int:
        return self.source.mtime_ns

    def current(self) -> tuple[int, int]:
        """``(size, mtime_ns)`` for ``fstat``: the transcript now, never less than opened."""
        source = self.source
        try:
            size, mtime_ns, _token = self._measure()
        except (SessionfsError, OSError):  # gone or unreadable now: what was opened
            return source.size, source.mtime_ns
        if size > source.size:
            self._grew = True
            return size, mtime_ns
        return source.size, source.mtime_ns

    def read(self, size: int, offset: int) -> bytes:
        """From the source opened; from the transcript now when the reader is past its end or
        the kernel was told another size (fstat or stat since): a read that merely reaches the
        end, as every first read's readahead does, asks nothing more of the store."""
        source = self.source
        if offset + size > source.size and (offset >= source.size or self._grew or
                                            self._told() not in (None, source.token)):
            source = self._grow()
        return source.read(offset, size)

    def _grow(self) -> TranscriptSource:
        """The transcript now when it is longer than the source held (appended events)."""
        with self._lock:
            source = self.source
            try:
                fresh = self._latest()
            except (SessionfsError, OSError):
                return source
            self._grew = False
            if fresh is source:
                return source
            if fresh.size <= source.size:
                fresh.close()
                return source
            self.source = fresh
            source.close()
            return fresh

    def release(self) -> None:
        with self._lock:
            self.source.close()


class Delegated(Handle):
    """A file opened inside ``sessions.d``: the agent view's own handle number."""

    def __init__(self, agent: Agent, inner_fh: int, inner: Handle | None) -> None:
        self.agent = agent
        self.inner_fh = inner_fh
        self.direct_io = getattr(inner, "direct_io", True)
        self.noflush = getattr(inner, "noflush", False)
        self.writable = getattr(inner, "writable", False)
        self.keep_cache = False
