"""The parts meet only through the written contract (``claudehub.contract``).

Every import in every module of the package is walked, function-level and
``TYPE_CHECKING`` imports included: a part may import itself and the contract, the hub
configuration may import the spawners it configures, and the contract imports no part.
A new edge between parts fails here, with the module and line that made it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from claudehub.contract.course import COURSE_ID_ROUTE, is_course_id

PACKAGE = Path(__file__).resolve().parent.parent / "claudehub"
PARTS = {"contract", "hub", "spawner", "server_ext", "proxy", "progress"}
#: Part -> the other parts it may import. The contract is allowed to everyone.
ALLOWED = {
    "contract": set(),
    "hub": {"spawner"},
    "spawner": set(),
    "server_ext": set(),
    "proxy": set(),
    "progress": set(),
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def _imports_in(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from . import codec`` or ``from claudehub import proxy`` may name a module in
            # the alias: keep both readings (the walk resolves what exists)
            found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return found


def _imported(path: Path) -> list[tuple[int, str]]:
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _module_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (any import, anywhere in the module)."""
    paths = {}
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        paths[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps = set()
        for _, imported in _imported(path):
            bits = imported.split(".")
            while bits and ".".join(bits) not in paths:
                bits.pop()
            target = ".".join(bits)
            # a module importing its own package's __init__ is how packages work, not a cycle
            if bits and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_package() -> None:
    """Not even through TYPE_CHECKING or function-level imports (they only hide a cycle)."""
    assert _cycles(_module_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_module_belongs_to_a_part() -> None:
    loose = [p.name for p in _modules() if _part_of(p) not in PARTS and p.name != "__init__.py"]
    assert loose == [], f"modules outside any part: {loose}"


def test_parts_import_only_themselves_and_the_contract() -> None:
    edges = []
    for path in _modules():
        part = _part_of(path)
        for line, name in _imported(path):
            bits = name.split(".")
            if bits[0] != "claudehub" or len(bits) < 2 or bits[1] not in PARTS:
                continue
            other = bits[1]
            if other == part or (other == "contract" and part != "contract"):
                continue
            if other in ALLOWED.get(part, set()):
                continue
            edges.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert edges == [], "imports across parts, outside the contract:\n" + "\n".join(edges)


def test_the_walk_sees_function_level_and_type_checking_imports() -> None:
    """The walker itself: imports hidden in a function or a TYPE_CHECKING block count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from claudehub.progress.model import Course\n"
        "def f():\n    from ..spawner import common\n    import claudehub.proxy.auth\n"
        "from claudehub import hub\n"
    )
    names = {n for _, n in _imports_in(source, ["claudehub", "server_ext"])}
    assert names >= {
        "claudehub.progress.model",
        "claudehub.spawner",
        "claudehub.proxy.auth",
        "claudehub.hub",
    }


LITERALS = {
    # One fact, one place: these strings appear in the package only in the contract.
    "the course-id pattern": re.escape("[A-Za-z0-9][A-Za-z0-9._-]{0,199}"),
    "the extension's auth resource": r"""auth_resource\s*=\s*["']""",
    "the sandbox server's scopes": re.escape('"users:activity!user"'),
    "the key proxy's role": r'"name":\s*"claudehub-(keyproxy|progress|idle-culler)"',
    "the token secret's variable": re.escape('"CLAUDEHUB_TOKEN_SECRET"'),
    "the course variables": r'"CLAUDEHUB_(COURSE_ID|COURSE_DIR|PROGRESS_URL)"',
}


@pytest.mark.parametrize("what", sorted(LITERALS))
def test_contract_facts_are_written_once(what: str) -> None:
    pattern = re.compile(LITERALS[what])
    where = [
        str(p.relative_to(PACKAGE.parent))
        for p in _modules()
        if _part_of(p) != "contract" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert where == [], f"{what} is written outside claudehub/contract: {where}"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("attention--core", True),
        ("a", True),
        ("A.b_c-d", True),
        ("x" * 200, True),
        ("x" * 201, False),
        ("", False),
        ("-leading-dash", False),
        (".hidden", False),
        ("../etc", False),
        ("a/b", False),
        ("a b", False),
        ("a\n", False),
        ("ü", False),
        (None, False),
        (3, False),
    ],
)
def test_course_id_rule(value: object, ok: bool) -> None:
    assert is_course_id(value) is ok
    if isinstance(value, str):
        assert (re.fullmatch(COURSE_ID_ROUTE, value) is not None) is ok
