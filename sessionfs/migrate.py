"""Moving a store between layouts without a moment where a crash could lose a session.

Migration (legacy → directory) writes every entry into a staging folder beside the store,
reads every one back, syncs, renames the staging folder to ``sessions.d`` (the single step that
switches layouts) and only then renames ``sessions.json`` to the seed's backup name. A crash
before the switch leaves the intact legacy store plus a staging folder the next run removes;
after it, a complete directory store (and, until the backup rename, a ``sessions.json`` equal to
it, which the next run moves aside).

Rollback (directory → legacy) writes ``sessions.json`` atomically while ``sessions.d`` is still
the live store, then renames ``sessions.d`` aside: again one rename switches layouts. The key
order recorded at migration time makes migrate-then-rollback of an untouched store give back
the original file byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sessionfs import jsonfmt, keys
from sessionfs.atomic import (
    atomic_write,
    create_file,
    folder_owner,
    fsync_dir,
    make_dir,
    sync_filesystem,
)
from sessionfs.entry import updated_at_ms, validate_entry
from sessionfs.errors import (
    InvalidEntry,
    ReadOnlyStore,
    SessionExists,
    SessionfsError,
    SessionNotFound,
    StoreCorrupt,
    StoreNotFound,
)
from sessionfs.lock import StoreLock, read_lock_info
from sessionfs.processes import process_alive
from sessionfs.store import (
    ROLLED_BACK_PREFIX,
    STAGING_PREFIX,
    DirectoryStore,
    LegacyStore,
    StoreLocation,
    locate_store,
    same_entries,
    sqlite_generation_db,
)
from sessionfs.store.directory import META_FILE, ORDER_FILE, create_session_dir
from sessionfs.store.legacy import assemble, indent_member

__all__ = [
    "BACKUP_INFIX",
    "ORDER_FILE",
    "STAGING_PREFIX",
    "MergeReport",
    "MigrationReport",
    "Progress",
    "merge",
    "migrate",
    "rollback",
]

BACKUP_INFIX = ".pre-directory-migration."

Progress = Callable[[int, int], None]


@dataclass
class MigrationReport:
    """What a migrate or rollback did (or, with dry_run, would do)."""

    action: str
    message: str
    entries: int = 0
    bytes: int = 0
    seconds: float = 0.0
    changed: bool = False
    backup: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"action": self.action, "message": self.message, "entries": self.entries,
                "bytes": self.bytes, "seconds": round(self.seconds, 3), "changed": self.changed,
                "backup": str(self.backup) if self.backup else None, "warnings": self.warnings}


def _guard_writable(location: StoreLocation) -> None:
    if location.layout == "sqlite":
        raise ReadOnlyStore(
            f"{location.path}: a SQLite-era store: openclaw owns its migrations (openclaw doctor "
            "--fix; back to files: openclaw doctor --session-sqlite restore)")
    sqlite_db = sqlite_generation_db(location.folder)
    if sqlite_db is not None:
        raise ReadOnlyStore(
            f"{location.folder}: openclaw has imported this store into SQLite ({sqlite_db}); "
            "sessionfs does not rewrite it")


def _remove_dead_staging(folder: Path) -> list[Path]:
    """Remove staging folders left by migrations that died (their pid is gone, or is us)."""
    removed = []
    for item in folder.iterdir():
        if not item.name.startswith(STAGING_PREFIX) or item.is_symlink() or not item.is_dir():
            continue
        owner = item.name[len(STAGING_PREFIX):]
        if owner.isdigit() and int(owner) != os.getpid() and process_alive(int(owner)):
            continue  # a concurrent migration is still staging
        shutil.rmtree(item)
        removed.append(item)
    return removed


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _backup_path(location: StoreLocation) -> Path:
    return location.folder / f"{location.legacy_path.name}{BACKUP_INFIX}{_now_ms()}"


def _write_staging(staging: Path, entries: list[tuple[str, bytes]], progress: Progress | None
                   ) -> None:
    """Write every entry into the private staging folder: no temp-and-rename needed there,
    since nobody reads staging until it is complete, verified and synced. Everything staged
    belongs to the store folder's owner (root migrating a user's store must not lock them out).
    """
    owner = folder_owner(staging.parent)
    old_umask = os.umask(0o077)  # 0700/0600 exactly, without a chmod per file
    try:
        if not make_dir(staging, owner):
            raise FileExistsError(f"{staging}: staging folder exists")
        total = len(entries)
        for number, (key, data) in enumerate(entries, 1):
            create_session_dir(staging, key, data, owner)
            if progress is not None:
                progress(number, total)
        create_file(staging / ORDER_FILE, jsonfmt.dumps([key for key, _ in entries]), owner)
    finally:
        os.umask(old_umask)


def _verify_staging(staging: Path, entries: list[tuple[str, bytes]], lock_path: Path) -> None:
    staged = DirectoryStore(staging, lock_path=lock_path)
    if len(staged.keys()) != len(entries):
        raise StoreCorrupt(staging, f"staged {len(staged.keys())} sessions, expected "
                           f"{len(entries)}; the legacy store is untouched")
    for key, data in entries:
        if staged.read(key).data != data:
            raise StoreCorrupt(staging / keys.encode(key), "read back differently than written; "
                               "the legacy store is untouched")


#: A store written this recently probably has a gateway running against it.
RECENT_WRITE_SECONDS = 60.0


def gateway_warnings(location: StoreLocation) -> list[str]:
    """Signs that a gateway is running: a gateway of the legacy era keeps writing sessions.json
    from memory after a migration, and directory mode would then silently ignore it."""
    warnings = []
    info = read_lock_info(location.lock_path)
    if info is not None and not info.stale:
        warnings.append(f"process {info.pid} holds the store lock {location.lock_path}: a gateway "
                        "is running; a gateway that does not know sessions.d will recreate "
                        "sessions.json (stop it first, or run 'sessionfs merge' afterwards)")
    try:
        age = time.time() - location.legacy_path.stat().st_mtime
    except FileNotFoundError:
        return warnings
    if age < RECENT_WRITE_SECONDS:
        warnings.append(f"{location.legacy_path.name} was written {age:.0f}s ago: a gateway may be "
                        "running; if it does not know sessions.d it will recreate sessions.json "
                        "(stop it first, or run 'sessionfs merge' afterwards)")
    return warnings


#: How often a migration or rollback restarts because the store changed while it was staged.
ATTEMPTS = 3


def migrate(path: str | os.PathLike[str] | None = None, *, dry_run: bool = False,
            progress: Progress | None = None, lock_timeout: float = 10.0) -> MigrationReport:
    """Legacy ``sessions.json`` → ``sessions.d``. Idempotent.

    The entries are staged and verified without the store lock (the gateway keeps writing);
    the lock is taken only to check that ``sessions.json`` is unchanged since it was read and
    to switch layouts, so it is held for milliseconds, not for the whole copy.
    """
    started = time.monotonic()
    location = locate_store(path)
    if location.layout is None:
        raise StoreNotFound(f"{location.legacy_path}: no session store here")
    _guard_writable(location)
    if location.layout == "directory":
        with StoreLock(location.lock_path, timeout=lock_timeout):
            return _finish_or_report_migrated(locate_store(path), dry_run)
    warnings = gateway_warnings(location)
    for _attempt in range(ATTEMPTS):
        legacy = LegacyStore(location.legacy_path, lock_path=location.lock_path)
        identity = legacy.fingerprint()
        entries = [(key, legacy.read(key).data) for key in legacy.keys()]
        size = sum(len(data) for _, data in entries)
        report = MigrationReport("migrate", "", entries=len(entries), bytes=size,
                                 warnings=warnings)
        if dry_run:
            report.action = "dry-run"
            report.message = (f"would migrate {len(entries)} sessions ({size} bytes) from "
                              f"{location.legacy_path} to {location.directory_path} and keep "
                              f"the original as {location.legacy_path.name}{BACKUP_INFIX}<ms>")
            report.seconds = time.monotonic() - started
            return report
        _remove_dead_staging(location.folder)
        staging = location.folder / f"{STAGING_PREFIX}{os.getpid()}"
        try:
            _write_staging(staging, entries, progress)
            _verify_staging(staging, entries, location.lock_path)
            sync_filesystem(location.folder)  # one sync instead of an fsync per staged file
            with StoreLock(location.lock_path, timeout=lock_timeout):
                now = locate_store(path)
                if now.layout == "directory":  # someone else finished first
                    shutil.rmtree(staging)
                    return _finish_or_report_migrated(now, dry_run)
                if legacy.fingerprint() != identity:
                    shutil.rmtree(staging)
                    continue  # the gateway wrote meanwhile: stage again from the new file
                os.rename(staging, location.directory_path)  # the switch
                fsync_dir(location.folder)
                backup = _backup_path(location)
                os.rename(location.legacy_path, backup)
                fsync_dir(location.folder)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(staging)
            raise
        report.changed = True
        report.backup = backup
        report.seconds = time.monotonic() - started
        report.message = (f"migrated {len(entries)} sessions ({size} bytes) to "
                          f"{location.directory_path} in {report.seconds:.2f}s; original kept as "
                          f"{backup.name}")
        return report
    raise SessionfsError(f"{location.legacy_path} changed {ATTEMPTS} times while it was being "
                         "migrated; nothing was changed, try again when the gateway is quieter")


def _finish_or_report_migrated(location: StoreLocation, dry_run: bool) -> MigrationReport:
    """sessions.d is live. A sessions.json beside it is either our own unfinished backup rename
    (same entries: finish it) or a file a gateway wrote since (different: leave it for merge)."""
    if not location.legacy_path.exists():
        if not dry_run:
            _remove_dead_staging(location.folder)
        return MigrationReport("already-migrated",
                               f"{location.directory_path} is already a directory store; "
                               "nothing to do")
    legacy = LegacyStore(location.legacy_path, lock_path=location.lock_path)
    directory = DirectoryStore(location.directory_path, lock_path=location.lock_path)
    try:
        same = same_entries(legacy, directory)
    except SessionfsError:
        same = False
    if not same:
        return MigrationReport(
            "already-migrated",
            f"{location.directory_path} is already a directory store, but "
            f"{location.legacy_path} exists beside it with different sessions (did a gateway "
            "write it after the migration?); run 'sessionfs merge' to fold them in")
    if dry_run:
        return MigrationReport("dry-run", f"would finish an interrupted migration: move "
                               f"{location.legacy_path.name} aside as its backup")
    backup = _backup_path(location)
    os.rename(location.legacy_path, backup)
    fsync_dir(location.folder)
    return MigrationReport("migrate", f"finished an interrupted migration; original kept as "
                           f"{backup.name}", changed=True, backup=backup)


def _directory_state(directory: DirectoryStore) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime, size) of every meta.json: any write since shows up as a difference."""
    state = {}
    for key in directory.keys():
        try:
            st = os.stat(directory.entry_dir(key) / META_FILE, follow_symlinks=False)
        except FileNotFoundError:
            continue
        state[key] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return state


def rollback(path: str | os.PathLike[str] | None = None, *, dry_run: bool = False,
             progress: Progress | None = None, lock_timeout: float = 10.0) -> MigrationReport:
    """``sessions.d`` → legacy ``sessions.json``. Idempotent; the lock is held only to switch."""
    started = time.monotonic()
    location = locate_store(path)
    if location.layout is None:
        raise StoreNotFound(f"{location.legacy_path}: no session store here")
    _guard_writable(location)
    if location.layout == "legacy":
        return MigrationReport("already-legacy", f"{location.legacy_path} is already a "
                               "legacy store; nothing to roll back")
    directory = DirectoryStore(location.directory_path, lock_path=location.lock_path)
    for _attempt in range(ATTEMPTS):
        state = _directory_state(directory)
        broken = [problem for problem in directory.problems()
                  if problem.kind in {"invalid meta.json", "bad key file", "symlink"}]
        if broken:
            raise StoreCorrupt(location.directory_path,
                               "cannot roll back without losing sessions: "
                               + "; ".join(str(problem) for problem in broken[:5]))
        order = directory.order()
        members = []
        for number, key in enumerate(order, 1):
            members.append((key, indent_member(jsonfmt.dumps(directory.read(key).entry))))
            if progress is not None:
                progress(number, len(order))
        raw = assemble(members)
        report = MigrationReport("rollback", "", entries=len(order), bytes=len(raw))
        if location.legacy_path.exists() and location.legacy_path.read_bytes() != raw:
            raise StoreCorrupt(location.legacy_path,
                               "exists beside sessions.d with different content; run "
                               "'sessionfs merge' first so no session is lost")
        if dry_run:
            report.action = "dry-run"
            report.message = (f"would write {len(order)} sessions ({len(raw)} bytes) to "
                              f"{location.legacy_path} and move {location.directory_path.name} "
                              f"aside as {ROLLED_BACK_PREFIX}<ms>")
            return report
        with StoreLock(location.lock_path, timeout=lock_timeout):
            if not location.directory_path.is_dir():
                return MigrationReport("already-legacy", "rolled back by someone else meanwhile")
            if _directory_state(directory) != state:
                continue  # a session changed while we assembled: assemble again
            atomic_write(location.legacy_path, raw)
            aside = location.folder / f"{ROLLED_BACK_PREFIX}{_now_ms()}"
            os.rename(location.directory_path, aside)  # the switch
            fsync_dir(location.folder)
        report.changed = True
        report.backup = aside
        report.seconds = time.monotonic() - started
        report.message = (f"rolled back {len(order)} sessions to {location.legacy_path} in "
                          f"{report.seconds:.2f}s; the directory store is kept as {aside.name}")
        return report
    raise SessionfsError(f"{location.directory_path} changed {ATTEMPTS} times during the "
                         "rollback; nothing was changed, try again when the gateway is quieter")


@dataclass
class MergeReport:
    """What ``merge`` folded from a reappeared sessions.json into sessions.d."""

    message: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    backup: Path | None = None

    def as_dict(self) -> dict[str, object]:
        return {"message": self.message, "added": self.added, "updated": self.updated,
                "kept": self.kept, "invalid": self.invalid,
                "backup": str(self.backup) if self.backup else None}


def _stamp(entry: dict[str, object]) -> float:
    stamp = updated_at_ms(entry)
    return -1.0 if stamp is None else float(stamp)


def merge(path: str | os.PathLike[str] | None = None, *, dry_run: bool = False,
          lock_timeout: float = 10.0) -> MergeReport:
    """Fold a ``sessions.json`` that reappeared beside ``sessions.d`` into it, then move it aside.

    Per key the newer ``updatedAt`` wins; ties keep the directory's entry. Entries that are not
    valid are left out and reported (they stay in the moved-aside file, so nothing is lost).
    """
    location = locate_store(path)
    if location.layout != "directory" or not location.legacy_path.exists():
        return MergeReport(f"nothing to merge: no {location.legacy_path.name} beside "
                           f"{location.directory_path}")
    _guard_writable(location)
    with StoreLock(location.lock_path, timeout=lock_timeout):
        legacy = LegacyStore(location.legacy_path, lock_path=location.lock_path)
        directory = DirectoryStore(location.directory_path, lock_path=location.lock_path)
        report = MergeReport("")
        plan: list[tuple[str, dict[str, object]]] = []
        for key, entry in legacy.load().items():
            try:
                validate_entry(entry, key=key)
            except InvalidEntry as exc:
                report.invalid.append(f"{key}: {exc.reason}")
                continue
            try:
                mine = directory.get(key)
            except SessionNotFound:
                report.added.append(key)
                plan.append((key, entry))
                continue
            except StoreCorrupt:
                mine = {}
            if jsonfmt.dumps(mine) == jsonfmt.dumps(entry) or _stamp(entry) <= _stamp(mine):
                report.kept.append(key)
            else:
                report.updated.append(key)
                plan.append((key, entry))
        if dry_run:
            report.message = (f"would add {len(report.added)} and update {len(report.updated)} "
                              f"sessions from {location.legacy_path.name}, keep "
                              f"{len(report.kept)}, then move it aside")
            return report
        for key, entry in plan:
            try:
                directory.put(key, entry)
            except SessionExists as exc:  # its sessionId is another session's: left out
                report.added.remove(key)
                report.invalid.append(f"{key}: {exc}")
        backup = _backup_path(location)
        os.rename(location.legacy_path, backup)
        fsync_dir(location.folder)
        report.backup = backup
        report.message = (f"merged {location.legacy_path.name} into {location.directory_path.name}:"
                          f" {len(report.added)} added, {len(report.updated)} updated, "
                          f"{len(report.kept)} kept; moved aside as {backup.name}")
        return report
