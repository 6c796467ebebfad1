"""Through the kernel: backing up a whole mount and restoring it, with no flags.

``tar -c`` of the mount needs stable attributes on ``.sessionfs/status`` and ``errors`` (GNU tar
exits 1 with "file changed as we read it" otherwise). A restore of that backup into a fresh
mount writes ``.sessionfs/`` back: those writes are accepted and discarded, so ``tar -x``,
``cp -r``, ``cp -a`` and ``rsync -a`` exit 0, and every session arrives byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.mountutil import ENTRIES, MAIN, Mount, make_store_folder

RESTORES = {
    "tar -x": "tar -xf {backup}/backup.tar -C {target}",
    "cp -r": "cp -r {backup}/copy/. {target}/",
    "cp -a": "cp -a {backup}/copy/. {target}/",
    "rsync -a": "rsync -a {backup}/copy/ {target}/",
}


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                          check=False)


def stored(folder: Path) -> dict[str, bytes]:
    from sessionfs.store import open_store

    store = open_store(folder)
    return {key: store.read(key).data for key in store.keys()}


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_backup_and_restore_with_every_tool(base: Path, layout: str) -> None:
    folder = make_store_folder(base, layout, ENTRIES)
    original = stored(folder)
    assert sorted(original) == sorted(ENTRIES)
    with Mount(folder, base / "mnt") as mount:
        (mount.dir(MAIN) / "meta.json").read_bytes()  # the daemon has served something
        for _ in range(2):  # tar stats, reads and stats again: the attributes must hold still
            result = run(f"tar -cf {base}/backup.tar -C {mount.mp} .")
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""
        result = run(f"cp -a {mount.mp} {base}/copy")
        assert result.returncode == 0, result.stderr
        mount.assert_no_internal_errors()
    listed = run(f"tar -tf {base}/backup.tar").stdout.split()
    assert "./.sessionfs/status" in listed and f"./{mount.dir(MAIN).name}/meta.json" in listed
    for tool, command in RESTORES.items():
        target_base = base / tool.replace(" ", "")
        target_folder = make_store_folder(target_base, layout, {})
        with Mount(target_folder, target_base / "mnt") as mount:
            status_before = (mount.mp / ".sessionfs" / "status").read_bytes()
            result = run(command.format(backup=base, target=mount.mp))
            assert result.returncode == 0, (tool, result.stderr)
            assert stored(target_folder) == original, tool
            # the control files still show this mount, not the backup
            assert (mount.mp / ".sessionfs" / "status").read_bytes() == status_before.replace(
                b"sessions: 0\n", b"sessions: 3\n"), tool
            assert mount.errors() == "", tool
            assert sorted(os.listdir(mount.mp / ".sessionfs")) == ["errors", "status"], tool
            mount.assert_no_internal_errors()


def test_writes_into_the_control_folder_change_nothing(base: Path) -> None:
    folder = make_store_folder(base, "directory", ENTRIES)
    with Mount(folder, base / "mnt") as mount:
        control = mount.mp / ".sessionfs"
        status = (control / "status").read_bytes()
        (control / "status").write_text("forged\n")
        assert (control / "status").read_bytes() == status
        (control / ".status.tmp").write_text("forged\n")  # rsync's temp file, renamed over
        assert sorted(os.listdir(control)) == [".status.tmp", "errors", "status"]
        os.rename(control / ".status.tmp", control / "status")
        assert (control / "status").read_bytes() == status
        assert sorted(os.listdir(control)) == ["errors", "status"]
        with pytest.raises(PermissionError):  # the control files themselves never move
            os.rename(control / "status", control / "other")
        with pytest.raises(PermissionError):
            os.rename(control / "status", mount.dir(MAIN) / "status")
        mount.assert_no_internal_errors()
