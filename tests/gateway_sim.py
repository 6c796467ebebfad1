"""Worker processes for the fault and concurrency tests: ``python -m tests.gateway_sim ROLE JSON``.

Every worker runs in its own process (so a test can SIGKILL the mount daemon under it, and so
that the store lock is really contended between processes), takes its whole configuration as
one JSON argument and writes one JSON result (to ``out`` or, for ``kill-writer``, to stdout)
when it ends. Workers never assert: they record what they saw and the test judges it.

Roles:

``kill-writer``
    Writes new valid entries to ``MNT/<name>/meta.json`` files (open, write, close) as fast as
    it can, round-robin, with a ``counter`` field that goes up by one per write, until a write
    fails (the daemon was killed). Prints ``ready`` after its first successful write and, at
    the end, for every file: the last value whose ``close()`` succeeded and the value that was
    in flight when the mount died. Standard library only, so it starts in milliseconds.
``mount-writer``
    Read-modify-write of its *own* entries through the mount: read ``meta.json``, add one to
    ``n``, write it back. Records any read that does not show its own previous write.
``lib-writer``
    Alternates ``store.update(mutator)`` (adds one to ``n`` and to ``by[<id>]`` of every shared
    entry, under the store lock) and ``get`` + ``put`` of its own entries.
``gateway``
    Behaves like the openclaw gateway: takes ``sessions.json.lock`` (:class:`StoreLock` speaks
    the protocol) and, in the legacy layout, reads the whole ``sessions.json``, changes it and
    writes it back as openclaw does (``JSON.stringify(store, null, 2)`` to
    ``sessions.json.<pid>.<uuid>.tmp``, rename, no fsync); in the directory layout it does the
    same per entry file. Each round adds one to every shared entry and to its own entries.
``mount-reader`` / ``lib-reader``
    Read every entry over and over (through the mount, or through the library and the raw
    files) and count reads that are not valid JSON, not an entry, or show a counter going
    backwards.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from sessionfs.atomic import write_all

UPDATED_BASE = 1_767_225_600_000


def entry_for(session_id: str, n: int, **extra: Any) -> dict[str, Any]:
    """A valid entry carrying counter ``n`` (also reflected in ``updatedAt``)."""
    return {"sessionId": session_id, "updatedAt": UPDATED_BASE + n, "n": n, **extra}


def _stringify(value: Any) -> bytes:
    # integers and ASCII strings only: Python's output equals JSON.stringify(value, null, 2)
    return json.dumps(value, indent=2, ensure_ascii=False).encode()


def _write_file(path: str, data: bytes) -> None:
    """open(O_WRONLY|O_TRUNC) + write + close; the close's error is the commit's error."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- kill-writer ----------------------------------------------------------------------------------
def kill_writer(cfg: dict[str, Any]) -> dict[str, Any]:
    """cfg: mnt, files {dirname: [sessionId, start counter]}, pad (extra bytes per entry)."""
    mnt = cfg["mnt"]
    files = cfg["files"]
    pad = "p" * int(cfg.get("pad", 0))
    state = {name: {"confirmed": start, "inflight": None} for name, (_sid, start) in files.items()}
    names = sorted(files)
    ops = 0
    failure = None
    ready = False
    deadline = time.monotonic() + float(cfg.get("max_seconds", 20))
    while time.monotonic() < deadline:
        name = names[ops % len(names)]
        value = state[name]["confirmed"] + 1
        data = _stringify(entry_for(files[name][0], value, counter=value, pad=pad))
        state[name]["inflight"] = value
        try:
            _write_file(f"{mnt}/{name}/meta.json", data)
        except OSError as exc:
            failure = {"errno": exc.errno, "name": errno.errorcode.get(exc.errno or 0, "?"),
                       "file": name}
            break
        state[name] = {"confirmed": value, "inflight": None}
        ops += 1
        if not ready:
            ready = True
            sys.stdout.write("ready\n")
            sys.stdout.flush()
    return {"state": state, "ops": ops, "failure": failure}


# -- concurrency workers ---------------------------------------------------------------------------
def _wait_start(cfg: dict[str, Any]) -> None:
    delay = cfg["start_at"] - time.time()
    if delay > 0:
        time.sleep(delay)


def _think(cfg: dict[str, Any]) -> None:
    """Pause between operations (outside the lock), as a real client does between events.

    The store lock is not fair (waiters poll with backoff, openclaw's protocol): a process
    that re-takes it in a tight loop starves every other writer.
    """
    think = float(cfg.get("think", 0))
    if think > 0:
        time.sleep(random.uniform(0, 2 * think))


def mount_writer(cfg: dict[str, Any]) -> dict[str, Any]:
    from sessionfs import keys

    mnt = cfg["mnt"]
    own = cfg["own"]
    paths = {key: f"{mnt}/{keys.encode(key)}/meta.json" for key in own}
    expected = {key: 0 for key in own}
    stale: list[dict[str, Any]] = []
    errors: list[str] = []
    reads = invalid = 0
    _wait_start(cfg)
    started = time.monotonic()
    ops = 0
    while time.time() < cfg["until"]:
        key = own[ops % len(own)]
        try:
            raw = _read_file(paths[key])
        except OSError as exc:
            errors.append(f"read {key}: {exc!r}")
            break
        reads += 1
        try:
            entry = json.loads(raw)
            seen = entry["n"]
        except (ValueError, KeyError, TypeError):
            invalid += 1
            errors.append(f"invalid read of {key}: {raw[:200]!r}")
            break
        if seen != expected[key]:
            stale.append({"key": key, "expected": expected[key], "seen": seen})
        entry["n"] = expected[key] + 1
        entry["updatedAt"] = UPDATED_BASE + entry["n"]
        try:
            _write_file(paths[key], _stringify(entry))
        except OSError as exc:  # the commit's outcome is unknown: stop counting here
            errors.append(f"write {key} n={entry['n']}: {exc!r}")
            break
        expected[key] += 1
        ops += 1
        _think(cfg)
    seconds = time.monotonic() - started
    return {"kind": "mount-rmw", "ops": ops, "seconds": seconds, "own": expected,
            "stale": stale[:20], "stale_count": len(stale), "reads": reads, "invalid": invalid,
            "errors": errors}


def lib_writer(cfg: dict[str, Any]) -> dict[str, Any]:
    from sessionfs.store import open_store

    store = open_store(cfg["store"])
    wid = cfg["id"]
    own = cfg["own"]
    shared = cfg["shared"]
    expected = {key: 0 for key in own}
    shared_done = {key: 0 for key in shared}
    stale: list[dict[str, Any]] = []
    errors: list[str] = []
    update_ops = put_ops = 0
    update_time = put_time = 0.0
    reads = 0

    def bump(mapping: dict[str, dict[str, Any]]) -> None:
        for key in shared:
            entry = mapping[key]
            entry["n"] += 1
            entry["updatedAt"] = UPDATED_BASE + entry["n"]
            entry["by"][wid] = entry["by"].get(wid, 0) + 1

    _wait_start(cfg)
    started = time.monotonic()
    step = 0
    while time.time() < cfg["until"]:
        step += 1
        t0 = time.monotonic()
        if step % 2:
            try:
                store.update(bump)
            except Exception as exc:  # the outcome is unknown: stop counting here
                errors.append(f"update: {exc!r}")
                break
            for key in shared:
                shared_done[key] += 1
            update_ops += 1
            update_time += time.monotonic() - t0
        else:
            key = own[put_ops % len(own)]
            try:
                entry = store.get(key)
                reads += 1
                if entry["n"] != expected[key]:
                    stale.append({"key": key, "expected": expected[key], "seen": entry["n"]})
                entry = dict(entry, n=expected[key] + 1, updatedAt=UPDATED_BASE + expected[key] + 1)
                store.put(key, entry)
            except Exception as exc:
                errors.append(f"put {key}: {exc!r}")
                break
            expected[key] += 1
            put_ops += 1
            put_time += time.monotonic() - t0
        _think(cfg)
    seconds = time.monotonic() - started
    return {"kind": "library", "seconds": seconds, "update_ops": update_ops,
            "put_ops": put_ops, "update_time": update_time, "put_time": put_time,
            "own": expected, "shared": shared_done, "stale": stale[:20],
            "stale_count": len(stale), "reads": reads, "errors": errors}


def _openclaw_write(target: Path, data: bytes) -> None:
    """openclaw's newest store write: ``<name>.<pid>.<uuid>.tmp`` (0600), rename, no fsync."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def gateway(cfg: dict[str, Any]) -> dict[str, Any]:
    from sessionfs import jsonfmt, keys
    from sessionfs.lock import StoreLock
    from sessionfs.store import locate_store

    location = locate_store(cfg["store"])
    layout = location.layout
    lock = StoreLock(location.lock_path, timeout=10.0)
    wid = cfg["id"]
    own = cfg["own"]
    shared = cfg["shared"]
    expected = {key: 0 for key in own}
    shared_done = {key: 0 for key in shared}
    stale: list[dict[str, Any]] = []
    errors: list[str] = []
    reads = invalid = 0
    ops = 0

    def change(key: str, entry: dict[str, Any]) -> None:
        if key in expected:
            if entry["n"] != expected[key]:
                stale.append({"key": key, "expected": expected[key], "seen": entry["n"]})
            entry["n"] = expected[key] + 1
        else:
            entry["n"] += 1
            entry["by"][wid] = entry["by"].get(wid, 0) + 1
        entry["updatedAt"] = UPDATED_BASE + entry["n"]

    _wait_start(cfg)
    started = time.monotonic()
    while time.time() < cfg["until"]:
        try:
            with lock:
                if layout == "legacy":
                    raw = location.legacy_path.read_bytes()
                    reads += 1
                    try:
                        store = json.loads(raw)
                    except ValueError:
                        invalid += 1
                        errors.append(f"invalid sessions.json: {raw[:200]!r}")
                        break
                    for key in [*shared, *own]:
                        change(key, store[key])
                    _openclaw_write(location.legacy_path, jsonfmt.dumps(store))
                else:
                    for key in [*shared, *own]:
                        meta = location.directory_path / keys.encode(key) / "meta.json"
                        raw = meta.read_bytes()
                        reads += 1
                        try:
                            entry = json.loads(raw)
                        except ValueError:
                            invalid += 1
                            errors.append(f"invalid {meta}: {raw[:200]!r}")
                            raise
                        change(key, entry)
                        _openclaw_write(meta, jsonfmt.dumps(entry))
        except Exception as exc:
            errors.append(f"round: {exc!r}")
            break
        for key in own:
            expected[key] += 1
        for key in shared:
            shared_done[key] += 1
        ops += 1
        _think(cfg)
    seconds = time.monotonic() - started
    return {"kind": "gateway", "ops": ops, "seconds": seconds, "own": expected,
            "shared": shared_done, "stale": stale[:20], "stale_count": len(stale),
            "reads": reads, "invalid": invalid, "errors": errors}


class _Observer:
    """Counts reads, and flags invalid ones and counters that went backwards."""

    def __init__(self, counted: list[str]) -> None:
        self.counted = set(counted)  # keys whose entries carry a counter ``n``
        self.reads = 0
        self.invalid: list[str] = []
        self.backwards: list[dict[str, Any]] = []
        self.last: dict[str, int] = {}

    def entry(self, key: str, value: Any, raw: bytes | None = None) -> None:
        self.reads += 1
        if (not isinstance(value, dict) or not isinstance(value.get("sessionId"), str)
                or not isinstance(value.get("updatedAt"), int)
                or (key in self.counted and not isinstance(value.get("n"), int))):
            self.invalid.append(f"{key}: {(raw or repr(value).encode())[:200]!r}")
            return
        if key not in self.counted:
            return
        previous = self.last.get(key, -1)
        if value["n"] < previous:
            self.backwards.append({"key": key, "before": previous, "after": value["n"]})
        self.last[key] = max(previous, value["n"])

    def raw_entry(self, key: str, raw: bytes) -> None:
        try:
            value = json.loads(raw)
        except ValueError:
            self.reads += 1
            self.invalid.append(f"{key}: not JSON: {raw[:200]!r}")
            return
        self.entry(key, value, raw)

    def result(self, kind: str, seconds: float, errors: list[str]) -> dict[str, Any]:
        return {"kind": kind, "reads": self.reads, "seconds": seconds,
                "invalid": self.invalid[:20], "invalid_count": len(self.invalid),
                "backwards": self.backwards[:20], "backwards_count": len(self.backwards),
                "errors": errors}


def mount_reader(cfg: dict[str, Any]) -> dict[str, Any]:
    from sessionfs import keys

    mnt = Path(cfg["mnt"])
    all_keys = cfg["keys"]
    observer = _Observer(cfg["counted"])
    errors: list[str] = []
    _wait_start(cfg)
    started = time.monotonic()
    rounds = 0
    while time.time() < cfg["until"]:
        rounds += 1
        if rounds % 10 == 1:
            listed = set(os.listdir(mnt))
            missing = [key for key in all_keys if keys.encode(key) not in listed]
            if missing:
                errors.append(f"listing lacks {missing}")
        for key in all_keys:
            try:
                raw = _read_file(f"{mnt}/{keys.encode(key)}/meta.json")
            except OSError as exc:
                errors.append(f"read {key}: {exc!r}")
                continue
            observer.raw_entry(key, raw)
        _think(cfg)
    return observer.result("mount-read", time.monotonic() - started, errors[:20])


def lib_reader(cfg: dict[str, Any]) -> dict[str, Any]:
    from sessionfs import keys
    from sessionfs.store import locate_store, open_store

    location = locate_store(cfg["store"])
    store = open_store(cfg["store"])
    all_keys = cfg["keys"]
    observer = _Observer(cfg["counted"])
    errors: list[str] = []
    _wait_start(cfg)
    started = time.monotonic()
    rounds = 0
    while time.time() < cfg["until"]:
        rounds += 1
        try:
            if rounds % 2:  # the library's own view
                loaded = store.load()
                for key in all_keys:
                    if key not in loaded:
                        errors.append(f"load() lacks {key}")
                    else:
                        observer.entry(key, loaded[key])
            elif location.layout == "legacy":  # the raw file, as any JSON reader sees it
                raw = location.legacy_path.read_bytes()
                try:
                    document = json.loads(raw)
                except ValueError:
                    observer.reads += 1
                    observer.invalid.append(f"sessions.json not JSON: {raw[:200]!r}")
                    continue
                for key in all_keys:
                    observer.entry(key, document.get(key))
            else:
                for key in all_keys:
                    path = location.directory_path / keys.encode(key) / "meta.json"
                    observer.raw_entry(key, path.read_bytes())
        except Exception as exc:
            errors.append(f"round {rounds}: {exc!r}")
        _think(cfg)
    return observer.result("library-read", time.monotonic() - started, errors[:20])


ROLES = {"kill-writer": kill_writer, "mount-writer": mount_writer, "lib-writer": lib_writer,
         "gateway": gateway, "mount-reader": mount_reader, "lib-reader": lib_reader}


def main(argv: list[str]) -> int:
    role, cfg = argv[0], json.loads(argv[1])
    try:
        result = ROLES[role](cfg)
    except Exception:
        result = {"crashed": traceback.format_exc()}
    text = json.dumps(result)
    if cfg.get("out"):
        Path(cfg["out"]).write_text(text)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
