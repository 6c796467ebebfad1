"""``bench.py store``: the store API in both layouts, and migration; each case in a fresh
worker process (``bench.py _worker SPEC``) so its peak RSS is its own."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_common import (
    BENCH,
    FULL,
    MB,
    QUICK,
    REPO,
    RESULTS,
    SEED_BIG,
    SEED_SMALL,
    Row,
    Sizes,
    Target,
    count_label,
    disk_probe,
    fmt_value,
    load_text,
    print_verdict,
    probe_text,
    render_table,
    say,
    settle_disk,
    vm_status,
    write_json,
)


# =============================================================================================
# Worker: one case in a fresh process (so ru_maxrss is that case's peak)
# =============================================================================================
class Clock:
    """Times single operations; with a profile path, profiles exactly the timed calls."""

    def __init__(self, profile: str | None) -> None:
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []  # this process's CPU time (user + sys) per call
        self.profiler = cProfile.Profile() if profile else None

    def time(self, fn: Callable[..., Any], *args: Any) -> Any:
        profiler = self.profiler
        if profiler is not None:
            profiler.enable()
        cpu = time.process_time_ns()
        start = time.perf_counter_ns()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter_ns() - start
            cpu = time.process_time_ns() - cpu
            if profiler is not None:
                profiler.disable()
            self.samples.append(elapsed / 1e9)
            self.cpu_samples.append(cpu / 1e9)


def bumped(entry: dict[str, Any]) -> dict[str, Any]:
    """A real change: the same entry, one millisecond later."""
    changed = dict(entry)
    changed["updatedAt"] = int(entry.get("updatedAt") or 0) + 1
    return changed


def pick(rng: random.Random, keys: list[str], count: int) -> list[str]:
    return rng.sample(keys, count) if count <= len(keys) else rng.choices(keys, k=count)


def case_build_legacy(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from sessionfs.demo import generate_entries, write_legacy_store

    entries = generate_entries(spec["count"], seed=spec["seed"],
                               entry_bytes=spec.get("entry_bytes", 0))
    path = write_legacy_store(Path(spec["folder"]), entries)
    return {"bytes": path.stat().st_size}


def case_migrate(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from sessionfs.migrate import migrate

    step = max(1, spec["count"] // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            say(f"  migrate {spec['label']}: staged {done}/{total}")

    report = clock.time(lambda: migrate(spec["folder"], progress=progress))
    if not report.changed:
        raise RuntimeError(f"migration did nothing: {report.message}")
    return {"report": report.as_dict()}


def case_dir_read(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from sessionfs.store import open_store

    store = open_store(spec["folder"])
    rng = random.Random(spec["seed"])
    keys = store.keys()
    chosen = pick(rng, keys, spec["reps"])
    if spec.get("cold"):
        for key in chosen:
            drop_page_cache(store.entry_dir(key) / "meta.json")  # type: ignore[attr-defined]
            clock.time(store.read, key)
        return {"keys": len(keys)}
    for key in chosen:  # page cache warm for exactly these files (see drop_page_cache)
        store.read(key)
    for key in chosen:
        clock.time(store.read, key)
    return {"keys": len(keys)}


def drop_page_cache(path: Path) -> None:
    """Evict one file's clean pages (posix_fadvise DONTNEED), so its next read goes to disk.

    This VM's kernel runs DAMON proactive reclaim (``pageout`` of pages idle for about 60 s), so
    "warm page cache" holds only for files touched in the last minute: the read cases either
    touch their files first (warm) or evict them explicitly (cold), never leave it to chance.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def case_dir_write(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from sessionfs.store import open_store

    store = open_store(spec["folder"])
    rng = random.Random(spec["seed"])
    keys = store.keys()
    chosen = pick(rng, keys, spec["reps"])
    for key in chosen:
        changed = bumped(store.get(key))
        if not clock.time(store.put, key, changed):
            raise RuntimeError(f"put({key!r}) wrote nothing")
    return {"keys": len(keys)}


def case_dir_interleaved(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """read or put round-robin over several directory stores, so that every size sees the
    same disk conditions (this VM's fsync latency drifts by 10x within a minute)."""
    from sessionfs.store import open_store

    rng = random.Random(spec["seed"])
    stores = [open_store(folder) for folder in spec["folders"]]
    plans = [pick(rng, store.keys(), spec["reps"]) for store in stores]
    per_store: list[list[float]] = [[] for _ in stores]
    if spec["op"] == "read":  # warm page cache for exactly these files (see drop_page_cache)
        for store, plan in zip(stores, plans, strict=True):
            for key in plan:
                store.read(key)
    for step in range(spec["reps"]):
        for number, store in enumerate(stores):
            key = plans[number][step]
            if spec["op"] == "write":
                changed = bumped(store.get(key))
                clock.time(store.put, key, changed)
            else:
                clock.time(store.read, key)
            per_store[number].append(clock.samples[-1])
    return {"per_store": per_store}


def case_legacy_read_warm(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from sessionfs.store import open_store

    store = open_store(spec["folder"])
    rng = random.Random(spec["seed"])
    keys = store.keys()  # parses the file once: the instance is warm
    for key in pick(rng, keys, spec["reps"]):
        clock.time(store.read, key)
    return {"keys": len(keys)}


def case_legacy_read_after_change(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """An open instance reads one entry right after another instance rewrote the file."""
    from sessionfs.store import open_store

    reader = open_store(spec["folder"])
    writer = open_store(spec["folder"])
    rng = random.Random(spec["seed"])
    keys = reader.keys()
    written = ""
    for _ in range(spec["reps"]):
        written, read_key = rng.sample(keys, 2)
        writer.put(written, bumped(writer.get(written)))
        clock.time(reader.read, read_key)
    if reader.get(written) != writer.get(written):
        raise RuntimeError("the open instance did not see the other instance's write")
    return {"keys": len(keys)}


def case_legacy_write_open(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """put() through an instance that has already read the file (the mount's situation)."""
    from sessionfs.store import open_store

    store = open_store(spec["folder"])
    rng = random.Random(spec["seed"])
    keys = store.keys()
    for key in pick(rng, keys, spec["reps"]):
        changed = bumped(store.get(key))
        if not clock.time(store.put, key, changed):
            raise RuntimeError(f"put({key!r}) wrote nothing")
    return {"keys": len(keys)}


def case_legacy_write_fresh(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """open_store() + put() (the CLI's situation): the file is read inside the timed call."""
    from sessionfs.store import open_store

    rng = random.Random(spec["seed"])
    keys = open_store(spec["folder"]).keys()
    for key in pick(rng, keys, spec["reps"]):
        changed = bumped(open_store(spec["folder"]).get(key))
        clock.time(lambda key=key, changed=changed: open_store(spec["folder"]).put(key, changed))
    return {"keys": len(keys)}


def case_keys_fresh(spec: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """open_store() + keys() (``sessionfs ls``; the directory store keeps no cache anyway)."""
    from sessionfs.store import open_store

    count = 0
    for _ in range(spec["reps"]):
        count = len(clock.time(lambda: open_store(spec["folder"]).keys()))
    if count != spec["count"]:
        raise RuntimeError(f"listed {count} keys, expected {spec['count']}")
    return {"keys": count}


WORKER_CASES: dict[str, Callable[[dict[str, Any], Clock], dict[str, Any]]] = {
    "build_legacy": case_build_legacy,
    "migrate": case_migrate,
    "dir_read": case_dir_read,
    "dir_write": case_dir_write,
    "dir_interleaved": case_dir_interleaved,
    "legacy_read_warm": case_legacy_read_warm,
    "legacy_read_after_change": case_legacy_read_after_change,
    "legacy_write_open": case_legacy_write_open,
    "legacy_write_fresh": case_legacy_write_fresh,
    "keys_fresh": case_keys_fresh,
}


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec.get("stub_fsync"):  # what-if: the same code without the disk's flush latency
        os.fsync = lambda fd: None
    clock = Clock(spec.get("profile"))
    extra = WORKER_CASES[spec["case"]](spec, clock)
    if clock.profiler is not None:
        write_profile(clock.profiler, Path(spec["profile"]), spec)
    result = {"samples": clock.samples, "cpu_samples": clock.cpu_samples, "extra": extra,
              "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              "vmhwm_kb": vm_status(os.getpid()).get("VmHWM", 0) * 1024}
    print(json.dumps(result))
    return 0


def write_profile(profiler: cProfile.Profile, path: Path, spec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    out.write(f"# cProfile of the timed calls only; case spec: {json.dumps(spec)}\n\n")
    for order in ("cumulative", "tottime"):
        out.write(f"## sorted by {order}\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(30)
    path.write_text(out.getvalue(), encoding="utf-8")


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its stderr (progress) goes to ours."""
    proc = subprocess.run([sys.executable, str(BENCH), "_worker",
                           json.dumps(spec)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['case']} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])



# =============================================================================================
# Fixtures
# =============================================================================================
class Workdir:
    """Generated stores, built once and reused: ``L-<label>/sessions.json`` (legacy) and
    ``D-<label>/sessions.d`` (directory, made by migrating a copy)."""

    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root = root
        self.sizes = sizes
        self._scratch = 0
        self.trash: list[Path] = []

    def discard(self, path: Path) -> None:
        """Remove ``path`` at the end of the run, not now: deleting 100k directories keeps
        this disk (ext4, mounted with ``discard``) busy for many seconds afterwards and slows
        every file creation in the meantime, which would leak into the next measurement."""
        self.trash.append(path)

    def empty_trash(self) -> None:
        if self.trash:
            say(f"removing {len(self.trash)} scratch stores ...")
        for path in self.trash:
            remove_tree(path)
        self.trash.clear()

    @property
    def big_label(self) -> str:
        return f"{count_label(self.sizes.big)}x{self.sizes.big_entry_bytes // 1000}KB"

    def spec_of(self, label: str) -> tuple[int, int, int]:
        """(count, seed, entry_bytes) of a fixture label."""
        if label == self.big_label:
            return self.sizes.big, SEED_BIG, self.sizes.big_entry_bytes
        for count in self.sizes.small:
            if count_label(count) == label:
                return count, SEED_SMALL + count, 0
        raise KeyError(label)

    def legacy(self, label: str) -> Path:
        folder = self.root / f"L-{label}"
        marker = folder / ".bench-complete"
        count, seed, entry_bytes = self.spec_of(label)
        wanted = json.dumps([count, seed, entry_bytes])
        if marker.exists() and marker.read_text() == wanted:
            return folder
        if folder.exists():
            remove_tree(folder)
        say(f"generating legacy store {label} ({count} sessions) ...")
        started = time.monotonic()
        result = run_worker({"case": "build_legacy", "folder": str(folder), "count": count,
                             "seed": seed, "entry_bytes": entry_bytes})
        say(f"  {label}: {result['extra']['bytes'] / MB:.1f} MB in "
            f"{time.monotonic() - started:.1f}s")
        marker.write_text(wanted)
        return folder

    def legacy_copy(self, label: str) -> Path:
        """A fresh copy of the legacy fixture (to migrate, or to write to without harm)."""
        source = self.legacy(label)
        self._scratch += 1
        folder = self.root / f"scratch-{label}-{os.getpid()}-{self._scratch}"
        if folder.exists():
            remove_tree(folder)
        folder.mkdir()
        shutil.copyfile(source / "sessions.json", folder / "sessions.json")
        return folder

    def directory_ready(self, label: str) -> Path | None:
        folder = self.root / f"D-{label}"
        return folder if (folder / ".bench-complete").exists() else None

    def adopt_directory(self, label: str, migrated: Path) -> Path:
        folder = self.root / f"D-{label}"
        if folder.exists():
            remove_tree(folder)
        os.rename(migrated, folder)
        (folder / ".bench-complete").write_text(label)
        return folder

    def directory(self, label: str) -> Path:
        """The directory fixture, migrating a copy of the legacy one if it is not built yet."""
        ready = self.directory_ready(label)
        if ready is not None:
            return ready
        copy = self.legacy_copy(label)
        count = self.spec_of(label)[0]
        say(f"building directory store {label} ({count} sessions) by migration ...")
        run_worker({"case": "migrate", "folder": str(copy), "label": label, "count": count})
        return self.adopt_directory(label, copy)

    def size_text(self, label: str) -> str:
        count = self.spec_of(label)[0]
        size = (self.legacy(label) / "sessions.json").stat().st_size
        return f"{count:,} ({size / MB:.0f} MB)" if size >= 10 * MB else f"{count:,}"


def open_workdir(args: argparse.Namespace, sizes: Sizes) -> tuple[Workdir, bool]:
    """The fixture folder and whether to delete it at the end."""
    if args.workdir:
        root = Path(args.workdir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        root = Path(tempfile.mkdtemp(prefix="sessionfs-bench-", dir="/var/tmp"))
        keep = args.keep
    if os.stat(root).st_dev != os.stat(REPO).st_dev:
        say(f"warning: {root} is not on the same filesystem as {REPO}")
    say(f"fixtures in {root}" + ("" if keep else " (removed at the end; --keep to keep)"))
    return Workdir(root, sizes), not keep


def remove_tree(path: Path) -> None:
    """``rm -rf``: shutil.rmtree of 100k directories would grow this process to ~100 MB, and
    Linux carries a parent's peak RSS into a child's ru_maxrss across fork + exec."""
    # --one-file-system: never descend into a mount (a FUSE mount left behind would otherwise
    # have its sessions deleted through it)
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False)




# =============================================================================================
# `store`
# =============================================================================================
class StoreBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.rows: list[Row] = []
        self.only = re.compile(args.only) if args.only else None
        self.specs: dict[int, dict[str, Any]] = {}  # id(row) -> worker spec, for --profile

    def wanted(self, name: str) -> bool:
        return self.only is None or bool(self.only.search(name))

    def add(self, row: Row, spec: dict[str, Any] | None = None) -> Row:
        row.finish()
        self.rows.append(row)
        if spec is not None:
            self.specs[id(row)] = spec
        stat = fmt_value(row.stats["median"], row.unit) if "median" in row.stats else "-"
        say(f"{row.name} [{row.sessions} {row.layout}]: median {stat} {row.status}")
        return row

    def measure(self, name: str, layout: str, label: str, case: str, folder: Path, reps: int,
                target: Target | None, note: str = "", **more: Any) -> Row | None:
        if not self.wanted(name):
            return None
        count = self.work.spec_of(label)[0]
        spec = {"case": case, "folder": str(folder), "reps": reps, "count": count,
                "seed": 42, "label": label, **more}
        result = run_worker(spec)
        spec["copy"] = layout == "legacy"  # a profile re-run needs a fresh legacy copy
        row = Row(name, self.work.size_text(label), layout, "s", result["samples"], target,
                  result["maxrss_kb"] / 1024, note, cpu_samples=result["cpu_samples"])
        return self.add(row, spec)

    def run(self) -> int:
        self.work, remove = open_workdir(self.args, self.sizes)
        started = time.monotonic()
        self.load_start = os.getloadavg()
        profiles: dict[str, str] = {}
        error: BaseException | None = None
        self.probes = [disk_probe(self.work.root)]
        say(f"disk: {probe_text(self.probes[0])}")
        try:
            self.run_cases()
            self.probes.append(disk_probe(self.work.root))
            failures = [row for row in self.rows if row.status == "FAIL"]
            if self.args.profile and failures:
                profiles = self.profile_failures(failures)
        except Exception as exc:  # report what we have, then fail
            error = exc
            say(f"error: {exc!r}")
        finally:
            self.work.empty_trash()
            if remove:
                say(f"removing {self.work.root} ...")
                remove_tree(self.work.root)
        code = self.report(time.monotonic() - started, profiles, error)
        return 2 if error is not None else code

    def run_cases(self) -> None:
        sizes = self.sizes
        big = self.work.big_label
        labels = [big] + [count_label(c) for c in sizes.small]
        for label in labels:
            self.work.legacy(label)
        self.migrations(labels)
        settle_disk()
        ms = 1e-3
        largest = count_label(sizes.small[-1])
        smallest = count_label(sizes.small[0])

        # -- directory layout ----------------------------------------------------------------
        dir_rows: dict[tuple[str, str], Row | None] = {}
        for label in labels:
            folder = self.work.directory(label)
            dir_rows["read", label] = self.measure(
                "read one entry", "directory", label, "dir_read", folder, sizes.reps_fast,
                Target(1 * ms))
            dir_rows["write", label] = self.measure(
                "write one entry", "directory", label, "dir_write", folder, sizes.reps_fast,
                Target(1 * ms))
        for label in (smallest, largest):
            self.measure("read one entry, file not in page cache", "directory", label,
                         "dir_read", self.work.directory(label), sizes.reps_fast, None,
                         note="posix_fadvise(DONTNEED) on the meta.json before each read: "
                         "the disk's part; the rows above are page-cache warm", cold=True)
        for label in (smallest, largest):
            self.measure("write one entry, fsync stubbed (what-if)", "directory", label,
                         "dir_write", self.work.directory(label), sizes.reps_fast, None,
                         note="os.fsync replaced by a no-op in the worker: the library's own "
                         "cost without the disk flush", stub_fsync=True)
        self.flatness(smallest, largest)
        for label in labels:
            target = Target(1.0) if label == largest else None
            self.measure("list keys (open_store+keys)", "directory", label, "keys_fresh",
                         self.work.directory(label), sizes.reps_keys, target)

        # -- legacy layout -------------------------------------------------------------------
        for label in labels:
            is_big = label == big
            folder = self.work.legacy_copy(label)  # writes go to a copy; the fixture stays
            heavy = is_big or label == largest
            self.measure("read one entry (open instance)", "legacy", label, "legacy_read_warm",
                         folder, sizes.reps_fast, None)
            self.measure("read one after external change", "legacy", label,
                         "legacy_read_after_change", folder,
                         2 * sizes.reps_heavy if heavy else sizes.reps_fast // 4,
                         Target(150 * ms) if is_big else None,
                         note="another instance put() one entry, then the open instance reads "
                         "another" if is_big else "")
            self.measure("write one entry (open instance)", "legacy", label,
                         "legacy_write_open", folder,
                         sizes.reps_heavy if heavy else sizes.reps_fast // 4,
                         Target(300 * ms) if is_big else None)
            self.measure("write one entry (open_store+put)", "legacy", label,
                         "legacy_write_fresh", folder,
                         sizes.reps_heavy if heavy else sizes.reps_fast // 4,
                         Target(300 * ms) if is_big else None,
                         note="fresh instance per write, as the CLI does: reads the file "
                         "inside the timed call" if is_big else "")
            target = Target(1.0) if label == largest else None
            self.measure("list keys (open_store+keys)", "legacy", label, "keys_fresh", folder,
                         sizes.reps_keys, target)
            self.work.discard(folder)

    def flatness(self, smallest: str, largest: str) -> None:
        """Medians at the largest / smallest store, measured interleaved (op by op in turn)."""
        folders = [str(self.work.directory(label)) for label in (smallest, largest)]
        for op in ("read", "write"):
            name = f"{op} one entry: flatness {largest}/{smallest}"
            if not self.wanted(name):
                continue
            result = run_worker({"case": "dir_interleaved", "folders": folders, "op": op,
                                 "reps": self.sizes.reps_fast, "seed": 43})
            low, high = (statistics.median(s) for s in result["extra"]["per_store"])
            self.add(Row(name, f"{largest} vs {smallest}", "directory", "x", [high / low],
                         Target(1.5, "value", "<= 1.50x"), result["maxrss_kb"] / 1024,
                         note=f"interleaved op by op, {self.sizes.reps_fast} each: median "
                         f"{fmt_value(high, 's')} at {largest}, {fmt_value(low, 's')} at "
                         f"{smallest}"))

    def migrations(self, labels: list[str]) -> None:
        """Migrate copies of each legacy fixture; the first becomes the directory fixture."""
        sizes = self.sizes
        big = self.work.big_label
        largest = count_label(sizes.small[-1])
        targets = {big: Target(3.0), largest: Target(60.0)}
        for label in labels:
            reps = sizes.reps_migrate_big if label == big else sizes.reps_migrate_small
            if not self.wanted("migrate"):
                self.work.directory(label)
                continue
            samples: list[float] = []
            cpu_samples: list[float] = []
            rss = 0.0
            spec: dict[str, Any] = {}
            for rep in range(reps):
                copy = self.work.legacy_copy(label)
                count = self.work.spec_of(label)[0]
                say(f"migrating {label} ({count} sessions), run {rep + 1}/{reps} ...")
                spec = {"case": "migrate", "folder": str(copy), "label": label, "count": count}
                result = run_worker(spec)
                samples += result["samples"]
                cpu_samples += result["cpu_samples"]
                rss = max(rss, result["maxrss_kb"] / 1024)
                if self.work.directory_ready(label) is None:
                    self.work.adopt_directory(label, copy)
                else:
                    self.work.discard(copy)
            spec = dict(spec, copy=True)  # a profile re-run needs a fresh copy
            self.add(Row("migrate legacy -> directory", self.work.size_text(label),
                         "legacy->dir", "s", samples, targets.get(label), rss,
                         note="includes staging, read-back verification and syncfs"
                         if label == big else "", cpu_samples=cpu_samples), spec)

    def report(self, elapsed: float, profiles: dict[str, str], error: BaseException | None
               ) -> int:
        rows = self.rows
        print()
        print(f"sessionfs store benchmark ({'quick' if self.args.quick else 'full'}, "
              f"{os.cpu_count()} CPUs, {elapsed:.0f}s)")
        print("disk before: " + probe_text(self.probes[0]) + "; after: "
              + probe_text(self.probes[-1]))
        print(load_text(self.load_start))
        print(render_table(rows))
        failures = print_verdict(rows, error)
        for name, path in profiles.items():
            print(f"profile of {name}: {path}")
        path = Path(self.args.json) if self.args.json else RESULTS / "store.json"
        write_json(path, "store", self.args.quick, rows,
                   {"seconds": round(elapsed, 1), "sizes": asdict(self.sizes),
                    "error": repr(error) if error else None,
                    "disk_probes": self.probes, "loadavg_at_start": self.load_start,
                    "profiles": profiles})
        print(f"results: {path}")
        return 1 if failures and not self.args.quick else 0

    def profile_failures(self, failures: list[Row]) -> dict[str, str]:
        """Re-run each failing case under cProfile; only the timed calls are profiled."""
        profiles: dict[str, str] = {}
        for row in failures:
            spec = self.specs.get(id(row))
            if spec is None:
                continue  # ratio rows: see the rows they compare
            slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{row.name}-{row.layout}-{spec['label']}")
            path = RESULTS / "profiles" / f"{slug.strip('-')}.txt"
            spec = dict(spec, profile=str(path), reps=min(spec.get("reps", 1), 50))
            scratch = None
            if spec.pop("copy", False):
                scratch = self.work.legacy_copy(spec["label"])
                spec["folder"] = str(scratch)
            say(f"profiling {row.name} [{spec['label']} {row.layout}] -> {path}")
            try:
                run_worker(spec)
            finally:
                if scratch is not None:
                    self.work.discard(scratch)
            profiles[f"{row.name} [{row.sessions} {row.layout}]"] = str(path)
        return profiles


