"""Finding and opening a session store, whichever generation it is.

A file-era store lives in a sessions folder (openclaw: ``<state>/agents/<id>/sessions/``) that
holds ``sessions.json`` (legacy), or ``sessions.d/`` (directory), and ``sessions.json.lock``.
When ``sessions.d/`` exists it is the store, as in the seed's auto-detection. Since openclaw
2026.8.1 the store is ``<state>/agents/<id>/agent/openclaw-agent.sqlite`` (read-only here).

STORE may be: a ``sessions.json``, its folder, a ``sessions.d``, an SQLite database file, an
agent folder ``agents/<id>`` (or its ``agent/``), and by default ``agents/main`` of
``$OPENCLAW_STATE_DIR`` (or ``~/.openclaw``). For an agent folder, as openclaw does: the
database when it holds sessions (its schema says so, not its name), else the files; file-era
files still beside such a database are stale (``StoreLocation.stale_files``). Naming the
file-era files themselves (``sessions.json``, or a sessions folder that still holds them) opens
them read-only: rewriting a retained ``sessions.json`` makes the gateway refuse to start
(openclaw#154679).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sessionfs import jsonfmt
from sessionfs.errors import SessionfsError, StoreNotFound
from sessionfs.lock import lock_path_for
from sessionfs.store.base import (
    Entry,
    EntryRecord,
    Layout,
    RefusedRow,
    Store,
    TranscriptSource,
    UpdateSummary,
)
from sessionfs.store.directory import DirectoryStore, Problem
from sessionfs.store.legacy import LegacyStore
from sessionfs.store.sqlite import SqliteStore, is_sqlite_file

__all__ = [
    "DIRECTORY_NAME",
    "LEGACY_NAME",
    "ROLLED_BACK_PREFIX",
    "SQLITE_NAME",
    "STAGING_PREFIX",
    "DirectoryStore",
    "Entry",
    "EntryRecord",
    "LegacyStore",
    "Problem",
    "RefusedRow",
    "SqliteStore",
    "Store",
    "StoreLocation",
    "TranscriptSource",
    "UpdateSummary",
    "default_agent_dir",
    "default_store_path",
    "differing_entries",
    "legacy_beside",
    "legacy_beside_token",
    "locate_store",
    "open_store",
    "reappeared_legacy",
    "same_entries",
    "sqlite_generation_db",
]

LEGACY_NAME = "sessions.json"
DIRECTORY_NAME = "sessions.d"
SQLITE_NAME = "openclaw-agent.sqlite"
#: A migration builds ``sessions.d`` here first (``<prefix><pid>``), then renames it into place.
STAGING_PREFIX = "sessions.d.staging-"
#: ``rollback`` moves the directory store aside under this name (plus a timestamp).
ROLLED_BACK_PREFIX = "sessions.d.rolled-back."


def default_agent_dir(agent: str = "main") -> Path:
    """openclaw's agent folder: ``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``, ``agents/<agent>``."""
    return _state_dir() / "agents" / agent


def _state_dir() -> Path:
    """openclaw's state folder: ``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``."""
    return Path(os.environ.get("OPENCLAW_STATE_DIR")
                or os.path.join(os.path.expanduser("~"), ".openclaw"))


def default_store_path() -> Path:
    """The file-era default: agent ``main``'s ``sessions/sessions.json``."""
    return default_agent_dir() / "sessions" / LEGACY_NAME


@dataclass(frozen=True)
class StoreLocation:
    """Where a store's files are, and which layout is live there."""

    folder: Path
    legacy_path: Path
    directory_path: Path
    layout: Layout | None  # None: neither file exists yet
    #: The SQLite database, when ``layout == "sqlite"``.
    sqlite_path: Path | None = None
    #: File-era files beside a SQLite store that openclaw no longer reads.
    stale_files: tuple[Path, ...] = ()

    @property
    def lock_path(self) -> Path:
        """``<realpath(folder)>/sessions.json.lock``, as openclaw derives it, in both layouts."""
        return lock_path_for(self.folder, self.legacy_path.name)

    @property
    def path(self) -> Path:
        if self.layout == "sqlite" and self.sqlite_path is not None:
            return self.sqlite_path
        return self.directory_path if self.layout == "directory" else self.legacy_path


def _holds_sessions(db: Path) -> bool | None:
    """Whether an agent database is of the SQLite generation (its schema has session tables or
    says schema 4+), False for an older agent database (openclaw ≤ 2026.7 kept only auth and
    cache data there), None when it cannot be read."""
    if not is_sqlite_file(db):
        return None
    from sessionfs.store.sqlite_schema import connect

    try:
        conn = connect(db, 1.0)
    except sqlite3.Error:
        return None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('session_nodes', 'session_entries')")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return bool(tables) or version >= 4


def _stale_files(folder: Path) -> tuple[Path, ...]:
    return tuple(p for p in (folder / LEGACY_NAME, folder / DIRECTORY_NAME) if p.exists())


def _sqlite_location(db: Path, folder: Path) -> StoreLocation:
    return StoreLocation(folder, folder / LEGACY_NAME, folder / DIRECTORY_NAME, "sqlite",
                         sqlite_path=db, stale_files=_stale_files(folder))


def _agent_location(agent_dir: Path) -> StoreLocation | None:
    """An agent folder's store as openclaw picks it: the database if it is of the SQLite
    generation, else the sessions folder; None when ``agent_dir`` is no agent folder."""
    db, folder = agent_dir / "agent" / SQLITE_NAME, agent_dir / "sessions"
    if not (db.exists() or folder.is_dir()):
        return None
    holds = _holds_sessions(db) if db.exists() else False
    files = locate_store(folder) if folder.is_dir() else None
    if holds or (holds is None and (files is None or files.layout is None)):
        return _sqlite_location(db, folder)  # an unreadable db with no files: open says why
    return files if files is not None else StoreLocation(
        folder, folder / LEGACY_NAME, folder / DIRECTORY_NAME, None)


def locate_store(path: str | os.PathLike[str] | None = None) -> StoreLocation:
    """Resolve a CLI STORE argument (see the module docstring for what it may be)."""
    if path is None:
        agent_dir = Path(os.path.abspath(default_agent_dir()))
        found = _agent_location(agent_dir)
        if found is not None:
            return found
        given = agent_dir / "sessions" / LEGACY_NAME
    else:
        given = Path(os.path.abspath(Path(path).expanduser()))
    if given.is_file() and is_sqlite_file(given):
        folder = given.parent.parent / "sessions" if given.parent.name == "agent" else given.parent
        return _sqlite_location(given, folder)
    if given.is_dir() and given.name != DIRECTORY_NAME:
        if given.name == "agent" and (given / SQLITE_NAME).exists():
            return _sqlite_location(given / SQLITE_NAME, given.parent / "sessions")
        if not ((given / LEGACY_NAME).exists() or (given / DIRECTORY_NAME).is_dir()):
            found = _agent_location(given)
            if found is not None:
                return found
            db = given.parent / "agent" / SQLITE_NAME  # a sessions folder the import emptied
            if db.exists() and _holds_sessions(db) is not False:
                return _sqlite_location(db, given)
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
    candidate = folder.parent / "agent" / SQLITE_NAME
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

    A SQLite store is always read-only (``read_only`` changes nothing there).

    :raises StoreNotFound: no store of any generation is there.
    :raises UnsupportedSchema: a database of a generation sessionfs does not read.
    """
    location = locate_store(path)
    if location.layout == "sqlite" and location.sqlite_path is not None:
        return SqliteStore(location.sqlite_path, stale_files=location.stale_files)
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


# -- a sessions.json beside a live sessions.d (a legacy-era gateway still writing) ------------
# The one home of the legacy-vs-directory comparison: differing_entries and same_entries.
def reappeared_legacy(location: StoreLocation) -> Problem | None:
    """A sessions.json beside a live sessions.d (a legacy-era gateway still writing), or None."""
    if location.layout != "directory":
        return None
    directory = DirectoryStore(location.directory_path, lock_path=location.lock_path)
    return next(legacy_beside(location, directory), None)


def legacy_beside_token(location: StoreLocation) -> object | None:
    """A cheap token (one ``stat``) of a sessions.json lying beside a live sessions.d, or None
    when there is none: what :func:`reappeared_legacy` would say changes only with it."""
    if location.layout != "directory":
        return None
    try:
        st = os.stat(location.legacy_path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def legacy_beside(location: StoreLocation, directory: DirectoryStore) -> Iterator[Problem]:
    """A sessions.json beside sessions.d: a legacy-era gateway still writing the old file."""
    if not location.legacy_path.exists():
        return
    legacy = LegacyStore(location.legacy_path, lock_path=location.lock_path)
    try:
        differing = differing_entries(legacy, directory)
    except SessionfsError as exc:
        yield Problem("sessions.json beside sessions.d", location.legacy_path,
                      f"unreadable: {exc}")
        return
    if differing:
        shown = ", ".join(differing[:10]) + (" ..." if len(differing) > 10 else "")
        yield Problem("sessions.json beside sessions.d", location.legacy_path,
                      f"{len(differing)} sessions differ from sessions.d ({shown}); "
                      "run 'sessionfs merge' to fold them in")
    else:
        yield Problem("sessions.json beside sessions.d", location.legacy_path,
                      "holds the same sessions as sessions.d; 'sessionfs merge' moves it aside")


def same_entries(legacy: LegacyStore, directory: DirectoryStore) -> bool:
    """Whether both hold exactly the same sessions, each entry byte for byte as sessions.json
    has it (a migration's unfinished backup rename, rather than a file a gateway wrote since)."""
    return set(legacy.keys()) == set(directory.keys()) and not differing_entries(legacy,
                                                                                 directory)


def differing_entries(legacy: LegacyStore, directory: DirectoryStore) -> list[str]:
    """Keys of the legacy file whose entry is missing from, or differs from, sessions.d."""
    differing = []
    for key in legacy.keys():
        try:
            mine = jsonfmt.dumps(directory.read(key).entry)
        except SessionfsError:
            differing.append(key)
            continue
        if legacy.read(key).data != mine:
            differing.append(key)
    return differing
