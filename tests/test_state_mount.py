"""The state mount, through the kernel: what tools that read openclaw's file layout see.

A state holds one agent per generation (legacy ``sessions.json``, ``sessions.d`` after migrate,
SQLite); a reference file-era directory with the same content (what the file era would have
written, ``sessionFile`` pointing into the mount) is the oracle for bytes, and node's
``JSON.stringify`` for the rendering.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.demo_sqlite import demo_transcript, sqlite_entry, write_sqlite_store
from sessionfs.migrate import migrate
from sessionfs.projection import render, restore_routing, transcript_name
from sessionfs.store import open_store
from tests.conftest import node_stringify
from tests.mountutil import Mount, force_unmount, scratch_root, wait_for
from tests.openclaw_fixtures import NAMES, extract_real_store, legacy_sessions

AGENTS = {"leg": 11, "dir": 13, "sql": 17}  # agent id -> seed


def _content(seed: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    entries = generate_entries(12, seed=seed)
    rng = random.Random(seed)
    transcripts = {key: demo_transcript(rng, entry["sessionId"], entry["sessionStartedAt"],
                                        events=8)
                   for key, entry in entries.items()}
    return entries, transcripts


def _write_file_era(folder: Path, entries: dict[str, dict[str, Any]],
                    transcripts: dict[str, list[str]], session_dir: str) -> None:
    """What the file era writes: sessions.json (with sessionFile) and one JSONL per session."""
    with_files = {}
    for key, entry in entries.items():
        name = transcript_name(key, entry)
        assert name is not None
        with_files[key] = {**entry, "sessionFile": f"{session_dir}/{name}"}
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    write_legacy_store(folder, with_files)
    for key, lines in transcripts.items():
        name = transcript_name(key, entries[key])
        (folder / str(name)).write_bytes("".join(line + "\n" for line in lines).encode())


@pytest.fixture
def state() -> Iterator[tuple[Path, Path, Path]]:
    """(state dir, mountpoint, reference dir with the file-era layout of the same content)."""
    base = scratch_root()
    state_dir, mp, ref = base / "state", base / "mnt", base / "ref"
    for agent_id, seed in AGENTS.items():
        entries, transcripts = _content(seed)
        mount_dir = f"{mp}/agents/{agent_id}/sessions"
        _write_file_era(ref / "agents" / agent_id / "sessions", entries, transcripts, mount_dir)
        folder = state_dir / "agents" / agent_id / "sessions"
        if agent_id == "sql":
            write_sqlite_store(state_dir / "agents" / agent_id,
                               {key: sqlite_entry(entry) for key, entry in entries.items()},
                               transcripts=transcripts)
            folder.mkdir(parents=True)
        else:
            own = str(folder) if agent_id == "leg" else mount_dir
            _write_file_era(folder, entries, transcripts, own)
            if agent_id == "dir":
                migrate(folder)
    yield state_dir, mp, ref
    force_unmount(mp)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mounted(state: tuple[Path, Path, Path]) -> Iterator[Mount]:
    state_dir, mp, _ref = state
    with Mount(state_dir, mp, "--timeout", "0.3") as mount:
        yield mount
    mount.assert_no_internal_errors()


def tool_read(root: Path) -> dict[str, dict[str, Any]]:
    """What a token tracker does: parse each sessions.json, sum tokens in file order, follow
    sessionFile, parse every JSONL line."""
    report: dict[str, dict[str, Any]] = {}
    for store_file in sorted(glob.glob(f"{root}/agents/*/sessions/sessions.json")):
        agent = Path(store_file).parent.parent.name
        with open(store_file, "rb") as stream:
            sessions = json.load(stream)
        cost = 0.0
        tokens = 0
        lines = 0
        transcripts = {}
        for key, entry in sessions.items():
            tokens += entry.get("inputTokens", 0) + entry.get("outputTokens", 0)
            cost += entry.get("estimatedCostUsd", 0)
            path = entry.get("sessionFile")
            if path and os.path.exists(path):
                data = Path(path).read_bytes()
                for line in data.splitlines():
                    json.loads(line)
                    lines += 1
                transcripts[key] = data
        report[agent] = {"keys": list(sessions), "tokens": tokens, "cost": cost,
                         "lines": lines, "transcripts": transcripts}
    return report


def test_tools_see_every_generation_like_the_file_era(mounted: Mount,
                                                       state: tuple[Path, Path, Path]) -> None:
    _state_dir, mp, ref = state
    seen, expected = tool_read(mp), tool_read(ref)
    assert set(seen) == set(AGENTS)
    for agent in ("leg", "dir"):  # same keys, same order: same float sums to the last digit
        assert seen[agent]["keys"] == expected[agent]["keys"]
        assert seen[agent]["cost"] == expected[agent]["cost"]
    # SQLite: openclaw's reader order (by key); same sessions and totals
    assert seen["sql"]["keys"] == sorted(expected["sql"]["keys"])
    for agent in AGENTS:
        assert seen[agent]["tokens"] == expected[agent]["tokens"]
        assert seen[agent]["transcripts"] == expected[agent]["transcripts"]  # byte for byte
        assert seen[agent]["lines"] == expected[agent]["lines"] > 0
    # sessions.d: the very bytes the file era wrote (order migrate recorded, sessionFile here)
    assert ((mp / "agents/dir/sessions/sessions.json").read_bytes()
            == (ref / "agents/dir/sessions/sessions.json").read_bytes())
    # legacy: the file itself
    assert ((mp / "agents/leg/sessions/sessions.json").read_bytes()
            == (state[0] / "agents/leg/sessions/sessions.json").read_bytes())
    # SQLite: what node writes for it, every sessionFile inside the mount
    rendered = (mp / "agents/sql/sessions/sessions.json").read_bytes()
    assert not rendered.endswith(b"\n")
    assert node_stringify(rendered) == rendered
    for entry in json.loads(rendered).values():
        assert entry["sessionFile"].startswith(f"{mp}/agents/sql/sessions/")
        assert "delivery" in entry


def test_walkers_find_only_the_file_era_files(mounted: Mount,
                                              state: tuple[Path, Path, Path]) -> None:
    _state_dir, mp, ref = state
    relative = {str(Path(p).relative_to(mp))
                for p in glob.glob(f"{mp}/agents/*/sessions/*.jsonl")}
    assert relative == {str(Path(p).relative_to(ref))
                        for p in glob.glob(f"{ref}/agents/*/sessions/*.jsonl")}
    jsonl = []
    for folder, _dirs, files in os.walk(mp / "agents"):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            assert st.st_size > 0
            if name.endswith(".jsonl"):
                jsonl.append(os.path.join(folder, name))
            else:
                assert name in ("sessions.json", "meta.json"), name
    assert len(jsonl) == len(relative)  # nothing under sessions.d counts as a session
    found = subprocess.run(["find", str(mp)], capture_output=True, text=True, check=True)
    names = found.stdout.split()
    assert not [n for n in names if n.endswith("transcript.jsonl")]
    assert sum(n.endswith("/meta.json") for n in names) == 3 * 12
    for path in glob.glob(f"{mp}/agents/*/sessions/*"):
        assert not os.path.islink(path)


def test_sizes_are_exact_and_mtimes_real(mounted: Mount, state: tuple[Path, Path, Path]) -> None:
    state_dir, mp, _ref = state
    for path in glob.glob(f"{mp}/agents/*/sessions/*.json*"):
        size = os.stat(path).st_size
        with open(path, "rb") as stream:
            assert len(stream.read(size)) == size
            assert stream.read() == b""
    leg = state_dir / "agents/leg/sessions"
    for name in os.listdir(leg):
        if name.endswith(".jsonl") or name == "sessions.json":
            assert (os.stat(mp / "agents/leg/sessions" / name).st_mtime_ns // 10**9
                    == os.stat(leg / name).st_mtime_ns // 10**9)
    store = open_store(state_dir / "agents/sql")
    for key in store.keys():
        source = store.transcript(key)
        assert source is not None
        name = transcript_name(key, store.get(key))
        st = os.stat(mp / "agents/sql/sessions" / str(name))
        assert (st.st_size, st.st_mtime_ns // 10**9) == (source.size, source.mtime_ns // 10**9)
        source.close()


def test_rendered_files_are_read_only(mounted: Mount) -> None:
    sessions = mounted.mp / "agents/dir/sessions"
    before = (sessions / "sessions.json").read_bytes()
    for target in (sessions / "sessions.json", next(sessions.glob("*.jsonl"))):
        with pytest.raises(OSError) as caught:
            os.close(os.open(target, os.O_RDWR))
        assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:
        os.truncate(sessions / "sessions.json", 0)
    assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:
        (sessions / "new.jsonl").write_bytes(b"{}\n")
    assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:
        os.unlink(sessions / "sessions.json")
    assert caught.value.errno == errno.EROFS
    assert (sessions / "sessions.json").read_bytes() == before
    errors = (mounted.mp / ".sessionfs/errors").read_text()
    assert "EROFS" in errors and "edit sessions.d/<name>/meta.json instead" in errors


def test_meta_json_writes_reach_the_store(mounted: Mount, state: tuple[Path, Path, Path]) -> None:
    state_dir, mp, _ref = state
    store = open_store(state_dir / "agents/dir")
    key = store.keys()[0]
    meta = mp / "agents/dir/sessions/sessions.d" / keys.encode(key) / "meta.json"
    assert sorted(os.listdir(meta.parent)) == ["meta.json"]
    entry = dict(store.get(key), label="renamed via the state mount")
    meta.write_bytes(jsonfmt.dumps(entry))
    assert open_store(state_dir / "agents/dir").get(key)["label"] == "renamed via the state mount"
    assert wait_for(lambda: json.loads((mp / "agents/dir/sessions/sessions.json").read_bytes())
                    [key]["label"] == "renamed via the state mount", 5)
    sql_meta = next((mp / "agents/sql/sessions/sessions.d").iterdir()) / "meta.json"
    with pytest.raises(OSError) as caught:
        sql_meta.write_bytes(b"{}")
    assert caught.value.errno == errno.EROFS


def test_an_in_place_rewrite_on_disk_shows_in_sessions_json(
        mounted: Mount, state: tuple[Path, Path, Path]) -> None:
    """An editor that saves without a rename (or ``cat > meta.json``) changes neither
    sessions.d's mtime nor the session folder's: sessions.json must follow it all the same."""
    state_dir, mp, _ref = state
    rendered = mp / "agents/dir/sessions/sessions.json"
    store = open_store(state_dir / "agents/dir")
    key = store.keys()[0]
    before = json.loads(rendered.read_bytes())
    assert before[key].get("label") != "edited in place"
    meta = state_dir / "agents/dir/sessions/sessions.d" / keys.encode(key) / "meta.json"
    folder_mtime = os.stat(meta.parent).st_mtime_ns
    inode = os.stat(meta).st_ino
    with open(meta, "r+b") as stream:  # same inode, same folder
        stream.write(jsonfmt.dumps(dict(store.get(key), label="edited in place")))
        stream.truncate()
    assert os.stat(meta).st_ino == inode and os.stat(meta.parent).st_mtime_ns == folder_mtime
    assert wait_for(lambda: json.loads(rendered.read_bytes())[key].get("label")
                    == "edited in place", 5)
    after = json.loads(rendered.read_bytes())
    assert {k: v for k, v in after.items() if k != key} == \
        {k: v for k, v in before.items() if k != key}


def test_agents_appear_and_vanish_within_the_timeout(mounted: Mount,
                                                     state: tuple[Path, Path, Path]) -> None:
    state_dir, mp, _ref = state
    shutil.copytree(state_dir / "agents/dir", state_dir / "agents/extra")
    assert wait_for(lambda: "extra" in os.listdir(mp / "agents"), 3)
    assert json.loads((mp / "agents/extra/sessions/sessions.json").read_bytes())
    shutil.rmtree(state_dir / "agents/extra")
    assert wait_for(lambda: "extra" not in os.listdir(mp / "agents"), 3)
    (state_dir / "agents/empty").mkdir()  # no store: not an agent
    (state_dir / "openclaw.json").write_text("{}")
    assert wait_for(lambda: os.listdir(mp / "agents") == sorted(AGENTS), 3) or \
        sorted(os.listdir(mp / "agents")) == sorted(AGENTS)
    assert sorted(os.listdir(mp)) == [".sessionfs", "agents"]


def test_store_changing_during_reads_is_never_torn(mounted: Mount,
                                                   state: tuple[Path, Path, Path]) -> None:
    state_dir, mp, _ref = state
    store = open_store(state_dir / "agents/dir")
    key = store.keys()[0]
    stop = threading.Event()

    def writer() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            store.put(key, dict(store.get(key), label="x" * (number % 400)))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        target = mp / "agents/dir/sessions/sessions.json"
        for _ in range(150):
            size = os.stat(target).st_size
            with open(target, "rb") as stream:
                data = stream.read()
            document = json.loads(data)  # a torn file would not parse
            assert set(document) == set(store.keys())
            assert len(data) > 0 and size > 0
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("name", NAMES)
def test_routing_restored_from_openclaws_own_import(tmp_path: Path, name: str) -> None:
    """Against a store openclaw 2026.9.6 imported (committed fixture), with its file-era input
    beside it: every file-era field comes back, sessionFile pointing at the mount's path."""
    root = extract_real_store(name, tmp_path)
    for agent in ("main", "work"):
        legacy = legacy_sessions(root, name, agent)
        store = open_store(root / name / "agents" / agent)
        rendered = json.loads(render(store, str(root / name / "agents" / agent / "sessions")).data)
        store.close()
        recovered = set(rendered) - set(legacy)  # --extras: an unreferenced transcript, imported
        assert all(key.startswith(f"agent:{agent}:recovered:") for key in recovered)
        assert len(recovered) == (1 if (name, agent) == ("extras", "main") else 0)
        assert set(legacy) <= set(rendered)
        for key in recovered:
            session_id = rendered[key]["sessionId"]
            assert rendered[key]["sessionFile"] == \
                str(root / name / "agents" / agent / "sessions" / f"{session_id}.jsonl")
        for key, entry in legacy.items():
            for field, value in entry.items():
                assert rendered[key].get(field) == value, (key, field)
    assert restore_routing("agent:x:main", {"delivery": {"kind": "none"}}) == \
        {"delivery": {"kind": "none"}}


def test_rendering_reuses_stored_bytes_only_when_canonical(tmp_path: Path) -> None:
    """Stored meta.json bytes are reused (indented, sessionFile spliced in) only when they are
    JSON.stringify's; hand-written or number-tricky files are serialised again; an edit shows
    in the next rendering (memo per entry), and the result is what serialising every entry
    gives."""
    from sessionfs.projection import with_session_file
    from sessionfs.store.legacy import assemble, indent_member

    folder = tmp_path / "agents/a/sessions"
    entries = generate_entries(8, seed=3)
    keys_ = list(entries)
    entries[keys_[0]]["sessionFile"] = "/elsewhere/x.jsonl"  # replaced in place
    entries[keys_[1]]["estimatedCostUsd"] = 1e-7  # orjson and JavaScript differ
    entries[keys_[2]]["10"] = {"n": 12345678901234567890}  # index key, big int
    entries[keys_[3]] = {"sessionId": "bare-one", "updatedAt": 5}  # no trailing field
    entries[keys_[4]].pop("skillsSnapshot", None)
    write_legacy_store(folder, entries)
    migrate(folder)
    store = open_store(tmp_path / "agents/a")
    hand = store.entry_dir(keys_[5]) / "meta.json"
    hand.write_text(json.dumps(store.read(keys_[5]).entry, indent=4))  # not JS's layout

    def expected() -> bytes:
        members = []
        for key in store.order():
            entry = store.read(key).entry
            name = transcript_name(key, entry)
            if name is not None:
                entry = with_session_file(entry, f"/m/{name}")
            members.append((key, indent_member(jsonfmt.dumps(entry))))
        return assemble(members)

    memo: dict[str, Any] = {}
    first = render(store, "/m", memo=memo)
    assert first.data == expected()
    store.put(keys_[6], dict(store.get(keys_[6]), label="changed"))
    second = render(store, "/m", memo=memo)
    assert second.data == expected() != first.data
    assert b'"label": "changed"' in second.data


def test_an_open_file_keeps_the_version_it_opened(mounted: Mount,
                                                 state: tuple[Path, Path, Path]) -> None:
    """A reader that opened sessions.json reads it whole in the version it opened even when
    the store changes in between; the next open shows the new version. A transcript shows the
    version it opened, plus what was appended since when the reader asks for it."""
    state_dir, mp, _ref = state
    folder = mp / "agents/dir/sessions"
    with open(folder / "sessions.json", "rb") as stream:
        head = stream.read(1)
        store = open_store(state_dir / "agents/dir")
        key = store.keys()[0]
        old_label = store.get(key).get("label")
        store.put(key, dict(store.get(key), label="changed while open " * 50))
        time.sleep(0.5)  # past --timeout: a new open would render the new version
        document = json.loads(head + stream.read())
    assert document[key].get("label") == old_label
    fresh = json.loads((folder / "sessions.json").read_bytes())
    assert fresh[key]["label"] == "changed while open " * 50

    legacy = mp / "agents/leg/sessions"
    name = next(p.name for p in sorted(legacy.glob("*.jsonl")))
    on_disk = state_dir / "agents/leg/sessions" / name
    before = on_disk.read_bytes()
    late = b'{"type":"message","late":true}\n'
    with open(legacy / name, "rb") as stream:
        first = stream.read(1)
        with open(on_disk, "ab") as out:
            out.write(late)
        rest = stream.read()
    # the version it opened, followed by what was appended or not (an open transcript follows
    # appends, as a regular file does and tail -f needs): never a mix
    assert first + rest in (before, before + late)
    wait_for(lambda: (legacy / name).read_bytes() == on_disk.read_bytes())
