"""Cheap change tokens, so the view can keep per-session attributes until the store changes.

``ls -l`` of the mount needs every session's ``updatedAt``, i.e. a read of every entry. The
view caches what it derived from a read together with a token taken *before* that read; the
cache entry is used while the token is unchanged. Tokens:

* a layout with one file per entry (``Store.entry_files``, the directory store): its
  :meth:`Store.entry_token`, which also answers "no such session" (``MISSING``) without a read;
* any other store: :meth:`Store.fingerprint`, which changes whenever the store changes
  (legacy: the identity of ``sessions.json``, one ``stat`` for all sessions).

The store owns its disk layout: this module never opens a store's files or unpacks its
tokens; it asks the store (``entry_token``, ``peek``, ``change_time``, ``token_is_versioned``).

The same idea validates the root listing (:meth:`StoreProbe.listing_token`): the store's
fingerprint, trusted only once it is old enough that a change within the same clock tick
cannot hide behind it.
"""

from __future__ import annotations

import time

from sessionfs.store.base import MISSING, Store

__all__ = ["MISSING", "StoreProbe"]


#: A fingerprint (an mtime) younger than this may still change without changing its value.
_SETTLE_NS = 100_000_000


class StoreProbe:
    """Change tokens for one store."""

    def __init__(self, store: Store, *, interval: float = 0.0) -> None:
        self.store = store
        # SQLite: the fingerprint costs a PRAGMA and two stats; ask at most once per interval
        # (a change shows within the interval; everything cached under the old token is
        # re-read once the new one arrives).
        self._interval = interval if store.fingerprint_is_costly else 0.0
        self._last: tuple[float, object] | None = None

    def fingerprint(self) -> object:
        """The store's fingerprint, at most :attr:`_interval` old."""
        if self._interval <= 0:
            return self.store.fingerprint()
        now = time.monotonic()
        last = self._last
        if last is not None and now - last[0] < self._interval:
            return last[1]
        fingerprint = self.store.fingerprint()
        self._last = (now, fingerprint)
        return fingerprint

    def entry_token(self, name: str) -> object:
        """A token for the session directory ``name``; :data:`MISSING` when surely absent."""
        if not self.store.entry_files:
            return self.fingerprint()
        return self.store.entry_token(name)

    @property
    def quick(self) -> bool:
        """Whether :meth:`quick_read` can answer (one file per entry)."""
        return self.store.entry_files

    def quick_read(self, name: str) -> tuple[bytes, int, object] | object | None:
        """``(bytes, mtime_ns, token)`` of an entry read the cheapest way (:meth:`Store.peek`);
        :data:`MISSING`; or None (use ``store.read``).

        Only for attributes: what a reader gets at ``open`` always comes from ``store.read``.
        """
        return self.store.peek(name)

    def settled(self, token: object) -> bool:
        """Whether a token is old enough to be trusted for caching (see :data:`_SETTLE_NS`)."""
        if self._interval > 0 and self.store.token_is_versioned(token):
            return True  # SQLite: data_version changes with every commit, whatever the clock
        mtime = self.store.change_time(token)
        return mtime is not None and time.time_ns() - mtime >= _SETTLE_NS

    def listing_token(self) -> object:
        """A token for the set of keys, or None when it cannot be trusted yet."""
        fingerprint = self.fingerprint()
        if self._interval > 0 and self.store.token_is_versioned(fingerprint):
            return fingerprint  # data_version moves with every commit: no clock tick to wait
        return fingerprint if self.settled(fingerprint) else None
