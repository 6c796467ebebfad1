"""scripts/setup.sh as a newcomer meets it: an ordinary user, no sudo, a new shell.

The script runs from a scratch copy of the checkout as uid 65534, with a PATH that holds only
the tools it needs and a ``dpkg-query`` stub, so the tests decide which packages look missing
and sudo is certainly absent, without touching the machine's packages or /usr/local/bin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mountutil import ROOT, scratch_root

NOBODY = [shutil.which("setpriv") or "setpriv", "--reuid", "65534", "--regid", "65534",
          "--clear-groups"]
TOOLS = ["bash", "id", "grep", "printf", "dirname", "cat", "mkdir", "ln", "readlink", "rm",
         "env", "touch"]


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A scratch checkout holding scripts/setup.sh and pyproject.toml, owned by uid 65534."""
    base = scratch_root()
    (base / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", base / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    (base / "bin").mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (base / "bin" / tool).symlink_to(found)
    (base / "home").mkdir()
    subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _dpkg_stub(checkout: Path, installed: bool) -> None:
    stub = checkout / "bin" / "dpkg-query"
    answer = "echo 'install ok installed'" if installed else "exit 1"
    stub.write_text(f"#!/bin/bash\n{answer}\n")
    stub.chmod(0o755)


def _run_setup(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(checkout / "bin"), "HOME": str(checkout / "home")}
    return subprocess.run([*NOBODY, str(checkout / "bin" / "bash"),
                           str(checkout / "scripts" / "setup.sh"), *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_without_sudo_setup_says_what_to_run_as_root(checkout: Path) -> None:
    _dpkg_stub(checkout, installed=False)
    done = _run_setup(checkout)
    assert done.returncode == 1, done.stderr
    assert "no sudo here; as root run:" in done.stderr
    assert "  apt-get update && apt-get install -y --no-install-recommends fuse3 python3-venv" \
        in done.stderr.splitlines()
    assert not (checkout / ".venv").exists()


def test_setup_puts_a_launcher_where_a_users_shell_finds_it(checkout: Path) -> None:
    # A .venv already made from the interpreter setup.sh picks, and installed: only the launcher
    # is left to do.
    _dpkg_stub(checkout, installed=True)
    venv_bin = _installed_venv(checkout)
    done = _run_setup(checkout)
    assert done.returncode == 0, done.stderr
    launcher = checkout / "home" / ".local" / "bin" / "sessionfs"
    assert os.readlink(launcher) == str(venv_bin / "sessionfs")
    assert f"setup: installed {launcher} -> {venv_bin / 'sessionfs'}" in done.stderr
    assert f"{launcher.parent} is not on your PATH" in done.stderr
    # the interpreter matched: .venv was kept
    assert (checkout / ".venv" / ".sessionfs-installed").exists()
    # a second run changes nothing and says nothing about the launcher
    again = _run_setup(checkout)
    assert again.returncode == 0 and "installed" not in again.stderr


def _installed_venv(checkout: Path) -> Path:
    """A .venv already made from the interpreter setup.sh picks, and installed."""
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to("/usr/bin/python3")
    (venv_bin / "sessionfs").write_text("#!/bin/sh\necho launched\n")
    (venv_bin / "sessionfs").chmod(0o755)
    (checkout / ".venv" / ".sessionfs-installed").touch()
    subprocess.run(["chown", "-R", "65534:65534", str(checkout / ".venv")], check=True)
    return venv_bin


def test_setup_leaves_another_checkouts_launcher_alone_unless_forced(checkout: Path) -> None:
    """Issue 14.16: a second checkout's setup silently took over the first one's launcher."""
    _dpkg_stub(checkout, installed=True)
    venv_bin = _installed_venv(checkout)
    other = checkout / "other-checkout" / ".venv" / "bin" / "sessionfs"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\necho other\n")
    launcher = checkout / "home" / ".local" / "bin" / "sessionfs"
    launcher.parent.mkdir(parents=True)
    launcher.symlink_to(other)
    subprocess.run(["chown", "-R", "65534:65534", str(checkout / "home")], check=True)
    done = _run_setup(checkout)
    assert done.returncode == 0, done.stderr
    assert os.readlink(launcher) == str(other)
    assert (f"setup: {launcher} belongs to another checkout ({other}); left alone (use "
            f"{venv_bin / 'sessionfs'}, or run scripts/setup.sh --force to point it here)"
            ) in done.stderr.splitlines()
    forced = _run_setup(checkout, "--force")
    assert forced.returncode == 0, forced.stderr
    assert os.readlink(launcher) == str(venv_bin / "sessionfs")
    assert (f"setup: installed {launcher} -> {venv_bin / 'sessionfs'} (it pointed to {other})"
            in forced.stderr.splitlines())
    # the same checkout again: nothing to say; a dangling launcher (its checkout is gone) is
    # replaced, saying what it pointed to
    again = _run_setup(checkout)
    assert again.returncode == 0 and "launcher" not in again.stderr \
        and str(launcher) not in again.stderr
    launcher.unlink()
    launcher.symlink_to(checkout / "gone" / "sessionfs")
    healed = _run_setup(checkout)
    assert healed.returncode == 0, healed.stderr
    assert os.readlink(launcher) == str(venv_bin / "sessionfs")
    assert f"(it pointed to {checkout / 'gone' / 'sessionfs'})" in healed.stderr
    assert _run_setup(checkout, "--bogus").returncode == 2
