"""``sessionfs mount`` / ``sessionfs umount``: pre-checks, options, the one ``FUSE()`` call.

Without ``-f`` the command returns only once the kernel has the mount (the daemon reports back
over a pipe from the filesystem's ``init``), or fails with one line saying why. With ``-f`` it
serves in the foreground, logs every rejected write, and SIGINT/SIGTERM unmount cleanly.
``unmount`` never stats the mountpoint first, so it also clears a mount whose daemon died
("Transport endpoint is not connected"). Forking the daemon, its ready pipe, its log and its
heap are :mod:`sessionfs.fs.daemon`'s job.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionfs.entry import DEFAULT_MAX_ENTRY_BYTES
from sessionfs.errors import MountError, SessionfsError, StoreNotFound, UsageError
from sessionfs.fs import access, daemon
from sessionfs.fs.paths import DIR_MODE, FILE_MODE
from sessionfs.fs.scratch import DEFAULT_SCRATCH_MAX_BYTES, DEFAULT_SCRATCH_MAX_FILES
from sessionfs.store import Store, locate_store, open_store

if TYPE_CHECKING:
    from sessionfs.fs.viewapi import MountedView

__all__ = [
    "FSTYPE",
    "MountError",
    "MountOptions",
    "is_mounted",
    "mount",
    "mount_entry",
    "unmount",
]

log = logging.getLogger("sessionfs.fs")


@dataclass
class MountOptions:
    """Everything ``sessionfs mount`` takes besides STORE and MOUNTPOINT."""

    foreground: bool = False
    read_only: bool = False
    migrate: bool = False
    allow_other: bool = False
    #: Seconds the kernel may cache names and attributes (and changes behind the mount take
    #: to show up in ``stat``; new opens always read the store).
    timeout: float = 1.0
    #: Extra comma-separated FUSE options (``-o``), passed on as they are.
    fuse_options: str = ""
    max_entry_size: int = DEFAULT_MAX_ENTRY_BYTES
    lock_timeout: float = 10.0
    #: Append the daemon's log (rejected writes, warnings) to this file; in the background
    #: this is the only place it goes (``.sessionfs/errors`` keeps the latest rejections).
    log_file: str | None = None
    #: Files other than meta.json (editor swap/backup files, notes) live in the daemon's
    #: memory until unmount: at most this many bytes and files per mount (ENOSPC beyond).
    scratch_max_bytes: int = DEFAULT_SCRATCH_MAX_BYTES
    scratch_max_files: int = DEFAULT_SCRATCH_MAX_FILES


# -- mount table -----------------------------------------------------------------------------
def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _canonical(mountpoint: os.PathLike[str] | str) -> str:
    """Absolute path with symlinks in the parent resolved, without touching the leaf itself
    (a dead FUSE mount answers ENOTCONN to any stat)."""
    path = os.path.abspath(os.fspath(mountpoint))
    parent, leaf = os.path.split(path)
    return os.path.join(os.path.realpath(parent), leaf) if leaf else path


#: The filesystem type a sessionfs mount has in the mount table (libfuse: "fuse." + subtype).
FSTYPE = "fuse.sessionfs"


def mount_entry(mountpoint: os.PathLike[str] | str) -> tuple[str, str] | None:
    """``(fstype, source)`` of the topmost mount at ``mountpoint``, or None when nothing is
    mounted there (per /proc/self/mountinfo: works for dead mounts, stats nothing)."""
    target = _canonical(mountpoint)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split()
            if len(fields) < 5 or _unescape(fields[4]) != target:
                continue
            try:
                rest = fields[fields.index("-", 6) + 1:]
            except ValueError:
                rest = []
            fstype = _unescape(rest[0]) if rest else "?"
            source = _unescape(rest[1]) if len(rest) > 1 else "?"
            found = (fstype, source)  # later lines are mounted on top of earlier ones
    return found


def is_mounted(mountpoint: os.PathLike[str] | str) -> bool:
    """Whether something is mounted there (per /proc/self/mountinfo: works for dead mounts)."""
    try:
        return mount_entry(mountpoint) is not None
    except OSError:
        return os.path.ismount(_canonical(mountpoint))


# -- pre-checks ------------------------------------------------------------------------------
def _check_mountpoint(mountpoint: str) -> None:
    if is_mounted(mountpoint):
        hint = f"sessionfs umount {shlex.quote(mountpoint)}"
        try:  # an open reaches the daemon (a stat may be answered from the kernel's cache)
            os.close(os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise MountError(f"{mountpoint} is still mounted by a daemon that is gone "
                                 f"(transport endpoint is not connected): run {hint}") from None
        raise MountError(f"{mountpoint} is already mounted (unmount it first: {hint})")
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise MountError(f"mountpoint {mountpoint} does not exist") from None
    except OSError as exc:
        raise MountError(f"mountpoint {mountpoint}: {exc.strerror}") from None
    if not os.path.isdir(mountpoint) or not (st.st_mode & 0o040000):
        raise MountError(f"mountpoint {mountpoint} is not a directory")
    try:
        entries = os.listdir(mountpoint)
    except OSError as exc:
        raise MountError(f"mountpoint {mountpoint}: {exc.strerror}") from None
    if entries:
        raise MountError(f"mountpoint {mountpoint} is not empty")


#: The FUSE device. libfuse3 opens it in the caller's process even for an ordinary user (only
#: the mount(2) itself goes through the setuid fusermount3), so the caller needs read-write.
FUSE_DEVICE = "/dev/fuse"


def _fuse_device_hint(device: str) -> str:
    """Who may open ``device`` and what would let this user in, for the EACCES message."""
    import grp
    import pwd

    try:
        st = os.stat(device)
    except OSError:
        return ""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    shown = f"{device} is {stat.filemode(st.st_mode)} {owner}:{group}"
    if st.st_mode & 0o060 == 0o060 and st.st_gid != 0:
        if st.st_gid in os.getgrouplist(user, os.getegid()):
            return f"{shown}; {user} is in group {group} but this session is not: log in again"
        return (f"{shown}: join group {group} (as root: usermod -aG {group} {user}, "
                "then log in again)")
    return f"{shown}: as root, chmod 0666 {device} (Debian's default)"


def _check_fuse(device: str = FUSE_DEVICE) -> None:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MountError(f"no {device}: load the fuse kernel module (modprobe fuse); in a "
                         f"container, pass the device (--device {device})") from None
    except PermissionError as exc:
        if exc.errno == errno.EPERM:  # a container's device rules, not the file's mode
            raise MountError(f"cannot open {device}: {exc.strerror} (a container must be "
                             f"given the device: --device {device} --cap-add SYS_ADMIN)"
                             ) from None
        hint = _fuse_device_hint(device)
        raise MountError(f"cannot open {device}: {exc.strerror}" + (f" ({hint})" if hint else "")
                         ) from None
    except OSError as exc:
        raise MountError(f"cannot open {device}: {exc.strerror}") from None
    os.close(fd)
    try:
        import sessionfs.fs.fuse_glue  # noqa: F401  (loads libfuse through mfusepy)
    except (OSError, AttributeError) as exc:
        raise MountError(f"libfuse3 is not usable ({exc}): install the fuse3 package "
                         "(Debian/Ubuntu: apt install fuse3)") from None
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise MountError("fusermount3 not found: install the fuse3 package "
                         "(Debian/Ubuntu: apt install fuse3)")


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _check_not_nested(store: os.PathLike[str] | str | None, mountpoint: str) -> None:
    """Refuse a mountpoint inside the store's folder, or the store inside the mountpoint.

    Either way the daemon would serve a tree that contains itself: a store operation (a scan
    of sessions.d, the lock beside sessions.json, a temp file) would walk into its own mount
    and wait on itself in the kernel, in uninterruptible sleep (``kill -9`` leaves a zombie,
    ``umount`` says busy). Checked on resolved real paths before anything is mounted, this is
    what keeps every store operation out of its own mount.
    """
    if _is_state(store):
        assert store is not None
        folder = os.path.realpath(os.path.expanduser(os.fspath(store)))  # every agent's store
    else:
        try:
            location = locate_store(store)
        except OSError as exc:
            raise MountError(f"cannot read store {exc.filename or store}: {exc.strerror}") \
                from None
        if location.layout is None:
            return  # no store there: opening it says so
        folder = os.path.realpath(location.folder)
    target = os.path.realpath(mountpoint)
    if _is_within(target, folder):
        raise MountError(f"mountpoint {mountpoint} is inside the store's folder {folder}: the "
                         "mount would contain itself and hang; choose a mountpoint outside it")
    if _is_within(folder, target):
        raise MountError(f"the store's folder {folder} is inside the mountpoint {mountpoint}: "
                         "the mount would hide its own store and hang; choose another mountpoint")


def _open(store: os.PathLike[str] | str | None, options: MountOptions) -> Store:
    try:
        if options.migrate:
            if options.read_only:
                raise MountError("--migrate writes the store; it cannot be combined with "
                                 "--read-only")
            if locate_store(store).layout == "legacy":
                from sessionfs.migrate import migrate

                migrate(store)
        opened = open_store(store, read_only=options.read_only,
                            lock_timeout=options.lock_timeout)
        opened.keys()  # a malformed or unreadable store fails here, not on the first ls
        if not opened.read_only:
            for leftover in opened.remove_orphan_temps():
                log.info("removed %s, left by a writer that died", leftover)
    except SessionfsError:
        raise
    except OSError as exc:
        where = exc.filename or store or "the default store"
        raise MountError(f"cannot read store {where}: {exc.strerror}") from None
    return opened


def _is_state(store: os.PathLike[str] | str | None) -> bool:
    from sessionfs.statedir import is_state_dir

    return store is not None and is_state_dir(os.path.expanduser(os.fspath(store)))


class StateRoot:
    """A state directory to mount (what :func:`_open_state` opens; served by
    :class:`sessionfs.fs.state_view.StateView`)."""

    layout = "state"

    def __init__(self, state: os.PathLike[str] | str) -> None:
        self.path = Path(os.path.abspath(state))
        if not (self.path / "agents").is_dir():
            raise StoreNotFound(f"{self.path}: not an openclaw state directory (no agents/)")


def _open_state(state: os.PathLike[str] | str, options: MountOptions) -> StateRoot:
    """A state directory (``STATE/agents/<id>/``): every agent's store, file-era layout."""
    if options.migrate:
        raise UsageError("--migrate converts one store; run 'sessionfs migrate "
                         "STATE/agents/<id>' for each agent instead")
    return StateRoot(os.path.expanduser(os.fspath(state)))


def _read_only_notice(store: Store, options: MountOptions) -> str | None:
    """One line for stderr when writes through the mount will not reach the store, or None."""
    if options.read_only:
        return f"note: serving {store.path} read-only (--read-only): writes fail with EROFS"
    if store.writes_through_gateway:
        reason = store.read_only_reason
        return (f"note: {store.path} changes only through the openclaw Gateway; "
                + ("one is live now: writes go through it" if reason is None else
                   f"now: {reason}; writes fail with EROFS until one runs"))
    if store.read_only_reason is not None:
        return (f"note: serving {store.path} read-only: {store.read_only_reason}; writes "
                "fail with EROFS")
    for folder in store.write_folders():
        if not os.access(folder, os.W_OK | os.X_OK):
            import pwd

            try:
                user = pwd.getpwuid(os.geteuid()).pw_name
            except KeyError:
                user = f"uid {os.geteuid()}"
            return (f"note: {folder} is not writable by {user}: the store is read-only for "
                    "you and every write through the mount will fail (EACCES)")
    return None


def _fuse_kwargs(options: MountOptions, source: Path, *, read_only: bool) -> dict[str, object]:
    timeout = max(0.0, options.timeout)
    kwargs: dict[str, object] = {
        "fsname": "sessionfs:" + re.sub(r"[,\s\\]", "_", str(source)),
        "subtype": FSTYPE.removeprefix("fuse."),  # what unmount() recognises
        "default_permissions": True,
        "entry_timeout": timeout,
        "attr_timeout": timeout,
        "negative_timeout": 0,
        # hard_remove stays off: a file unlinked while open is renamed to .fuse_hidden* (the
        # view deletes the session then) and fstat() of it keeps working; with hard_remove
        # libfuse answers ESTALE for it.
        # Worker threads live as long as the mount: each keeps its Python thread state (see
        # fuse_glue.PinnedFUSE), which a thread that exits would leak. libfuse >= 3.12
        # never ends idle workers by default, older ones ended all but 10.
        "max_idle_threads": MAX_IDLE_THREADS,
    }
    if options.allow_other:
        kwargs["allow_other"] = True
    if read_only:
        kwargs["ro"] = True
    kwargs.update(_parse_fuse_options(options.fuse_options))
    return kwargs


def shared_access(store: Store, timeout: float = 1.0) -> dict[str, Any]:
    """With ``--allow-other`` the mount grants what the store itself grants on disk: its owner,
    group and permission bits (of ``sessions.d``, or of ``sessions.json`` / the database) for
    every folder and file, read/write bits only for files, each class (owner, group, others)
    only if it can search every folder on the way to the store, each session no more than its
    own files grant (:mod:`sessionfs.fs.access`), looked at again at most every ``timeout``.
    A mount never opens the store wider than the disk does (which matters when root mounts
    it); ``chmod`` the store and its folders to share it."""
    own = access.Access(os.getuid(), os.getgid(), DIR_MODE & 0o777, FILE_MODE & 0o777)
    return access.LiveAccess(store.path, own, timeout).as_view_kwargs()


FUSE_CONF = "/etc/fuse.conf"


def _check_allow_other(options: MountOptions) -> None:
    """fusermount3 lets a non-root user pass ``allow_other`` only with ``user_allow_other`` in
    /etc/fuse.conf (root needs nothing): say so before anything happens."""
    if not options.allow_other or os.geteuid() == 0:
        return
    try:
        with open(FUSE_CONF, encoding="utf-8", errors="replace") as conf:
            allowed = any(line.split("#", 1)[0].strip() == "user_allow_other" for line in conf)
    except OSError:
        allowed = False
    if not allowed:
        raise MountError(f"--allow-other needs the line 'user_allow_other' in {FUSE_CONF} "
                         "when not mounting as root (root can add it), or mount as root")


def _parse_fuse_options(text: str) -> dict[str, object]:
    """``-o a,b=c`` as keyword arguments for mfusepy. :raises UsageError: a managed option."""
    parsed: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if name in _MANAGED_FUSE_OPTIONS:
            raise UsageError(f"-o {name}: {_MANAGED_FUSE_OPTIONS[name]}")
        parsed[name] = value if sep else True
    return parsed


#: Idle worker threads libfuse may keep: far above any number it starts (10 by default).
MAX_IDLE_THREADS = 10_000
_MANAGED_FUSE_OPTIONS = {
    "max_idle_threads": "sessionfs keeps libfuse's worker threads for the life of the mount",
}


# -- serving ---------------------------------------------------------------------------------
def _view(opened: Store | StateRoot, mountpoint: str, options: MountOptions
          ) -> tuple[MountedView, bool]:
    """The view to serve ``opened`` through, and whether the whole mount is read-only (a
    state mount never is: each agent's store decides for its own files)."""
    from sessionfs.fs.state_view import StateView
    from sessionfs.fs.view import SessionView

    if isinstance(opened, StateRoot):
        state = StateView(opened.path, mountpoint, timeout=options.timeout,
                          max_entry_size=options.max_entry_size, read_only=options.read_only,
                          share=options.allow_other)
        state.agents()  # find and open the agents before the kernel's first request
        return state, False
    view = SessionView(opened, timeout=options.timeout, max_entry_size=options.max_entry_size,
                       read_only=options.read_only,
                       scratch_max_bytes=options.scratch_max_bytes,
                       scratch_max_files=options.scratch_max_files,
                       **(shared_access(opened, options.timeout) if options.allow_other
                          else {}))
    return view, view.read_only_reason is not None


def _serve(opened: Store | StateRoot, mountpoint: str, options: MountOptions,
           ready: object = None, log_handler: logging.Handler | None = None) -> int:
    """Run the filesystem until it is unmounted (or a signal unmounts it): the one place the
    FUSE object is made, for a store and for a state directory alike."""
    from sessionfs.fs.fuse_glue import SessionFUSE
    from sessionfs.fs.operations import SessionOperations

    if log_handler is not None:
        logging.getLogger("sessionfs").addHandler(log_handler)
    daemon.return_big_buffers_to_the_os()
    view, read_only = _view(opened, mountpoint, options)

    def on_init() -> None:
        daemon.start_heap_trimmer()
        if callable(ready):
            ready()

    operations = SessionOperations(view, on_init=on_init)
    kwargs = _fuse_kwargs(options, opened.path, read_only=read_only)
    # libfuse installs its own SIGINT/SIGTERM/SIGHUP handlers (clean unmount) only where the
    # disposition is the default; the CLI's lock-releasing handlers must not stand in the way.
    for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signo, signal.SIG_DFL)
    log.info("serving %s (%s) at %s", opened.path, opened.layout, mountpoint)
    try:
        SessionFUSE(operations, mountpoint, foreground=True, nothreads=False, **kwargs)
    except RuntimeError as exc:
        if exc.args and exc.args[0] == 8:  # libfuse3: the loop ended on a signal, unmounted
            return 0
        raise MountError(f"could not mount {mountpoint} (libfuse error {exc.args[0]})"
                         ) from None
    return 0


def mount(store: os.PathLike[str] | str | None, mountpoint: os.PathLike[str] | str,
          options: MountOptions | None = None) -> int:
    """Mount ``store`` (default: openclaw's default store) at ``mountpoint``.

    Checks the mountpoint, FUSE and the store before anything is mounted. Writes the store
    only with ``options.migrate`` (legacy → directory first).

    :return: the exit status (0; foreground: once unmounted).
    :raises MountError, SessionfsError: cannot mount; the message is one line.
    """
    options = options or MountOptions()
    _parse_fuse_options(options.fuse_options)
    target = _canonical(mountpoint)
    _check_not_nested(store, target)
    _check_mountpoint(target)
    _check_fuse()
    _check_allow_other(options)
    daemon.check_log_path(options.log_file)
    if _is_state(store):
        assert store is not None  # _is_state says so
        opened: Store | StateRoot = _open_state(store, options)
    else:
        opened = _open(store, options)
        notice = _read_only_notice(opened, options)
        if notice is not None:
            print(f"sessionfs: {notice}", file=sys.stderr, flush=True)
    log_handler = daemon.open_log(options.log_file)
    if options.foreground:
        return _serve(opened, target, options, log_handler=log_handler)
    return daemon.daemonize(
        lambda ready: _serve(opened, target, options, ready, log_handler), target,
        waiting_for=lambda: _waiting_for(target), cleanup=lambda: _clear_leftover(target))


def _waiting_for(mountpoint: str) -> str:
    """What a daemon that is not ready yet is doing, as the mount table shows it."""
    try:
        entry = mount_entry(mountpoint)
    except OSError:
        entry = None
    if entry is not None and entry[0] == FSTYPE:
        return "answer the kernel's first request (INIT)"
    return "open the store and mount it"


def _clear_leftover(mountpoint: str) -> None:
    """Unmount the sessionfs mount a daemon that never got ready may have left (killed between
    mount(2) and libfuse's signal handlers); anything else there is left alone."""
    try:
        entry = mount_entry(mountpoint)
    except OSError:
        return
    if entry is not None and entry[0] == FSTYPE:
        try:
            unmount(mountpoint)
        except MountError as exc:
            log.warning("%s", exc)


def unmount(mountpoint: os.PathLike[str] | str) -> None:
    """Unmount a sessionfs mount, also when its daemon died.

    Anything else mounted there (tmpfs, ext4, another FUSE filesystem) is refused and left
    alone: a sessionfs mount is recognised by its filesystem type in the mount table
    (``fuse.sessionfs``, from the ``subtype`` the mount sets), which a dead mount keeps.

    :raises MountError: not mounted, not sessionfs, or busy.
    """
    target = _canonical(mountpoint)
    try:
        entry = mount_entry(target)
    except OSError as exc:
        raise MountError(f"cannot read the mount table: {exc.strerror}") from None
    if entry is None:
        raise MountError(f"{target} is not mounted")
    fstype, source = entry
    if fstype != FSTYPE:
        raise MountError(f"{target} is not a sessionfs mount ({fstype} from {source} is "
                         "mounted there); left alone")
    problems: list[str] = []
    for command in (["fusermount3", "-u", target], ["fusermount", "-u", target],
                    ["umount", target]):
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0 or not is_mounted(target):
            return
        problems.append(result.stderr.strip() or f"{command[0]} exited {result.returncode}")
    detail = problems[-1] if problems else "no fusermount3 or umount found"
    raise MountError(f"could not unmount {target}: {detail}")
