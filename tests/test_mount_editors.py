"""Through the kernel with the real programs, in their default configurations.

Each save is checked three ways: the store holds the edited entry, ``cat`` shows it, and a
reader polling the store during the save never found the session missing (editors rename
``meta.json`` away before writing the new one; that must never delete it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from sessionfs import jsonfmt
from sessionfs.errors import SessionNotFound
from sessionfs.store import open_store
from tests.mountutil import ENTRIES, MAIN, Mount, wait_for

OLD = '"thinkingLevel": "low"'
NEW = '"thinkingLevel": "high"'
EDITED = dict(ENTRIES[MAIN], thinkingLevel="high")


@contextlib.contextmanager
def store_watch(mount: Mount) -> Iterator[list[str]]:
    """Poll the store (as the gateway would) while the block runs; yields what went wrong."""
    problems: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        store = open_store(mount.store_folder)
        while not stop.is_set():
            try:
                entry = store.get(MAIN)
            except SessionNotFound:
                problems.append("session missing from the store")
                continue
            if entry not in (ENTRIES[MAIN], EDITED):
                problems.append(f"unexpected entry {entry!r}")

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield problems
    finally:
        stop.set()
        thread.join(10)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, HOME=os.environ.get("HOME", "/root"), TERM="xterm")
    return subprocess.run(argv, capture_output=True, timeout=60, env=env, check=False,
                          **kwargs)  # type: ignore[call-overload,no-any-return]


def assert_edited(mount: Mount, problems: list[str]) -> None:
    assert mount.store().get(MAIN) == EDITED
    assert NEW in mount.meta(MAIN).read_text()
    assert problems == []


def test_vim_with_swap_backup_and_writebackup(mnt: Mount) -> None:
    path = mnt.meta(MAIN)
    with store_watch(mnt) as problems:
        result = run(["vim", "-u", "DEFAULTS", "-i", "NONE", "-es", "-c", "set backup writebackup",
                      "-c", f"%s/{OLD}/{NEW}/", "-c", "wq", str(path)])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert (mnt.dir(MAIN) / "meta.json~").read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])
    assert not (mnt.dir(MAIN) / ".meta.json.swp").exists()
    assert sorted(os.listdir(mnt.dir(MAIN))) == ["meta.json", "meta.json~"]


def test_vim_defaults(mnt: Mount) -> None:
    with store_watch(mnt) as problems:
        result = run(["vim", "-u", "DEFAULTS", "-i", "NONE", "-es", "-c", f"%s/{OLD}/{NEW}/",
                      "-c", "wq", str(mnt.meta(MAIN))])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]


def test_vim_save_of_an_invalid_entry_fails_and_keeps_the_store(mnt: Mount) -> None:
    before = mnt.store().read(MAIN).data
    result = run(["vim", "-u", "DEFAULTS", "-i", "NONE", "-es", "-c", "set backup writebackup",
                  "-c", '%s/"sessionId"/"sessionId" oops/', "-c", "wq", str(mnt.meta(MAIN))])
    assert result.returncode != 0
    assert mnt.store().read(MAIN).data == before
    assert "EINVAL" in mnt.errors()
    assert wait_for(lambda: mnt.meta(MAIN).read_bytes() in (before, before + b"\n"))


def test_nano(mnt: Mount) -> None:
    path = mnt.meta(MAIN)
    # search-and-replace (^\), "All", write out (^O, Enter), exit (^X)
    keys = ["\x1c", OLD, "\r", NEW, "\r", "A", "\x0f", "\r", "\x18"]
    script = "; ".join(f"sleep 0.25; printf '%s' {shlex_quote(k)}" for k in keys)
    with store_watch(mnt) as problems:
        result = run(["bash", "-c", f"({script}; sleep 0.5) | script -qfc "
                      f"{shlex_quote('nano ' + shlex_quote(str(path)))} /dev/null"])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]  # nano's lock file is gone again


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_emacs_with_backup_by_rename(mnt: Mount) -> None:
    lisp = (f'(progn (goto-char (point-min)) (replace-string {jsonfmt.stringify(OLD)} '
            f'{jsonfmt.stringify(NEW)}) (save-buffer))')
    with store_watch(mnt) as problems:
        result = run(["emacs", "--batch", str(mnt.meta(MAIN)), "--eval", lisp])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert (mnt.dir(MAIN) / "meta.json~").read_bytes() == jsonfmt.dumps(ENTRIES[MAIN])


@pytest.mark.parametrize("tool", ["sed", "perl"])
def test_sed_and_perl_in_place(mnt: Mount, tool: str) -> None:
    expression = f"s/{OLD}/{NEW}/"
    argv = ["sed", "-i", expression] if tool == "sed" else ["perl", "-pi", "-e", expression]
    with store_watch(mnt) as problems:
        result = run([*argv, str(mnt.meta(MAIN))])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]


def test_python_tempfile_and_os_replace(mnt: Mount) -> None:
    import tempfile

    text = mnt.meta(MAIN).read_text().replace(OLD, NEW)
    with store_watch(mnt) as problems:
        fd, tmp = tempfile.mkstemp(dir=mnt.dir(MAIN), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, mnt.meta(MAIN))
    assert_edited(mnt, problems)
    assert mnt.meta(MAIN).read_text() == text


def test_vscode_style_atomic_save(mnt: Mount) -> None:
    text = mnt.meta(MAIN).read_text().replace(OLD, NEW)
    tmp = mnt.dir(MAIN) / "meta.json.vsctmp"
    with store_watch(mnt) as problems:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, mnt.meta(MAIN))
    assert_edited(mnt, problems)


def test_jq_to_temp_then_mv(mnt: Mount) -> None:
    path, tmp = mnt.meta(MAIN), mnt.dir(MAIN) / "meta.json.tmp"
    with store_watch(mnt) as problems:
        result = run(["bash", "-c", f"jq '.thinkingLevel = \"high\"' '{path}' > '{tmp}' && "
                      f"mv '{tmp}' '{path}'"])
    assert result.returncode == 0, result
    assert_edited(mnt, problems)
    assert os.listdir(mnt.dir(MAIN)) == ["meta.json"]


def test_jq_invalid_result_is_refused_by_mv(mnt: Mount) -> None:
    path, tmp = mnt.meta(MAIN), mnt.dir(MAIN) / "meta.json.tmp"
    before = mnt.store().read(MAIN).data
    result = run(["bash", "-c", f"jq 'del(.sessionId)' '{path}' > '{tmp}' && "
                  f"mv '{tmp}' '{path}'"])
    assert result.returncode != 0  # mv words rename's EINVAL as "subdirectory of itself"
    with pytest.raises(OSError) as excinfo:
        os.rename(tmp, path)
    assert excinfo.value.errno == errno.EINVAL
    assert mnt.store().read(MAIN).data == before
    assert tmp.exists()  # the rejected scratch file stays for the user to fix


def test_cp_over_and_shell_redirects(mnt: Mount, tmp_path: object) -> None:
    source = mnt.store_folder.parent / "edited.json"
    source.write_bytes(jsonfmt.dumps(EDITED))
    result = run(["cp", str(source), str(mnt.meta(MAIN))])
    assert result.returncode == 0, result
    assert mnt.store().get(MAIN) == EDITED
    result = run(["bash", "-c", f"cat '{source}' > '{mnt.meta(MAIN)}' && "
                  f"printf '\\n' >> '{mnt.meta(MAIN)}'"])
    assert result.returncode == 0, result
    assert mnt.meta(MAIN).read_bytes() == jsonfmt.dumps(EDITED) + b"\n"


def test_tools_exist() -> None:
    for tool in ("vim", "nano", "emacs", "sed", "perl", "jq", "script"):
        assert shutil.which(tool), f"{tool} is needed for the editor tests"
