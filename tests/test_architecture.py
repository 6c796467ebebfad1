"""Which module may import which: the layering the README describes, checked by reading the
source (``ast``, no import, no mount).

* The store and the library (``sessionfs/store/*``, atomic, lock, processes, keys, jsonfmt,
  entry, migrate, maintenance, projection, statedir, errors) know nothing of the filesystem, the
  CLI or mfusepy.
* Only the FUSE adapter (modules under ``sessionfs/fs/`` named ``operations*`` or ``fuse*``)
  imports mfusepy.
* The modules of ``sessionfs/fs/`` import one way: no cycle, counting every import, also those
  under ``if TYPE_CHECKING:`` and inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sessionfs"
LIBRARY = ("atomic", "lock", "processes", "keys", "jsonfmt", "entry", "migrate", "maintenance",
           "projection", "statedir", "errors", "gateway")
FORBIDDEN_IN_LIBRARY = ("sessionfs.fs", "sessionfs.cli", "mfusepy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, wherever the import statement is (module level, under
    ``if TYPE_CHECKING:``, inside a function). ``from a import b`` yields ``a.b`` when ``b`` is
    a module of this package (importing a submodule is not importing its package's
    ``__init__`` facade), else ``a``, and ``a.b`` too, since ``b`` may be a module elsewhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            if not all(_is_package_module(name) for name in names):
                yield base
            yield from names


def _is_package_module(name: str) -> bool:
    """Whether ``name`` is a module file or package folder of this repository's package."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_library(name: str) -> bool:
    if is_under(name, "sessionfs.store"):
        return True
    return any(is_under(name, f"sessionfs.{lib}") for lib in LIBRARY)


def is_fuse_adapter(name: str) -> bool:
    if not is_under(name, "sessionfs.fs") or name == "sessionfs.fs":
        return False
    leaf = name.split(".")[2]
    return leaf.startswith(("operations", "fuse"))


def test_the_modules_are_found() -> None:
    found = modules()
    assert "sessionfs.store.base" in found
    assert "sessionfs.fs.view" in found
    assert "sessionfs.fs.handles" in sessionfs_fs_imports(found["sessionfs.fs.view"], found)


@pytest.mark.parametrize("name", sorted(n for n in modules() if is_library(n)))
def test_the_library_knows_nothing_of_fuse_or_the_cli(name: str) -> None:
    path = modules()[name]
    bad = sorted({imported for imported in imports_of(path)
                  if any(is_under(imported, f) for f in FORBIDDEN_IN_LIBRARY)})
    assert not bad, f"{name} imports {bad}"


def test_only_the_adapter_imports_mfusepy() -> None:
    bad = sorted(name for name, path in modules().items()
                 if not is_fuse_adapter(name)
                 and any(is_under(imported, "mfusepy") for imported in imports_of(path)))
    assert not bad, f"mfusepy imported outside the adapter by {bad}"


def sessionfs_fs_imports(path: Path, found: dict[str, Path]) -> set[str]:
    """The ``sessionfs.fs`` modules that ``path`` imports (the package ``__init__`` counts
    only when it is imported by name)."""
    return {imported for imported in imports_of(path)
            if is_under(imported, "sessionfs.fs") and imported in found}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_fs_modules_form_no_cycle() -> None:
    found = modules()
    graph = {name: sessionfs_fs_imports(path, found) - {name}
             for name, path in found.items() if is_under(name, "sessionfs.fs")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among fs modules: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# -- imports the graph above could not see, private names, views above the adapter -----------
def dynamic_imports(path: Path) -> list[str]:
    """``importlib.import_module(...)`` and ``__import__(...)`` calls in ``path``: imports that
    hide an edge (a cycle) from every check above."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else \
            func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__"):
            found.append(f"{path.name}:{node.lineno} {name}")
    return found


def test_no_module_imports_by_string() -> None:
    bad = [hit for path in modules().values() for hit in dynamic_imports(path)]
    assert not bad, f"imports by string (use an import statement): {bad}"


def private_imports(path: Path) -> list[str]:
    """``from sessionfs.x import _y``: a name another module keeps to itself (a package's
    ``__init__`` may take its own modules' private names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own_package = module_name(path) if path.name == "__init__.py" else None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (
                node.module or "").startswith("sessionfs")) and not (
                own_package and is_under(node.module or "", own_package)):
            found.extend(f"{path.name}:{node.lineno} {node.module}.{alias.name}"
                         for alias in node.names
                         if alias.name.startswith("_") and not alias.name.startswith("__"))
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    bad = [hit for path in modules().values() for hit in private_imports(path)]
    assert not bad, f"private names imported from another module: {bad}"


def foreign_private_attributes(path: Path, found: dict[str, Path]) -> list[str]:
    """``module._name`` where ``module`` is a sessionfs module imported by ``path`` (``import
    sessionfs.x as m`` / ``from sessionfs import x``): a reach into its private names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(alias.asname or alias.name for alias in node.names
                           if alias.name.startswith("sessionfs"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sessionfs"):
            aliases.update(alias.asname or alias.name for alias in node.names
                           if f"{node.module}.{alias.name}" in found)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and ast.unparse(node.value) in aliases:
            hits.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return hits


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = modules()
    bad = [hit for path in found.values() for hit in foreign_private_attributes(path, found)]
    assert not bad, f"private names of another module used: {bad}"


#: What serves a view: the adapter (operations, fuse_*), and mount, which makes the view and
#: the FUSE object. A view, or any part of one, imports none of them.
ABOVE_THE_VIEWS = ("sessionfs.fs.mount", "sessionfs.fs.operations", "sessionfs.fs.fuse_glue")


@pytest.mark.parametrize("name", sorted(
    n for n in modules() if is_under(n, "sessionfs.fs") and n != "sessionfs.fs"
    and n not in ABOVE_THE_VIEWS and not is_fuse_adapter(n) and n != "sessionfs.fs.daemon"))
def test_no_view_imports_the_adapter_or_the_mount(name: str) -> None:
    found = modules()
    bad = sorted(imported for imported in sessionfs_fs_imports(found[name], found)
                 if imported in ABOVE_THE_VIEWS or is_fuse_adapter(imported))
    assert not bad, f"{name} imports {bad}"


def test_the_package_forms_no_cycle() -> None:
    """Not only fs/: no cycle among all of sessionfs's modules (a package ``__init__`` counts
    where it is imported by name)."""
    found = modules()
    graph = {name: {imported for imported in imports_of(path) if imported in found} - {name}
             for name, path in found.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_string_and_private_checks_find_what_they_look_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib\nfrom sessionfs.fs import mount\n"
                      "from sessionfs.fs.mount import _serve\n"
                      "from sessionfs.fs.mount import public\n"
                      "m = importlib.import_module('sessionfs.fs.mount')\n"
                      "x = __import__('os')\nmount._fuse_kwargs\n", encoding="utf-8")
    assert dynamic_imports(sample) == ["sample.py:5 import_module", "sample.py:6 __import__"]
    assert private_imports(sample) == ["sample.py:3 sessionfs.fs.mount._serve"]
    assert foreign_private_attributes(sample, modules()) == ["sample.py:7 mount._fuse_kwargs"]


STORE_CLASSES = frozenset({"SqliteStore", "DirectoryStore", "LegacyStore"})


def layout_switches(path: Path) -> Iterator[str]:
    """``isinstance(x, SqliteStore)`` and ``store.layout == ...`` (also ``.generation``): the
    code that asks which layout an open store has. A store says what callers need as a method
    or an attribute; a :class:`StoreLocation` (what is on disk, before opening) may be asked."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "isinstance" and len(node.args) == 2:
            named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            named |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if named & STORE_CLASSES:
                yield f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Attribute) and side.attr in ("layout", "generation") \
                        and "store" in ast.unparse(side.value) \
                        and "locate_store(" not in ast.unparse(side.value):
                    yield f"{path.name}:{node.lineno}: {ast.unparse(node)}"


def test_no_layout_switch_outside_the_stores() -> None:
    found = [switch for name, path in modules().items()
             if not is_under(name, "sessionfs.store") for switch in layout_switches(path)]
    assert not found, "ask the store (a method or attribute of Store), not its layout: " \
        + "; ".join(found)


def test_the_layout_switch_finder_finds_them(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("if isinstance(store, (SqliteStore, int)): pass\n"
                      "if self.store.layout != 'sqlite': pass\n"
                      "if locate_store(x).layout == 'legacy': pass\n"
                      "if location.layout == 'sqlite': pass\n")
    assert [line.split(":")[1] for line in layout_switches(sample)] == ["1", "2"]


def library_imports(path: Path, found: dict[str, Path]) -> set[str]:
    """The library modules (store, migrate, projection, ...) that ``path`` imports."""
    return {imported for imported in imports_of(path) if imported in found and is_library(imported)}


def test_library_modules_form_no_cycle() -> None:
    """Every import counts, also those inside a function (a deferred import hides a cycle, it
    does not remove it): ``store.base`` must not need ``store.transcripts`` which needs it."""
    found = modules()
    graph = {name: library_imports(path, found) - {name}
             for name, path in found.items() if is_library(name)}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among library modules: " + " -> ".join(cycle or [])
