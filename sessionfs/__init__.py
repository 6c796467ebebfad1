"""sessionfs: openclaw session stores as a library, a CLI and a FUSE filesystem.

The library is usable on its own::

    from sessionfs import open_store
    store = open_store("~/.openclaw/agents/main/sessions")
    entry = store.get("agent:main:main")
"""

from sessionfs.errors import (
    EntryTooLarge,
    InvalidEntry,
    InvalidJSON,
    InvalidKey,
    InvalidName,
    LockTimeout,
    ReadOnlyStore,
    SessionExists,
    SessionfsError,
    SessionNotFound,
    StoreCorrupt,
    StoreNotFound,
)
from sessionfs.store import DirectoryStore, EntryRecord, LegacyStore, Store, open_store

__all__ = [
    "DirectoryStore",
    "EntryRecord",
    "EntryTooLarge",
    "InvalidEntry",
    "InvalidJSON",
    "InvalidKey",
    "InvalidName",
    "LegacyStore",
    "LockTimeout",
    "ReadOnlyStore",
    "SessionExists",
    "SessionNotFound",
    "SessionfsError",
    "Store",
    "StoreCorrupt",
    "StoreNotFound",
    "open_store",
]
