"""File-era transcripts: ``<sessionId>.jsonl`` beside ``sessions.json`` / ``sessions.d``.

openclaw (≤ 2026.7.x) appends one JSON line per event to a file in the sessions folder, named
by the entry's ``sessionFile`` (an absolute path) or, without one, ``<sessionId>.jsonl``;
Telegram topics use ``<sessionId>-topic-<n>.jsonl``. A state directory that was moved keeps the
absolute paths of its old place, so only the base name of ``sessionFile`` is used, looked up in
the store's own folder. Files are opened relative to that folder with ``O_NOFOLLOW``: neither a
``sessionFile`` nor a symlink planted in the folder ever leads a read outside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sessionfs.store.transcript_source import TranscriptSource

__all__ = ["FileTranscript", "candidate_names", "measure_transcript_named",
           "open_transcript_named", "transcript_token"]

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TOPIC = re.compile(r":topic:([^:/\x00]+)$")
TRANSCRIPT_SUFFIX = ".jsonl"


def _safe_name(name: str) -> bool:
    """A plain file name inside the folder, ending in ``.jsonl`` (never sessions.json etc.)."""
    return (bool(name) and "/" not in name and "\x00" not in name and not name.startswith(".")
            and name.endswith(TRANSCRIPT_SUFFIX) and len(name.encode("utf-8", "replace")) <= 255)


def candidate_names(key: str, entry: Mapping[str, Any]) -> list[str]:
    """File names to try, most specific first: sessionFile's base name, the topic file, then
    ``<sessionId>.jsonl``. Unsafe names (a ``/``, a leading dot, not ``.jsonl``) are skipped."""
    names: list[str] = []
    session_file = entry.get("sessionFile")
    if isinstance(session_file, str) and session_file:
        names.append(session_file.replace("\\", "/").rsplit("/", 1)[-1])
    session_id = entry.get("sessionId")
    if isinstance(session_id, str) and session_id:
        topic = _TOPIC.search(key)
        if topic is not None:
            names.append(f"{session_id}-topic-{topic.group(1)}{TRANSCRIPT_SUFFIX}")
        names.append(f"{session_id}{TRANSCRIPT_SUFFIX}")
    unique: list[str] = []
    for name in names:
        if _safe_name(name) and name not in unique:
            unique.append(name)
    return unique


def transcript_token(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies a transcript file's content: device, inode, mtime and size (appends move
    size and mtime, a rewrite by rename moves the inode)."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class FileTranscript(TranscriptSource):
    """A transcript file held open (its descriptor): pread, size and mtime from one fstat."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self.path = path
        st = os.fstat(fd)
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.token = transcript_token(st)

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size or size <= 0:
            return b""
        with self._lock:
            if self._fd is None:
                raise ValueError("transcript is closed")
            return os.pread(self._fd, min(size, self.size - offset), offset)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:  # a forgotten source must not leak its descriptor
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to release
            self.close()


def open_transcript_named(folder: Path, names: Iterable[str]) -> FileTranscript | None:
    """The first of ``names`` (from :func:`candidate_names`, which a caller may keep instead of
    reading the entry again) that is a regular file in ``folder``, or None."""
    try:
        dir_fd = os.open(folder, _OPEN_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        for name in names:
            try:
                fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
            except OSError:  # absent, a symlink (ELOOP), unreadable: try the next name
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.set_blocking(fd, True)
                return FileTranscript(fd, folder / name)
            os.close(fd)
        return None
    finally:
        os.close(dir_fd)


def measure_transcript_named(folder: Path, names: Iterable[str]) -> tuple[int, int, object] | None:
    """``(size, mtime_ns, token)`` of the first of ``names`` that is a regular file in
    ``folder``, from one ``lstat`` per name and no open: what ``stat`` of a transcript needs
    (a symlink under that name does not count, as for :func:`open_transcript_named`)."""
    for name in names:
        try:
            st = os.stat(f"{folder}/{name}", follow_symlinks=False)
        except OSError:  # absent (or the folder is): try the next name
            continue
        if stat.S_ISREG(st.st_mode):
            return st.st_size, st.st_mtime_ns, transcript_token(st)
    return None
