#!/usr/bin/env python3
"""Soak test: a mixed workload through the FUSE mount and the library at once, then a full check.

    .venv/bin/python scripts/soak.py --minutes N [--layout legacy|directory|both] [--json PATH]

For each layout (``both`` splits the N minutes between them) it builds a store of realistic
sessions under /var/tmp, mounts it (``python -m sessionfs mount STORE MNT -f``, the daemon is
that process) and runs, for the layout's share of the time, three threads against it:

* **mount worker**: reads, lists, writes (one write, small chunks, compact bytes with a trailing
  newline, or an editor-style temp file renamed onto ``meta.json``), creates (mkdir + write),
  deletes (unlink + rmdir) and renames session folders, all through the kernel;
* **library worker**: the same operations with :func:`sessionfs.open_store` (one long-lived store
  object, as a gateway would hold), including long keys with hashed names;
* **reader**: ``cat`` and ``ls`` of anything through the mount and reads through the library
  while the others write; every read must be a whole, valid entry (or ENOENT).

Each worker owns its own keys and keeps an exact model of them; every operation is checked right
away (what the mount wrote, the library reads, and the other way round). When time is up the
store is checked against the union of the models: every key present with exactly the modelled
entry (byte for byte as ``JSON.stringify(entry, null, 2)``), no extra keys, nothing stray in the
store folder (no temp files, no lock), the same through the mount, nothing in
``.sessionfs/errors``, and the daemon still alive.

Memory: VmRSS of the daemon is sampled once a second; ``start`` is taken after a warm-up
(``--warmup``, default 10% of the run, 3..30 s: the interpreter's arenas, the store's caches and
the kernel's requests in flight settle), ``end`` when the workload stops. Growth must stay under
``--rss-bound-mb`` (default 20 MB). Why 20: the daemon's working set at steady state is the
interpreter (~30 MB) plus caches bounded by design (per-key name/attribute caches, an error log
of 200 lines, at most a 16 MiB buffer per open writer, which this workload never approaches);
a genuine leak of even one small entry copy per operation (~1 KB at 50-100 ops/s) grows by
3-6 MB per minute, so it trips the bound within a few minutes, while allocator noise on a
flat run stays below a few MB.

Exit status 0 only when there were no errors, the final check passed, the daemon survived and
RSS stayed within the bound. The last line of output is a summary the README can quote.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sessionfs import jsonfmt, keys  # noqa: E402
from sessionfs.demo import generate_entries, make_entry  # noqa: E402
from sessionfs.entry import validate_entry  # noqa: E402
from sessionfs.errors import SessionNotFound  # noqa: E402
from sessionfs.store import DirectoryStore, Store, locate_store, open_store  # noqa: E402
from tests.mountutil import Mount, make_store_folder, scratch_root  # noqa: E402

MB = 1024 * 1024
#: Seconds the library worker and the reader rest between operations. Both share this process
#: (and its GIL) with the mount worker, which spends its time waiting for the kernel; without a
#: pause the library side would take nearly every turn and the mount would see little load.
PAUSE = 0.004


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Stats:
    ops: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str) -> None:
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    @property
    def total(self) -> int:
        return sum(self.ops.values())


class Worker(threading.Thread):
    """Owns the keys starting with ``prefix`` and an exact model of them."""

    kind = "?"

    def __init__(self, name: str, prefix: str, initial: dict[str, dict[str, Any]],
                 mount: Mount, stats: Stats, stop: threading.Event, seed: int,
                 low: int, high: int) -> None:
        super().__init__(name=name, daemon=True)
        self.prefix = prefix
        self.model: dict[str, dict[str, Any]] = dict(initial)
        self.gone: set[str] = set()  # keys this worker deleted or renamed away (never reused)
        self.mount = mount
        self.stats = stats
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.low, self.high = low, high
        self.serial = 0

    # -- helpers ---------------------------------------------------------------------------------
    def new_key(self) -> str:
        self.serial += 1
        shape = self.rng.randrange(6)
        n = self.serial
        if shape == 0:
            return f"{self.prefix}telegram:direct:Jämes {n}"
        if shape == 1:
            return f"{self.prefix}cron:{self.rng.getrandbits(32):08x}:{n}"
        if shape == 2:
            return f"{self.prefix}discord:channel:#ops--{n}"
        return f"{self.prefix}main-{n}"

    def new_entry(self, old: dict[str, Any] | None = None) -> dict[str, Any]:
        entry = dict(old) if old else make_entry(self.rng, self.serial)
        entry["updatedAt"] = int(time.time() * 1000) + self.rng.randrange(1000)
        entry["label"] = self.rng.choice(["", "triage", "Einkaufsliste 🛒", "x" * 40,
                                          f"edit {self.serial}"])
        entry["inputTokens"] = self.rng.randrange(10**6)
        self.serial += 1
        return entry

    def pick(self) -> str:
        return self.rng.choice(list(self.model))

    def choose_op(self) -> str:
        count = len(self.model)
        ops = ["read"] * 30 + ["list"] * 4 + ["write"] * 30 + ["rename"] * 10
        if count < self.high:
            ops += ["create"] * 13
        if count > self.low:
            ops += ["delete"] * 13
        return self.rng.choice(ops)

    def run(self) -> None:
        while not self.stop_event.is_set():
            op = self.choose_op()
            try:
                getattr(self, f"op_{op}")()
            except Exception as exc:  # every failure is an error of the run, with its context
                self.stats.error(f"{self.kind} {op}: {exc!r}\n{traceback.format_exc(limit=4)}")
                if len(self.stats.errors) > 50:
                    self.stop_event.set()
            self.stats.count(f"{self.kind}:{op}")
            if self.kind == "library":
                time.sleep(PAUSE)

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise AssertionError(what)


class MountWorker(Worker):
    kind = "mount"

    def op_read(self) -> None:
        key = self.pick()
        data = self.mount.meta(key).read_bytes()
        self.check(json.loads(data) == self.model[key], f"mount read of {key!r} differs")

    def op_list(self) -> None:
        names = set(os.listdir(self.mount.mp))
        mine = {keys.encode(k) for k in self.model}
        self.check(mine <= names, f"listing lacks {sorted(mine - names)[:3]}")
        gone = {keys.encode(k) for k in self.gone} & names
        self.check(not gone, f"listing still shows {sorted(gone)[:3]}")

    def _write(self, key: str, entry: dict[str, Any], *, new: bool) -> None:
        path = self.mount.meta(key)
        style = self.rng.randrange(4)
        canonical = jsonfmt.dumps(entry)
        raw = canonical
        if style == 0:
            path.write_bytes(canonical)
        elif style == 1:  # small chunks, as a slow writer would
            raw = json.dumps(entry, ensure_ascii=False).encode() + b"\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for start in range(0, len(raw), 97):
                    os.write(fd, raw[start:start + 97])
            finally:
                os.close(fd)
        elif style == 2:  # jq ... > tmp && mv tmp meta.json
            raw = json.dumps(entry, indent=4).encode()
            tmp = path.parent / f"meta.json.{self.serial}.tmp"
            tmp.write_bytes(raw)
            os.rename(tmp, path)
        else:
            with open(path, "r+b" if not new else "wb") as stream:
                stream.write(canonical)
                stream.truncate()
        self.model[key] = entry
        stored = open_store(self.mount.store_folder).read(key)
        self.check(stored.data == canonical, f"store holds other bytes for {key!r}")
        self.check(path.read_bytes() == raw, f"mount does not read back what was written to "
                                             f"{key!r} (style {style})")

    def op_write(self) -> None:
        key = self.pick()
        self._write(key, self.new_entry(self.model[key]), new=False)

    def op_create(self) -> None:
        key = self.new_key()
        os.mkdir(self.mount.dir(key))
        self._write(key, self.new_entry(), new=True)

    def op_delete(self) -> None:
        key = self.pick()
        os.unlink(self.mount.meta(key))
        os.rmdir(self.mount.dir(key))
        del self.model[key]
        self.gone.add(key)
        self.check(not os.path.lexists(self.mount.dir(key)), f"{key!r} still there")
        with contextlib.suppress(SessionNotFound):
            open_store(self.mount.store_folder).read(key)
            raise AssertionError(f"deleted {key!r} still in the store")

    def op_rename(self) -> None:
        old, new = self.pick(), self.new_key()
        os.rename(self.mount.dir(old), self.mount.dir(new))
        self.model[new] = self.model.pop(old)
        self.gone.add(old)
        self.check(open_store(self.mount.store_folder).get(new) == self.model[new],
                   f"renamed {old!r} -> {new!r} not in the store")


class LibraryWorker(Worker):
    kind = "library"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store: Store = open_store(self.mount.store_folder)  # long-lived, like a gateway

    def new_key(self) -> str:
        if self.rng.randrange(10) == 0:  # > 200 name bytes: a hashed name and a key file
            self.serial += 1
            return f"{self.prefix}long:{'x' * 220}:{self.serial}"
        return super().new_key()

    def op_read(self) -> None:
        key = self.pick()
        self.check(self.store.get(key) == self.model[key], f"library read of {key!r} differs")
        if self.rng.randrange(4) == 0:  # and the same entry through the mount
            data = self.mount.meta(key).read_bytes()
            self.check(data == jsonfmt.dumps(self.model[key]),
                       f"mount shows other bytes for {key!r}")

    def op_list(self) -> None:
        present = set(self.store.keys())
        self.check(set(self.model) <= present, "library listing lacks keys")
        self.check(not (self.gone & present), "library listing shows removed keys")

    def op_write(self) -> None:
        key = self.pick()
        entry = self.new_entry(self.model[key])
        self.check(self.store.put(key, entry), f"put {key!r} reported no change")
        self.model[key] = entry

    def op_create(self) -> None:
        key = self.new_key()
        entry = self.new_entry()
        self.check(self.store.put(key, entry), f"create {key!r} reported no change")
        self.model[key] = entry
        if self.rng.randrange(3) == 0:
            data = self.mount.meta(key).read_bytes()
            self.check(data == jsonfmt.dumps(entry), f"new {key!r} not visible in the mount")

    def op_delete(self) -> None:
        key = self.pick()
        self.store.delete(key)
        del self.model[key]
        self.gone.add(key)

    def op_rename(self) -> None:
        old, new = self.pick(), self.new_key()
        self.store.rename(old, new)
        self.model[new] = self.model.pop(old)
        self.gone.add(old)


class Reader(threading.Thread):
    """Reads anything while the workers write: whole valid entries or "gone", nothing else."""

    def __init__(self, mount: Mount, stats: Stats, stop: threading.Event, seed: int) -> None:
        super().__init__(name="reader", daemon=True)
        self.mount, self.stats, self.stop_event = mount, stats, stop
        self.rng = random.Random(seed)

    def run(self) -> None:
        store = open_store(self.mount.store_folder)
        while not self.stop_event.is_set():
            try:
                if self.rng.randrange(2):
                    names = [n for n in os.listdir(self.mount.mp) if n != ".sessionfs"]
                    self.stats.count("reader:ls")
                    for name in self.rng.sample(names, min(3, len(names))):
                        self._cat(store, name)
                else:
                    present = store.keys()
                    self.stats.count("reader:keys")
                    for key in self.rng.sample(present, min(3, len(present))):
                        with contextlib.suppress(SessionNotFound):
                            validate_entry(store.get(key), key=key)
                        self.stats.count("reader:get")
            except Exception as exc:
                self.stats.error(f"reader: {exc!r}\n{traceback.format_exc(limit=4)}")
            time.sleep(PAUSE)

    def _cat(self, store: Store, name: str) -> None:
        key = keys.decode(name)
        stored = key is None or key in store  # hashed names are only ever made by the library
        try:
            data = (self.mount.mp / name / "meta.json").read_bytes()
        except OSError as exc:
            # A read racing the deletion of its session is refused: ENOENT, or ESTALE when
            # libfuse's path-based layer already dropped the node between LOOKUP and OPEN.
            # Both mean "gone"; the final check against the model decides whether data was
            # lost, so the reader only has to tell refusals from torn content.
            if exc.errno not in (errno.ENOENT, errno.ESTALE):
                raise
            self.stats.count("reader:cat-gone" if exc.errno == errno.ENOENT
                             else "reader:cat-stale")
            return
        finally:
            self.stats.count("reader:cat")
        if not data and not stored:
            # a session being created (mkdir, then meta.json open for writing) shows an empty
            # meta.json until its first commit, like any file being written
            self.stats.count("reader:cat-while-created")
            return
        try:
            entry = json.loads(data)
        except ValueError as exc:
            raise AssertionError(f"cat of {name!r} (in the store before: {stored}, now: "
                                 f"{key is not None and key in store}) read {len(data)} bytes "
                                 f"that are not JSON: {data[:80]!r}") from exc
        validate_entry(entry)


# -- one layout ---------------------------------------------------------------------------------
def final_check(folder: Path, mount: Mount, expected: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    store = open_store(folder)
    present = store.keys()
    if len(present) != len(set(present)):
        problems.append("duplicate keys in the store")
    missing = set(expected) - set(present)
    extra = set(present) - set(expected)
    if missing:
        problems.append(f"{len(missing)} keys missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} extra keys, e.g. {sorted(extra)[:3]}")
    for key in sorted(set(expected) & set(present)):
        data = store.read(key).data
        if data != jsonfmt.dumps(expected[key]):
            problems.append(f"{key!r}: stored bytes differ from the model")
    location = locate_store(folder)
    stray = [p.name for p in folder.iterdir()
             if p.name not in ("sessions.json", "sessions.d")
             and not p.name.startswith("sessions.json.pre-directory-migration.")]
    if stray:
        problems.append(f"stray files beside the store: {stray}")
    if isinstance(store, DirectoryStore):
        problems += [f"check: {problem}" for problem in store.problems()]
    elif location.legacy_path.read_bytes() != store.raw_bytes():  # type: ignore[attr-defined]
        problems.append("sessions.json is not in openclaw's layout")
    # the same through the mount
    names = set(os.listdir(mount.mp)) - {".sessionfs"}
    if names != {keys.encode(k) for k in expected}:
        problems.append("the mount lists other names than the model")
    for key, entry in expected.items():
        try:
            if json.loads(mount.meta(key).read_bytes()) != entry:
                problems.append(f"{key!r}: the mount shows another entry")
        except OSError as exc:
            problems.append(f"{key!r}: reading through the mount: {exc}")
    rejected = mount.errors()
    if rejected:
        problems.append(f".sessionfs/errors is not empty: {rejected.splitlines()[:3]}")
    return problems


def soak_layout(layout: str, seconds: float, warmup: float, seed: int, sessions: int,
                timeout: float) -> dict[str, Any]:
    base = scratch_root()
    result: dict[str, Any] = {"layout": layout, "seconds": seconds}
    stats = Stats()
    try:
        initial = generate_entries(sessions, seed=seed)
        folder = make_store_folder(base, layout, initial)
        mount = Mount(folder, base / "mnt", "--timeout", str(timeout))
        mount.start()
        try:
            assert mount.proc is not None
            pid = mount.proc.pid
            # the initial sessions are shared out: each worker owns half and may change them
            ordered = list(initial)
            half = len(ordered) // 2
            stop = threading.Event()
            low, high = max(2, sessions // 4), sessions
            workers = [
                MountWorker("mount", "agent:soak:m:", {k: initial[k] for k in ordered[:half]},
                            mount, stats, stop, seed + 1, low, high),
                LibraryWorker("library", "agent:soak:l:", {k: initial[k] for k in ordered[half:]},
                              mount, stats, stop, seed + 2, low, high),
            ]
            threads: list[threading.Thread] = [*workers, Reader(mount, stats, stop, seed + 3)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            samples: list[tuple[float, int]] = []
            rss_start = None
            deadline = started + seconds
            while time.monotonic() < deadline and not stop.is_set():
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                now = time.monotonic() - started
                if mount.proc.poll() is not None:
                    stats.error(f"the daemon exited with {mount.proc.returncode}")
                    break
                samples.append((round(now, 1), rss_kib(pid)))
                if rss_start is None and now >= warmup:
                    rss_start = samples[-1][1]
                    ops_at_start = stats.total
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
                if thread.is_alive():
                    stats.error(f"{thread.name} did not stop (hung in the filesystem?)")
            alive = mount.proc.poll() is None
            rss_end = rss_kib(pid) if alive else None
            if rss_start is None:  # a run shorter than its warm-up
                rss_start, ops_at_start = samples[0][1] if samples else rss_end, 0
            expected = {k: v for w in workers for k, v in w.model.items()}
            problems = (final_check(folder, mount, expected) if alive
                        else ["skipped: the daemon died"])
            result.update(
                ops=stats.total, ops_detail=dict(sorted(stats.ops.items())),
                ops_measured=stats.total - ops_at_start, errors=len(stats.errors),
                error_samples=stats.errors[:5], sessions_at_end=len(expected),
                rss_start_kib=rss_start, rss_end_kib=rss_end,
                rss_max_kib=max((s[1] for s in samples), default=None),
                rss_growth_kib=None if rss_end is None else rss_end - rss_start,
                rss_slope_mb_per_min=slope_mb_per_min(samples, warmup),
                rss_samples=samples, daemon_alive=alive, final_check=problems,
                daemon_log_tail=mount.log()[-2000:] if (stats.errors or problems) else "")
        finally:
            mount.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return result


def slope_mb_per_min(samples: list[tuple[float, int]], after: float) -> float | None:
    """Least-squares RSS trend over the samples after the warm-up (information only)."""
    points = [(t, kib / 1024) for t, kib in samples if t >= after]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
    return round(cov / var * 60, 2)


def summary_line(results: list[dict[str, Any]], minutes: float, bound_mb: float,
                 ok: bool) -> str:
    ops = sum(r.get("ops", 0) for r in results)
    errors = sum(r.get("errors", 0) for r in results)
    parts = []
    for r in results:
        start, end = r.get("rss_start_kib"), r.get("rss_end_kib")
        rss = (f"RSS {start / 1024:.1f}->{end / 1024:.1f} MB" if start and end
               else "RSS n/a")
        parts.append(f"{r['layout']}: {r.get('ops', 0)} ops, {r.get('errors', 0)} errors, "
                     f"{r.get('sessions_at_end', '?')} sessions, {rss}")
    verdict = "OK" if ok else "FAILED"
    return (f"soak {minutes:g} min: {ops} ops ({ops / max(minutes * 60, 1e-9):.0f}/s), "
            f"{errors} errors, final check {'clean' if ok else 'see above'}; "
            + "; ".join(parts) + f" (RSS growth bound {bound_mb:g} MB): {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True,
                        help="total run time (may be fractional); 'both' splits it")
    parser.add_argument("--layout", choices=["legacy", "directory", "both"], default="both")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--sessions", type=int, default=60, help="sessions at the start")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the start RSS sample (default 10%%, 3..30 s)")
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="the mount's --timeout (default 1, the product default)")
    parser.add_argument("--rss-bound-mb", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    layouts = ["legacy", "directory"] if args.layout == "both" else [args.layout]
    seconds = args.minutes * 60 / len(layouts)
    warmup = args.warmup if args.warmup is not None else min(30.0, max(3.0, seconds / 10))
    warmup = min(warmup, seconds / 2)
    results = []
    ok = True
    for number, layout in enumerate(layouts):
        print(f"soak: {layout} for {seconds:.0f} s (warm-up {warmup:.0f} s)...", flush=True)
        result = soak_layout(layout, seconds, warmup, args.seed + 10 * number, args.sessions,
                             args.timeout)
        growth = result.get("rss_growth_kib")
        within = growth is not None and growth < args.rss_bound_mb * 1024
        result["rss_within_bound"] = within
        layout_ok = (result.get("errors") == 0 and not result.get("final_check")
                     and result.get("daemon_alive") and within)
        result["ok"] = layout_ok
        ok = ok and bool(layout_ok)
        results.append(result)
        detail = ", ".join(f"{k} {v}" for k, v in result.get("ops_detail", {}).items())
        print(f"  {layout}: {result.get('ops')} ops ({detail})")
        print(f"  {layout}: errors {result.get('errors')}, final check "
              f"{'clean' if not result.get('final_check') else result['final_check'][:5]}, "
              f"daemon RSS {result.get('rss_start_kib')} -> {result.get('rss_end_kib')} KiB "
              f"(max {result.get('rss_max_kib')}, growth {growth} KiB, trend "
              f"{result.get('rss_slope_mb_per_min')} MB/min, bound "
              f"{args.rss_bound_mb:g} MB): {'OK' if layout_ok else 'FAILED'}", flush=True)
        for sample in result.get("error_samples", []):
            print("  error: " + sample.rstrip().replace("\n", "\n    "), file=sys.stderr)
        if result.get("daemon_log_tail"):
            print("  daemon log tail:\n" + result["daemon_log_tail"], file=sys.stderr)
    line = summary_line(results, args.minutes, args.rss_bound_mb, ok)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"minutes": args.minutes, "layout": args.layout,
                                         "rss_bound_mb": args.rss_bound_mb, "ok": ok,
                                         "summary": line, "results": results}, indent=2))
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
