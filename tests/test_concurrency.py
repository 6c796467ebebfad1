"""Concurrent writers and readers on one store: through the mount, the library and a gateway.

Design (why "no increment is lost" is a valid expectation here):

* A read-modify-write through a plain filesystem (read ``meta.json``, add one, write it back) is
  racy by nature: two such writers on one file can both read ``n`` and both write ``n+1``, and
  no filesystem can prevent that. So every **mount writer** increments only its **own**
  entries. What the mount must guarantee for them is read-your-writes (the next read shows the
  previous write, whatever else happens in the store) and that no other writer's whole-store
  rewrite brings an old value back.
* **Shared** entries are incremented only under the store lock: by the **library writers**
  through ``store.update(mutator)`` (they also ``get`` + ``put`` their own entries), and by the
  **gateway** (:mod:`tests.gateway_sim`), which speaks openclaw's ``sessions.json.lock``
  protocol and rewrites the whole ``sessions.json`` (legacy layout) or each entry file
  (directory layout). Each shared entry counts the total ``n`` and, per writer, ``by[id]``.
* **Readers** through the mount and through the library (and the raw files) check that every
  read is a valid entry and that no counter ever goes backwards.

At the end every counter in the store equals the number of increments its writers saw
succeed, the untouched entries are byte-identical, ``check`` finds nothing (no temp file, no
lock left), and the mount shows what the store holds. Operations per second per writer kind
are printed (``-s``) and written to ``concurrency-<layout>.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sessionfs.maintenance import check
from sessionfs.store import locate_store, open_store
from tests.gateway_sim import entry_for
from tests.mountutil import ENTRIES, ROOT, Mount, make_store_folder

RUN_SECONDS = 12.0
MOUNT_WRITERS = 3
LIB_WRITERS = 2
MOUNT_READERS = 2
LIB_READERS = 1
SHARED = ["agent:main:shared:0", "agent:main:shared:1"]
# Mean pause between two operations of one process (outside the lock). The store lock is not
# fair (waiters poll with a backoff of up to 100 ms, as openclaw's do): writers in tight loops,
# or readers saturating the mount daemon (which then holds the lock longer per commit), starve
# the other writers into LockTimeout/EBUSY after 10 s. That is a throughput limit, reported
# separately; this test is about lost updates and torn reads under steady concurrent load.
THINK = {"mount-writer": 0.01, "lib-writer": 0.01, "gateway": 0.01, "mount-reader": 0.005,
         "lib-reader": 0.005}


def _own(prefix: str, count: int = 2) -> list[str]:
    return [f"agent:main:{prefix}:{j}" for j in range(count)]


def _spawn(role: str, cfg: dict[str, Any], logs: Path) -> subprocess.Popen[bytes]:
    name = cfg["out"].rsplit("/", 1)[-1].removesuffix(".json")
    with open(logs / f"{name}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "tests.gateway_sim", role,
                                 json.dumps(cfg)], stdout=log, stderr=log,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_concurrent_writers_lose_no_increment(base: Path, tmp_path: Path, layout: str) -> None:
    writers: dict[str, tuple[str, list[str]]] = {}  # id -> (role, own keys)
    for i in range(MOUNT_WRITERS):
        writers[f"mnt{i}"] = ("mount-writer", _own(f"mnt{i}"))
    for i in range(LIB_WRITERS):
        writers[f"lib{i}"] = ("lib-writer", _own(f"lib{i}"))
    writers["gw"] = ("gateway", _own("gw"))

    entries: dict[str, dict[str, Any]] = {key: dict(value) for key, value in ENTRIES.items()}
    for wid, (_role, own) in writers.items():
        for j, key in enumerate(own):
            entries[key] = entry_for(f"{wid}-{j}", 0)
    for j, key in enumerate(SHARED):
        entries[key] = entry_for(f"shared-{j}", 0, by={})
    folder = make_store_folder(base, layout, entries)
    untouched = {key: open_store(folder).read(key).data for key in ENTRIES}
    all_keys = list(entries)

    results_dir = tmp_path / "results"
    results_dir.mkdir()
    with Mount(folder, base / "mnt") as mount:
        start_at = time.time() + 2.5  # every process imported and waiting
        common = {"store": str(folder), "mnt": str(mount.mp), "start_at": start_at,
                  "until": start_at + RUN_SECONDS, "shared": SHARED, "keys": all_keys,
                  "counted": [key for key in all_keys if key not in ENTRIES]}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for wid, (role, own) in writers.items():
            procs[wid] = _spawn(role, dict(common, id=wid, own=own, think=THINK[role],
                                           out=str(results_dir / f"{wid}.json")), results_dir)
        for i in range(MOUNT_READERS):
            cfg = dict(common, think=THINK["mount-reader"], out=str(results_dir / f"mread{i}.json"))
            procs[f"mread{i}"] = _spawn("mount-reader", cfg, results_dir)
        for i in range(LIB_READERS):
            cfg = dict(common, think=THINK["lib-reader"], out=str(results_dir / f"lread{i}.json"))
            procs[f"lread{i}"] = _spawn("lib-reader", cfg, results_dir)
        deadline = start_at + RUN_SECONDS + 60
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                for other in procs.values():
                    other.kill()
                raise AssertionError(f"{name} did not finish\n{mount.diagnostics()}") from None

        results: dict[str, dict[str, Any]] = {}
        for name in procs:
            out = results_dir / f"{name}.json"
            log = (results_dir / f"{name}.log").read_text(errors="replace")
            assert out.exists(), f"{name} wrote no result:\n{log}"
            results[name] = json.loads(out.read_text())
            assert "crashed" not in results[name], f"{name}:\n{results[name]['crashed']}"

        # ---- figures ---------------------------------------------------------------------------
        figures = _figures(results)
        (tmp_path / f"concurrency-{layout}.json").write_text(json.dumps(
            {"layout": layout, "seconds": RUN_SECONDS, "figures": figures,
             "results": results}, indent=2))
        print(f"\nconcurrency {layout} ({RUN_SECONDS:g}s): "
              + ", ".join(f"{kind} {value['ops_per_s']:.1f} ops/s ({value['ops']} ops, "
                          f"{value['processes']} proc)" for kind, value in figures.items()))

        # ---- nobody failed, every writer got work done ----------------------------------------
        for name, result in results.items():
            assert result["errors"] == [], f"{name}: {result['errors']}"
        for wid, (role, _own_keys) in writers.items():
            done = results[wid].get("ops", results[wid].get("update_ops", 0))
            assert done >= 3, f"{wid} ({role}) did almost nothing: {results[wid]}"
            if role == "lib-writer":
                assert results[wid]["put_ops"] >= 3, results[wid]

        # ---- every read was valid and counters never went backwards ---------------------------
        for name, result in results.items():
            if name.startswith(("mread", "lread")):
                assert result["reads"] > 0, (name, result)
                assert result["invalid_count"] == 0, (name, result["invalid"])
                assert result["backwards_count"] == 0, (name, result["backwards"])
            else:
                assert result.get("invalid", 0) == 0, (name, result)

        # ---- read-your-writes: each writer's own entries showed its last write -----------------
        for wid in writers:
            assert results[wid]["stale_count"] == 0, (wid, results[wid]["stale"])

        # ---- no increment lost ------------------------------------------------------------------
        store = open_store(folder)
        for wid, (_role, own) in writers.items():
            for key in own:
                assert store.get(key)["n"] == results[wid]["own"][key], \
                    f"{key} of {wid}: store has {store.get(key)['n']}, " \
                    f"{results[wid]['own'][key]} increments succeeded"
        for key in SHARED:
            entry = store.get(key)
            contributions = {wid: results[wid]["shared"][key] for wid, (role, _own) in
                             writers.items() if role in ("lib-writer", "gateway")}
            assert entry["by"] == {w: c for w, c in contributions.items() if c}, key
            assert entry["n"] == sum(contributions.values()), (key, entry, contributions)
        for key, data in untouched.items():
            assert store.read(key).data == data, key
        assert sorted(store.keys()) == sorted(all_keys)
        assert check(locate_store(folder)) == []

        # ---- the mount shows what the store holds ----------------------------------------------
        for key in all_keys:
            assert json.loads(mount.meta(key).read_bytes()) == store.get(key), key


def _figures(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """ops/s per writer (and reader) kind, summed over the processes of that kind."""
    kinds: dict[str, dict[str, float]] = {}

    def add(kind: str, ops: int, seconds: float) -> None:
        slot = kinds.setdefault(kind, {"ops": 0, "processes": 0, "ops_per_s": 0.0})
        slot["ops"] += ops
        slot["processes"] += 1
        slot["ops_per_s"] += ops / seconds if seconds > 0 else 0.0

    for result in results.values():
        kind = result["kind"]
        if kind == "library":
            add("library-update", result["update_ops"], result["seconds"])
            add("library-put", result["put_ops"], result["seconds"])
        elif kind in ("mount-read", "library-read"):
            add(kind, result["reads"], result["seconds"])
        else:
            add(kind, result["ops"], result["seconds"])
    for slot in kinds.values():
        slot["ops_per_s"] = round(slot["ops_per_s"], 1)
        slot["per_process"] = round(slot["ops_per_s"] / slot["processes"], 1)
    return kinds
