"""docs/design.md's module table is the map a newcomer reads: it names every module, and only
modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _table_modules() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    return set(re.findall(r"^\| `(sessionfs/[^`]+)` \|", text, flags=re.MULTILINE))


def _package_modules() -> set[str]:
    package = ROOT / "sessionfs"
    return {str(p.relative_to(ROOT)) for p in package.rglob("*")
            if p.suffix in (".py", ".sql") and "__pycache__" not in p.parts}


def test_every_module_is_in_the_design_table() -> None:
    missing = _package_modules() - _table_modules()
    assert not missing, f"add to docs/design.md's module table: {sorted(missing)}"


def test_every_module_in_the_design_table_exists() -> None:
    gone = _table_modules() - _package_modules()
    assert not gone, f"docs/design.md names modules that do not exist: {sorted(gone)}"


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (ROOT / target).is_file(), target
