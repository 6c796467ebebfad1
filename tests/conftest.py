"""Shared fixtures: real stores on disk, in both layouts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.migrate import migrate
from sessionfs.store import Store, open_store

MakeStore = Callable[..., Store]


def node_stringify(text: bytes) -> bytes:
    """What openclaw would write for this JSON text: node's JSON.stringify(JSON.parse(t),null,2)."""
    script = ("let d='';process.stdin.on('data',c=>d+=c).on('end',()=>"
              "process.stdout.write(JSON.stringify(JSON.parse(d),null,2)))")
    return subprocess.run(["node", "-e", script], input=text, capture_output=True,
                          check=True).stdout


@pytest.fixture
def sample_entries() -> dict[str, dict[str, Any]]:
    return generate_entries(25, seed=7)


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Store]:
    """make_store(layout, entries) -> an opened store of that layout holding ``entries``."""
    counter = iter(range(10**6))

    def build(layout: str, entries: dict[str, dict[str, Any]] | None = None) -> Store:
        folder = tmp_path / f"store{next(counter)}" / "sessions"
        folder.mkdir(parents=True)
        write_legacy_store(folder, generate_entries(25, seed=7) if entries is None else entries)
        if layout == "directory":
            migrate(folder)
        return open_store(folder)

    return build


@pytest.fixture(params=["legacy", "directory"])
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def any_store(make_store: MakeStore, layout: str) -> Store:
    return make_store(layout)


def store_bytes(store: Store) -> dict[str, bytes]:
    """Every file of a store folder by relative path: to assert 'nothing else changed'."""
    folder = store.path.parent  # sessions.json and sessions.d both sit in the sessions folder
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def entry_text(entry: dict[str, Any]) -> bytes:
    return jsonfmt.dumps(entry)
