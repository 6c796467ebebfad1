"""What every ``bench.py`` subcommand shares: sizes, result rows and their table/JSON, the
disk probe, small timing helpers, and the tests' mount harness (``tests/mountharness.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Re-exported: the tests' mount harness, so the bench mounts exactly as the tests do.
from sessionfs.fs.mount import is_mounted  # noqa: E402, F401
from tests.mountharness import Mount as HarnessMount  # noqa: E402, F401

# The tests' mount harness, shared so the bench mounts exactly as the tests do.

#: The entry point; workers, the floor filesystem and the profiled daemon run it again.
BENCH = Path(__file__).resolve().parent / "bench.py"
RESULTS = REPO / "bench-results"
MB = 1024 * 1024
META = "meta.json"


# =============================================================================================
# Sizes
# =============================================================================================
@dataclass(frozen=True)
class Sizes:
    big: int  # sessions in the seed-like store
    big_entry_bytes: int
    small: tuple[int, ...]  # small-session stores; the first and last are compared for flatness
    reps_fast: int  # ms-level operations
    reps_heavy: int  # operations on the 80 MB store / 100k legacy store
    reps_keys: int
    reps_migrate_big: int
    reps_migrate_small: int
    # mount
    mount_readall: int  # sessions for read-all / grep / directory writes
    mount_writes: int
    mount_cat_reps: int
    mount_cat_subprocess_reps: int


FULL = Sizes(big=650, big_entry_bytes=123_000, small=(1_000, 10_000, 100_000), reps_fast=200,
             reps_heavy=5, reps_keys=5, reps_migrate_big=3, reps_migrate_small=1,
             mount_readall=10_000, mount_writes=100, mount_cat_reps=200,
             mount_cat_subprocess_reps=100)
QUICK = Sizes(big=40, big_entry_bytes=123_000, small=(300, 1_000, 3_000), reps_fast=50,
              reps_heavy=3, reps_keys=3, reps_migrate_big=1, reps_migrate_small=1,
              mount_readall=1_000, mount_writes=20, mount_cat_reps=50,
              mount_cat_subprocess_reps=20)

SEED_BIG = 650
SEED_SMALL = 1000


def count_label(count: int) -> str:
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


# =============================================================================================
# Rows, statistics, the table
# =============================================================================================
@dataclass
class Target:
    limit: float
    stat: str = "median"  # which statistic is compared: median, max, value
    text: str = ""  # how the table shows it


@dataclass
class Row:
    name: str
    sessions: str
    layout: str
    unit: str  # "s" (samples are seconds), "x" (ratio), "MB"
    samples: list[float]
    target: Target | None = None
    peak_rss_mb: float | None = None
    note: str = ""
    status: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    #: CPU time (user + sys) of the measuring process per operation, where measured: far
    #: below the wall time means waiting (disk, another process, the CPU taken by others).
    cpu_samples: list[float] = field(default_factory=list)

    def finish(self) -> Row:
        values = sorted(self.samples)
        self.stats = {"n": len(values)}
        if values:
            self.stats.update(median=statistics.median(values), min=values[0], max=values[-1],
                              mean=statistics.fmean(values), p90=percentile(values, 0.9))
        if self.target is None:
            self.status = "info"
        elif not values:
            self.status = "ERROR"
        else:
            key = "median" if self.target.stat == "value" else self.target.stat
            self.status = "PASS" if self.stats[key] <= self.target.limit else "FAIL"
        return self

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [round(v, 9) for v in self.samples]
        data["cpu_samples"] = [round(v, 9) for v in self.cpu_samples]
        if self.cpu_samples:
            data["stats"]["cpu_median"] = statistics.median(self.cpu_samples)
        return data


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), round(fraction * len(values) + 0.5)))
    return values[rank - 1]


def fmt_value(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:.0f} MB"
    if value >= 1:
        return f"{value:.2f} s"
    ms = value * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def target_text(row: Row) -> str:
    if row.target is None:
        return "-"
    if row.target.text:
        return row.target.text
    prefix = "" if row.target.stat in ("median", "value") else f"{row.target.stat} "
    return f"{prefix}<= {fmt_value(row.target.limit, row.unit)}"


def spread_text(row: Row) -> str:
    n = int(row.stats.get("n", 0))
    if n <= 1 or row.unit == "x":
        return ""
    if n >= 20:
        return f"p90 {fmt_value(row.stats['p90'], row.unit)}"
    return (f"min {fmt_value(row.stats['min'], row.unit)} / "
            f"max {fmt_value(row.stats['max'], row.unit)}")


def render_table(rows: list[Row]) -> str:
    header = ["measurement", "sessions", "layout", "n", "median", "p90 | min/max", "target",
              "result", "peak RSS", "CPU median"]
    lines = []
    for row in rows:
        median = fmt_value(row.stats["median"], row.unit) if "median" in row.stats else "-"
        rss = f"{row.peak_rss_mb:.0f} MB" if row.peak_rss_mb is not None else ""
        cpu = fmt_value(statistics.median(row.cpu_samples), "s") if row.cpu_samples else ""
        lines.append([row.name, row.sessions, row.layout, str(int(row.stats.get("n", 0))),
                      median, spread_text(row), target_text(row), row.status, rss, cpu])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
              for i in range(len(header))]
    right = {3, 4, 8, 9}

    def fmt(cells: list[str]) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    notes = [(row.name, row.sessions, row.note) for row in rows if row.note]
    if notes:
        out.append("")
        out += [f"  {name} [{sessions}]: {note}" for name, sessions, note in notes]
    return "\n".join(out)


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  check=False, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "library_changes_uncommitted": git("status", "--porcelain", "--", "sessionfs")
        .splitlines(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_end": os.getloadavg(),
    }


def write_json(path: Path, command: str, quick: bool, rows: list[Row], extra: dict[str, Any]
               ) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "quick": quick,
        "environment": environment(),
        **extra,
        "failures": [f"{r.name} [{r.sessions} {r.layout}]" for r in rows if r.status == "FAIL"],
        "rows": [row.as_dict() for row in rows],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def disk_probe(folder: Path, count: int = 50) -> dict[str, float]:
    """fsync latency of a small write in ``folder``: this VM's disk varies run to run, and every
    durable write pays it (atomic_write fsyncs the file and its directory)."""
    path = folder / f".fsync-probe-{os.getpid()}"
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(count):
            os.pwrite(fd, os.urandom(4096), 0)
            start = time.perf_counter_ns()
            os.fsync(fd)
            samples.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return {"fsync_4k_median_ms": round(statistics.median(samples), 3),
            "fsync_4k_p90_ms": round(percentile(samples, 0.9), 3),
            "fsync_4k_max_ms": round(samples[-1], 3)}


def probe_text(probe: dict[str, float]) -> str:
    return (f"fsync(4 KB) median {probe['fsync_4k_median_ms']:.2f} ms, "
            f"p90 {probe['fsync_4k_p90_ms']:.2f} ms, max {probe['fsync_4k_max_ms']:.2f} ms")


def load_text(start: tuple[float, ...]) -> str:
    end = os.getloadavg()
    return (f"load average (1 min) {start[0]:.1f} at start, {end[0]:.1f} at end "
            f"(2 CPUs shared with other work: ratios are interleaved where it matters)")


def settle_disk() -> None:
    """Flush dirty data and metadata before ms-level cases: creating 100k directories leaves
    ext4 writing back inodes for tens of seconds, and meanwhile even a read pays for it (the
    relatime atime update of a recently written meta.json waits on the busy journal)."""
    started = time.monotonic()
    os.sync()
    say(f"sync: {time.monotonic() - started:.1f}s")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)



def vm_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024
    return found


def session_names(root: Path) -> list[str]:
    return sorted(name for name in os.listdir(root) if not name.startswith("."))


def read_file(path: str) -> int:
    with open(path, "rb") as stream:
        return len(stream.read())


def read_all(root: Path) -> tuple[int, int]:
    """List ``root`` and read every ``<name>/meta.json`` (open/read/close from Python)."""
    count = total = 0
    base = str(root)
    for name in os.listdir(base):
        if name.startswith("."):
            continue
        total += read_file(os.path.join(base, name, "meta.json"))
        count += 1
    return count, total


def median_round_trip(path: str, batches: int = 10, reps: int = 400) -> float:
    """Seconds of one ``ioctl(TCGETS)`` on ``path`` (see ``request_floor``): the lowest
    median of ``batches`` batches, so that a busy moment of this shared machine does not
    raise the floor (the floor must be a lower bound)."""
    import fcntl
    import termios

    fd = os.open(path, os.O_RDONLY)
    medians = []
    try:
        for _ in range(batches):
            samples = []
            for _ in range(reps):
                start = time.perf_counter_ns()
                with contextlib.suppress(OSError):  # ENOTTY: not a terminal, as expected
                    fcntl.ioctl(fd, termios.TCGETS, bytes(64))
                samples.append((time.perf_counter_ns() - start) / 1e9)
            medians.append(statistics.median(samples))
    finally:
        os.close(fd)
    return min(medians)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter_ns()
    value = fn()
    return (time.perf_counter_ns() - start) / 1e9, value


def run_quiet(command: list[str], ok: tuple[int, ...] = (0,)
              ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(command, capture_output=True, check=False,
                          env=dict(os.environ, LC_ALL="C"))
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    return proc


def name_of(key: str) -> str:
    from sessionfs import keys

    return keys.encode(key)


def key_of(name: str) -> str:
    from sessionfs import keys

    key = keys.decode(name)
    if key is None:
        raise RuntimeError(f"{name} is a hashed name; pick another session")
    return key


class RowCollector:
    """What every bench subcommand shares: ``--only`` filtering and collecting finished rows."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.rows: list[Row] = []
        self.only = re.compile(args.only) if args.only else None

    def wanted(self, name: str) -> bool:
        return self.only is None or bool(self.only.search(name))

    def add(self, row: Row) -> Row:
        row.finish()
        self.rows.append(row)
        stat = fmt_value(row.stats["median"], row.unit) if "median" in row.stats else "-"
        say(f"{row.name} [{row.sessions} {row.layout}]: median {stat} {row.status}")
        return row


def print_verdict(rows: list[Row], error: BaseException | None, *,
                  layout: bool = True) -> list[Row]:
    """The end of every bench report: the table's failures and whether the run stopped early;
    returns the failed rows."""
    failures = [row for row in rows if row.status == "FAIL"]
    print()
    if error is not None:
        print(f"ERROR: the run stopped early: {error!r}")
    print("FAILED: " + "; ".join(f"{r.name} [{r.sessions}{' ' + r.layout if layout else ''}]"
                                 for r in failures)
          if failures else "all measured targets met")
    return failures
