"""Store upkeep with openclaw's rules: pruning old or excess sessions, and checking for damage."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sessionfs.atomic import is_stray_temp
from sessionfs.entry import updated_at_ms, validate_entry
from sessionfs.errors import InvalidEntry, SessionfsError, UsageError
from sessionfs.lock import read_lock_info
from sessionfs.store import (
    STAGING_PREFIX,
    DirectoryStore,
    Entry,
    LegacyStore,
    Problem,
    Store,
    StoreLocation,
    differing_entries,
    legacy_beside,
    reappeared_legacy,
)

__all__ = ["PruneReport", "check", "differing_entries", "parse_duration", "plan_prune", "prune",
           "reappeared_legacy"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, None: 86_400_000}


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a bare number means days) → milliseconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"bad duration {text!r}: use a number with ms, s, m, h, d or w (30d)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = False


def plan_prune(entries: dict[str, Entry], *, older_than_ms: int | None = None,
               max_entries: int | None = None, now_ms: int | None = None) -> list[str]:
    """Keys openclaw's maintenance would remove.

    ``older_than``: entries whose updatedAt is before the cutoff (entries without it are kept).
    ``max_entries``: keep the newest by updatedAt; entries without updatedAt go first.
    """
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    doomed: set[str] = set()
    if older_than_ms is not None:
        cutoff = now_ms - older_than_ms
        doomed.update(key for key, entry in entries.items()
                      if (stamp := updated_at_ms(entry)) is not None and stamp < cutoff)
    if max_entries is not None:
        survivors = [key for key in entries if key not in doomed]
        excess = len(survivors) - max_entries
        if excess > 0:
            def age_rank(key: str) -> tuple[bool, float]:
                stamp = updated_at_ms(entries[key])
                return (stamp is not None, stamp if stamp is not None else 0.0)
            doomed.update(sorted(survivors, key=age_rank)[:excess])
    return [key for key in entries if key in doomed]


def prune(store: Store, *, older_than_ms: int | None = None, max_entries: int | None = None,
          dry_run: bool = False, now_ms: int | None = None) -> PruneReport:
    """Remove what ``plan_prune`` names, in one locked bulk update (or only report it)."""
    if max_entries is not None and max_entries < 0:
        raise UsageError(f"max_entries must be >= 0, not {max_entries}")
    report = PruneReport(dry_run=dry_run)
    if dry_run:
        entries = store.load()
        report.removed = plan_prune(entries, older_than_ms=older_than_ms,
                                    max_entries=max_entries, now_ms=now_ms)
        report.kept = len(entries) - len(report.removed)
        return report

    def mutate(entries: dict[str, Entry]) -> None:
        report.removed = plan_prune(entries, older_than_ms=older_than_ms,
                                    max_entries=max_entries, now_ms=now_ms)
        for key in report.removed:
            del entries[key]
        report.kept = len(entries)

    store.update(mutate)
    return report


def _folder_problems(location: StoreLocation) -> Iterator[Problem]:
    """Things around either layout: stale locks, orphan temp files, leftover staging folders."""
    info = read_lock_info(location.lock_path)
    if info is not None and info.stale:
        yield Problem("stale lock", location.lock_path, info.reason)
    for item in sorted(location.folder.iterdir()):
        if item.name.startswith(location.legacy_path.name + ".") and is_stray_temp(item.name):
            yield Problem("orphan temp file", item, "left by an interrupted store write")
        elif item.name.startswith(STAGING_PREFIX):
            yield Problem("leftover staging folder", item,
                          "an interrupted migration; the next 'sessionfs migrate' removes it")


def _entry_problems(store: Store, path_of: dict[str, Path] | None = None) -> Iterator[Problem]:
    for key in store.keys():
        try:
            entry = store.get(key)
            validate_entry(entry, key=key)
        except InvalidEntry as exc:
            where = (path_of or {}).get(key, store.path)
            yield Problem("invalid entry", where, str(exc))
        except SessionfsError:
            continue  # reported by the layout's own scan


def _duplicate_problems(store: Store, path_of: dict[str, Path] | None = None
                        ) -> Iterator[Problem]:
    """Sessions sharing one sessionId: both keys point at one transcript."""
    for session_id, sharing in store.duplicate_session_ids().items():
        where = (path_of or {}).get(sharing[0], store.path)
        named = ", ".join(repr(key) for key in sharing)
        yield Problem("duplicate-session-id", where,
                      f"sessionId {session_id!r} is shared by sessions {named}; they point at "
                      "one transcript (give all but one a new sessionId)")


def check(location: StoreLocation) -> list[Problem]:
    """Every problem ``sessionfs check`` reports; empty when the store is healthy."""
    if location.layout == "sqlite":
        return _sqlite_problems(location)
    problems: list[Problem] = list(_folder_problems(location))
    if location.layout == "legacy":
        store = LegacyStore(location.legacy_path, lock_path=location.lock_path)
        try:
            store.load()
        except SessionfsError as exc:
            return [*problems, Problem("unreadable store", location.legacy_path, str(exc))]
        problems.extend(_entry_problems(store))
        problems.extend(_duplicate_problems(store))
    elif location.layout == "directory":
        directory = DirectoryStore(location.directory_path, lock_path=location.lock_path)
        problems.extend(directory.problems())
        meta_of = {key: directory.entry_dir(key) / "meta.json" for key in directory.keys()}
        problems.extend(_entry_problems(directory, meta_of))
        problems.extend(_duplicate_problems(directory, meta_of))
        problems.extend(legacy_beside(location, directory))
    return problems


def _sqlite_problems(location: StoreLocation) -> list[Problem]:
    """A SQLite store: damaged rows (each costs only its session), rows openclaw refuses (with
    its remedy), sessions sharing one sessionId, and transcript events that cannot be decoded
    (named by session and seq). Stale file-era files are not problems; the CLI notes them."""
    from sessionfs.store import SqliteStore

    path = location.path
    try:
        store = SqliteStore(path, stale_files=location.stale_files)
    except SessionfsError as exc:
        return [Problem("unreadable store", path, str(exc))]
    try:
        damaged = store.damaged_rows()
        problems = [Problem("damaged row", path, str(row)) for row in damaged]
        problems += [Problem("refused by openclaw", path, str(row))
                     for row in store.refused_rows() if row not in damaged]
        problems.extend(_duplicate_problems(store))
        problems += [Problem("damaged transcript event", path,
                             f"{_session_words(key, session_id)}: "
                             + (f"transcript event seq {seq}: " if seq >= 0 else "") + reason)
                     for key, session_id, seq, reason in store.damaged_events()]
        return problems
    finally:
        store.close()


def _session_words(key: str, session_id: str) -> str:
    return f"session {key!r} (sessionId {session_id})" if key else \
        f"sessionId {session_id} (no session's current transcript)"
