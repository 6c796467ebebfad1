"""File-era transcripts: found by sessionFile's base name, topic name or sessionId, inside the
store's folder only (no symlink, no sessionFile path followed out of it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sessionfs.demo import write_legacy_store
from sessionfs.fs.transcript import READ_AHEAD, TranscriptHandle, TranscriptLeaf
from sessionfs.migrate import migrate
from sessionfs.store import open_store
from sessionfs.store.base import TranscriptSource

LINES = b'{"type":"session","version":3,"id":"s1"}\n{"type":"message","id":"a"}\n'


@pytest.fixture(params=["legacy", "directory"])
def folder(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    folder = tmp_path / "sessions"
    write_legacy_store(folder, {
        "agent:main:main": {"sessionId": "s1", "updatedAt": 1,
                            "sessionFile": "/old/place/agents/main/sessions/s1.jsonl"},
        "agent:main:telegram:group:-100:topic:42": {"sessionId": "s2", "updatedAt": 2},
        "agent:main:plain": {"sessionId": "s3", "updatedAt": 3},
        "agent:main:escape": {"sessionId": "s4", "updatedAt": 4,
                              "sessionFile": "../../outside.jsonl"},
        "agent:main:link": {"sessionId": "s5", "updatedAt": 5},
        "agent:main:none": {"sessionId": "s6", "updatedAt": 6},
    })
    (folder / "s1.jsonl").write_bytes(LINES)
    (folder / "s2-topic-42.jsonl").write_bytes(b"topic\n")
    (folder / "s3.jsonl").write_bytes(b"plain\n")
    (tmp_path / "outside.jsonl").write_bytes(b"secret\n")
    os.symlink(tmp_path / "outside.jsonl", folder / "s5.jsonl")
    if request.param == "directory":
        migrate(folder)
    return folder


def test_file_era_transcripts(folder: Path) -> None:
    store = open_store(folder)
    source = store.transcript("agent:main:main")
    assert source is not None and source.size == len(LINES)
    assert b"".join(source.chunks(5)) == LINES and source.read(3, 4) == LINES[3:7]
    source.close()
    topic = store.transcript("agent:main:telegram:group:-100:topic:42")
    assert topic is not None and topic.read(0, 100) == b"topic\n"
    assert store.transcript("agent:main:plain").read(0, 100) == b"plain\n"  # type: ignore[union-attr]
    assert store.transcript("agent:main:escape") is None  # basename only: not in the folder
    assert store.transcript("agent:main:link") is None  # a symlink out of the folder
    assert store.transcript("agent:main:none") is None


def test_size_is_fixed_at_open_and_a_new_open_sees_growth(folder: Path) -> None:
    store = open_store(folder)
    source = store.transcript("agent:main:plain")
    assert source is not None
    with open(folder / "s3.jsonl", "ab") as stream:
        stream.write(b"more\n")
    assert source.read(0, 100) == b"plain\n"
    grown = store.transcript("agent:main:plain")
    assert grown is not None and grown.read(0, 100) == b"plain\nmore\n"
    assert grown.token != source.token


class _CountingSource(TranscriptSource):
    """A transcript of ``size`` bytes that records each read it was asked for."""

    def __init__(self, size: int) -> None:
        self.size, self.mtime_ns, self.token = size, 0, "t"
        self.asked: list[tuple[int, int]] = []

    def read(self, offset: int, size: int) -> bytes:
        self.asked.append((offset, size))
        end = min(self.size, offset + size)
        return bytes(index % 251 for index in range(offset, end))


def test_a_page_refill_reads_only_that_page_and_streaming_reads_ahead() -> None:
    """The kernel refills single evicted pages of a cached transcript with 4 KiB READs: each
    costs the store a few events, not a read-ahead of a MiB (a 200 MB transcript's repeat read
    asked 10-90 of them and spent seconds in 1 MiB queries); streaming reads still go ahead."""
    source = _CountingSource(8 << 20)
    leaf = TranscriptLeaf.__new__(TranscriptLeaf)
    handle = TranscriptHandle(leaf, "agent:main:main", source, keep_cache=True)
    page = handle.read(4096, 3 << 20)
    assert page == source.read(3 << 20, 4096)
    assert source.asked[0] == (3 << 20, 4096)
    source.asked.clear()
    first = handle.read(128 << 10, 0)
    second = handle.read(128 << 10, 128 << 10)
    assert first + second == source.read(0, 256 << 10)
    assert source.asked[0] == (0, READ_AHEAD)  # the second request came from the read-ahead
    assert len(source.asked) == 2


def test_concurrent_streaming_reads_fetch_each_block_once() -> None:
    """The kernel's readahead sends several 256 KiB READs at once to different worker threads;
    those inside one block wait for its fetch (a 200 MB cold read asked the store for 354 MiB
    before, 201 MiB now)."""
    import threading
    import time

    class SlowSource(_CountingSource):
        def read(self, offset: int, size: int) -> bytes:
            time.sleep(0.05)
            return super().read(offset, size)

    source = SlowSource(3 << 20)
    leaf = TranscriptLeaf.__new__(TranscriptLeaf)
    handle = TranscriptHandle(leaf, "agent:main:main", source, keep_cache=True)
    quarter = READ_AHEAD // 4
    got: dict[int, bytes] = {}
    threads = [threading.Thread(target=lambda at=at: got.__setitem__(at, handle.read(quarter, at)))
               for at in range(0, 2 * READ_AHEAD, quarter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(source.asked) == [(0, READ_AHEAD), (READ_AHEAD, READ_AHEAD)]
    expected = _CountingSource(3 << 20).read(0, 2 * READ_AHEAD)
    assert b"".join(got[at] for at in sorted(got)) == expected
