"""The agents of a state directory, as the state mount (:mod:`sessionfs.fs.state_view`) serves
them: :class:`AgentDirectory` finds them and keeps what the last rescan found.

``agents/`` is listed again only when its inode or mtime changed, and each agent folder is looked
at with ``lstat`` alone (:func:`sessionfs.statedir.scan_agent`); an agent is located and opened
again only when that look changed, each in its own thread (:class:`Opener`), outside every
lock; a rescan waits at most ``OPEN_DEADLINE`` for agents it has not seen before, and none for
those it knows. Rescans run one at a time and nobody waits for one: the others serve what the
last rescan found. How an agent is located and opened is the view's (the ``locate`` callback).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sessionfs.fs.access import Shown
from sessionfs.fs.handles import HandleTable
from sessionfs.fs.mountstate import MountState
from sessionfs.fs.view import SessionView
from sessionfs.projection import Projector
from sessionfs.statedir import scan_agent, state_refusal
from sessionfs.store import StoreLocation
from sessionfs.store.base import Store, TranscriptSource

__all__ = ["Agent", "AgentDirectory", "Opened", "Problem"]

log = logging.getLogger("sessionfs.fs")

#: How long a rescan waits for the agents it opens; one still opening is shown as busy (EAGAIN).
OPEN_DEADLINE = 1.0
#: A busy agent is tried again this often (in the background: nobody waits for it).
BUSY_RETRY = 1.0
#: ``agents/`` listed within this long after its mtime is listed again at the next rescan
#: (a folder's mtime has the clock's coarse granularity: two changes may share one).
SETTLE_NS = 2_000_000_000
#: A vanished agent's store (its database descriptors) is closed this long after it vanished,
#: once no open file of it is left.
RETIRE_GRACE = 5.0


@dataclass
class Agent:
    """One agent: its store, the SessionView serving its sessions.d (built at the first call
    that needs it: a mount of many agents of which a reader walks a few builds a few), its
    sessions.json."""

    agent_id: str
    location: StoreLocation
    store: Store
    #: builds :attr:`view` (once, at its first use)
    make_view: Callable[[], SessionView]
    projector: Projector
    #: owner, group and bits of everything under agents/<id> (see StateView's ``share``)
    access: Shown
    #: transcript name -> (projection version, what opens it without asking the store again):
    #: a shared SQLite source (no descriptor; its size holds while the version does), or the
    #: file-era candidate file names (the entry is not read again per stat/open)
    transcripts: dict[str, tuple[object, TranscriptSource | tuple[str, ...]]] = field(
        default_factory=dict)
    #: the token of the last rendering served (a new one may free a lot: _projection trims)
    rendered: str = ""
    #: told each view once built (AgentDirectory.add_view: has_dooms sees its MountState)
    on_view: Callable[[Agent], None] = field(default=lambda _agent: None, repr=False)
    built: SessionView | None = field(default=None, init=False, repr=False)
    _building: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def prefix(self) -> str:
        return f"/agents/{self.agent_id}/sessions"

    @property
    def view(self) -> SessionView:
        """The SessionView of ``sessions.d``, built now if this is its first use."""
        view = self.built
        if view is None:
            with self._building:
                view = self.built
                if view is None:
                    view = self.built = self.make_view()
                    self.on_view(self)
        return view


@dataclass(frozen=True)
class Problem:
    """Why an agent (or ``agents/`` itself) is listed but not served: its files answer
    ``errno`` and ``errors``/``status`` show ``reason``."""

    errno: int
    reason: str


Opened = Agent | Problem | None  # None: the folder holds no store (not an agent)
Settled = tuple[tuple[object, ...], Opened, float]  # signature, what it gave, when


class Opener:
    """Locates and opens one agent in a thread of its own, so that a database another process
    holds locked delays that agent alone (see :meth:`AgentDirectory.current`)."""

    def __init__(self, agent_id: str, signature: tuple[object, ...],
                 run: Callable[[], Opened], finished: Callable[[], None]) -> None:
        self.signature = signature
        self.done = threading.Event()
        self.result: Opened = None
        self._run, self._finished = run, finished
        threading.Thread(target=self._main, name=f"open-agent-{agent_id}", daemon=True).start()

    def _main(self) -> None:
        try:
            self.result = self._run()
        except Exception as exc:  # a bug: logged with its traceback, the agent answers EIO
            log.exception("internal error opening an agent")
            self.result = Problem(errno.EIO, f"internal error: {exc}")
        finally:
            self.done.set()
            self._finished()


def busy(result: Opened) -> bool:
    """Whether opening an agent gave "busy" (tried again after ``BUSY_RETRY``)."""
    return isinstance(result, Problem) and result.errno == errno.EAGAIN


class AgentDirectory:
    """The agents served now, the listed ones that are not (and why), and the rescan that
    finds them. :attr:`lock` is held only for swaps, never across filesystem calls; the view
    shares it for what it keeps per agent (:attr:`damage`)."""

    def __init__(self, state_dir: Path, state_real: str, mount_real: str, timeout: float,
                 locate: Callable[[str, Agent | None], Opened], handles: HandleTable) -> None:
        self.state_dir = state_dir
        self._state_real, self._mount_real = state_real, mount_real
        self.timeout = timeout
        self._locate = locate
        self._handles = handles  # open files keep a vanished agent's store open
        self.lock = threading.RLock()
        self.served: dict[str, Agent] = {}
        self.mount_states: tuple[MountState, ...] = ()  # of the agents' views, for has_dooms
        self.problems: dict[str, Problem] = {}  # listed agents that are not served, and why
        self.root_problem: Problem | None = None  # agents/ itself is not walked
        #: agent id -> why serving its store failed last (damage found while mounted)
        self.damage: dict[str, str] = {}
        self._scanned_at: float | None = None
        self._scan_lock = threading.Lock()  # one rescan at a time; nobody waits for it
        self._rescan_soon = False  # an opener finished after its rescan stopped waiting
        self._listing: tuple[tuple[int, int] | None, list[str]] = (None, [])
        #: agent id -> (its AgentScan signature, what opening it gave, when)
        self._settled: dict[str, Settled] = {}
        self._openers: dict[str, Opener] = {}
        self._retired: list[tuple[float, Agent]] = []

    def add_view(self, agent: Agent) -> None:
        """``agent``'s view was just built: its deletes are settled from now on."""
        with self.lock:
            if self.served.get(agent.agent_id) is agent and agent.built is not None:
                self.mount_states = (*self.mount_states, agent.built.mount_state)

    def current(self) -> dict[str, Agent]:
        """The agents served now (rescanned when the last scan is older than ``timeout``).

        Every path asks, so no lock on the way in; one thread rescans at a time, and the
        others meanwhile serve what the last rescan found instead of waiting for it.
        """
        scanned_at, agents_now = self._scanned_at, self.served
        if scanned_at is not None and not self._rescan_soon and \
                time.monotonic() - scanned_at < self.timeout:
            return agents_now
        if not self._scan_lock.acquire(blocking=scanned_at is None):  # blocking: first scan
            return agents_now
        try:
            scanned_at = self._scanned_at
            if scanned_at is None or self._rescan_soon or \
                    time.monotonic() - scanned_at >= self.timeout:
                self._rescan_soon = False
                self._rescan()
            return self.served
        finally:
            self._scan_lock.release()

    def _rescan(self) -> None:
        """Find the agents again: ``agents/`` listed only when it changed, each agent folder
        looked at with ``lstat`` (:func:`scan_agent`), opened only when that look changed."""
        refusal = state_refusal(self.state_dir, self._state_real, self._mount_real)
        if refusal is not None:
            self._install({}, {}, {}, Problem(errno.ELOOP if "link" in refusal
                                               or "resolves" in refusal else errno.EIO,
                                               refusal))
            return
        names = self._agent_names()
        results: dict[str, Opened] = {}
        settled: dict[str, Settled] = {}
        waiting: list[tuple[str, Opener]] = []
        now = time.monotonic()
        for name in names:
            scan = scan_agent(self.state_dir, name, self._mount_real)
            if scan is None:
                continue
            if scan.refusal is not None:
                results[name] = Problem(errno.ELOOP, scan.refusal)
                continue
            before = self._settled.get(name)
            opener = self._openers.get(name)
            if opener is not None and opener.done.is_set():  # finished since: its result
                del self._openers[name]
                before, opener = (opener.signature, opener.result, now), None
            if before is not None and before[0] == scan.signature and (
                    not busy(before[1]) or now - before[2] < BUSY_RETRY):
                results[name], settled[name] = before[1], before
                continue
            started = opener is None
            if opener is None:
                opener = Opener(name, scan.signature,
                                 functools.partial(self._locate, name, self.served.get(name)),
                                 self._opener_finished)
                self._openers[name] = opener
            if before is not None and before[1] is not None:
                # served (or refused) before: shown as it was until the opener finishes
                results[name], settled[name] = before[1], before
            elif started:
                waiting.append((name, opener))  # new: waited for, briefly
            else:
                results[name] = self._still_opening(name)
        deadline = time.monotonic() + OPEN_DEADLINE
        for name, opener in waiting:
            if not opener.done.wait(max(0.0, deadline - time.monotonic())):
                results[name] = self._still_opening(name)
                continue
            del self._openers[name]
            results[name] = opener.result
            settled[name] = (opener.signature, opener.result, time.monotonic())
        agents = {name: r for name, r in results.items() if isinstance(r, Agent)}
        problems = {name: r for name, r in results.items() if isinstance(r, Problem)}
        for name, opener in list(self._openers.items()):
            if name not in results and opener.done.is_set():  # vanished while it opened
                del self._openers[name]
                if isinstance(opener.result, Agent):
                    self._retired.append((time.monotonic(), opener.result))
        self._install(agents, problems, settled, None)

    @staticmethod
    def _still_opening(name: str) -> Problem:
        return Problem(errno.EAGAIN, f"agents/{name}: busy: its store did not open within "
                        f"{OPEN_DEADLINE:g}s (a database another process holds locked?); "
                        "tried again in the background")

    def _agent_names(self) -> list[str]:
        """The names in ``agents/``, listed again only when its inode or mtime changed (or
        changed so recently that a second change could share the mtime)."""
        folder = self.state_dir / "agents"
        try:
            st = os.lstat(folder)
        except OSError:
            return []
        stamp = (st.st_ino, st.st_mtime_ns)
        known_stamp, names = self._listing
        if stamp == known_stamp:
            return names
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return []
        settled = time.time_ns() - st.st_mtime_ns > SETTLE_NS
        self._listing = (stamp if settled else None, names)
        return names

    def _install(self, agents: dict[str, Agent], problems: dict[str, Problem],
                 settled: dict[str, Settled], root: Problem | None) -> None:
        """Swap in what a rescan found; stores of agents no longer served are retired."""
        kept = {id(agent) for agent in agents.values()}
        now = time.monotonic()
        with self.lock:
            gone = [agent for agent in self.served.values() if id(agent) not in kept]
            self._retired.extend((now, agent) for agent in gone)
            self.served, self.problems, self.root_problem = agents, problems, root
            self._settled = settled
            self.damage = {name: why for name, why in self.damage.items() if name in agents}
            self.mount_states = tuple(agent.built.mount_state for agent in agents.values()
                                      if agent.built is not None)
            self._scanned_at = time.monotonic()
        for agent in gone:
            log.info("agent %s: no longer served", agent.agent_id)
        self._close_retired()

    def _close_retired(self) -> None:
        """Close the stores of vanished agents (releasing their database descriptors) once
        ``RETIRE_GRACE`` has passed and no open file of theirs is left."""
        if not self._retired:
            return
        now = time.monotonic()
        in_use = {id(getattr(handle, "agent", None)) for handle in self._handles.snapshot()}
        keep: list[tuple[float, Agent]] = []
        for since, agent in self._retired:
            if now - since < RETIRE_GRACE or id(agent) in in_use:
                keep.append((since, agent))
                continue
            close = getattr(agent.store, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing what is gone: nothing to tell anyone
                    log.debug("closing agent %s's store failed", agent.agent_id, exc_info=True)
        self._retired = keep

    def _opener_finished(self) -> None:
        self._rescan_soon = True
