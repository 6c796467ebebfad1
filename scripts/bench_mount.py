"""``bench.py mount``: the FUSE mount against direct file access and a do-nothing mfusepy
filesystem (the floor), with an optional profiler inside the daemon."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_common import (
    BENCH,
    FULL,
    META,
    QUICK,
    RESULTS,
    HarnessMount,
    Row,
    RowCollector,
    Target,
    count_label,
    disk_probe,
    fmt_value,
    is_mounted,
    key_of,
    load_text,
    median_round_trip,
    print_verdict,
    probe_text,
    read_all,
    read_file,
    render_table,
    run_quiet,
    say,
    session_names,
    settle_disk,
    timed,
    vm_status,
    write_json,
)
from bench_store import bumped, drop_page_cache, open_workdir, pick, remove_tree


# =============================================================================================
# `mount`
# =============================================================================================
def floorfs_main(count: int, mountpoint: str, single: bool) -> int:
    """A do-nothing filesystem shaped like the mount: ``/<name>/meta.json`` for ``count``
    names, every file the same ~600 bytes from memory; sessionfs's FUSE options."""
    import errno
    import stat

    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    names = [f"agent--main--floor--{number:06d}" for number in range(count)]
    known = set(names)
    data = b'{\n  "sessionId": "floor",\n  "pad": "' + b"x" * 560 + b'"\n}'
    now = time.time_ns()

    class Floor(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o700, "st_nlink": 2, "st_mtime": now}
            parts = path[1:].split("/")
            if parts[0] in known and len(parts) == 1:
                return {"st_mode": stat.S_IFDIR | 0o700, "st_nlink": 2, "st_mtime": now}
            if parts[0] in known and parts[1:] == ["meta.json"]:
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": len(data),
                        "st_mtime": now}
            raise mfusepy.FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *(names if path == "/" else ["meta.json"])]

        def open(self, path: str, flags: int) -> int:
            return 0

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return data[offset:offset + size]

    from sessionfs.fs.fuse_glue import PinnedFUSE  # ctypes' thread states fixed, as sessionfs

    PinnedFUSE(Floor(), mountpoint, foreground=True, nothreads=single, entry_timeout=1.0,
               attr_timeout=1.0, negative_timeout=0, default_permissions=True)
    return 0


class DaemonProfiler:
    """Runs inside the mount daemon (``bench.py _daemon MODE DIR mount ...``).

    Wraps mfusepy's ``FUSE._wrapper``, through which libfuse enters Python for every request,
    to count requests and time the Python side of each (mode ``count``), or to cProfile them
    too (mode ``cprofile``; one profiler per OS thread). A Python thread polls DIR for phase
    requests from the benchmark and answers each with the counters since the last one.
    """

    def __init__(self, mode: str, folder: Path) -> None:

        self.mode = mode
        self.folder = folder
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, list[int]] = {}  # op -> [count, ns]
        self.profilers: dict[int, cProfile.Profile] = {}
        self.since = time.perf_counter_ns()

    def install(self) -> None:

        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
        import mfusepy

        original = mfusepy.FUSE._wrapper
        profiler = self

        def wrapper(fuse: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
            prof = None
            if profiler.mode == "cprofile":
                ident = threading.get_ident()
                with profiler.lock:
                    prof = profiler.profilers.get(ident)
                    if prof is None:
                        prof = profiler.profilers[ident] = cProfile.Profile()
                prof.enable()
            start = time.perf_counter_ns()
            try:
                return original(fuse, func, *args, **kwargs)
            finally:
                elapsed = time.perf_counter_ns() - start
                if prof is not None:
                    prof.disable()
                name = getattr(func, "__name__", "?").removesuffix("_fuse_3")
                with profiler.lock:
                    entry = profiler.calls.setdefault(name, [0, 0])
                    entry[0] += 1
                    entry[1] += elapsed

        mfusepy.FUSE._wrapper = wrapper
        threading.Thread(target=self.serve_requests, daemon=True).start()

    def serve_requests(self) -> None:
        while True:
            for request in sorted(self.folder.glob("*.request")):
                phase = request.stem
                with self.lock:
                    calls, profilers = self.calls, list(self.profilers.values())
                    wall = (time.perf_counter_ns() - self.since) / 1e9
                    self.reset()
                result = {"phase": phase, "wall_s": wall,
                          "calls": {k: {"count": v[0], "python_s": v[1] / 1e9}
                                    for k, v in sorted(calls.items())}}
                if profilers:
                    out = io.StringIO()
                    stats = pstats.Stats(profilers[0], stream=out)
                    for extra in profilers[1:]:
                        stats.add(extra)
                    stats.strip_dirs().sort_stats("tottime").print_stats(35)
                    stats.sort_stats("cumulative").print_stats(35)
                    (self.folder / f"{phase}.pstats.txt").write_text(out.getvalue())
                tmp = self.folder / f"{phase}.json.tmp"
                tmp.write_text(json.dumps(result))
                os.replace(tmp, self.folder / f"{phase}.json")
                request.unlink()
            time.sleep(0.02)

    @staticmethod
    def request(folder: Path, phase: str, timeout: float = 30) -> dict[str, Any]:
        answer = folder / f"{phase}.json"
        answer.unlink(missing_ok=True)
        (folder / f"{phase}.request").write_text("")
        deadline = time.monotonic() + timeout
        while not answer.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the profiled daemon did not answer phase {phase}")
            time.sleep(0.01)
        return json.loads(answer.read_text())


def daemon_main(mode: str, folder: str, argv: list[str]) -> int:
    DaemonProfiler(mode, Path(folder)).install()
    from sessionfs.cli import main as sessionfs_main

    return sessionfs_main(argv)


class Mount(HarnessMount):
    """The tests' mount harness (``tests/mountharness.py``) with what the bench adds: a
    profiled daemon, a replacement command (the floor filesystem), extra ``mount`` arguments
    and a check that the pid measured is the daemon's own."""

    start_timeout = 300.0  # a 100k-session store takes a while to open
    new_session = True

    def __init__(self, store: Path, mountpoint: Path, log: Path,
                 profile: tuple[str, Path] | None = None,
                 command: list[str] | None = None) -> None:
        super().__init__(store, mountpoint, log_path=log)
        self._command = command
        #: (mode, folder): run the daemon under DaemonProfiler ("count" or "cprofile")
        self.profile = profile
        self.extra_args: list[str] = []

    @property
    def mountpoint(self) -> Path:
        return self.mp

    def command(self) -> list[str]:
        if self._command is not None:
            return self._command
        args = ["mount", str(self.store_folder), str(self.mp), "-f", *self.extra_args]
        if self.profile is None:
            return [sys.executable, "-m", "sessionfs", *args]
        mode, folder = self.profile
        return [sys.executable, str(BENCH), "_daemon", mode, str(folder), *args]

    def phase(self, name: str) -> dict[str, Any]:
        """Profiled daemon only: snapshot and reset its counters, labelled ``name``."""
        assert self.profile is not None
        return DaemonProfiler.request(self.profile[1], name)

    def start(self, timeout: float | None = None) -> Mount:
        if is_mounted(self.mp):
            raise RuntimeError(f"{self.mp} is already mounted")
        super().start(timeout)
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1]
            if cmdline != [os.fsencode(arg) for arg in self.command()]:
                raise RuntimeError(f"pid {self.pid} is not the daemon: {cmdline!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> Mount:
        return self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class MountBench(RowCollector):
    GREP_PATTERN = "gemini-3-pro"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.sizes = QUICK if args.quick else FULL
        self.rss: dict[str, dict[str, float]] = {}
        self.daemon_profiles: dict[str, dict[str, Any]] = {}

    def mount(self, store: Path, tag: str, profile: tuple[str, Path] | None = None) -> Mount:
        mountpoint = self.mount_root / f"mnt-{tag}"
        say(f"mounting {store} at {mountpoint} ...")
        mount = Mount(store, mountpoint, RESULTS / f"daemon-{tag}.log", profile)
        mount.extra_args = self.args.mount_args.split() if self.args.mount_args else []
        return mount

    def daemon_rss(self, mount: Mount) -> float:
        return vm_status(mount.pid).get("VmHWM", float("nan"))

    def run(self) -> int:
        self.work, remove = open_workdir(self.args, self.sizes)
        RESULTS.mkdir(parents=True, exist_ok=True)
        for old_log in RESULTS.glob("daemon-*.log"):
            old_log.unlink()
        self.mount_root = Path(tempfile.mkdtemp(prefix="mnt-", dir=self.work.root))
        started = time.monotonic()
        error: BaseException | None = None
        self.load_start = os.getloadavg()
        self.probes = [disk_probe(self.work.root)]
        say(f"disk: {probe_text(self.probes[0])}")
        try:
            self.run_cases()
        except Exception as exc:  # report what we have, then fail
            error = exc
            say(f"error: {exc!r}")
        finally:
            self.probes.append(disk_probe(self.work.root))
            for leftover in self.mount_root.iterdir():
                if is_mounted(leftover):
                    subprocess.run(["fusermount3", "-u", "-z", str(leftover)], check=False)
                with contextlib.suppress(OSError):
                    leftover.rmdir()  # empty mountpoints only; never rm -r a mountpoint
            with contextlib.suppress(OSError):
                self.mount_root.rmdir()
            self.work.empty_trash()
            if remove:
                say(f"removing {self.work.root} ...")
                remove_tree(self.work.root)
        elapsed = time.monotonic() - started
        code = self.report(elapsed, error)
        return 2 if error is not None else code

    def run_cases(self) -> None:
        sizes = self.sizes
        small, largest = sizes.small[0], sizes.small[-1]
        mid = sizes.mount_readall
        # build only the stores this run measures (--only 'vs floor' needs the mid one only)
        wide = any(self.wanted(name) for name in ("cat", "ls", "rss"))
        for count in dict.fromkeys((mid, *((small, largest) if wide else ()))):
            self.work.directory(count_label(count))
        if self.wanted("write") or self.wanted("legacy"):
            self.work.legacy(self.work.big_label)
        settle_disk()
        if self.wanted("vs floor"):
            self.versus_floor(count_label(mid))
        if self.wanted("read every") or self.wanted("grep") or self.wanted("write"):
            self.readall_grep_write(count_label(mid))
        if self.wanted("do-nothing"):
            self.floor(count_label(mid))
        if wide:
            self.cat_ls_rss(count_label(small), count_label(largest))
        if self.wanted("write"):
            self.legacy_write()
        if self.args.profile:
            self.profile_daemon(count_label(mid), count_label(largest))

    # -- where the daemon's time goes (--profile) --------------------------------------------
    def profile_daemon(self, label: str, large: str) -> None:
        """Under a counting daemon, then under cProfile: read-all (first, warm), grep and cats
        at ``label``; the first and a second ``ls -l`` at ``large``."""
        grep = ["grep", "-rl", self.GREP_PATTERN]
        names = session_names(self.work.directory(label) / "sessions.d")
        for mode in ("count", "cprofile"):
            phases: dict[str, Any] = {}
            self.profile_phases(label, mode, phases, lambda root: [
                ("read-all-first", lambda: read_all(root), self.work.spec_of(label)[0]),
                ("read-all-warm", lambda: read_all(root), self.work.spec_of(label)[0]),
                ("grep", lambda: run_quiet([*grep, str(root)], ok=(0, 1)),
                 self.work.spec_of(label)[0]),
                ("cat-200", lambda: [read_file(os.path.join(root, name, META))
                                     for name in random.Random(5).sample(names, 200)], 200)])
            self.profile_phases(large, mode, phases, lambda root: [
                (f"ls-l-first-{large}", lambda: run_quiet(["ls", "-l", str(root)]),
                 self.work.spec_of(large)[0]),
                (f"ls-l-second-{large}", lambda: run_quiet(["ls", "-l", str(root)]),
                 self.work.spec_of(large)[0])])
            self.daemon_profiles[mode] = phases
        for phase, result in self.daemon_profiles["count"].items():
            files = result["files"]
            python = sum(c["python_s"] for c in result["calls"].values())
            requests = sum(c["count"] for c in result["calls"].values())
            say(f"daemon during {phase}: client {result['client_s']:.2f}s, {requests / files:.1f} "
                f"requests/file, Python in callbacks {python:.2f}s "
                f"({python / files * 1e6:.0f} us/file)")

    def profile_phases(self, label: str, mode: str, phases: dict[str, Any],
                       steps: Callable[[Path], list[tuple[str, Callable[[], Any], int]]]
                       ) -> None:
        out = RESULTS / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        spool = Path(tempfile.mkdtemp(prefix=f"daemon-{mode}-", dir=self.work.root))
        try:
            with self.mount(self.work.directory(label), f"profile-{mode}-{label}",
                            (mode, spool)) as mount:
                mount.phase("startup")
                for phase, action, files in steps(mount.mountpoint):
                    client, _ = timed(action)
                    time.sleep(0.3)  # let asynchronous RELEASE/FORGET requests arrive
                    result = mount.phase(phase)
                    result.update(client_s=client, files=files)
                    phases[phase] = result
                    pstats_file = spool / f"{phase}.pstats.txt"
                    if pstats_file.exists():
                        shutil.copyfile(pstats_file, out / f"mount-{label}-{phase}.pstats.txt")
        finally:
            remove_tree(spool)

    def profile_text(self) -> str:
        lines = []
        for phase, result in self.daemon_profiles.get("count", {}).items():
            files = result["files"]
            python = sum(c["python_s"] for c in result["calls"].values())
            requests = sum(c["count"] for c in result["calls"].values())
            lines.append(f"daemon profile, {phase} ({files} files): client wall "
                         f"{result['client_s']:.2f}s = {result['client_s'] / files * 1e6:.0f} "
                         f"us/file; {requests / files:.2f} requests/file; Python inside "
                         f"callbacks {python / files * 1e6:.0f} us/file")
            for op, call in sorted(result["calls"].items(), key=lambda kv: -kv[1]["python_s"]):
                lines.append(f"    {op:12} {call['count'] / files:6.2f}/file  "
                             f"{call['python_s'] / max(call['count'], 1) * 1e6:7.1f} us/call")
        return "\n".join(lines)

    # -- read all, grep, writes (10k) --------------------------------------------------------
    def readall_grep_write(self, label: str) -> None:
        """Read-all and grep through the mount against sessions.d, pass by pass in turn (the
        machine is shared: interleaving gives both sides the same background load)."""
        folder = self.work.directory(label)
        direct = folder / "sessions.d"
        sessions = self.work.size_text(label)
        count = self.work.spec_of(label)[0]
        grep = ["grep", "-rl", self.GREP_PATTERN]

        def read_checked(root: Path) -> float:
            seconds, (found, _) = timed(lambda: read_all(root))
            if found != count:
                raise RuntimeError(f"read {found} sessions in {root}, expected {count}")
            return seconds

        def grep_checked(root: Path) -> tuple[float, int]:
            seconds, proc = timed(lambda: run_quiet([*grep, str(root)], ok=(0, 1)))
            return seconds, len(proc.stdout.splitlines())

        read_checked(direct)  # warm the page cache; not counted
        expected_matches = grep_checked(direct)[1]
        direct_samples: list[float] = []
        grep_direct: list[float] = []
        with self.mount(folder, f"dir-{label}") as mount:
            root = mount.mountpoint
            first_seconds = read_checked(root)
            warm_samples = []
            for _ in range(3):
                direct_samples.append(read_checked(direct))
                warm_samples.append(read_checked(root))
            warm_rss = self.daemon_rss(mount)
            grep_mount = []
            for _ in range(3):
                grep_direct.append(grep_checked(direct)[0])
                seconds, matches = grep_checked(root)
                if matches != expected_matches:
                    raise RuntimeError(f"grep found {matches} files through the mount, "
                                       f"{expected_matches} directly")
                grep_mount.append(seconds)
            grep_rss = self.daemon_rss(mount)
            direct_row = self.add(Row(
                "read every meta.json: direct sessions.d", sessions, "directory", "s",
                direct_samples, note="python open/read/close of each file, warm page cache"))
            first = self.add(Row(
                "read every meta.json: mount, first pass", sessions, "directory", "s",
                [first_seconds], note=f"fresh mount (startup {mount.startup:.2f}s not included)"))
            warm = self.add(Row(
                "read every meta.json: mount, warm", sessions, "directory", "s", warm_samples,
                peak_rss_mb=warm_rss, note="passes 2-4, each right after a direct pass; the "
                "kernel caches names and attributes for --timeout (1 s)"))
            base = direct_row.stats["median"]
            self.add(Row("read every meta.json: first pass / direct", sessions, "directory",
                         "x", [first.stats["median"] / base], Target(10, "value", "<= 10x")))
            self.add(Row("read every meta.json: warm / direct", sessions, "directory", "x",
                         [warm.stats["median"] / base], Target(3, "value", "<= 3x")))
            grep_direct_row = self.add(Row("grep -rl: direct sessions.d", sessions,
                                           "directory", "s", grep_direct))
            grep_row = self.add(Row("grep -rl: mount", sessions, "directory", "s", grep_mount,
                                    peak_rss_mb=grep_rss))
            self.add(Row("grep -rl: mount / direct", sessions, "directory", "x",
                         [grep_row.stats["median"] / grep_direct_row.stats["median"]],
                         Target(5, "value", "<= 5x")))
            self.request_floor(root, direct, sessions, count, base,
                               grep_direct_row.stats["median"])

            if self.wanted("write"):
                samples = self.write_through(root, self.sizes.mount_writes,
                                             verify=lambda name, data: (
                                                 direct / name / "meta.json").read_bytes() == data)
                self.add(Row("write one meta.json through the mount", sessions, "directory",
                             "s", samples, Target(5e-3), self.daemon_rss(mount),
                             note="open(O_WRONLY|O_TRUNC) + write + close of the whole entry; "
                             "close commits (validate + store.put with fsync)"))

    # -- the floor: what one request to the daemon costs, and how many no design avoids -----
    def request_floor(self, root: Path, direct: Path, sessions: str, count: int,
                      read_direct: float, grep_direct: float) -> None:
        """The lowest ratio any FUSE filesystem with these semantics could reach here.

        One round trip is timed with ``ioctl(TCGETS)`` on an open ``meta.json``: the kernel
        forwards every ioctl and libfuse answers this one (ENOTTY) in C without calling Python,
        so the time is the kernel's and libfuse's share of any request and nothing else. Each
        ratio then assumes only the requests no design can skip (every name, attribute and page
        already in the kernel's caches): for a warm read, the ioctl Python's ``open`` sends
        (``isatty``) and the OPEN (each open gets its own snapshot or write buffer, and must
        see a change within --timeout, so the kernel cannot answer it); for a first read also
        the LOOKUP of ``meta.json`` (session folders come with the listing) and one READ; for
        ``grep -r`` the OPENDIR of each session folder and the OPEN of its file.
        """
        name = next(iter(session_names(direct)))
        through = median_round_trip(os.path.join(root, name, META))
        locally = median_round_trip(str(direct / name / META))
        self.add(Row("one request to the daemon (ioctl answered by libfuse in C)", sessions,
                     "floor", "s", [through], note=f"the same ioctl on sessions.d: "
                     f"{fmt_value(locally, 's')}; lowest median of 10 batches of 400"))
        per_read, per_grep = read_direct / count, grep_direct / count
        for label, requests, per_file, target in (
                ("read every meta.json: warm / direct", 2, per_read, 3),
                ("read every meta.json: first pass / direct", 4, per_read, 10),
                ("grep -rl: mount / direct", 2, per_grep, 5)):
            self.add(Row(f"{label}, lowest possible", sessions, "floor", "x",
                         [(per_file + requests * through) / per_file],
                         note=f"{fmt_value(per_file, 's')} per file directly + {requests} "
                         f"round trips; target {target}x"))

    # -- sessionfs against the floor, round by round ----------------------------------------
    FLOOR_ROUNDS = 4
    FLOOR_TARGET = 1.25

    def versus_floor(self, label: str) -> None:
        """First pass, warm pass and ``grep -rl`` through sessionfs and through the do-nothing
        filesystem (multi-threaded, as sessionfs runs), each freshly mounted, alternating over
        ``FLOOR_ROUNDS`` rounds (which one goes first alternates too); each side's best of
        every measurement is compared. The machine is shared: load that comes and goes hits
        both sides alike, and the best of several rounds is the least disturbed one."""
        count = self.work.spec_of(label)[0]
        folder = self.work.directory(label)
        sessions = self.work.size_text(label)
        grep = ["grep", "-rl", self.GREP_PATTERN]
        read_all(folder / "sessions.d")  # the page cache warm for both sides
        samples: dict[str, dict[str, list[float]]] = {
            side: {"first": [], "warm": [], "grep": []} for side in ("sessionfs", "floor")}

        def measure(side: str, mount: Mount) -> None:
            root = mount.mountpoint
            seconds, (found, _) = timed(lambda: read_all(root))
            if found != count:
                raise RuntimeError(f"read {found} sessions through {side}, expected {count}")
            samples[side]["first"].append(seconds)
            for _ in range(3):
                samples[side]["warm"].append(timed(lambda: read_all(root))[0])
            for _ in range(3):
                samples[side]["grep"].append(
                    timed(lambda: run_quiet([*grep, str(root)], ok=(0, 1)))[0])

        def floor_mount() -> Mount:
            mountpoint = self.mount_root / "mnt-vs-floor"
            command = [sys.executable, str(BENCH), "_floorfs", str(count), str(mountpoint)]
            return Mount(folder / "sessions.d", mountpoint, RESULTS / "daemon-vs-floor.log",
                         command=command)

        for round_number in range(self.FLOOR_ROUNDS):
            order = ("sessionfs", "floor") if round_number % 2 == 0 else ("floor", "sessionfs")
            for side in order:
                mount = (self.mount(folder, f"vs-floor-{label}") if side == "sessionfs"
                         else floor_mount())
                with mount:
                    measure(side, mount)
            say(f"round {round_number + 1}: " + ", ".join(
                f"{what} {min(samples['sessionfs'][what]) / min(samples['floor'][what]):.2f}x"
                for what in ("first", "warm", "grep")))
        for what, title in (("first", "read every meta.json, first pass"),
                            ("warm", "read every meta.json, warm"), ("grep", "grep -rl")):
            mine, floor = samples["sessionfs"][what], samples["floor"][what]
            self.add(Row(f"vs floor: {title}: sessionfs, best", sessions, "directory", "s",
                         [min(mine)], note=f"best of {len(mine)}; all: "
                         + " ".join(fmt_value(v, "s") for v in mine)))
            self.add(Row(f"vs floor: {title}: do-nothing FS, best", sessions, "floor", "s",
                         [min(floor)], note=f"best of {len(floor)}; all: "
                         + " ".join(fmt_value(v, "s") for v in floor)))
            self.add(Row(f"vs floor: {title}: sessionfs / do-nothing FS", sessions,
                         "directory", "x", [min(mine) / min(floor)],
                         Target(self.FLOOR_TARGET, "value", f"<= {self.FLOOR_TARGET:.2f}x"),
                         note=f"{self.FLOOR_ROUNDS} rounds, the two mounted in turn"))

    # -- the floor: a do-nothing mfusepy filesystem of the same shape ------------------------
    def floor(self, label: str) -> None:
        """What any mfusepy filesystem costs here: same tree, entries served from memory."""
        count = self.work.spec_of(label)[0]
        direct = self.work.directory(label) / "sessions.d"
        for threads in ("multi-threaded", "single-threaded"):
            mountpoint = self.mount_root / f"mnt-floor-{threads}"
            say(f"mounting the do-nothing filesystem ({threads}) at {mountpoint} ...")
            command = [sys.executable, str(BENCH), "_floorfs", str(count),
                       str(mountpoint), *(["--single"] if threads == "single-threaded" else [])]
            with Mount(direct, mountpoint, RESULTS / f"daemon-floor-{threads}.log",
                       command=command):
                first = timed(lambda root=mountpoint: read_all(root))[0]
                warm, base, grep, grep_base = [], [], [], []
                for _ in range(3):
                    base.append(timed(lambda: read_all(direct))[0])
                    warm.append(timed(lambda root=mountpoint: read_all(root))[0])
                for _ in range(3):
                    for samples, where in ((grep_base, direct), (grep, mountpoint)):
                        command = ["grep", "-rl", self.GREP_PATTERN, str(where)]
                        samples.append(timed(lambda c=command: run_quiet(c, ok=(0, 1)))[0])
            ratio = statistics.median(warm) / statistics.median(base)
            self.add(Row(f"grep -rl: do-nothing mfusepy FS ({threads})",
                         self.work.size_text(label), "floor", "s", grep,
                         note=f"{statistics.median(grep) / statistics.median(grep_base):.1f}x "
                         f"direct (interleaved direct median "
                         f"{fmt_value(statistics.median(grep_base), 's')})"))
            self.add(Row(f"read all: do-nothing mfusepy FS ({threads}), first pass",
                         self.work.size_text(label), "floor", "s", [first],
                         note=f"{first / statistics.median(base):.1f}x direct; same tree, "
                         "same timeouts, ~600-byte files served from memory"))
            self.add(Row(f"read all: do-nothing mfusepy FS ({threads}), warm",
                         self.work.size_text(label), "floor", "s", warm,
                         note=f"{ratio:.1f}x direct (interleaved direct median "
                         f"{fmt_value(statistics.median(base), 's')})"))

    def write_through(self, root: Path, reps: int, verify: Callable[[str, bytes], bool]
                      ) -> list[float]:
        from sessionfs.atomic import write_all
        from sessionfs.entry import serialize_entry

        rng = random.Random(7)
        names = session_names(root)
        samples = []
        last: tuple[str, bytes] = ("", b"")
        for name in pick(rng, names, reps):
            path = os.path.join(root, name, "meta.json")
            with open(path, "rb") as stream:
                entry = json.loads(stream.read())
            data = serialize_entry(bumped(entry))
            start = time.perf_counter_ns()
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            samples.append((time.perf_counter_ns() - start) / 1e9)
            last = (name, data)
        if not verify(*last):
            raise RuntimeError(f"the write to {last[0]} did not reach the store")
        return samples

    # -- cat, ls -l, RSS (1k and 100k) -------------------------------------------------------
    def cat_ls_rss(self, small: str, large: str) -> None:
        """cat at both sizes (both mounted, op by op in turn), then ls -l and RSS at the large."""
        direct_large = self.work.directory(large) / "sessions.d"
        if self.wanted("ls"):
            samples = [timed(lambda: run_quiet(["ls", "-l", str(direct_large)]))[0]
                       for _ in range(4)]
            self.add(Row("ls -l: direct sessions.d", self.work.size_text(large), "directory",
                         "s", samples))
        with self.mount(self.work.directory(large), f"dir-{large}") as big_mount:
            if self.wanted("cat"):
                with self.mount(self.work.directory(small), f"dir-{small}") as small_mount:
                    self.cat_rows({small: small_mount, large: big_mount})
            self.ls_and_rss(big_mount, large)
        if self.wanted("ls"):
            self.ls_cold(large)

    def ls_cold(self, label: str) -> None:
        """The first ``ls -l`` of a fresh mount with every entry evicted from the page cache,
        next to reading the same files directly from a cold cache."""
        sessions = self.work.size_text(label)
        direct = self.work.directory(label) / "sessions.d"
        files = [direct / name / META for name in session_names(direct)]

        def evict() -> None:
            for path in files:
                drop_page_cache(path)

        evict()
        seconds, _ = timed(lambda: read_all(direct))
        self.add(Row("read every meta.json: direct sessions.d, cold", sessions, "directory",
                     "s", [seconds], note="after posix_fadvise(DONTNEED) of every file"))
        evict()
        with self.mount(self.work.directory(label), f"dir-{label}-cold") as mount:
            first = timed(lambda: run_quiet(["ls", "-l", str(mount.mountpoint)]))[0]
        self.add(Row("ls -l MOUNT (first, files not in page cache)", sessions, "directory", "s",
                     [first], note="fresh mount; the listing reads every entry for its "
                     "updatedAt, here from disk (see the direct cold read above)"))

    def cat_rows(self, mounts: dict[str, Mount]) -> None:
        rng = random.Random(11)
        names = {label: session_names(self.work.directory(label) / "sessions.d")
                 for label in mounts}
        how_reps = (("python open/read/close", self.sizes.mount_cat_reps),
                    ("cat subprocess", self.sizes.mount_cat_subprocess_reps))
        for how, reps in how_reps:
            picks = {label: pick(rng, names[label], reps) for label in mounts}
            for label, chosen in picks.items():  # page cache warm (see drop_page_cache)
                for name in chosen:
                    read_file(str(self.work.directory(label) / "sessions.d" / name / META))
            samples: dict[str, list[float]] = {label: [] for label in mounts}
            for step in range(reps):
                for label, mount in mounts.items():
                    path = os.path.join(mount.mountpoint, picks[label][step], "meta.json")
                    command = ["cat", path]
                    samples[label].append(timed(
                        (lambda command=command: run_quiet(command)) if how == "cat subprocess"
                        else (lambda path=path: read_file(path)))[0])
            rows = [self.add(Row(
                f"cat one meta.json ({how})", self.work.size_text(label), "directory", "s",
                samples[label], peak_rss_mb=self.daemon_rss(mount),
                note="distinct random sessions, each looked up for the first time (its file "
                "read directly just before: page cache warm); both sizes mounted, measured op "
                "by op in turn"
                + ("; includes fork/exec of cat" if how == "cat subprocess" else "")))
                for label, mount in mounts.items()]
            low, high = rows[0], rows[-1]
            labels = list(mounts)
            self.add(Row(f"cat one meta.json ({how}): flatness",
                         f"{labels[-1]} vs {labels[0]}", "directory", "x",
                         [high.stats["median"] / low.stats["median"]],
                         Target(1.5, "value", "<= 1.50x")))

    def ls_and_rss(self, mount: Mount, label: str) -> None:
        sessions = self.work.size_text(label)
        count = self.work.spec_of(label)[0]
        root = str(mount.mountpoint)
        if self.wanted("ls"):
            read_all(self.work.directory(label) / "sessions.d")  # page cache warm
            samples = [timed(lambda: run_quiet(["ls", "-l", root]))[0] for _ in range(4)]
            self.add(Row("ls -l MOUNT (first, files in page cache)", sessions, "directory", "s",
                         samples[:1], Target(3.0), self.daemon_rss(mount),
                         note="ls -l > /dev/null, LC_ALL=C; the first listing of this mount "
                         "(only the cats above came before), every entry's file read "
                         "directly just before"))
            self.add(Row("ls -l MOUNT (repeat)", sessions, "directory", "s", samples[1:],
                         Target(3.0), self.daemon_rss(mount),
                         note="the next 3 listings, back to back"))
        if self.wanted("rss"):
            seconds, (found, _) = timed(lambda: read_all(Path(root)))
            if found != count:
                raise RuntimeError(f"read {found} sessions through the mount, expected {count}")
            self.add(Row("read every meta.json: mount", sessions, "directory", "s", [seconds],
                         note="the pass before the RSS reading"))
            status = vm_status(mount.pid)
            self.rss[label] = status
            self.add(Row("daemon RSS after listing + reading all", sessions, "directory",
                         "MB", [status["VmRSS"]], Target(200, "value", "<= 200 MB"),
                         status["VmHWM"], note=f"VmRSS of pid {mount.pid} (/proc/PID/status); "
                         "peak RSS column: VmHWM"))

    # -- legacy 80 MB write ------------------------------------------------------------------
    def legacy_write(self) -> None:
        from sessionfs.store import open_store

        label = self.work.big_label
        folder = self.work.legacy_copy(label)
        try:
            with self.mount(folder, "legacy-big") as mount:
                samples = self.write_through(
                    mount.mountpoint, self.sizes.reps_heavy,
                    verify=lambda name, data: open_store(folder).read(
                        key_of(name)).data == data)
                self.add(Row("write one meta.json through the mount", self.work.size_text(label),
                             "legacy", "s", samples, Target(0.4), self.daemon_rss(mount),
                             note="open(O_WRONLY|O_TRUNC) + write + close; close commits"))
        finally:
            self.work.discard(folder)

    def report(self, elapsed: float, error: BaseException | None) -> int:
        print()
        print(f"sessionfs mount benchmark ({'quick' if self.args.quick else 'full'}, "
              f"{os.cpu_count()} CPUs, {elapsed:.0f}s)")
        print("disk before: " + probe_text(self.probes[0]) + "; after: "
              + probe_text(self.probes[-1]))
        print(load_text(self.load_start))
        print(render_table(self.rows))
        if self.daemon_profiles:
            print()
            print(self.profile_text())
        failures = print_verdict(self.rows, error)
        path = Path(self.args.json) if self.args.json else RESULTS / "mount.json"
        write_json(path, "mount", self.args.quick, self.rows,
                   {"seconds": round(elapsed, 1), "sizes": asdict(self.sizes),
                    "mount_args": self.args.mount_args,
                    "error": repr(error) if error else None, "daemon_status": self.rss,
                    "daemon_profiles": self.daemon_profiles,
                    "disk_probes": self.probes, "loadavg_at_start": self.load_start})
        print(f"results: {path}")
        return 1 if failures and not self.args.quick else 0


