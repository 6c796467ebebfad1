"""What a transcript offers, whichever generation stores it: a fixed size and pread-like reads.

Its own module so that the file-era transcripts (``transcripts.py``) and the store interface
(``base.py``) both build on it without importing each other.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

__all__ = ["TranscriptSource"]


class TranscriptSource(abc.ABC):
    """One session's transcript (JSONL), as it was when opened: a fixed ``size`` and pread-like
    :meth:`read`. Reading never holds the whole transcript in memory.

    ``size`` is exact and known without reading the content; ``token`` changes whenever the
    transcript does (grows, is rewritten, is replaced): a caller that sees a new token opens a
    new source to see the new bytes. Reads past ``size`` return ``b""`` even if the store has
    grown since (so a reader never sees more than ``stat`` said).
    """

    size: int
    mtime_ns: int
    token: object

    @abc.abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short only at the end).

        :raises TranscriptChanged: the transcript was rewritten since this source was opened.
        """

    def close(self) -> None:
        """Release what the source holds (a file descriptor); idempotent."""
        return None

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The whole transcript in order, ``chunk_size`` bytes at a time (streaming)."""
        offset = 0
        while offset < self.size:
            data = self.read(offset, min(chunk_size, self.size - offset))
            if not data:
                return
            offset += len(data)
            yield data

    def __enter__(self) -> TranscriptSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
