#!/usr/bin/env python3
"""sessionfs benchmarks against the issue's targets: the store API, and the FUSE mount.

    .venv/bin/python scripts/bench.py store [--quick] [--json PATH] [--profile] [--workdir DIR]
    .venv/bin/python scripts/bench.py mount [--quick] [--json PATH] [--profile] [--workdir DIR]
                                            [--mount-args='--timeout 60']
    .venv/bin/python scripts/bench.py sqlite [--quick] [--json PATH] [--workdir DIR]
    .venv/bin/python scripts/bench.py state [--quick] [--json PATH] [--sessions N]
    .venv/bin/python scripts/bench.py gateway [--n 50] [--state STATE] [--json PATH]

Each subcommand lives in its own module beside this entry point: ``bench_store.py``,
``bench_mount.py``, ``bench_sqlite.py``, ``bench_state.py``, over ``bench_common.py`` (sizes,
rows, tables, JSON). Every mount goes through the tests' harness, ``tests/mountharness.py``.

Both print one table row per measurement (name, sessions, layout, n, median, p90 or min/max,
target, PASS/FAIL/info, peak RSS, CPU median) and write the rows, with every sample, as JSON
(default ``bench-results/store.json`` / ``bench-results/mount.json``). Exit status: 0 all
targets met, 1 a target failed (full runs only: ``--quick`` sizes do not judge the targets, so
a smoke test exits 0 unless something broke), 2 the run itself failed. ``--only REGEX`` runs
the measurements whose name matches.

Method:

* Stores are generated with :mod:`sessionfs.demo` (realistic keys and entries): the seed's store
  (650 sessions of about 123 KB, 78 MiB) and 1k / 10k / 100k small sessions. They are built once
  per run in a temporary folder under /var/tmp (the disk /work is on, not tmpfs) and reused by
  every case; ``--workdir DIR`` keeps and reuses them across runs. Directory stores are made by
  ``sessionfs.migrate.migrate`` of a copy of the legacy file, which is also the migration case.
  Scratch copies are deleted only at the end (deleting 100k directories slows this disk).
* Every store case runs in a fresh ``python`` subprocess, so its peak RSS
  (``getrusage(RUSAGE_SELF).ru_maxrss``, interpreter included) is its own. Linux carries a
  parent's peak into a child's ru_maxrss across fork + exec, so this process stays small (no
  rmtree of big trees here); the JSON also has each worker's VmHWM as a cross-check.
* ms-level cases time each operation separately with ``perf_counter_ns`` over many random keys
  (distinct keys where the store has enough); heavy cases repeat a few times. Only the operation
  is timed: choosing keys and preparing the entry to write are not. "CPU median" is the
  measuring process's own CPU time per operation: far below the wall time means waiting (fsync,
  the disk, or the CPU taken by other work on this shared 2-CPU machine).
* Comparisons whose two sides must see the same conditions are interleaved op by op or pass by
  pass (flatness 1k vs 100k, mount vs direct): the machine is shared and its fsync latency and
  load drift within a minute. ``disk_probe`` records the fsync latency before and after.
* Page cache: this VM's kernel pages out file pages idle for about 60 s (DAMON reclaim), so
  reads are made warm deliberately (the files are touched just before) or cold deliberately
  (``posix_fadvise(DONTNEED)``, the "not in page cache" rows), never left to chance.
* ``--profile`` (store) re-runs every failing case under cProfile (only the timed operations)
  into ``bench-results/profiles/<case>.txt``. ``--profile`` (mount) runs the daemon under a
  wrapper of mfusepy's callback entry point: FUSE requests per file and Python time per request
  for read-all, grep and cat (printed), and cProfile of the callbacks into
  ``bench-results/profiles/mount-*.pstats.txt``.
* Mount cases run ``python -m sessionfs mount STORE MOUNTPOINT -f`` as a subprocess (its pid is
  the daemon's), read through the mount from this process with Python ``open``/``read``/
  ``close`` (and, where named, real ``cat``/``ls -l``/``grep -rl`` subprocesses), and always
  unmount in ``finally``. A do-nothing mfusepy filesystem of the same shape (``_floorfs``) gives
  the floor any mfusepy filesystem pays on this machine, multi- and single-threaded.
"""

from __future__ import annotations

import argparse
import sys

import bench_gateway
import bench_state
from bench_mount import MountBench, daemon_main, floorfs_main
from bench_sqlite import SqliteBench, floorfile_main
from bench_store import StoreBench, worker_main


# =============================================================================================
# CLI
# =============================================================================================
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{store,mount,sqlite,state,gateway}")
    for name, help_text in (("store", "the store API in both layouts, and migration"),
                            ("mount", "the FUSE mount against direct file access"),
                            ("sqlite", "the SQLite generation and transcripts through the mount")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--quick", action="store_true",
                         help="small sizes and few repetitions (a smoke test, < 30 s for store)")
        sub.add_argument("--json", metavar="PATH",
                         help=f"where to write the results (default bench-results/{name}.json)")
        sub.add_argument("--workdir", metavar="DIR",
                         help="build the stores here and keep them for the next run")
        sub.add_argument("--keep", action="store_true", help="keep the temporary stores")
        sub.add_argument("--only", metavar="REGEX", help="only measurements whose name matches")
        if name == "store":
            sub.add_argument("--profile", action="store_true",
                             help="cProfile each failing case into bench-results/profiles/")
        elif name == "sqlite":
            pass
        else:
            sub.add_argument("--mount-args", metavar="ARGS", default="",
                             help="extra arguments for 'sessionfs mount', e.g. "
                             "--mount-args='--timeout 60 -o max_threads=1'")
            sub.add_argument("--profile", action="store_true",
                             help="also profile the daemon during read-all and grep "
                             "(request counts per file; cProfile into bench-results/profiles/)")
    state = commands.add_parser("state", add_help=False,
                                help="the state mount against the same files on disk "
                                "(options: bench.py state --help)")
    state.add_argument("rest", nargs=argparse.REMAINDER)
    gateway = commands.add_parser("gateway", add_help=False,
                                  help="a save through the mount against a bare sessions.patch "
                                  "(real openclaw Gateway; options: bench.py gateway --help)")
    gateway.add_argument("rest", nargs=argparse.REMAINDER)
    worker = commands.add_parser("_worker", help=argparse.SUPPRESS)
    worker.add_argument("spec")
    floorfs = commands.add_parser("_floorfs", help=argparse.SUPPRESS)
    floorfs.add_argument("count", type=int)
    floorfs.add_argument("mountpoint")
    floorfs.add_argument("--single", action="store_true")
    floorfile = commands.add_parser("_floorfile", help=argparse.SUPPRESS)
    floorfile.add_argument("source")
    floorfile.add_argument("mountpoint")
    daemon = commands.add_parser("_daemon", help=argparse.SUPPRESS)
    daemon.add_argument("mode", choices=["count", "cprofile"])
    daemon.add_argument("folder")
    daemon.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["state"]:  # its own options (scripts/bench_state.py parses them)
        return bench_state.main(argv[1:])
    if argv[:1] == ["gateway"]:  # its own options (scripts/bench_gateway.py parses them)
        return bench_gateway.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "_worker":
        return worker_main(args.spec)
    if args.command == "_floorfs":
        return floorfs_main(args.count, args.mountpoint, args.single)
    if args.command == "_floorfile":
        return floorfile_main(args.source, args.mountpoint)
    if args.command == "_daemon":
        return daemon_main(args.mode, args.folder, args.rest)
    if args.command == "store":
        return StoreBench(args).run()
    if args.command == "sqlite":
        return SqliteBench(args).run()
    return MountBench(args).run()


if __name__ == "__main__":
    sys.exit(main())
