"""The sessionfs error tree.

Every error carries the errno the filesystem answers with and the exit code the CLI returns,
so neither layer has to guess: the mount raises ``FuseOSError(err.errno)``, the CLI prints
``Error: {err}`` and exits with ``err.exit_code``. This module imports nothing from sessionfs.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "EntryTooLarge",
    "FieldNotEditable",
    "GatewayError",
    "GatewayRefused",
    "GatewayTimeout",
    "GatewayUnavailable",
    "InvalidEntry",
    "InvalidJSON",
    "InvalidKey",
    "InvalidName",
    "LockTimeout",
    "MountError",
    "NotPermitted",
    "ReadOnlyStore",
    "SessionChanged",
    "SessionExists",
    "SessionNotFound",
    "SessionfsError",
    "StoreBusy",
    "StoreCorrupt",
    "StoreNotFound",
    "TranscriptChanged",
    "UnsupportedSchema",
    "UsageError",
]


class SessionfsError(Exception):
    """Base of every error sessionfs raises on purpose."""

    errno: int = _errno.EIO
    exit_code: int = 1

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() their message
        return str(self.args[0]) if self.args else self.__class__.__name__


class UsageError(SessionfsError, ValueError):
    """The command line itself is wrong (exit 2)."""

    errno = _errno.EINVAL
    exit_code = 2


class StoreNotFound(SessionfsError, FileNotFoundError):
    """No store at the given path."""

    errno = _errno.ENOENT


class StoreCorrupt(SessionfsError):
    """The store file or a store entry on disk cannot be read as JSON of the right shape.

    Never treated as an empty store: openclaw users lost whole stores to that.
    """

    errno = _errno.EIO

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidJSON(SessionfsError, ValueError):
    """Bytes offered as an entry are not strict JSON (or not UTF-8)."""

    errno = _errno.EINVAL


class InvalidEntry(SessionfsError, ValueError):
    """A JSON value that is not an entry openclaw would accept; ``field`` names the culprit."""

    errno = _errno.EINVAL

    def __init__(self, reason: str, *, field: str | None = None, key: str | None = None) -> None:
        where = f"session {key!r}: " if key is not None else ""
        super().__init__(f"{where}{reason}")
        self.reason = reason
        self.field = field
        self.key = key


class EntryTooLarge(SessionfsError, ValueError):
    """An entry over the configured size limit."""

    errno = _errno.EFBIG


class InvalidKey(SessionfsError, ValueError):
    """A session key that cannot be stored (empty, or not valid Unicode text)."""

    errno = _errno.EINVAL


class InvalidName(SessionfsError, ValueError):
    """A directory name that no session key encodes to."""

    errno = _errno.EINVAL


class SessionNotFound(SessionfsError, KeyError):
    """No session under that key."""

    errno = _errno.ENOENT


class SessionExists(SessionfsError):
    """The target key of a create or rename is already a session."""

    errno = _errno.EEXIST


class ReadOnlyStore(SessionfsError):
    """Writes are refused; the message says why (for example: imported into SQLite)."""

    errno = _errno.EROFS


class LockTimeout(SessionfsError, TimeoutError):
    """The store lock stayed held by another live process for the whole timeout."""

    errno = _errno.EBUSY

    def __init__(self, lock_path: object, holder_pid: int | None, waited: float) -> None:
        holder = f"pid {holder_pid}" if holder_pid is not None else "an unknown process"
        super().__init__(
            f"timed out after {waited:.1f}s waiting for the store lock {lock_path} "
            f"(held by {holder})"
        )
        self.lock_path = lock_path
        self.holder_pid = holder_pid
        self.waited = waited


class UnsupportedSchema(SessionfsError):
    """An openclaw database whose schema sessionfs does not read (too old, or unknown tables).

    ENOTSUP: the file is a database, just not one of the generations served here.
    """

    errno = _errno.ENOTSUP


class StoreBusy(SessionfsError):
    """The database stayed locked (a checkpoint or exclusive writer) past every retry."""

    errno = _errno.EBUSY


class TranscriptChanged(SessionfsError):
    """A transcript was rewritten between measuring it and reading it: reopen it.

    ESTALE: the open handle refers to bytes that no longer exist in the store.
    """

    errno = _errno.ESTALE


class MountError(SessionfsError):
    """The filesystem could not be mounted or unmounted; the message says why."""

    exit_code = 1


class GatewayUnavailable(ReadOnlyStore):
    """A SQLite-era store can change only through its live openclaw Gateway, and none answers
    (not running, stopped during the call, another profile on its port): EROFS, as the store is
    read-only until a Gateway runs; the message says to start it."""

    errno = _errno.EROFS


class GatewayError(SessionfsError):
    """The connection to the Gateway failed in a way a retry may fix (EIO: not the user's data)."""

    errno = _errno.EIO


class GatewayTimeout(GatewayError):
    """The Gateway did not answer within the bound (ETIMEDOUT): a hung Gateway never hangs us."""

    errno = _errno.ETIMEDOUT


class GatewayRefused(SessionfsError):
    """openclaw refused a call; its reason is the message.

    EINVAL for a refused value (``label already in use``, an invalid ``thinkingLevel``),
    EACCES for ``FORBIDDEN`` (a missing scope), EAGAIN for ``UNAVAILABLE`` (still starting,
    catalog loading), ESTALE when the session changed in between (``session-changed``).
    """

    def __init__(self, method: str, code: str, reason: str, message: str) -> None:
        super().__init__(f"openclaw refused {method}: {message}")
        self.method = method
        self.code = code
        self.reason = reason
        self.message = message
        if reason == "session-changed":
            self.errno = _errno.ESTALE
        elif code == "FORBIDDEN":
            self.errno = _errno.EACCES
        elif code == "UNAVAILABLE":
            self.errno = _errno.EAGAIN
        else:
            self.errno = _errno.EINVAL


class SessionChanged(SessionfsError):
    """The session was reset, replaced or deleted between the read a writer was shown and its
    save (ESTALE: that read is stale); nothing was sent. Read it again and redo the change."""

    errno = _errno.ESTALE


class NotPermitted(SessionfsError):
    """An action openclaw does not allow at all (deleting an agent's main session, changing a
    session's key): EPERM, whatever the caller's rights; the message says what to do instead."""

    errno = _errno.EPERM


class FieldNotEditable(NotPermitted):
    """A save changes a field openclaw lets no client change (``displayName``, ``updatedAt``,
    tokens, ``delivery``, ``sessionId``, …): EPERM, as the field is the Gateway's alone; the
    whole save is refused and the message names the field and what to do instead."""

    errno = _errno.EPERM

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field
