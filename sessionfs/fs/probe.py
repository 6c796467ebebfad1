"""Cheap change tokens, so the view can keep per-session attributes until the store changes.

``ls -l`` of the mount needs every session's ``updatedAt``, i.e. a read of every entry. The
view caches what it derived from a read together with a token taken *before* that read; the
cache entry is used while the token is unchanged. Tokens:

* directory store: ``(inode, mtime, size)`` of ``sessions.d/<name>/meta.json`` from one
  ``lstat`` (every write is a rename onto that name, so the inode changes); None when the file
  does not exist, which also answers "no such session" without a read;
* any other store: :meth:`Store.fingerprint`, which changes whenever the store changes
  (legacy: the identity of ``sessions.json``, one ``stat`` for all sessions).

The same idea validates the root listing (:meth:`StoreProbe.listing_token`): the store's
fingerprint, trusted only once it is old enough that a change within the same clock tick
cannot hide behind it.
"""

from __future__ import annotations

import errno
import os
import re
import time

from sessionfs.store.base import Store
from sessionfs.store.directory import META_FILE, DirectoryStore

__all__ = ["MISSING", "StoreProbe", "updated_at_of"]

MISSING = object()  # the entry's file is not there: no such session (directory store)
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: A fingerprint (an mtime) younger than this may still change without changing its value.
_SETTLE_NS = 100_000_000


class StoreProbe:
    """Change tokens for one store."""

    def __init__(self, store: Store, *, interval: float = 0.0) -> None:
        self.store = store
        self._root = os.fspath(store.path) if isinstance(store, DirectoryStore) else None
        # SQLite: the fingerprint costs a PRAGMA and two stats; ask at most once per interval
        # (a change shows within the interval; everything cached under the old token is
        # re-read once the new one arrives).
        self._interval = interval if store.layout == "sqlite" else 0.0
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
        if self._root is None:
            return self.fingerprint()
        try:
            st = os.stat(f"{self._root}/{name}/{META_FILE}", follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING
        except OSError:
            return None  # let the store's own read say what is wrong
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def quick(self) -> bool:
        """Whether :meth:`quick_read` can answer (directory store)."""
        return self._root is not None

    def quick_read(self, name: str) -> tuple[bytes, int, object] | object | None:
        """``(bytes, mtime_ns, token)`` of a directory store's ``meta.json``, read with one
        open; :data:`MISSING`; or None (other layouts, or anything unusual: use
        ``store.read``).

        Only for attributes: what a reader gets at ``open`` always comes from ``store.read``.
        """
        if self._root is None or "~" in name:  # hashed names: the store checks their key file
            return None
        try:  # like the store: a symlink or a file where a session folder should be is none
            folder = os.open(f"{self._root}/{name}", _OPEN_DIR)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING
        except OSError as exc:
            return MISSING if exc.errno == errno.ELOOP else None
        try:
            fd = os.open(META_FILE, _OPEN_FILE, dir_fd=folder)
        except FileNotFoundError:
            return MISSING
        except OSError:
            return None  # e.g. a symlinked meta.json: the store's read reports the damage
        finally:
            os.close(folder)
        try:
            st = os.fstat(fd)
            data = os.read(fd, st.st_size + 1)
            if len(data) != st.st_size:
                return None
        except OSError:
            return None
        finally:
            os.close(fd)
        return data, st.st_mtime_ns, (st.st_ino, st.st_mtime_ns, st.st_size)

    def settled(self, token: object) -> bool:
        """Whether a token is old enough to be trusted for caching (see :data:`_SETTLE_NS`)."""
        if self._interval > 0 and _has_data_version(token):
            return True  # SQLite: data_version changes with every commit, whatever the clock
        mtime = _mtime_of(token)
        return mtime is not None and time.time_ns() - mtime >= _SETTLE_NS

    def listing_token(self) -> object:
        """A token for the set of keys, or None when it cannot be trusted yet."""
        fingerprint = self.fingerprint()
        if self._interval > 0 and _has_data_version(fingerprint):
            return fingerprint  # data_version moves with every commit: no clock tick to wait
        return fingerprint if self.settled(fingerprint) else None


# ``updatedAt`` as a top-level member of JSON.stringify(entry, null, 2): two-space indent.
_UPDATED_AT = re.compile(rb'^  "updatedAt": (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)[,\n]',
                         re.MULTILINE)


def updated_at_of(data: bytes) -> float | None:
    """``updatedAt`` (ms) of canonical entry bytes without parsing them, or None."""
    found = _UPDATED_AT.search(data)
    if found is None:
        return None
    value = float(found.group(1))
    return value if value >= 0 else None


def _mtime_of(token: object) -> int | None:
    """The mtime inside a token: an int (directory fingerprint) or the 2nd of a tuple."""
    if isinstance(token, int):
        return token
    if isinstance(token, tuple) and len(token) > 1 and isinstance(token[1], int):
        return token[1]
    return None


def _has_data_version(token: object) -> bool:
    """Whether a SQLite fingerprint carries ``PRAGMA data_version`` (its first member)."""
    return isinstance(token, tuple) and bool(token) and isinstance(token[0], int)
