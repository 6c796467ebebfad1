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
