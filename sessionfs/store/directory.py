"""The directory store: ``sessions.d/<encoded key>/meta.json``, one small file per session.

Every per-session operation touches only that session's directory, so get, put, delete and
rename cost the same at 10 sessions and at 100k. Listing reads the directory, not the entries.
Session directories and ``meta.json`` are opened without following symlinks: a link planted in
``sessions.d`` never redirects a read or a write outside the store.

A hashed (long) name keeps its key in the folder's ``key`` file. Renaming to another hashed name
first writes the new key beside the old one as ``key.next``, then renames the folder: a hashed
name's key is whichever of the two files names it, so before the folder rename only the old
session is visible and after it only the new one, whatever fails or crashes in between.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sessionfs import jsonfmt, keys
from sessionfs.atomic import (
    DIR_MODE,
    Owner,
    adopt_owner,
    atomic_write,
    create_file,
    fsync_dir,
    is_stray_temp,
    make_dir,
    remove_orphan_temps,
)
from sessionfs.entry import serialize_entry, validate_entry
from sessionfs.errors import (
    InvalidJSON,
    InvalidName,
    SessionExists,
    SessionfsError,
    SessionNotFound,
    StoreCorrupt,
    StoreNotFound,
)
from sessionfs.lock import StoreLock
from sessionfs.store.base import MISSING, Entry, EntryRecord, Mutator, Store, UpdateSummary
from sessionfs.store.canonical import marker, read_marked

__all__ = ["META_FILE", "DirectoryStore", "Problem", "create_session_dir"]

log = logging.getLogger(__name__)

META_FILE = "meta.json"
#: Inside sessions.d: the legacy key order, so rollback can restore it. No key encodes to '.*'.
ORDER_FILE = ".sessionfs-order.json"
#: The key a hashed folder takes on when a rename moves it to that key's name (see above).
PENDING_KEY_FILE = keys.KEY_FILE + ".next"
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the store that is not a readable session (reported by ``check``)."""

    kind: str
    path: Path
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def _read_at(dir_fd: int, name: str) -> tuple[bytes, int]:
    """Bytes and mtime of ``name`` inside an open directory, refusing symlinks."""
    fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        data = os.read(fd, st.st_size + 1)
        if len(data) == st.st_size:  # the size fstat gave, and no extra byte: all of it
            return data, st.st_mtime_ns
        chunks = [data]  # a short read or a file that changed size: read on to the end
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks), st.st_mtime_ns
    finally:
        os.close(fd)


class DirectoryStore(Store):
    """``sessions.d``: per-entry atomic files under the same lock as the legacy store."""

    layout = "directory"

    def __init__(self, root: Path, *, lock_path: Path, read_only_reason: str | None = None,
                 lock_timeout: float = 10.0) -> None:
        self.path = Path(root)
        self._root = os.fspath(self.path)
        self.lock_path = lock_path
        self.read_only_reason = read_only_reason
        self.lock_timeout = lock_timeout
        self._store_lock: StoreLock | None = None

    def _lock(self) -> StoreLock:
        if self._store_lock is None:  # one instance: resolving the lock path costs a realpath
            self._store_lock = StoreLock(self.lock_path, timeout=self.lock_timeout)
        return self._store_lock

    # -- names -----------------------------------------------------------------------------------
    def _key_of_hashed(self, name: str) -> str | None:
        """The exact key kept in the session's ``key`` file (or, in the middle of a rename, its
        ``key.next``), whichever has that name."""
        for filename in (keys.KEY_FILE, PENDING_KEY_FILE):
            try:
                key = self._read_file(name, filename)[0].decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if keys.matches(name, key):
                return key
        return None

    def _read_file(self, name: str, filename: str) -> tuple[bytes, int]:
        dir_fd = os.open(f"{self._root}/{name}", _OPEN_DIR)  # no pathlib: every read
        try:
            return _read_at(dir_fd, filename)
        finally:
            os.close(dir_fd)

    def entry_dir(self, key: str) -> Path:
        return self.path / keys.encode(key)

    def entry_paths(self, key: str) -> tuple[Path, ...]:
        folder = self.entry_dir(key)
        return folder, folder / META_FILE

    # -- reads -----------------------------------------------------------------------------------
    def _scan(self) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(self.path) as listing:
                yield from listing
        except FileNotFoundError:
            raise StoreNotFound(f"{self.path}: no such session directory") from None

    def keys(self) -> list[str]:
        return [key for _, key in self.named_keys()]

    def named_keys(self) -> list[tuple[str, str]]:
        found = []
        for item in self._scan():
            key = self.key_of(item.name)
            if key is not None and item.is_dir(follow_symlinks=False):
                found.append((item.name, key))
        return found

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self.read(key)
        except (SessionNotFound, StoreCorrupt):
            return False
        return True

    def read(self, key: str) -> EntryRecord:
        name = keys.encode(key)
        try:
            data, mtime_ns = self._read_file(name, META_FILE)
            if keys.is_hashed(name):
                try:
                    stored_key: str | None = self._read_file(name, keys.KEY_FILE)[0].decode(
                        "utf-8", "replace")
                except FileNotFoundError:
                    stored_key = None
                if stored_key != key and self._key_of_hashed(name) != key:  # mid-rename?
                    raise FileNotFoundError
        except FileNotFoundError:
            raise SessionNotFound(f"no session {key!r} in {self.path}") from None
        except NotADirectoryError:
            raise SessionNotFound(f"no session {key!r} in {self.path}") from None
        except OSError as exc:  # ELOOP: a symlink where a session should be
            raise StoreCorrupt(self.path / name, f"cannot read: {exc.strerror}") from exc
        try:
            entry = jsonfmt.loads(data)
        except InvalidJSON as exc:
            raise StoreCorrupt(self.path / name / META_FILE, f"not valid JSON: {exc}") from exc
        if not isinstance(entry, dict):
            raise StoreCorrupt(self.path / name / META_FILE, "not a JSON object")
        return EntryRecord(key, data, mtime_ns, entry)

    def read_unparsed(self, key: str) -> tuple[bytes, os.stat_result, bool] | None:
        """``meta.json``'s bytes without parsing them, their stat, and whether sessionfs wrote
        them in canonical form and nobody changed them since (:mod:`.canonical`); None where
        :meth:`read` is needed (a hashed name's key file, anything unreadable)."""
        name = keys.encode(key)
        if keys.is_hashed(name):
            return None
        try:
            dir_fd = os.open(f"{self._root}/{name}", _OPEN_DIR)
        except OSError:
            return None
        try:
            return read_marked(META_FILE, dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)

    def load(self) -> dict[str, Entry]:
        """Every readable entry; unreadable ones are skipped with a log line (see ``problems``)."""
        entries: dict[str, Entry] = {}
        for key in self.keys():
            try:
                entries[key] = self.read(key).entry
            except (SessionNotFound, StoreCorrupt) as exc:
                log.warning("skipping %s", exc)
        return entries

    # -- change tokens (see Store.entry_token) ----------------------------------------------
    entry_files = True

    def entry_token(self, name: str) -> object:
        """``(inode, mtime, size)`` of ``<name>/meta.json`` from one ``lstat`` (every write is
        a rename onto that name, so the inode changes); MISSING when it is not there, or when
        the session folder is a symbolic link (never a session: it could lead anywhere)."""
        folder = f"{self._root}/{name}"
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                return MISSING
            st = os.stat(f"{folder}/{META_FILE}", follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING
        except OSError:
            return None  # let read() say what is wrong
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def peek(self, name: str) -> tuple[bytes, int, object] | object | None:
        """``<name>/meta.json`` read with one open (no key file check: hashed names answer
        None, so that :meth:`read` checks their key file)."""
        if "~" in name:
            return None
        try:  # like read(): a symlink or a file where a session folder should be is none
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
            return None  # e.g. a symlinked meta.json: read() reports the damage
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

    def fingerprint(self) -> object:
        """The root's mtime: changes when sessions appear, vanish or are renamed."""
        try:
            return os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return None

    def write_folders(self) -> tuple[Path, ...]:
        """A new session is a folder in ``sessions.d``, its temporary files are there too."""
        return (self.path.parent, self.path)

    def listed_keys(self) -> list[str]:
        """By key: a directory's own order is no order anyone chose."""
        return sorted(self.keys())

    def order(self) -> list[str]:
        """The order ``migrate`` recorded (the legacy file's, which ``rollback`` restores),
        sessions made since after it, by key."""
        present = self.keys()
        present_set = set(present)
        try:
            recorded = jsonfmt.loads((self.path / ORDER_FILE).read_bytes())
        except (OSError, SessionfsError):
            recorded = []
        if not isinstance(recorded, list):
            recorded = []
        ordered = [key for key in recorded if isinstance(key, str) and key in present_set]
        seen = set(ordered)
        return ordered + sorted(key for key in present if key not in seen)

    def content_version(self) -> object:
        """The root's mtime does not move when a session folder's ``meta.json`` changes; this
        adds every ``meta.json``'s identity (inode, mtime, size), so that an in-place rewrite
        (an editor saving without a rename, ``cat > meta.json``) shows as well as a
        replacement does. One ``lstat`` per session."""
        stamps: list[tuple[str, int, int, int]] = []
        root = self.path
        try:
            with os.scandir(root) as found:
                for item in found:
                    try:
                        st = os.stat(f"{root}/{item.name}/{META_FILE}", follow_symlinks=False)
                    except OSError:
                        stamps.append((item.name, 0, 0, -1))  # not a session (yet): its name
                        continue
                    stamps.append((item.name, st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            return None
        stamps.sort()
        digest = hashlib.blake2b(repr(stamps).encode("utf-8", "surrogateescape"), digest_size=16)
        return (self.fingerprint(), digest.hexdigest())

    def entry_identity(self, key: str) -> object:
        """``meta.json``'s inode, size, mtime and ctime (None for a hashed name: its key file
        must be read)."""
        name = keys.encode(key)
        if keys.is_hashed(name):
            return None
        try:
            st = os.stat(f"{self.path}/{name}/{META_FILE}", follow_symlinks=False)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def problems(self) -> Iterator[Problem]:
        """Everything in ``sessions.d`` that listing skips: ``check`` reports these."""
        for item in self._scan():
            path = Path(item.path)
            if item.name.startswith("."):
                if is_stray_temp(item.name):
                    yield Problem("stray temp file", path, "left by an interrupted write")
                continue
            if item.is_symlink():
                yield Problem("symlink", path, "session directories must not be symlinks")
                continue
            if not item.is_dir():
                yield Problem("stray file", path, "not a session directory")
                continue
            try:
                keys.decode(item.name)
            except InvalidName as exc:
                yield Problem("bad name", path, f"no session key encodes to it ({exc})")
                continue
            key = self.key_of(item.name)
            if key is None:
                yield Problem("bad key file", path / keys.KEY_FILE,
                              "missing or does not match the hashed name")
                continue
            for child in os.listdir(path):
                if is_stray_temp(child):
                    yield Problem("stray temp file", path / child, "left by an interrupted write")
            try:
                self.read(key)
            except SessionNotFound:
                yield Problem("no meta.json", path, "directory holds no meta.json")
            except StoreCorrupt as exc:
                yield Problem("invalid meta.json", path / META_FILE, exc.reason)

    def remove_orphan_temps(self) -> list[Path]:
        """Delete temp files that writers which died left behind (O(sessions): run at start)."""
        removed = remove_orphan_temps(self.path)
        for item in self._scan():
            if item.is_dir(follow_symlinks=False) and not item.name.startswith("."):
                removed.extend(remove_orphan_temps(Path(item.path)))
        return removed

    # -- writes ----------------------------------------------------------------------------------
    def _session_dir_for_write(self, key: str) -> Path:
        directory = self.entry_dir(key)
        if directory.is_symlink():
            raise StoreCorrupt(directory, "is a symlink; refusing to write through it")
        return directory

    def _write_locked(self, key: str, data: bytes) -> bool:
        directory = self._session_dir_for_write(key)
        make_dir(self.path)
        created = not directory.exists()
        make_dir(directory)
        if keys.is_hashed(directory.name):
            key_bytes = key.encode("utf-8")
            try:
                current_key, _ = self._read_file(directory.name, keys.KEY_FILE)
            except OSError:  # missing, or a planted symlink (ELOOP) that the rename replaces
                current_key = None
            if current_key != key_bytes:
                atomic_write(directory / keys.KEY_FILE, key_bytes)
        if not created and self._holds(directory, data):
            return False
        try:
            atomic_write(directory / META_FILE, data, after_write=marker(data))
        except BaseException:
            if created:  # no half-made session (ENOSPC, ...): the directory goes again
                shutil.rmtree(directory, ignore_errors=True)
            raise
        if created:
            fsync_dir(self.path)
        return True

    def _holds(self, directory: Path, data: bytes) -> bool:
        """Whether meta.json already holds exactly ``data`` (a size check spares most reads)."""
        try:
            st = os.stat(directory / META_FILE, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
                return False
            current, _ = self._read_file(directory.name, META_FILE)
        except OSError:  # missing, or a planted symlink (ELOOP) that the rename replaces
            return False
        return current == data

    def put(self, key: str, entry: Entry, *, replacing: str | None = None) -> bool:
        self._require_writable()
        validate_entry(entry, key=key)
        data = serialize_entry(entry)
        with self._lock():
            before = self.fingerprint()
            if not (self.entry_dir(key) / META_FILE).is_file():
                self._refuse_duplicate_session_id(key, entry, replacing)
            written = self._write_locked(key, data)
            self._index_session(before, added=(key, entry.get("sessionId")))
            return written

    def _delete_locked(self, key: str) -> None:
        directory = self.entry_dir(key)
        if directory.is_symlink() or not (directory / META_FILE).is_file():
            raise SessionNotFound(f"no session {key!r} in {self.path}")
        os.unlink(directory / META_FILE)  # the moment the session is gone
        fsync_dir(directory)
        shutil.rmtree(directory, ignore_errors=True)
        fsync_dir(self.path)

    def delete(self, key: str) -> None:
        self._require_writable()
        with self._lock():
            before = self.fingerprint()
            self._delete_locked(key)
            self._index_session(before, removed=key)

    def rename(self, old: str, new: str) -> None:
        """One ``rename(2)`` of the session directory: never both, never neither.

        A failed rename leaves both keys exactly as they were (see the module docstring for
        how a hashed name's key moves with its folder).
        """
        self._require_writable()
        with self._lock():
            source = self.entry_dir(old)
            if source.is_symlink() or not (source / META_FILE).is_file():
                raise SessionNotFound(f"no session {old!r} in {self.path}")
            if old == new:
                return
            before = self.fingerprint()
            session_id = self._indexed_session_id(old)
            target = self._session_dir_for_write(new)
            if (target / META_FILE).exists():
                raise SessionExists(f"session {new!r} already exists in {self.path}")
            if target.exists():  # a leftover without meta.json is not a session
                shutil.rmtree(target)
            new_key = new.encode("utf-8")
            # The new key goes in beside the old: into key.next where the old name's key file
            # must keep naming the old session, into the (ignored) key file otherwise.
            staged_key = None
            if keys.is_hashed(target.name):
                staged_key = source / (PENDING_KEY_FILE if keys.is_hashed(source.name)
                                       else keys.KEY_FILE)
                atomic_write(staged_key, new_key)
            try:
                os.rename(source, target)  # the switch
            except BaseException:
                if staged_key is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(staged_key)
                raise
            if keys.is_hashed(target.name):
                if staged_key is not None and staged_key.name == PENDING_KEY_FILE:
                    atomic_write(target / keys.KEY_FILE, new_key)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(target / PENDING_KEY_FILE)
            else:
                for leftover in (keys.KEY_FILE, PENDING_KEY_FILE):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(target / leftover)
            fsync_dir(self.path)
            self._index_session(before, removed=old, added=(new, session_id))

    def update(self, mutator: Mutator) -> UpdateSummary:
        """Diff-based bulk write, as in the seed: only changed entries are rewritten."""
        self._require_writable()
        with self._lock():
            current = self.load()
            working = {key: jsonfmt.loads(serialize_entry(entry)) for key, entry in current.items()}
            result = mutator(working)
            if result is not None:
                working = result
            planned: dict[str, bytes] = {}
            for key, entry in working.items():
                data = serialize_entry(entry)
                if key not in current or serialize_entry(current[key]) != data:
                    validate_entry(entry, key=key)  # only what we write
                    planned[key] = data
            summary = UpdateSummary()
            for key, data in planned.items():
                if self._write_locked(key, data):
                    summary.written.append(key)
            for key in current:
                if key not in working:
                    self._delete_locked(key)
                    summary.deleted.append(key)
            return summary


# -- the one home of the directory layout's write: DirectoryStore writes a live store in place
# -- (_write_locked); create_session_dir lays a session into a folder nobody reads yet.
def create_session_dir(root: Path, key: str, data: bytes, owner: Owner) -> None:
    """``<root>/<encoded key>/meta.json`` (and a hashed name's ``key`` file), all new and owned
    by ``owner``: no temp file and no fsync, for a private staging folder (a migration's) that
    is verified and synced whole before it becomes ``sessions.d``.

    :raises FileExistsError: the session's folder is already there.
    """
    entry_dir = root / keys.encode(key)
    os.mkdir(entry_dir, DIR_MODE)
    adopt_owner(entry_dir, owner)
    if keys.is_hashed(entry_dir.name):
        create_file(entry_dir / keys.KEY_FILE, key.encode("utf-8"), owner)
    create_file(entry_dir / META_FILE, data, owner, after_write=marker(data))  # canonical
