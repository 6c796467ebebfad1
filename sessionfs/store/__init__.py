"""Finding and opening a session store, whichever generation it is.

A store lives in a sessions folder (openclaw: ``<state>/agents/<id>/sessions/``) that holds
``sessions.json`` (legacy), or ``sessions.d/`` (directory), and ``sessions.json.lock``. When
``sessions.d/`` exists it is the store, as in the seed's auto-detection. A store that openclaw
has already imported into SQLite opens read-only: rewriting its ``sessions.json`` makes the
gateway refuse to start (openclaw#154679).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sessionfs.errors import StoreNotFound
from sessionfs.store.base import Entry, EntryRecord, Layout, Store, UpdateSummary
from sessionfs.store.directory import DirectoryStore, Problem
from sessionfs.store.legacy import LegacyStore

__all__ = [
    "DirectoryStore",
    "Entry",
    "EntryRecord",
    "LegacyStore",
    "Problem",
    "Store",
    "StoreLocation",
    "UpdateSummary",
    "default_store_path",
    "locate_store",
    "open_store",
    "sqlite_generation_db",
]

LEGACY_NAME = "sessions.json"
DIRECTORY_NAME = "sessions.d"


def _state_dir() -> Path:
    """openclaw's state folder: ``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``."""
    return Path(os.environ.get("OPENCLAW_STATE_DIR")
                or os.path.join(os.path.expanduser("~"), ".openclaw"))


def default_store_path() -> Path:
    """openclaw's default: ``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``, agent ``main``."""
    return _state_dir() / "agents" / "main" / "sessions" / LEGACY_NAME


@dataclass(frozen=True)
class StoreLocation:
    """Where a store's files are, and which layout is live there."""

    folder: Path
    legacy_path: Path
    directory_path: Path
    layout: Layout | None  # None: neither file exists yet

    @property
    def lock_path(self) -> Path:
        """``<realpath(folder)>/sessions.json.lock``, as openclaw derives it, in both layouts."""
        return Path(os.path.realpath(self.folder)) / f"{self.legacy_path.name}.lock"

    @property
    def path(self) -> Path:
        return self.directory_path if self.layout == "directory" else self.legacy_path


def locate_store(path: str | os.PathLike[str] | None = None) -> StoreLocation:
    """Resolve a CLI STORE argument: a ``sessions.json``, its folder, or a ``sessions.d``."""
    given = Path(path).expanduser() if path is not None else default_store_path()
    given = Path(os.path.abspath(given))
    if given.name == DIRECTORY_NAME:
        folder, legacy_name = given.parent, LEGACY_NAME
    elif given.is_dir():
        folder, legacy_name = given, LEGACY_NAME
    else:
        folder, legacy_name = given.parent, given.name
    legacy_path = folder / legacy_name
    directory_path = folder / DIRECTORY_NAME
    layout: Layout | None = None
    if directory_path.is_dir():
        layout = "directory"
    elif legacy_path.exists():
        layout = "legacy"
    return StoreLocation(folder, legacy_path, directory_path, layout)


def sqlite_generation_db(folder: Path) -> Path | None:
    """openclaw's SQLite store beside ``agents/<id>/sessions/``, when it exists."""
    candidate = folder.parent / "agent" / "openclaw-agent.sqlite"
    return candidate if candidate.exists() else None


def _not_found_message(path: str | os.PathLike[str] | None, location: StoreLocation) -> str:
    """Why there is no store, naming what the user gave (or the default they left alone)."""
    looked = f"looked for {location.legacy_path} and {location.directory_path}"
    if path is None:
        state = _state_dir()
        if not state.is_dir():
            if os.environ.get("OPENCLAW_STATE_DIR"):
                return (f"OPENCLAW_STATE_DIR is {state}, which is not a folder, so there is no "
                        "default store: correct it, or give the store's path")
            return (f"no openclaw state folder at {state}, so there is no default store: give "
                    "the store's path (a sessions.json, its folder or a sessions.d), or set "
                    "OPENCLAW_STATE_DIR to openclaw's state folder")
        return f"{location.legacy_path}: no session store here (the default store; {looked})"
    given = Path(path).expanduser()
    if given.name not in (LEGACY_NAME, DIRECTORY_NAME) and not given.exists():
        return (f"{path}: no session store here: no such file or directory (a store is a "
                "sessions.json, the folder holding it, or a sessions.d)")
    return f"{path}: no session store here ({looked})"


def open_store(path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
               lock_timeout: float = 10.0) -> Store:
    """Open the store at ``path`` (default: openclaw's default store) in its live layout.

    :raises StoreNotFound: neither ``sessions.json`` nor ``sessions.d`` is there.
    """
    location = locate_store(path)
    if location.layout is None:
        raise StoreNotFound(_not_found_message(path, location))
    reason = None
    sqlite_db = sqlite_generation_db(location.folder)
    if sqlite_db is not None:
        reason = (f"openclaw has imported this store into SQLite ({sqlite_db}); the old files are "
                  "only a retained migration source and rewriting them makes the gateway refuse "
                  "to start")
    elif read_only:
        reason = "opened read-only"
    if location.layout == "directory":
        return DirectoryStore(location.directory_path, lock_path=location.lock_path,
                              read_only_reason=reason, lock_timeout=lock_timeout)
    return LegacyStore(location.legacy_path, lock_path=location.lock_path,
                       read_only_reason=reason, lock_timeout=lock_timeout)
