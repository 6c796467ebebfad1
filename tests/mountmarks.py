"""Which tests mount: read from the test code itself, so a new test module gets the ``mount``
marker without knowing about it (``conftest.pytest_collection_modifyitems`` applies it).

A test mounts when its function (decorators included), or a fixture it uses, or any module-level
function, class or constant of the ``tests`` package it reaches by name (imports followed, local
ones too), holds one of the seeds:

- the string ``"mount"`` or ``"demo"`` (a CLI subcommand that mounts: ``cli("mount", ...)``,
  ``[..., "-m", "sessionfs", "mount", ...]``; the harness's own command line is one of these,
  so ``Mount`` and ``mounted`` mount);
- a call of ``FUSE(...)``, or a string naming ``mfusepy.FUSE`` or ``nolinkfs`` (a FUSE file
  system run in a child process) or ``demo.sh`` (which mounts the demo).

A test that mounts some other way carries ``@pytest.mark.mount`` itself.

It errs on the side of marking: a test marked by mistake only moves to the slow half, while one
missed fails in ``pytest -m "not mount"`` with /dev/fuse unusable (and in every run when it
mounts through the harness's ``Mount``: see ``conftest._mount_guard``).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.name  # "tests"
SEED_STRINGS = frozenset({"mount", "demo"})
SEED_SUBSTRINGS = ("mfusepy.FUSE", "nolinkfs", "demo.sh")


#: Test modules collected from outside the package (by name): their files.
SOURCES: dict[str, Path] = {}


def register(name: str, path: Path) -> None:
    """Module NAME, a collected test module outside ``tests/``, is read from PATH (before
    anything is asked about it: answers are cached)."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        SOURCES.setdefault(name, path)


@cache
def _module(name: str) -> ast.Module | None:
    """The parsed source of test-package module NAME (``tests.x``) or of a registered test
    module; None for any other (the library, the standard library: not test code)."""
    path = SOURCES.get(name)
    if path is None:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            return None
        path = TESTS.joinpath(*name.split(".")[1:]).with_suffix(".py")
    if not path.is_file():
        return None
    return ast.parse(path.read_text(), str(path))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` inside MODULE names."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")[: -node.level]
    return ".".join([*parts, node.module] if node.module else parts)


def _imports(module: str, nodes: list[ast.stmt] | ast.AST) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, name or None for a module) for every import among NODES."""
    found: dict[str, tuple[str, str | None]] = {}
    walk = ast.walk(nodes) if isinstance(nodes, ast.AST) else (
        n for stmt in nodes for n in ast.walk(stmt))
    for node in walk:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                # `from tests import mountutil` imports a module; `from x import f`, a name
                as_module = f"{source}.{alias.name}"
                target: tuple[str, str | None] = ((as_module, None) if _module(as_module)
                                                  else (source, alias.name))
                found[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0], None)
    return found


@cache
def _definitions(module: str) -> dict[str, ast.AST]:
    """Module-level functions, classes and assigned names of MODULE (class methods as
    ``Class.method`` too)."""
    tree = _module(module)
    found: dict[str, ast.AST] = {}
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = node
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                        found[f"{node.name}.{member.name}"] = member
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found[name.id] = node
    return found


def _is_seed(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in SEED_STRINGS or any(s in node.value for s in SEED_SUBSTRINGS)
    if isinstance(node, ast.Call):
        func = node.func
        return ((isinstance(func, ast.Name) and func.id == "FUSE")
                or (isinstance(func, ast.Attribute) and func.attr == "FUSE"))
    return False


_IN_PROGRESS: set[tuple[str, str]] = set()


@cache
def mounts(module: str, qualname: str) -> bool:
    """True when QUALNAME of test-package MODULE (function, class, constant) reaches a seed.

    Memoised; a name already being looked at counts as not mounting (breaks recursion between
    helpers: a helper that mounts only through a mutual recursion may be missed)."""
    if (module, qualname) in _IN_PROGRESS:
        return False
    _IN_PROGRESS.add((module, qualname))
    try:
        return _reaches(module, qualname)
    finally:
        _IN_PROGRESS.discard((module, qualname))


def _reaches(module: str, qualname: str) -> bool:
    tree = _module(module)
    if tree is None:
        return False
    node = _definitions(module).get(qualname)
    if node is None:
        again = _imports(module, tree.body).get(qualname)  # re-exported from a test module
        return again is not None and again[1] is not None and mounts(again[0], again[1])
    names = {**_imports(module, tree.body), **_imports(module, node)}
    # parameters (fixtures among them) shadow module-level names: `base / "x"` is not `base`
    local = {arg.arg for sub in ast.walk(node) if isinstance(sub, ast.arguments)
             for arg in (*sub.posonlyargs, *sub.args, *sub.kwonlyargs, sub.vararg, sub.kwarg)
             if arg is not None}
    for sub in ast.walk(node):
        if _is_seed(sub):
            return True
        target: tuple[str, str | None] | None = None
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in local:
            target = names.get(sub.id) or (module, sub.id)
        elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
            owner = names.get(sub.value.id)
            if owner is not None and owner[1] is None:  # module.attribute
                target = (owner[0], sub.attr)
        if target is not None and target[1] is not None and mounts(target[0], target[1]):
            return True
    return False
