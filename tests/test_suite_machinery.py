"""The suite's own machinery (tests/conftest.py, tests/mountmarks.py): which tests get the
``mount`` marker, the guard against a mount in an unmarked test, and the per-test check that no
mount's daemon logged a traceback. Each runs a small test file in a child pytest that loads
tests/conftest.py as a plugin, and asserts on its outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.mountharness import ROOT


def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run SOURCE as test file ``test_inner.py`` with tests/conftest.py loaded."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "-rA", "--rootdir", str(tmp_path), "-c", str(ROOT / "pyproject.toml"),
         str(tmp_path), *args],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)


INNER = '''
    import subprocess, sys
    import pytest
    from tests import mountutil
    from tests.mountutil import Mount

    def helper(folder):
        return Mount(folder, folder.parent / "mnt")

    def test_plain(tmp_path):
        assert tmp_path.is_dir()

    def test_body_mounts(base):
        with Mount(base / "sessions", base / "mnt"):
            pass

    def test_helper_mounts(base):
        helper(base / "sessions")

    def test_fixture_mounts(mnt):
        pass

    def test_module_attribute(base):
        mountutil.mounted(base / "sessions")

    def test_cli_mounts(tmp_path):
        subprocess.run([sys.executable, "-m", "sessionfs", "mount", "x", "y"], check=False)

    def test_local_import(tmp_path):
        from tests.mountharness import mounted
        mounted(tmp_path)

    @pytest.mark.parametrize("n", [1, 2])
    def test_parametrized_plain(n):
        assert n
'''


def test_the_mount_marker_is_applied_to_what_mounts(tmp_path: Path) -> None:
    """Only the tests that mount (in the body, a helper, a fixture, the CLI) are deselected."""
    done = run_pytest(tmp_path, INNER, "-m", "not mount", "--collect-only")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = sorted(line.split("::")[1] for line in done.stdout.splitlines() if "::" in line)
    assert collected == ["test_parametrized_plain[1]", "test_parametrized_plain[2]",
                         "test_plain"], done.stdout
    assert "3/10 tests collected (7 deselected)" in done.stdout, done.stdout


def test_a_mount_the_marker_missed_fails_the_test(tmp_path: Path) -> None:
    """A test that reaches the harness in a way the reader cannot see fails, saying what to do
    (and does not mount)."""
    done = run_pytest(tmp_path, '''
        import importlib

        def test_hidden(tmp_path):
            harness = importlib.import_module("tests.mountharness")
            getattr(harness, "Mo" + "unt")(tmp_path / "s", tmp_path / "mnt").start()
    ''')
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("test_inner.py::test_hidden mounts but is not marked 'mount': add "
            "@pytest.mark.mount") in done.stdout
    assert not (tmp_path / "mnt").exists()  # refused before the daemon started


@pytest.mark.mount
@pytest.mark.parametrize("line", ["Traceback (most recent call last):",
                                  "ERROR sessionfs.fs.operations: internal error in read"])
def test_a_traceback_in_a_daemon_log_fails_the_test(tmp_path: Path, line: str) -> None:
    """A test whose body passes fails when a mount's daemon logged an internal error during
    it: for a mount of its own (stopped at its end) and for one a module fixture keeps."""
    done = run_pytest(tmp_path, f'''
        import pytest
        from tests.mountharness import Mount, make_store_folder, scratch_root
        from tests.conftest import ENTRIES

        @pytest.fixture(scope="module")
        def kept():
            base = scratch_root()
            with Mount(make_store_folder(base, "legacy", ENTRIES), base / "mnt") as mount:
                yield mount

        def logged(mount):
            with open(mount.log_path, "a") as log:
                log.write({line!r} + "\\n")

        def test_own_mount_clean():
            base = scratch_root()
            with Mount(make_store_folder(base, "legacy", ENTRIES), base / "mnt") as mount:
                assert (mount.mp / ".sessionfs").is_dir()

        def test_own_mount_logged():
            base = scratch_root()
            with Mount(make_store_folder(base, "legacy", ENTRIES), base / "mnt") as mount:
                logged(mount)

        def test_kept_logged(kept):
            logged(kept)

        def test_kept_clean_afterwards(kept):
            assert (kept.mp / ".sessionfs").is_dir()
    ''')
    assert done.returncode == 1, done.stdout + done.stderr
    outcome = {line.split()[1].split("::")[1]: line.split()[0]
               for line in done.stdout.splitlines()
               if line.startswith(("PASSED", "ERROR", "FAILED")) and "::" in line}
    assert outcome == {"test_own_mount_clean": "PASSED", "test_own_mount_logged": "ERROR",
                       "test_kept_logged": "ERROR", "test_kept_clean_afterwards": "PASSED"}, \
        done.stdout
    assert "a mount's daemon logged an internal error during this test" in done.stdout
    assert line in done.stdout
