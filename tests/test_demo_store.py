"""The demo and bench SQLite stores are stores openclaw opens (issue 14, point 15): the demo's
database, as ``sessionfs demo`` generates it, read back through openclaw 2026.9.6's own SDK
(``scripts/openclaw/openclaw_sqlite_oracle.mjs``: ``listSessionEntries``,
``loadTranscriptEventsSync``) gives every entry and every transcript sessionfs shows.

Needs node >= 24 and openclaw 2026.9.6, which ``scripts/openclaw/install.sh`` installs (``bash
scripts/test.sh`` runs it); without them the test fails, it does not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sessionfs.cli import DEMO_EVENTS, DEMO_SESSIONS
from sessionfs.demo_sqlite import generate_sqlite_store
from sessionfs.store import open_store
from tests.mountutil import ROOT

SCRIPTS = ROOT / "scripts" / "openclaw"


def openclaw_sdk(state: Path, *argv: str) -> Any:
    """What openclaw's own read API returns for ``state`` (run on a copy: its readers write)."""
    nodebin = subprocess.run(["bash", str(SCRIPTS / "install.sh"), "--print-nodebin"],
                             capture_output=True, text=True, timeout=900, check=True
                             ).stdout.strip().splitlines()[-1]
    scratch = state.parent / f"{state.name}.oracle-copy"
    shutil.copytree(state, scratch)
    env = dict(os.environ, OPENCLAW_STATE_DIR=str(scratch), HOME=str(scratch.parent),
               OPENCLAW_ROOT=os.environ.get("OC_SQLITE_CACHE", "/tmp/oc-sqlite"))
    done = subprocess.run([f"{nodebin}/node", str(SCRIPTS / "openclaw_sqlite_oracle.mjs"),
                           *argv], capture_output=True, text=True, env=env, timeout=300,
                          cwd=str(scratch.parent), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state folder of the SQLite-era demo, generated as ``sessionfs demo`` does."""
    state = tmp_path_factory.mktemp("demo") / "state"
    generate_sqlite_store(state / "agents" / "main", DEMO_SESSIONS, seed=2026,
                          events=DEMO_EVENTS, agent="main")
    return state


def test_openclaw_reads_every_entry_and_transcript_of_the_demo_store(demo: Path) -> None:
    agent = demo / "agents" / "main"
    db = agent / "agent" / "openclaw-agent.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                              ).fetchone()[0]
        compressed = conn.execute("SELECT count(*) FROM transcript_events "
                                  "WHERE event_zstd IS NOT NULL").fetchone()[0]
    assert tables == 55  # openclaw's whole schema, not the 5 tables sessionfs reads
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600  # as openclaw creates it
    assert compressed > 0  # openclaw's SDK decompresses our frames too
    dump = openclaw_sdk(demo, "dump", "main")
    store = open_store(agent)
    try:
        keys = store.keys()
        assert len(keys) == DEMO_SESSIONS and store.refused_rows() == []
        assert sorted(dump["entries"]) == sorted(keys)
        for key in keys:
            entry = json.loads(store.read(key).data)
            assert dump["entries"][key] == entry, key
            source = store.transcript(key)
            assert source is not None, key
            with source:
                lines = b"".join(source.chunks()).decode("utf-8").splitlines()
            assert dump["transcripts"][entry["sessionId"]] == [json.loads(x) for x in lines]
            assert len(lines) == DEMO_EVENTS
        assert "openclaw 2026.9.6" in store.generation
    finally:
        store.close()


def test_openclaw_reads_the_bench_stores_and_appended_events(tmp_path: Path) -> None:
    """The benches' stores: an agent named by its folder (``generate_sqlite_store`` as
    bench_state calls it) and events appended in later transactions (bench_sqlite's 200 MB
    transcript), compressed ones included."""
    import random

    from sessionfs.demo_sqlite import append_openclaw_events, connect_writable, demo_transcript

    state = tmp_path / "state"
    agent = state / "agents" / "work"
    db = generate_sqlite_store(agent, 40, seed=5, events=3)
    store = open_store(agent)
    try:
        key = store.keys()[0]
        session_id = json.loads(store.read(key).data)["sessionId"]
    finally:
        store.close()
    rng = random.Random(7)
    conn = connect_writable(db)
    try:
        for round_ in range(2):
            lines = demo_transcript(rng, session_id, 1781514027000 + round_ * 10**6,
                                    events=61)[1:]
            conn.execute("BEGIN")
            append_openclaw_events(conn, session_id, lines)
            conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM transcript_events WHERE session_id = ? AND "
                            "event_zstd IS NOT NULL", (session_id,)).fetchone()[0] > 0
    finally:
        conn.close()
    dump = openclaw_sdk(state, "dump", "work")
    store = open_store(agent)
    try:
        assert sorted(dump["entries"]) == sorted(store.keys())
        assert all(k.startswith("agent:work:") for k in dump["entries"])
        for key in store.keys():
            entry = json.loads(store.read(key).data)
            assert dump["entries"][key] == entry, key
            source = store.transcript(key)
            assert source is not None
            with source:
                lines = b"".join(source.chunks()).decode("utf-8").splitlines()
            assert dump["transcripts"][entry["sessionId"]] == [json.loads(x) for x in lines]
        assert len(dump["transcripts"][session_id]) == 3 + 2 * 60
    finally:
        store.close()
