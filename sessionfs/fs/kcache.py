"""Bookkeeping of what the kernel may cache for each ``meta.json``, so opens can reuse it safely.

The kernel keeps two things per file between our answers: the size we last reported (it reads
a cached file only up to that size) and the pages earlier reads filled. Both go stale when the
store changes behind the mount. For every open of a ``meta.json`` we decide, from what we told
the kernel, how the handle may use the page cache:

* the kernel's size and pages are exactly this snapshot: keep the pages (a warm ``cat`` costs
  no READ request);
* the kernel's size is right but its pages may be old, and no other cached reader is open: let
  the open drop the pages (``keep_cache=0``) and read through the cache;
* otherwise (size unknown or different, or another cached reader could be disturbed): serve the
  handle with ``direct_io``, which ignores the cached size and pages altogether, so a reader
  never sees a torn or truncated entry.

Sizes are recorded whenever an attribute reply for the file is built; anything that changes the
file in the kernel without a reply from us (writes, ``O_TRUNC``, renames, unlinks) forgets what
we knew. This module is pure bookkeeping: no FUSE import, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheMode", "KernelCache"]

_LIMIT = 200_000  # keys remembered; forgetting only costs a cache drop on the next open


@dataclass(frozen=True, slots=True)
class CacheMode:
    """How one open file uses the kernel page cache (the FUSE open reply flags)."""

    keep_cache: bool
    direct_io: bool

    @property
    def cached(self) -> bool:
        """Whether reads of this handle go through (and fill) the page cache."""
        return not self.direct_io


WARM = CacheMode(keep_cache=True, direct_io=False)
REFILL = CacheMode(keep_cache=False, direct_io=False)
DIRECT = CacheMode(keep_cache=True, direct_io=True)


def token(data: bytes) -> tuple[int, int]:
    return len(data), hash(data)


class KernelCache:
    """Per session key: the size last reported to the kernel and the content of its pages."""

    def __init__(self) -> None:
        self._size: dict[str, int] = {}
        self._pages: dict[str, tuple[int, int]] = {}

    def told_size(self, key: str, size: int) -> None:
        """An attribute reply carrying ``size`` for this key's ``meta.json`` is on its way."""
        if len(self._size) >= _LIMIT and key not in self._size:
            self._size.clear()
            self._pages.clear()
        self._size[key] = size

    def forget(self, key: str) -> None:
        """The kernel's idea of this file changed without us telling it the new size."""
        self._size.pop(key, None)
        self._pages.pop(key, None)

    def decide(self, key: str, data: bytes, *, others_cached: bool, writers: bool) -> CacheMode:
        """The mode for a new read handle whose snapshot is ``data``.

        :param others_cached: another handle that reads through the page cache is open.
        :param writers: a handle that writes this file is open (its writes move the size).
        """
        if writers or self._size.get(key) != len(data):
            return DIRECT
        current = token(data)
        if self._pages.get(key) == current:
            return WARM
        if others_cached:
            return DIRECT
        self._pages[key] = current
        return REFILL
