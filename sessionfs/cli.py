"""The ``sessionfs`` command: one subcommand per library call, errors as one line and an exit code.

Exit codes: 0 success, 1 store error (or problems found by ``check``), 2 usage error.
STORE may be omitted everywhere: it defaults to openclaw's default store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionfs import jsonfmt
from sessionfs.atomic import is_temp_name
from sessionfs.demo_tour import DEMO_EVENTS, DEMO_SESSIONS, run_demo
from sessionfs.entry import parse_entry, parse_new_entry
from sessionfs.errors import (
    ReadOnlyStore,
    SessionfsError,
    SessionNotFound,
    StoreCorrupt,
    UsageError,
)
from sessionfs.lock import install_signal_handlers
from sessionfs.maintenance import check, parse_duration, prune
from sessionfs.migrate import MigrationReport, merge, migrate, rollback
from sessionfs.store import (
    DIRECTORY_NAME,
    LEGACY_NAME,
    Store,
    default_agent_dir,
    locate_store,
    open_store,
    sqlite_generation_db,
)

__all__ = ["DEMO_EVENTS", "DEMO_SESSIONS", "main"]

log = logging.getLogger("sessionfs")


def _looks_like_sqlite_store(path: Path) -> bool:
    """An SQLite-era STORE: the database file or an agent folder (``agents/<id>``, ``agent/``)."""
    if path.name.endswith(".sqlite") and path.is_file():
        return True
    return path.is_dir() and ((path / "agent" / "openclaw-agent.sqlite").exists()
                              or (path / "openclaw-agent.sqlite").exists()
                              or (path / "sessions").is_dir())


def _names_store(arg: str) -> bool:
    """Whether ``arg`` names an existing store: a folder holding ``sessions.json`` or
    ``sessions.d``, or an existing file/folder of one of those names. Any other existing file
    (a key may name one in the current folder) does not count."""
    path = Path(arg).expanduser()
    try:
        if _looks_like_sqlite_store(path) or _is_state_dir(arg):
            return True
        if path.name in {LEGACY_NAME, DIRECTORY_NAME}:
            return path.exists()
        return path.is_dir() and ((path / LEGACY_NAME).exists()
                                  or (path / DIRECTORY_NAME).is_dir())
    except (OSError, ValueError):
        return False


def _split_store(args: argparse.Namespace, positionals: list[str], minimum: int,
                 maximum: int, *, key: bool = False, whole_state: bool = False) -> list[str]:
    """Peel an optional leading STORE off ``positionals``; the rest are the command's own.

    Decided by the count and by what exists, never by how an argument looks (a key may end in
    ``.json`` or name a file in the current folder): a leading positional is the STORE when
    there is one more than the command takes, or when it names an existing store (then a
    missing key is a usage error, and ``put STORE KEY`` reads stdin). ``--store`` removes any
    doubt.

    ``key``: the first of the rest is a session key, whose agent picks the store when none is
    given (``agent:work:main`` lives in ``agents/work``) and within a state folder. A state
    folder (``~/.openclaw``) is one agent's store here unless ``whole_state`` (``mount``).
    """
    if args.store is None and positionals and (
            len(positionals) > maximum or _names_store(positionals[0])):
        args.store = positionals.pop(0)
    if not minimum <= len(positionals) <= maximum:
        raise UsageError(f"{args.command}: expected {args.usage_hint}")
    agent = _key_agent(positionals[0]) if key and positionals else None
    if args.store is None and agent is not None and agent != "main":
        args.store = str(default_agent_dir(agent))
    elif args.store is not None and not whole_state and _is_state_dir(args.store):
        args.store = _agent_of_state(args.store, agent)
    return positionals


def _key_agent(key: str) -> str | None:
    """The agent id of ``agent:<id>:...`` (openclaw's canonical key), else None."""
    parts = key.split(":", 2)
    if len(parts) == 3 and parts[0] == "agent" and _AGENT_ID.fullmatch(parts[1]):
        return parts[1]
    return None


def _is_state_dir(arg: str) -> bool:
    from sessionfs.statedir import is_state_dir

    try:
        return is_state_dir(Path(arg).expanduser())
    except OSError:
        return False


def _agent_of_state(state: str, agent: str | None) -> str:
    """The store of one agent in the state folder ``state``: the key's agent, else ``main``.

    Naming the state folder works as ``--agent`` does (``sessionfs ls ~/.openclaw`` lists
    ``agents/main``, saying so when there are others); without such an agent it says how to
    name one rather than "no store here".
    """
    from sessionfs.statedir import find_agents

    agents = list(find_agents(Path(state).expanduser()))
    chosen = agent or "main"
    folder = Path(state) / "agents" / chosen
    shown = ", ".join(agents) if agents else "none with a store"
    if chosen not in agents:
        raise UsageError(f"{state} is an openclaw state folder, not one store, and agent "
                         f"{chosen!r} has no store there (agents: {shown}): name one as "
                         f"{Path(state) / 'agents' / '<id>'} (mount takes the whole folder)")
    if agent is None and len(agents) > 1:
        print(f"sessionfs: note: {state} holds agents {shown}; using {folder} "
              f"(name another as {Path(state) / 'agents' / '<id>'})", file=sys.stderr)
    return str(folder)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Store:
    return open_store(args.store, read_only=read_only, lock_timeout=args.lock_timeout)


def _emit_json(value: Any) -> None:
    sys.stdout.write(jsonfmt.stringify(value) + "\n")


def _iso_ms(value: float | None) -> str:
    if value is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return str(value)


# -- commands ---------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    store = _open(args, read_only=True)
    keys = store.listed_keys()
    if not (args.long or args.json):
        sys.stdout.write("".join(f"{key}\n" for key in keys))
        return 0
    from sessionfs import keys as key_codec

    rows: list[dict[str, Any]] = []
    damaged: list[StoreCorrupt] = []
    for key in keys:
        try:
            record = store.read(key)
        except StoreCorrupt as exc:  # one damaged row costs that row only: listed, reported
            damaged.append(exc)
            rows.append({"key": key, "updatedAt": None, "size": None,
                         "name": key_codec.encode(key), "error": exc.reason})
            continue
        rows.append({"key": key, "updatedAt": record.updated_at, "size": len(record.data),
                     "name": key_codec.encode(key)})
    if args.json:
        _emit_json(rows)
    else:
        for row in rows:
            size = "damaged" if "error" in row else row["size"]
            sys.stdout.write(f"{_iso_ms(row['updatedAt'])}  {size:>9}  {row['name']}\n")
    for error in damaged:
        print(f"sessionfs: error: {error}", file=sys.stderr)
    return 1 if damaged else 0


def cmd_get(args: argparse.Namespace) -> int:
    (key,) = _split_store(args, args.positionals, 1, 1, key=True)
    record = _open(args, read_only=True).read(key)
    sys.stdout.buffer.write(record.data + b"\n")
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    rest = _split_store(args, args.positionals, 1, 2, key=True)
    key, source = rest[0], (rest[1] if len(rest) > 1 else "-")
    store = _open(args)
    if store.writes_through_gateway:  # no live Gateway: refused with the reason, before input
        store.check_writable()
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from exc
    if store.writes_through_gateway and key not in store:
        # a new SQLite-era session: openclaw chooses its sessionId and updatedAt
        # (sessions.create); the object gives label, displayName, category and patchable fields
        made = store.create(key, parse_new_entry(data, key=key))
        print(f"created {made}", file=sys.stderr)
        return 0
    entry = parse_entry(data, key=key)
    changed = store.put(key, entry)
    print(f"{'wrote' if changed else 'unchanged'} {key}", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    (key,) = _split_store(args, args.positionals, 1, 1, key=True)
    _open(args).delete(key)
    print(f"removed {key}", file=sys.stderr)
    return 0


def cmd_mv(args: argparse.Namespace) -> int:
    old, new = _split_store(args, args.positionals, 2, 2, key=True)
    _open(args).rename(old, new)
    print(f"renamed {old} -> {new}", file=sys.stderr)
    return 0


def _progress_bar(label: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total < 500 or (done % 200 and done != total):
            return
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{label} [{'#' * filled}{' ' * (width - filled)}] "
                         f"{done}/{total}{end}")
        sys.stderr.flush()

    return show


def _report(args: argparse.Namespace, report: MigrationReport) -> int:
    if args.json:
        _emit_json(report.as_dict())
    else:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(report.message)
        if report.changed:
            print(f"entries: {report.entries}  bytes: {report.bytes}  "
                  f"seconds: {report.seconds:.2f}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    _refuse_sqlite(args, "migrate")
    return _report(args, migrate(args.store, dry_run=args.dry_run,
                                 progress=_progress_bar("migrating"),
                                 lock_timeout=args.lock_timeout))


def cmd_rollback(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    _refuse_sqlite(args, "rollback")
    return _report(args, rollback(args.store, dry_run=args.dry_run,
                                  progress=_progress_bar("rolling back"),
                                  lock_timeout=args.lock_timeout))


def cmd_merge(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    _refuse_sqlite(args, "merge")
    report = merge(args.store, dry_run=args.dry_run, lock_timeout=args.lock_timeout)
    if args.json:
        _emit_json(report.as_dict())
        return 0
    for problem in report.invalid:
        print(f"warning: left out (invalid; kept in the moved-aside file): {problem}",
              file=sys.stderr)
    print(report.message)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    if args.older_than is None and args.max_entries is None:
        raise UsageError("prune: give --older-than and/or --max-entries")
    if args.max_entries is not None and args.max_entries < 0:
        raise UsageError("--max-entries must be >= 0")
    older = parse_duration(args.older_than) if args.older_than is not None else None
    report = prune(_open(args, read_only=args.dry_run), older_than_ms=older,
                   max_entries=args.max_entries, dry_run=args.dry_run)
    if args.json:
        _emit_json({"removed": report.removed, "kept": report.kept, "dryRun": report.dry_run})
    else:
        verb = "would remove" if args.dry_run else "removed"
        for key in report.removed:
            print(f"{verb} {key}")
        print(f"{verb} {len(report.removed)} sessions, {report.kept} kept", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    _split_store(args, args.positionals, 0, 0)
    location = locate_store(args.store)
    if location.layout is None:
        open_store(args.store)  # raises the same clear StoreNotFound as every other command
    problems = check(location)
    sqlite_db = sqlite_generation_db(location.folder)
    if args.json:
        _emit_json([{"kind": p.kind, "path": str(p.path), "detail": p.detail}
                    for p in problems])
    else:
        for problem in problems:
            print(problem)
        for stale in location.stale_files:
            print(f"note: {stale}: stale file-era store beside the SQLite database (openclaw "
                  "reads only the database)", file=sys.stderr)
        found = f"{len(problems)} problem(s)" if problems else f"ok ({location.layout} store)"
        if sqlite_db is not None and location.layout != "sqlite":
            # never "ok" for a store the gateway no longer reads
            found = (f"not in use: the gateway uses the SQLite database {sqlite_db}; this is "
                     f"a stale retained copy ({len(problems)} problem(s))")
        print(f"{location.path}: {found}")  # the verdict is the output (stdout), notes aside
    return 1 if problems else 0


def _refuse_sqlite(args: argparse.Namespace, what: str) -> None:
    """migrate/rollback/merge: openclaw owns moving a store between generations."""
    location = locate_store(args.store)
    if location.layout == "sqlite":
        raise ReadOnlyStore(
            f"{location.path}: '{what}' does not apply to a SQLite-era store: openclaw owns its "
            "migrations (openclaw doctor --fix; back to files: openclaw doctor --session-sqlite "
            "restore)")


def _gateway_status(store: Store) -> dict[str, Any] | None:
    """SQLite era: whether a live openclaw Gateway owns the store (writes possible), for
    ``status``; None for the file era (no Gateway involved). Never the credential."""
    if not store.writes_through_gateway:
        return None
    found = store.gateway.owner()  # type: ignore[attr-defined]
    if isinstance(found, str):
        return {"live": False, "reason": found}
    return {"live": True, "pid": found.pid, "port": found.port}


def cmd_status(args: argparse.Namespace) -> int:
    """Where the store is, what generation, how many sessions, and what is wrong or stale."""
    _split_store(args, args.positionals, 0, 0)
    store = _open(args, read_only=True)
    try:
        count = len(store.keys())
        refused = store.refused_rows()
        reason = store.read_only_reason
        gateway = _gateway_status(store)
        info = {"store": str(store.path), "generation": store.generation,
                "sessions": count, "readOnly": reason,
                "staleFiles": [str(p) for p in store.stale_files],
                "refusedRows": [{"key": r.key, "reason": r.reason, "remedy": r.remedy}
                                for r in refused]}
        if gateway is not None:
            info["gateway"] = gateway
    finally:
        store.close()
    if args.json:
        _emit_json(info)
        return 0
    lines = [f"store: {info['store']}", f"generation: {info['generation']}",
             f"sessions: {count}", f"read-only: {f'yes ({reason})' if reason else 'no'}"]
    if gateway is not None:
        lines.append("gateway: " + (
            f"live (pid {gateway['pid']}, 127.0.0.1:{gateway['port']}): writes go through it"
            if gateway["live"] else f"not running ({gateway['reason']}): start it to edit"))
    lines += [f"stale: {p} (file era: openclaw no longer reads it; the database wins)"
              for p in store.stale_files]
    lines.append(f"refused rows: {len(refused)}")
    lines += [f"  {row}" for row in refused]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def cmd_transcript(args: argparse.Namespace) -> int:
    """Stream one session's transcript (JSONL) to stdout: ``Store.transcript(key)``."""
    (key,) = _split_store(args, args.positionals, 1, 1, key=True)
    store = _open(args, read_only=True)
    try:
        source = store.transcript(key)
        if source is None:
            raise SessionNotFound(f"session {key!r} has no transcript in {store.path}")
        with source:
            out = sys.stdout.buffer
            for chunk in source.chunks():
                out.write(chunk)
            out.flush()
    finally:
        store.close()
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    from sessionfs.fs.mount import MountOptions, mount

    rest = _split_store(args, args.positionals, 1, 1, whole_state=True)
    options = MountOptions(foreground=args.foreground, read_only=args.read_only,
                           migrate=args.migrate, allow_other=args.allow_other,
                           timeout=args.timeout, fuse_options=args.fuse_options,
                           lock_timeout=args.lock_timeout, log_file=args.log_file,
                           scratch_max_bytes=args.scratch_max_bytes,
                           scratch_max_files=args.scratch_max_files)
    return mount(args.store, Path(rest[0]), options)


def cmd_umount(args: argparse.Namespace) -> int:
    from sessionfs.fs.mount import unmount

    if len(args.positionals) != 1:
        raise UsageError("umount: expected MOUNTPOINT")
    unmount(Path(args.positionals[0]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the demo store (once), mount it, and show it with ordinary tools."""
    return run_demo(Path(args.positionals[0] if args.positionals else "demo"),
                    legacy=bool(getattr(args, "legacy", False)), named=bool(args.positionals))


def _byte_size(text: str) -> int:
    """``1048576``, ``512K``, ``64M``, ``1G`` (binary units) for argparse."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.strip().upper().rstrip("IB") or "", ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected a size such as 64M, got {text!r}")
    return int(number) * units[unit]


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


# -- parser -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """One subcommand: the handler (one library call), its positionals, help and an example.

    Every command takes ``--store``/``-s``, ``--lock-timeout`` and ``--agent`` unless it says
    otherwise; ``add_options`` adds the command's own.
    """

    handler: Callable[[argparse.Namespace], int]
    usage: str
    help: str
    example: str
    description: str = ""  # what ``COMMAND --help`` opens with (default: help)
    store_options: bool = True  # --store and --lock-timeout
    agent_option: bool = True
    lock_timeout_help: str = "how long to wait for the store lock (default 10)"
    add_options: Callable[[argparse.ArgumentParser], None] | None = None


def _ls_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-l", "--long", action="store_true",
                     help="show updatedAt, size and the encoded directory name")


def _prune_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--older-than", metavar="DURATION",
                     help="remove sessions idle longer than this (30d, 12h, ...)")
    sub.add_argument("--max-entries", type=int, metavar="N",
                     help="keep only the N most recently updated sessions")


def _demo_options(sub: argparse.ArgumentParser) -> None:
    era = sub.add_mutually_exclusive_group()
    era.add_argument("--legacy", action="store_true",
                     help="a file-era store (sessions.json), editable through the mount")
    era.add_argument("--sqlite", action="store_true",
                     help="a SQLite-era store (openclaw >= 2026.8.1, read-only): the default")


def _mount_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-f", "--foreground", action="store_true",
                     help="stay in the foreground and log rejected writes")
    sub.add_argument("--read-only", action="store_true", help="refuse every write (EROFS)")
    sub.add_argument("--migrate", action="store_true",
                     help="migrate a legacy store to sessions.d first, then serve it")
    sub.add_argument("--allow-other", action="store_true", help="let other users in")
    sub.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                     help="how long the kernel may cache names and attributes (default 1)")
    sub.add_argument("-o", dest="fuse_options", default="", metavar="FUSE_OPTIONS",
                     help="extra FUSE mount options, comma-separated")
    sub.add_argument("--log", dest="log_file", metavar="FILE",
                     help="append the daemon's log (rejected writes, warnings) to FILE")
    sub.add_argument("--scratch-max-bytes", type=_byte_size, default=64 << 20, metavar="SIZE",
                     help="memory for files other than meta.json, which are kept until "
                          "unmount only (default 64M; suffixes K, M, G)")
    sub.add_argument("--scratch-max-files", type=_count, default=1000, metavar="N",
                     help="how many such files the mount holds at most (default 1000)")


_COMMANDS: dict[str, Command] = {
    "ls": Command(cmd_ls, "[STORE]", "list session keys",
                  "sessionfs ls -l ~/.openclaw/agents/main/sessions", add_options=_ls_options),
    "get": Command(cmd_get, "[STORE] KEY", "print one entry as openclaw writes it",
                   "sessionfs get agent:main:main | jq .updatedAt"),
    "put": Command(cmd_put, "[STORE] KEY [FILE|-]",
                   "write one entry (validated) from FILE or stdin",
                   "jq '.label=\"x\"' entry.json | sessionfs put agent:main:main -"),
    "rm": Command(cmd_rm, "[STORE] KEY", "delete one session",
                  "sessionfs rm agent:main:cron:14bbd904"),
    "mv": Command(cmd_mv, "[STORE] OLD NEW", "rename a session key",
                  "sessionfs mv agent:main:old agent:main:new"),
    "migrate": Command(cmd_migrate, "[STORE]",
                       "convert sessions.json into sessions.d (with a backup)",
                       "sessionfs migrate --dry-run ~/.openclaw/agents/main/sessions"),
    "rollback": Command(cmd_rollback, "[STORE]", "convert sessions.d back into sessions.json",
                        "sessionfs rollback ~/.openclaw/agents/main/sessions"),
    "merge": Command(cmd_merge, "[STORE]",
                     "fold a sessions.json that reappeared beside sessions.d into it (newer wins)",
                     "sessionfs merge ~/.openclaw/agents/main/sessions"),
    "prune": Command(cmd_prune, "[STORE]", "remove old or excess sessions with openclaw's rules",
                     "sessionfs prune --older-than 30d --max-entries 500 --dry-run",
                     add_options=_prune_options),
    "check": Command(cmd_check, "[STORE]",
                     "report damage, stale locks and orphan files (exit 1 if any)",
                     "sessionfs check ~/.openclaw/agents/main/sessions"),
    "status": Command(cmd_status, "[STORE]",
                      "store path, generation, session count, read-only reason, stale files, "
                      "rows openclaw refuses", "sessionfs status ~/.openclaw/agents/main"),
    "transcript": Command(cmd_transcript, "[STORE] KEY", "print one session's transcript (JSONL)",
                          "sessionfs transcript agent:main:main | jq -c .type"),
    "demo": Command(cmd_demo, "[DIR]", "generate a demo store (SQLite era; --legacy: the "
                    "editable file era), mount it and show it",
                    "sessionfs demo ./demo", store_options=False, agent_option=False,
                    add_options=_demo_options),
    "mount": Command(cmd_mount, "[STORE] MOUNTPOINT",
                     "show the store as a directory tree (one folder per session)",
                     "sessionfs mount ~/.openclaw/agents/main/sessions /mnt/sessions",
                     description="Mount STORE at MOUNTPOINT: every session is a folder holding "
                                 "meta.json.",
                     agent_option=False,
                     lock_timeout_help="how long a commit waits for the store lock (default 10)",
                     add_options=_mount_options),
    "umount": Command(cmd_umount, "MOUNTPOINT", "unmount (also a mount whose daemon died)",
                      "sessionfs umount /mnt/sessions", store_options=False,
                      agent_option=False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionfs", description="openclaw session stores as files: inspect, edit, migrate, "
        "mount. STORE is a sessions.json, the folder holding it, or a sessions.d folder "
        "(default: $OPENCLAW_STATE_DIR or ~/.openclaw, agents/main/sessions/sessions.json).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(name, help=command.help,
                                  description=command.description or command.help,
                                  epilog=f"example: {command.example}")
        sub.add_argument("positionals", nargs="*", metavar=command.usage)
        if command.store_options:
            sub.add_argument("--store", "-s", help="the store (instead of a leading STORE)")
            sub.add_argument("--lock-timeout", type=float, default=10.0, metavar="SECONDS",
                             help=command.lock_timeout_help)
        else:  # what the shared error handling reads (the default store, the lock wait)
            sub.set_defaults(store=None, lock_timeout=10.0)
        if command.agent_option:
            sub.add_argument("--agent", metavar="ID", help="the store of agent ID under "
                             "$OPENCLAW_STATE_DIR (or ~/.openclaw)")
        sub.set_defaults(handler=command.handler, usage_hint=command.usage)
        if name in {"ls", "migrate", "rollback", "merge", "prune", "check", "status"}:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        if name in {"migrate", "rollback", "merge", "prune"}:
            sub.add_argument("--dry-run", action="store_true", help="report, change nothing")
        if command.add_options is not None:
            command.add_options(sub)
    return parser


_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _apply_agent(args: argparse.Namespace) -> None:
    """``--agent ID``: the agent folder ``agents/ID`` (its store, whichever generation)."""
    agent = getattr(args, "agent", None)
    if agent is None:
        return
    if not _AGENT_ID.fullmatch(agent):
        raise UsageError(f"--agent {agent!r}: not an openclaw agent id")
    if args.store is not None:
        raise UsageError("give either --agent or a STORE, not both")
    args.store = str(default_agent_dir(agent))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="sessionfs: %(message)s")
    install_signal_handlers()
    try:
        _apply_agent(args)
        return args.handler(args)
    except SessionfsError as exc:
        print(f"sessionfs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the disk said no (ENOSPC, EACCES, ...): one line, nothing written
        print(f"sessionfs: error: {_describe_os_error(args, exc)}", file=sys.stderr)
        return 1


def _describe_os_error(args: argparse.Namespace, exc: OSError) -> str:
    """One line that names what the user knows (the store, a dead mount), not our internals."""
    what = exc.strerror or str(exc)
    if exc.filename is None:
        return what
    filename = os.fspath(exc.filename)
    if exc.errno == errno.ENOTCONN:  # a FUSE mount whose daemon died, at or above the path
        import shlex

        from sessionfs.fs.mount import is_mounted

        path = Path(os.path.abspath(filename))
        dead = next((p for p in (path, *path.parents) if is_mounted(p)), None)
        if dead is not None:
            return (f"{filename}: {what}: the mount at {dead} lost its daemon; run "
                    f"sessionfs umount {shlex.quote(str(dead))}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and getattr(args, "store", 0) != 0:
        try:
            folder = locate_store(args.store).folder
        except (OSError, ValueError):
            folder = None
        real_folder = os.path.realpath(folder) if folder is not None else ""
        real_file = os.path.join(os.path.realpath(os.path.dirname(filename)),
                                 os.path.basename(filename))
        if folder is not None and real_file.startswith(real_folder.rstrip("/") + "/"):
            inside = os.path.relpath(real_file, real_folder)
            shown = "" if is_temp_name(os.path.basename(filename)) else f" ({inside})"
            return f"cannot write the store at {folder}: {what}{shown}"
    if is_temp_name(os.path.basename(filename)):
        return f"{what} ({os.path.dirname(filename)})"
    return f"{what} ({filename})"
