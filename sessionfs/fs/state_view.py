"""The state mount: a whole openclaw state directory laid out the way the file era did.

::

    /agents/<id>/sessions/sessions.json            rendered (sessionfs.projection), read-only
    /agents/<id>/sessions/<sessionId>.jsonl        the transcript (-topic-<n>), read-only
    /agents/<id>/sessions/sessions.d/<name>/meta.json  a per-agent SessionView (writable
                                                   wherever the store is)
    /.sessionfs/status, errors                     one section per agent

Tools that read openclaw's file layout (token and cost trackers, search indexes) keep working
on every generation. Nothing else of the state directory is shown; agents that appear or
vanish show within ``timeout``.

Finding agents (:mod:`sessionfs.fs.state_agents`): ``agents/`` is listed again only when its
inode or mtime changed, and each agent folder is looked at with ``lstat`` alone
(:func:`sessionfs.statedir.scan_agent`); an agent is located and opened again only when that look
changed. Nothing of a store is reached through a symbolic link (a link could lead out of STATE,
or into this very mount, where the daemon would wait on itself): such an agent is listed, its
files answer ELOOP and ``.sessionfs/errors`` and ``status`` say what was skipped. Agents are
opened each in its own thread, outside every lock; a rescan waits at most ``OPEN_DEADLINE``
for agents it has not seen before, and none for those it knows (shown as they were until
opened again). One agent whose database another process holds locked is shown as busy
(EAGAIN, and a line in ``errors``; tried again every ``BUSY_RETRY`` in the background) while
every other agent is served at once. A damaged agent
(an unreadable database, an emptied ``sessions.json``) stays listed and answers EIO with the
reason in ``errors`` and ``status``; nothing vanishes. Rescans run one at a time and nobody
waits for one: the others serve what the last rescan found.

Page cache: ``sessions.json`` is read with direct I/O, so each reader reads its own rendering
whatever other readers opened (the page cache is one per path: readers overlapping a change
would share pages of two versions). The transcripts are served through the kernel's page
cache and opened with ``keep_cache`` while their bytes are unchanged since the last open, so a
warm re-read never reaches this process; when the bytes changed, the open drops the cached
pages and attributes of that path (``fuse_invalidate_path``), so a reader that stats and then
reads ``st_size`` bytes gets the whole of one version. Each open file keeps the version it
opened (a rendered ``sessions.json``, a transcript source), a transcript extended by what was
appended once the reader asks past its end (``tail -f``): a store changing during a walk shows
the old or the new version of a file, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import os
import stat
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from sessionfs.entry import DEFAULT_MAX_ENTRY_BYTES
from sessionfs.errors import ReadOnlyStore, SessionfsError, StoreBusy
from sessionfs.fs import daemon
from sessionfs.fs.access import Access, LiveAccess, Shown
from sessionfs.fs.control import CONTROL_DIR, CONTROL_FILES, ControlFiles, ErrorLog
from sessionfs.fs.handles import ConstHandle, HandleTable
from sessionfs.fs.paths import DIR_MODE, FILE_MODE, fail
from sessionfs.fs.state_agents import Agent, AgentDirectory, Opened, Problem
from sessionfs.fs.state_handles import Delegated, FollowedTranscript, RenderedHandle
from sessionfs.fs.transcript import store_status_lines
from sessionfs.fs.view import SessionView
from sessionfs.fs.viewapi import DirectoryHandles, DirHandle
from sessionfs.projection import Projection, Projector
from sessionfs.store import SQLITE_NAME, StoreLocation, locate_store, open_store
from sessionfs.store.base import Store, TranscriptSource
from sessionfs.store.sqlite import is_locked, is_sqlite_file

__all__ = ["StateView"]

log = logging.getLogger("sessionfs.fs")

SESSIONS_JSON = "sessions.json"
SESSIONS_D = "sessions.d"
INNER_TRANSCRIPT = "transcript.jsonl"
READ_ONLY_FILE = 0o100400
READ_ONLY_DIR = 0o040500
#: Transcripts remembered per agent (see StateView._transcript); past this, start again.
_TRANSCRIPT_CACHE_LIMIT = 50_000
#: A served SQLite agent waits this long for another process's lock, then answers EBUSY (the
#: store's own default, 60 s, would hold a reader of the whole mount that long).
SERVE_BUSY_TIMEOUT = 0.25
SERVE_BUSY_DEADLINE = 2.0
#: After a new rendering at least this big, freed heap goes back to the OS at once: rendering
#: 100k SQLite sessions parses every entry, and glibc would keep ~100 MB of those temporaries
#: until the next periodic trim (daemon.start_heap_trimmer, every 15 s).
TRIM_AFTER_BYTES = 8 << 20
EDIT_INSTEAD = ("sessions.json is rendered from the agent's store and read-only in the state "
                "mount; edit sessions.d/<name>/meta.json instead")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _view_accepts_transcripts_flag() -> bool:
    return "transcripts" in inspect.signature(SessionView.__init__).parameters


class StateView(DirectoryHandles):
    """The mounted tree over a state directory; the same interface as :class:`SessionView`
    (the adapter in :mod:`sessionfs.fs.operations` drives either)."""

    def __init__(self, state: os.PathLike[str] | str, mountpoint: str, *, timeout: float = 1.0,
                 max_entry_size: int = DEFAULT_MAX_ENTRY_BYTES, read_only: bool = False,
                 uid: int | None = None, gid: int | None = None, share: bool = False) -> None:
        self.state_dir = Path(os.path.abspath(state))
        self.path = self.state_dir  # what mount options and logs name
        self.mountpoint = mountpoint.rstrip("/") or "/"
        #: Both resolved once, before the mount exists: stores must stay inside the first and
        #: never resolve into the second (:meth:`_outside_problem`).
        self._state_real = os.path.realpath(self.state_dir)
        try:
            self._state_fd: int | None = os.open(self._state_real, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self._state_fd = None
        self._mount_real = os.path.realpath(self.mountpoint)
        self.timeout = timeout
        self.max_entry_size = max_entry_size
        self.read_only = read_only
        self.read_only_reason: str | None = None  # per agent; the mount itself is read-write
        #: Set by the adapter: ``(uid, pid)`` of the process making the current call (agents'
        #: views ask it for writes through the openclaw Gateway).
        self.caller: Callable[[], tuple[int, int]] | None = None
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        #: ``--allow-other``: every part shows the owner, group and bits of what it comes from
        #: on disk, capped by what each class can reach (:mod:`sessionfs.fs.access`): the
        #: root the state dir's, ``agents/`` that folder's, ``agents/<id>/`` and below the
        #: agent's store's, the control files no more than all of them; each looked at again
        #: at most every ``timeout``, and a file-era transcript capped by its own file's mode
        #: (SessionView.transcript_cap). Otherwise the mounting user's 0700/0600.
        self.share = share
        self._own = Access(self.uid, self.gid, DIR_MODE & 0o777, FILE_MODE & 0o777)
        self._root_access = self._shared(self.state_dir)
        self._agents_access = self._shared(self.state_dir / "agents")
        self.handles = HandleTable()
        self.errors = ErrorLog()
        #: the agents, found and kept by their own part; its lock is held only for swaps,
        #: never across filesystem calls (also for what this view keeps per agent)
        self._directory = AgentDirectory(self.state_dir, self._state_real, self._mount_real,
                                         timeout, self._locate, self.handles)
        self._lock = self._directory.lock
        self._started_ns = time.time_ns()
        self._control = ControlFiles(self._started_ns)
        self._hide_inner_transcripts = not _view_accepts_transcripts_flag()
        #: path -> token of the bytes whose pages the kernel may hold (set at open)
        self._paged: dict[str, object] = {}
        #: path -> token whose size the kernel was last told (getattr or open)
        self._sized: dict[str, object] = {}
        #: Set by the adapter: drop the kernel's cached attributes and pages of a path.
        self.invalidate: Callable[[str], None] | None = None

    # -- agents ----------------------------------------------------------------------------------
    def agents(self) -> dict[str, Agent]:
        """The agents served now (:meth:`AgentDirectory.current`: rescanned when the last scan
        is older than ``timeout``)."""
        return self._directory.current()

    def _locate(self, agent_id: str, known: Agent | None) -> Opened:
        """Where agent ``agent_id``'s store is now, opened (in an :class:`Opener` thread).
        A database another process holds locked makes the agent busy (retried at the next
        rescan): locating would take it for unreadable and pick retained file-era files."""
        folder = self.state_dir / "agents" / agent_id
        db = folder / "agent" / SQLITE_NAME
        if is_sqlite_file(db) and is_locked(db):
            return Problem(errno.EAGAIN, f"agents/{agent_id}: busy: another process holds "
                            f"its database {db} locked; tried again at every rescan")
        try:
            location = locate_store(folder)
        except OSError as exc:
            return Problem(errno.EIO, f"agents/{agent_id}: cannot look at its store: {exc}")
        if location.layout is None:
            return None
        outside = self._outside_problem(agent_id, location)
        if outside is not None:
            return outside
        if known is not None and known.location == location:
            return known
        try:
            return self._open_agent(agent_id, location)
        except StoreBusy as exc:
            return Problem(errno.EAGAIN, f"agents/{agent_id}: busy: {exc}")
        except SessionfsError as exc:
            code = exc.errno if exc.errno in (errno.ENOTSUP, errno.EACCES) else errno.EIO
            log.warning("agent %s: cannot serve its store: %s", agent_id, exc)
            return Problem(code, f"agents/{agent_id}: cannot serve its store: {exc}")
        except OSError as exc:
            code = exc.errno if exc.errno in (errno.EACCES, errno.EPERM) else errno.EIO
            log.warning("agent %s: cannot serve its store: %s", agent_id, exc)
            return Problem(code or errno.EIO, f"agents/{agent_id}: cannot serve its store: "
                            f"{exc}")

    def _outside_problem(self, agent_id: str, location: StoreLocation) -> Problem | None:
        """A store path that resolves out of STATE or into this mount (checked again at every
        opening: :func:`sessionfs.statedir.scan_agent` already refused links, this catches a race
        with one)."""
        for path in {location.path, location.folder}:
            real = os.path.realpath(path)
            if _under(real, self._mount_real) or not _under(real, self._state_real):
                return Problem(errno.ELOOP, f"agents/{agent_id}: its store {path} resolves to "
                                f"{real}, outside the state directory or inside this mount: "
                                "skipped")
        return None

    def _open_agent(self, agent_id: str, location: StoreLocation) -> Agent:
        store = open_store(self.state_dir / "agents" / agent_id, read_only=self.read_only)
        store.keys()  # unreadable stores fail here, not on the first ls
        # served: a lock elsewhere costs seconds, not 60 s
        store.limit_waits(SERVE_BUSY_TIMEOUT, SERVE_BUSY_DEADLINE)
        extra: dict[str, Any] = {} if self._hide_inner_transcripts else {"transcripts": False}
        access = self._shared(store.path)
        transcripts_dir = f"{self.mountpoint}/agents/{agent_id}/sessions"
        projector = Projector(store, transcripts_dir, recheck=self.timeout)
        return Agent(agent_id, location, store,
                     functools.partial(self._agent_view, agent_id, store, access, extra),
                     projector, access, on_view=self._directory.add_view)

    def _agent_view(self, agent_id: str, store: Store, access: Shown,
                    extra: dict[str, Any]) -> SessionView:
        """The view of agent ``agent_id``'s ``sessions.d`` (built at its first use)."""
        view = SessionView(store, timeout=self.timeout, max_entry_size=self.max_entry_size,
                           read_only=self.read_only, **access.as_view_kwargs(), **extra)
        prefix = f"/agents/{agent_id}/sessions/{SESSIONS_D}"
        view.invalidate = lambda inner: self._invalidate(prefix + inner)
        # writes through an openclaw Gateway: only the mounting user's or root's
        view.caller = lambda: self.caller() if self.caller else (os.geteuid(), 0)
        return view

    def _agent(self, agent_id: str, depth: int) -> Agent | None:
        """The served agent ``agent_id``; None for a listed agent that is not served, at its
        own folder (``depth`` 2); below that, its problem's errno."""
        agent = self.agents().get(agent_id)
        if agent is not None:
            return agent
        problem = self._directory.problems.get(agent_id)
        if problem is None:
            fail(errno.ENOENT)
        if depth == 2:
            return None
        fail(problem.errno, problem.reason)

    def _check_root(self) -> None:
        """``agents/`` itself is not walked (a link, or STATE moved): its errno."""
        self.agents()
        root = self._directory.root_problem
        if root is not None:
            fail(root.errno, root.reason)

    def _projection(self, agent: Agent) -> Projection:
        """``agent``'s rendering now; a store that cannot be read answers EIO (never EINVAL
        or ENOENT: the agent is there, its store is damaged) and ``errors``/``status`` say
        why until it reads again."""
        try:
            projection = agent.projector.get()
        except SessionfsError as exc:
            reason = " ".join(str(exc).split())
            if self._directory.damage.get(agent.agent_id) != reason:
                log.warning("agent %s: cannot read its store: %s", agent.agent_id, reason)
                with self._lock:
                    self._directory.damage[agent.agent_id] = reason
            if exc.errno in (errno.EBUSY, errno.EAGAIN, errno.EIO):
                raise
            fail(errno.EIO, reason)
        if agent.agent_id in self._directory.damage:
            with self._lock:
                self._directory.damage.pop(agent.agent_id, None)
        if projection.token != agent.rendered:
            agent.rendered = projection.token
            if projection.size >= TRIM_AFTER_BYTES:
                daemon.trim_heap()  # see TRIM_AFTER_BYTES
        return projection

    def _invalidate(self, path: str) -> None:
        if self.invalidate is None:
            return
        try:
            self.invalidate(path)
        except Exception:  # the kernel never saw the path, or the mount is going away
            log.debug("invalidating %s failed", path, exc_info=True)

    # -- paths -----------------------------------------------------------------------------------
    def _route(self, path: str) -> tuple[str, list[str], Agent | None, str]:
        """``(kind, parts, agent, inner path)``: kinds root, control, control-file, agents,
        agent, sessions, sessions-json, transcript, inner (inside sessions.d)."""
        parts = [part for part in path.split("/") if part]
        count = len(parts)
        if count == 0:
            return "root", parts, None, ""
        if parts[0] == CONTROL_DIR:
            if count == 1:
                return "control", parts, None, ""
            if count == 2 and parts[1] in CONTROL_FILES:
                return "control-file", parts, None, ""
            fail(errno.ENOENT)
        if parts[0] != "agents":
            fail(errno.ENOENT)
        if count == 1:
            self._check_root()
            return "agents", parts, None, ""
        self._check_root()
        agent = self._agent(parts[1], count)
        if count == 2:
            return "agent", parts, agent, ""
        assert agent is not None
        if parts[2] != "sessions":
            fail(errno.ENOENT)
        if count == 3:
            return "sessions", parts, agent, ""
        if parts[3] == SESSIONS_D:
            inner = parts[4:]
            if inner and inner[0] == CONTROL_DIR:
                fail(errno.ENOENT)  # the agent view's own control folder: ours is at the root
            if (self._hide_inner_transcripts and len(inner) == 2
                    and inner[1] == INNER_TRANSCRIPT):
                fail(errno.ENOENT)
            return "inner", parts, agent, "/" + "/".join(inner)
        if count == 4 and parts[3] == SESSIONS_JSON:
            return "sessions-json", parts, agent, ""
        if count == 4 and parts[3].endswith(".jsonl"):
            return "transcript", parts, agent, ""
        fail(errno.ENOENT)

    # -- attributes ------------------------------------------------------------------------------
    def _shared(self, path: Path) -> Shown:
        """What ``path`` grants through the mount (``share``), else the mounting user's."""
        if not self.share:
            return self._own
        return LiveAccess(path, self._own, self.timeout)

    def _transcript_access(self, agent: Agent, name: str) -> Shown:
        """What the transcript ``name`` shows: the agent's store's, capped by its own file."""
        if not self.share:
            return agent.access
        key = self._transcript_key(agent, name)[1]
        return agent.access.narrowed(agent.view.transcript_cap(key))

    def _control_access(self) -> Access:
        """The control files name every agent's sessions: no wider than any of them."""
        access = self._root_access.narrowed(self._agents_access.dir_bits)
        for agent in self.agents().values():
            access = access.narrowed(agent.access.dir_bits)
        return access

    def _attrs(self, mode: int, size: int, mtime_ns: int, nlink: int = 1,
               access: Shown | None = None) -> dict[str, Any]:
        """Attributes with ``mode``'s owner bits (rwx, r-x, rw-, r--) repeated for each class
        ``access`` shows (the mounting user's 0700/0600 without ``share``)."""
        access = access or self._own
        pattern = ((mode >> 6) & 0o7) * 0o111
        bits = access.dir_bits if stat.S_ISDIR(mode) else access.file_bits
        mode = stat.S_IFMT(mode) | (pattern & bits)
        return {"st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": access.uid,
                "st_gid": access.gid, "st_mtime": mtime_ns, "st_ctime": mtime_ns,
                "st_atime": mtime_ns, "st_blocks": (size + 511) // 512}

    def stat(self, path: str | None, fh: int | None = None
             ) -> tuple[int, int, int, int, int, int]:
        """``(st_mode, st_nlink, st_size, st_mtime ns, st_uid, st_gid)``, what the adapter's
        getattr glue fills the kernel's stat from (``SessionView.stat`` plus the owner, which
        differs by path with ``share``)."""
        attrs = self.getattr(path, fh)
        return (attrs["st_mode"], attrs["st_nlink"], attrs["st_size"], attrs["st_mtime"],
                attrs["st_uid"], attrs["st_gid"])

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        handle = self.handles.find(fh)
        if isinstance(handle, Delegated):
            return handle.agent.view.getattr(None, handle.inner_fh)
        if isinstance(handle, FollowedTranscript):
            return self._attrs(READ_ONLY_FILE, *handle.current(), access=handle.access)
        if isinstance(handle, ConstHandle):
            return self._attrs(FILE_MODE, handle.size(), handle.mtime_ns(),
                               access=self._control_access())
        if handle is not None and not isinstance(handle, DirHandle):
            return self._attrs(READ_ONLY_FILE, handle.size(), handle.mtime_ns(),
                               access=getattr(handle, "access", None))
        if path is None:
            fail(errno.EBADF)
        kind, parts, agent, inner = self._route(path)
        if kind == "root":
            return self._attrs(DIR_MODE, 0, self._started_ns, 2, self._root_access)
        if kind == "control":
            return self._attrs(DIR_MODE, 0, self._started_ns, 2, self._control_access())
        if kind == "control-file":
            data, mtime_ns = self._control_snapshot(parts[1])
            return self._attrs(FILE_MODE, len(data), mtime_ns, 1, self._control_access())
        if kind == "agents":
            return self._attrs(READ_ONLY_DIR, 0, self._mtime_of(self.state_dir / "agents"), 2,
                               self._agents_access)
        if kind == "agent":  # a listed agent that is not served shows the mounting user's
            return self._attrs(READ_ONLY_DIR, 0,
                               self._mtime_of(self.state_dir / "agents" / parts[1]),
                               2, agent.access if agent is not None else self._own)
        assert agent is not None
        if kind == "sessions":
            projection = self._projection(agent)
            return self._attrs(DIR_MODE, 0, projection.mtime_ns, 2, agent.access)
        if kind == "sessions-json":
            projection = self._projection(agent)
            with self._lock:
                self._sized[path] = projection.token
            return self._attrs(READ_ONLY_FILE, projection.size, projection.mtime_ns, 1,
                               agent.access)
        if kind == "transcript":
            size, mtime_ns, token = self._transcript_stat(agent, parts[3])
            with self._lock:
                self._sized[path] = token
            return self._attrs(READ_ONLY_FILE, size, mtime_ns, 1,
                               self._transcript_access(agent, parts[3]))
        attrs = agent.view.getattr(inner)
        return attrs

    def _mtime_of(self, path: Path) -> int:
        try:  # lstat: a link there is never followed (it may lead into this mount)
            return os.lstat(path).st_mtime_ns
        except OSError:
            return self._started_ns

    def _transcript_stat(self, agent: Agent, name: str) -> tuple[int, int, object]:
        """``(size, mtime_ns, token)`` of the transcript ``name`` now: a file-era transcript
        is measured by ``lstat`` alone (a walk stats every file before reading it), a SQLite
        one through its source (:meth:`_transcript`)."""
        if agent.store.transcripts_are_files:
            measured = agent.store.measure_transcript_named(self._file_names(agent, name))
            if measured is None:
                fail(errno.ENOENT)
            return measured
        source = self._transcript(agent, name)
        try:
            return source.size, source.mtime_ns, source.token
        finally:
            source.close()

    def _transcript(self, agent: Agent, name: str) -> TranscriptSource:
        """The transcript ``name`` now. Every stat and open of a transcript comes here, so
        what does not change while the projection's version holds is kept: a SQLite source
        (its version is the database's fingerprint: any commit changes it) or a file-era
        transcript's file names (the file itself is opened and measured every time, as the
        gateway appends to it without touching the entry)."""
        source: TranscriptSource | None
        if agent.store.transcripts_are_files:
            source = agent.store.open_transcript_named(self._file_names(agent, name))
        else:
            projection, key = self._transcript_key(agent, name)
            cached = agent.transcripts.get(name)
            if cached is not None and cached[0] == projection.version and \
                    isinstance(cached[1], TranscriptSource):
                return cached[1]
            source = agent.store.transcript(key)
            if source is not None:
                self._keep_transcript(agent, name, projection.version, source)
        if source is None:
            fail(errno.ENOENT)
        return source

    def _file_names(self, agent: Agent, name: str) -> tuple[str, ...]:
        """File era: the names the transcript ``name`` may have on disk, kept while the
        projection's version holds (they come from the entry). :raises OSError: ENOENT"""
        projection, key = self._transcript_key(agent, name)
        cached = agent.transcripts.get(name)
        if cached is not None and cached[0] == projection.version and \
                isinstance(cached[1], tuple):
            return cached[1]
        names = agent.store.transcript_names(key)
        self._keep_transcript(agent, name, projection.version, names)
        return names

    def _transcript_key(self, agent: Agent, name: str) -> tuple[Projection, str]:
        """The projection now and the key whose transcript is shown as ``name``."""
        projection = self._projection(agent)
        key = projection.names.get(name)
        if key is None:
            fail(errno.ENOENT)
        return projection, key

    def _keep_transcript(self, agent: Agent, name: str, version: object,
                         known: TranscriptSource | tuple[str, ...]) -> None:
        with self._lock:
            if len(agent.transcripts) > _TRANSCRIPT_CACHE_LIMIT:
                agent.transcripts.clear()
            agent.transcripts[name] = (version, known)

    def entry_stat(self, directory: str, name: str
                   ) -> tuple[int, int, int, int, int, int] | None:
        """``(mode, nlink, size, mtime_ns, uid, gid)`` for READDIRPLUS, or None when it
        vanished."""
        try:
            return self.stat(f"{directory}/{name}")
        except (OSError, SessionfsError):
            return None

    def accept_metadata_change(self, path: str | None) -> None:
        if path is None:
            return
        kind, _parts, agent, inner = self._route(path)
        if kind == "inner" and agent is not None:
            agent.view.accept_metadata_change(inner)
        else:
            self.getattr(path)

    def accept_attribute_change(self, path: str | None) -> None:
        """chmod, chown, utimens: as in the store mount. Inside ``sessions.d`` the agent's
        view answers (accepted without effect; its transcript.jsonl refuses); the rendered
        ``sessions.json`` and the transcripts refuse them with EROFS like every change (their
        attributes are the store's); folders and control files accept them without effect, so
        ``touch``, ``cp -a``, ``tar -x``, ``install`` and ``rsync -a`` work."""
        if path is None:
            return
        kind, _parts, agent, inner = self._route(path)
        if kind == "inner" and agent is not None:
            agent.view.accept_attribute_change(inner)
            reason = agent.view.read_only_reason
            if reason is not None:  # as a read-only store mount (ro, EROFS) answers
                self._refuse(path, f"read-only: {reason}")
            return
        self.getattr(path)  # ENOENT for what is not there
        if kind in ("sessions-json", "transcript"):
            self._refuse(path, EDIT_INSTEAD if kind == "sessions-json" else
                         "transcripts are read-only in the state mount")

    def statfs(self) -> dict[str, int]:
        try:  # the descriptor: STATE replaced by a link into this mount is never walked
            st = os.statvfs(self._state_fd if self._state_fd is not None else self.state_dir)
        except OSError:
            return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}
        return {"f_bsize": st.f_bsize, "f_frsize": st.f_frsize, "f_blocks": st.f_blocks,
                "f_bfree": st.f_bfree, "f_bavail": st.f_bavail, "f_files": st.f_files,
                "f_ffree": st.f_ffree, "f_favail": st.f_favail, "f_namemax": 255}

    # -- listings --------------------------------------------------------------------------------
    def listdir(self, path: str) -> list[tuple[str, int]]:
        kind, _parts, agent, inner = self._route(path)
        entries = [(".", DIR_MODE), ("..", DIR_MODE)]
        if kind == "root":
            return [*entries, (CONTROL_DIR, DIR_MODE), ("agents", READ_ONLY_DIR)]
        if kind == "control":
            return entries + [(name, FILE_MODE) for name in CONTROL_FILES]
        if kind == "agents":
            ids = sorted({*self.agents(), *self._directory.problems})
            return entries + [(agent_id, READ_ONLY_DIR) for agent_id in ids]
        if kind == "agent":
            return [*entries, ("sessions", DIR_MODE)]
        assert agent is not None
        if kind == "sessions":
            projection = self._projection(agent)
            entries.append((SESSIONS_JSON, READ_ONLY_FILE))
            entries.extend((name, READ_ONLY_FILE) for name in projection.names)
            entries.append((SESSIONS_D, DIR_MODE))
            return entries
        if kind == "inner":
            listed = agent.view.listdir(inner)
            if inner == "/":
                return [item for item in listed if item[0] != CONTROL_DIR]
            if self._hide_inner_transcripts and inner.count("/") == 1:
                return [item for item in listed if item[0] != INNER_TRANSCRIPT]
            return listed
        fail(errno.ENOTDIR)

    # -- control files ---------------------------------------------------------------------------
    def _control_snapshot(self, name: str) -> tuple[bytes, int]:
        """``(content, mtime_ns)`` of a control file: rendered again only when what it shows
        may have changed (the agents, their stores' fingerprints, the error logs), and its mtime
        moves only when the bytes do (``tar -c`` of the mount checks it; ControlFiles)."""
        agents = self.agents()
        directory = self._directory  # agents listed, not served, and why
        standing = (tuple(sorted(directory.problems.items())), directory.root_problem,
                    tuple(sorted(directory.damage.items())))
        if name == "errors":  # the stores' fingerprints: damage is looked for when they move
            token: Hashable = (self.errors.version,
                               tuple((agent_id, agent.view.errors.version,
                                      agent.store.fingerprint())
                                     for agent_id, agent in agents.items()), standing)
        else:
            token = (tuple((agent_id, agent.store.fingerprint(), agent.view.read_only_reason)
                           for agent_id, agent in agents.items()), standing)
        return self._control.get(name, token, lambda: self._control_bytes(name))

    def _control_bytes(self, name: str) -> bytes:
        agents = self.agents()
        if name == "errors":
            parts = [self.errors.render()]
            for agent in agents.values():  # damage shows here before anyone reads the agent
                with contextlib.suppress(OSError, SessionfsError):  # _projection noted it
                    self._projection(agent)
            standing = self._standing_problems()
            if standing:
                parts.insert(0, "".join(f"{line}\n" for line in standing).encode(
                    "utf-8", "replace"))
            for agent_id, agent in agents.items():
                inner = agent.view.errors.render()
                if inner:
                    parts.append(f"# agent {agent_id} (paths inside sessions.d)\n".encode()
                                 + inner)
            return b"".join(parts)
        lines = [f"state: {self.state_dir}", f"mountpoint: {self.mountpoint}",
                 f"agents: {len(agents)}", f"timeout: {self.timeout:g}", f"pid: {os.getpid()}"]
        for agent_id, agent in agents.items():
            try:
                count: int | str = len(agent.store.keys())
            except SessionfsError as exc:
                count = f"unknown ({exc})"
            writable = agent.view.read_only_reason
            if writable is None and agent.view.mount_state.through_gateway:
                writable = agent.store.read_only_reason  # writable while a Gateway is live
            lines += ["", f"[agent {agent_id}]", f"store: {agent.store.path}",
                      f"generation: {agent.store.generation}", f"sessions: {count}",
                      "sessions.d writable: " + ("yes" if writable is None
                                                 else f"no ({writable})")]
            why = self._directory.damage.get(agent_id)
            if isinstance(count, str) or why is not None:
                lines.append(f"error: EIO {why or ' '.join(str(count).split())}")
            if agent.store.writes_through_gateway:  # refused and damaged rows, each by key
                lines += store_status_lines(agent.store)[1:]
        for agent_id, problem in sorted(self._directory.problems.items()):
            lines += ["", f"[agent {agent_id}]", f"error: {errno.errorcode[problem.errno]} "
                      f"{' '.join(problem.reason.split())}"]
        root = self._directory.root_problem
        if root is not None:
            lines += ["", "[agents]", f"error: {errno.errorcode[root.errno]} "
                      f"{' '.join(root.reason.split())}"]
        return ("\n".join(lines) + "\n").encode("utf-8", "replace")

    def _standing_problems(self) -> list[str]:
        """What is not served now and why, one line each (``errors`` starts with them)."""
        lines = []
        root = self._directory.root_problem
        if root is not None:
            lines.append(f"agents {errno.errorcode[root.errno]} {' '.join(root.reason.split())}")
        for agent_id, problem in sorted(self._directory.problems.items()):
            lines.append(f"agents/{agent_id} {errno.errorcode[problem.errno]} "
                         f"{' '.join(problem.reason.split())}")
        for agent_id, why in sorted(self._directory.damage.items()):
            lines.append(f"agents/{agent_id} EIO {why}")
        return lines

    # -- opening files ---------------------------------------------------------------------------
    def _refuse(self, path: str, detail: str = EDIT_INSTEAD) -> None:
        exc = ReadOnlyStore(f"{path}: {detail}")
        self.errors.add(path, exc.errno, str(exc))
        raise exc

    def open(self, path: str, flags: int) -> int:
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        kind, parts, agent, inner = self._route(path)
        if kind == "control-file":
            if writing:
                fail(errno.EACCES, "the control folder is read-only")
            return self.handles.add(ConstHandle(*self._control_snapshot(parts[1])))
        if kind == "inner":
            assert agent is not None
            inner_fh = agent.view.open(inner, flags)
            return self.handles.add(Delegated(agent, inner_fh,
                                               agent.view.handles.find(inner_fh)))
        if kind in ("sessions-json", "transcript"):
            assert agent is not None
            if writing:
                self._refuse(path, EDIT_INSTEAD if kind == "sessions-json" else
                             "transcripts are read-only in the state mount")
            if kind == "sessions-json":
                projection = self._projection(agent)
                self._opened(path, projection.token)  # drops attributes of another size
                return self.handles.add(RenderedHandle(projection, False, agent.access))
            name = parts[3]
            source = self._transcript(agent, name)
            keep = self._opened(path, source.token)
            return self.handles.add(FollowedTranscript(
                source, keep, lambda: self._transcript(agent, name),
                lambda: self._transcript_stat(agent, name), self._transcript_access(agent, name),
                lambda: self._sized.get(path), agent))
        fail(errno.EISDIR)

    def _opened(self, path: str, token: object) -> bool:
        """Whether the kernel may keep its cached pages of ``path`` (same bytes as the last
        open); when the size it was told differs, drop its attributes and pages now."""
        with self._lock:
            was_paged = path in self._paged
            keep = was_paged and self._paged[path] == token
            stale_size = path in self._sized and self._sized[path] != token
            self._paged[path] = token
            self._sized[path] = token
        if stale_size or (was_paged and not keep):
            self._invalidate(path)
        return keep

    def create(self, path: str, flags: int) -> int:
        kind, _parts, agent, inner = self._route_for_new(path)
        if kind == "inner" and agent is not None:
            inner_fh = agent.view.create(inner, flags)
            return self.handles.add(Delegated(agent, inner_fh,
                                               agent.view.handles.find(inner_fh)))
        if kind in ("control", "control-file"):
            fail(errno.EACCES, "the control folder is read-only")
        self._refuse(path, "only sessions.d/<name>/meta.json is writable in the state mount")
        raise AssertionError  # unreachable

    def _route_for_new(self, path: str) -> tuple[str, list[str], Agent | None, str]:
        """Route a name that may not exist yet (create, mkdir, rename target)."""
        try:
            return self._route(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        parts = [part for part in path.split("/") if part]
        if parts and parts[0] == CONTROL_DIR:
            return "control", parts, None, ""
        return "outside", parts, None, ""

    # -- handle operations -----------------------------------------------------------------------
    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self.handles.get(fh)
        if isinstance(handle, Delegated):
            return handle.agent.view.read(handle.inner_fh, size, offset)
        return handle.read(size, offset)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self.handles.get(fh)
        if isinstance(handle, Delegated):
            return handle.agent.view.write(handle.inner_fh, data, offset)
        fail(errno.EBADF)

    def flush(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if isinstance(handle, Delegated):
            try:
                handle.agent.view.flush(handle.inner_fh)
            finally:
                if handle.writable:
                    handle.agent.projector.forget()

    def fsync(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if isinstance(handle, Delegated):
            try:
                handle.agent.view.fsync(handle.inner_fh)
            finally:
                handle.agent.projector.forget()

    def release(self, fh: int) -> None:
        handle = self.handles.get(fh)
        try:
            if isinstance(handle, Delegated):
                handle.agent.view.release(handle.inner_fh)
                if handle.writable:
                    handle.agent.projector.forget()
            else:
                handle.release()
        finally:
            self.handles.pop(fh)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        handle = self.handles.find(fh)
        if isinstance(handle, Delegated):
            handle.agent.view.truncate(None, length, handle.inner_fh)
            return
        if handle is not None:
            fail(errno.EBADF if not isinstance(handle, ConstHandle) else errno.EACCES)
        if path is None:
            fail(errno.EBADF)
        kind, _parts, agent, inner = self._route(path)
        if kind == "inner" and agent is not None:
            agent.view.truncate(inner, length, None)
            agent.projector.forget()
            return
        if kind == "control-file":
            fail(errno.EACCES, "the control folder is read-only")
        if kind in ("sessions-json", "transcript"):
            self._refuse(path)
        fail(errno.EISDIR)

    # -- names -----------------------------------------------------------------------------------
    def _mutate(self, path: str, action: Callable[[Agent, str], None]) -> None:
        kind, _parts, agent, inner = self._route_for_new(path)
        if kind == "inner" and agent is not None:
            try:
                action(agent, inner)
            finally:
                agent.projector.forget()
            return
        if kind in ("control", "control-file"):
            fail(errno.EACCES, "the control folder is read-only")
        self._refuse(path, EDIT_INSTEAD if path.endswith("/" + SESSIONS_JSON) else
                     "only sessions.d/<name>/meta.json is writable in the state mount")

    def mkdir(self, path: str) -> None:
        self._mutate(path, lambda agent, inner: agent.view.mkdir(inner))

    def rmdir(self, path: str) -> None:
        self._mutate(path, lambda agent, inner: agent.view.rmdir(inner))

    def unlink(self, path: str) -> None:
        self._mutate(path, lambda agent, inner: agent.view.unlink(inner))

    def symlink(self, path: str, target: str) -> None:
        self._mutate(path, lambda agent, inner: agent.view.symlink(inner, target))

    def readlink(self, path: str) -> str:
        kind, _parts, agent, inner = self._route(path)
        if kind == "inner" and agent is not None:
            return agent.view.readlink(inner)
        fail(errno.EINVAL)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        kind_old, _p, agent_old, inner_old = self._route_for_new(old)
        kind_new, _q, agent_new, inner_new = self._route_for_new(new)
        if kind_old == "inner" and kind_new == "inner" and agent_old is not None:
            if agent_old is not agent_new:
                fail(errno.EXDEV, "sessions move between agents only through openclaw")
            try:
                agent_old.view.rename(inner_old, inner_new, flags)
            finally:
                agent_old.projector.forget()
            return
        if "control" in (kind_old, kind_new) or "control-file" in (kind_old, kind_new):
            fail(errno.EACCES, "the control folder is read-only")
        if kind_old == "inner" or kind_new == "inner":
            fail(errno.EXDEV)
        self._refuse(new if kind_new == "sessions-json" else old)

    # -- settling deletes of open files (SessionView.settle), per agent ----------------------
    @property
    def has_dooms(self) -> bool:
        """Asked before every callback, so no lock and no call per agent: :meth:`agents`
        replaces ``_mount_states`` whole (each agent view's :class:`MountState`)."""
        return any(state.doomed for state in self._directory.mount_states)

    def settle(self, *, exempt: str | None = None, everything: bool = False) -> None:
        """Carry out each agent's deletes whose grace is over (``SessionView.settle``)."""
        with self._lock:
            agents = list(self._directory.served.values())
        for agent in agents:
            view = agent.built  # an agent whose view was never built has nothing to settle
            if view is not None and view.has_dooms:
                view.settle(everything=everything)
