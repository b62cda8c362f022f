"""The parts meet only through the written contract (``claudehub.contract``).

Every import in every module of the package is walked, function-level and
``TYPE_CHECKING`` imports included: a part may import itself and the contract, the hub
configuration may import the spawners it configures, and the contract imports no part.
A new edge between parts fails here, with the module and line that made it.

The environment is part of the contract too (``claudehub/contract/env.py``):

- the package reads it only in a traitlets ``@default`` (directly or through the contract's
  ``read_env*`` helpers), except at the few places listed in :data:`ENV_READ_EXCEPTIONS`
  with their reason;
- every ``CLAUDEHUB_*``, ``ANTHROPIC_*`` or ``JUPYTERHUB_*`` variable the chart's templates or
  the images set is written down in the contract (or is JupyterHub's own,
  :data:`JUPYTERHUB_OWNED`);
- no name of the contract is typed out again as a string elsewhere in the package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from claudehub.contract import env as contract_env
from claudehub.contract.course import COURSE_ID_ROUTE, is_course_id

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "claudehub"
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


# -- the environment ---------------------------------------------------------------------

#: The contract's readers: like ``os.environ``, callable only from a ``@default``.
ENV_READERS = {"read_env", "read_env_bool", "read_env_service_url"}

#: (module, function) -> why it may read the environment outside a trait's ``@default``.
ENV_READ_EXCEPTIONS = {
    ("claudehub/contract/env.py", "read_env"): "the contract's reader itself",
    ("claudehub/contract/env.py", "read_env_bool"): "the contract's reader itself",
    ("claudehub/contract/env.py", "read_env_service_url"): "the contract's reader itself",
    ("claudehub/server_ext/launcher.py", "Launcher.prepare"): (
        "the launcher's exec boundary: the CLI's environment is built from the launcher's"
    ),
    ("claudehub/server_ext/sessions.py", "SessionSettings.environment"): (
        "exec boundary: the terminal process's environment is the server's, filtered by name"
    ),
    ("claudehub/server_ext/pty_session.py", "PtySession.start"): (
        "exec boundary: the terminal process's environment plus one start's extras"
    ),
    ("claudehub/server_ext/forkserver.py", "forks_like_a_fresh_process"): (
        "fork boundary: a request's environment against the one the fork server imported under"
    ),
    ("claudehub/server_ext/forkserver.py", "become_server"): (
        "fork boundary: the forked child takes the requested environment"
    ),
    ("claudehub/server_ext/singleuser.py", "_hub_over_plain_http"): (
        "before start-up: decides what is imported, before any traitlets application exists"
    ),
    ("claudehub/server_ext/singleuser.py", "use_uvloop"): (
        "before start-up: the event loop is chosen before the first one (and any app) exists"
    ),
    ("claudehub/spawner/local.py", "LocalSandboxSpawner._fork_server"): (
        "exec boundary: the fork server's environment, built from the hub's (env_keep)"
    ),
    ("claudehub/spawner/fetch_course.py", "main"): (
        "a command-line tool's own arguments: the init container's inputs are its environment"
    ),
    ("claudehub/progress/fetching.py", "_git_env"): (
        "exec boundary: git's environment, the service's without GIT_* variables"
    ),
}

#: Variables JupyterHub itself (or the hub's own process) reads, which the chart sets and no
#: part of claudehub reads: they need no place in the contract.
JUPYTERHUB_OWNED = {
    "JUPYTERHUB_CRYPT_KEY": "encrypts auth state in the hub database (JupyterHub)",
    "JUPYTERHUB_CLIENT_ID": "a service's OAuth client id (jupyterhub.services.auth.HubOAuth)",
    "JUPYTERHUB_SERVICE_NAME": "a service's name (jupyterhub.services.auth.HubAuth)",
}

ENV_PREFIX = re.compile(r"(CLAUDEHUB|ANTHROPIC|JUPYTERHUB)_[A-Z0-9_]+")


def _contract_env_names() -> dict[str, str]:
    """Every variable name claudehub.contract.env defines -> its constant's name."""
    return {
        value: name
        for name, value in vars(contract_env).items()
        if name.isupper() and isinstance(value, str) and ENV_PREFIX.fullmatch(value)
    }


def _is_default(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with traitlets' ``@default(...)``."""
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (isinstance(target, ast.Name) and target.id == "default") or (
            isinstance(target, ast.Attribute) and target.attr == "default"
        ):
            return True
    return False


def _env_reads(source: str) -> list[tuple[int, str, str, bool]]:
    """(line, what, enclosing function's qualified name, inside a @default) of every
    environment read in ``source``: any ``os.environ``/``environ`` (subscript, ``.get``,
    iteration, aliasing), ``getenv()``, ``from os import environ``, and calls of the
    contract's readers."""
    found: list[tuple[int, str, str, bool]] = []

    def visit(node: ast.AST, scope: list[str], in_default: bool) -> None:
        if isinstance(node, ast.ClassDef):
            scope = [*scope, node.name]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = [*scope, node.name]
            in_default = in_default or _is_default(node)
        what = ""
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb"):
            what = f"{ast.unparse(node)}"
        elif isinstance(node, ast.Name) and node.id in ("environ", "environb"):
            what = node.id
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names = [a.name for a in node.names if a.name in ("environ", "environb", "getenv")]
            what = f"from os import {', '.join(names)}" if names else ""
        elif isinstance(node, ast.Call):
            func = node.func
            called = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if called == "getenv" or called in ENV_READERS:
                what = f"{called}()"
        if what:
            found.append((getattr(node, "lineno", 0), what, ".".join(scope), in_default))
            if isinstance(node, ast.Attribute):
                return  # os.environ.get: one read, not also the inner name
        for child in ast.iter_child_nodes(node):
            visit(child, scope, in_default)

    visit(ast.parse(source), [], False)
    return found


def _env_reads_outside_defaults(path: Path) -> list[str]:
    rel = path.relative_to(REPO).as_posix()
    return [
        f"{rel}:{line}: {what} in {scope or 'module level'}"
        for line, what, scope, in_default in _env_reads(path.read_text(encoding="utf-8"))
        if not in_default and (rel, scope) not in ENV_READ_EXCEPTIONS
    ]


def test_the_environment_is_read_only_in_trait_defaults() -> None:
    bad = [hit for path in _modules() for hit in _env_reads_outside_defaults(path)]
    assert bad == [], (
        "environment read outside a trait's @default (make it a trait whose @default reads "
        "it once, through claudehub.contract.env.read_env*; or, for an exec boundary, add it "
        "to ENV_READ_EXCEPTIONS with the reason):\n" + "\n".join(bad)
    )


def test_every_env_read_exception_still_exists() -> None:
    """An exception whose function is gone (renamed, moved) is stale: drop or fix it."""
    seen = set()
    for path in _modules():
        rel = path.relative_to(REPO).as_posix()
        for _, _, scope, _ in _env_reads(path.read_text(encoding="utf-8")):
            seen.add((rel, scope))
    stale = sorted(f"{p} {f}" for p, f in ENV_READ_EXCEPTIONS if (p, f) not in seen)
    assert stale == [], "ENV_READ_EXCEPTIONS names functions that read nothing: " + ", ".join(stale)


def test_the_env_walk_sees_every_kind_of_read() -> None:
    source = (
        "import os\nfrom os import environ\n"
        "A = os.environ['X']\n"
        "def f():\n    return os.environ.get('X')\n"
        "def g():\n    return os.getenv('X')\n"
        "class C:\n"
        "    @default('x')\n    def _x(self):\n        return os.environ.get('X', '')\n"
        "    def h(self):\n        e = os.environ\n        return env.read_env(env.X)\n"
        "    def i(self, environ):\n        return {k: v for k, v in environ.items()}\n"
    )
    reads = [(line, what, scope, d) for line, what, scope, d in _env_reads(source)]
    assert reads == [
        (2, "from os import environ", "", False),
        (3, "os.environ", "", False),
        (5, "os.environ", "f", False),
        (7, "getenv()", "g", False),
        (11, "os.environ", "C._x", True),
        (13, "os.environ", "C.h", False),
        (14, "read_env()", "C.h", False),
        (16, "environ", "C.i", False),
    ]


def _chart_and_image_env_names() -> list[tuple[str, int, str]]:
    """(file, line, name) of every CLAUDEHUB_/ANTHROPIC_/JUPYTERHUB_ variable the chart's
    templates set (``- name: X``) or the images set or use (Dockerfile ``ENV`` lines, with
    their continuations; any mention in the images' scripts)."""
    found: list[tuple[str, int, str]] = []
    entry = re.compile(r"^\s*-\s*name:\s*[\"']?([A-Z][A-Z0-9_]*)[\"']?\s*$")
    for path in sorted((REPO / "helm/claudehub/templates").rglob("*")):
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = entry.match(line)
            if m and ENV_PREFIX.fullmatch(m.group(1)):
                found.append((path.relative_to(REPO).as_posix(), n, m.group(1)))
    for path in sorted((REPO / "images").rglob("*")):
        if not path.is_file() or path.name.endswith(".dockerignore"):
            continue
        rel = path.relative_to(REPO).as_posix()
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if path.name.startswith("Dockerfile"):
            in_env = False
            for n, line in enumerate(lines, 1):
                if re.match(r"^\s*ENV\s", line):
                    in_env = True
                if in_env:
                    for m in re.finditer(r"(?:^\s*ENV\s+|\s)([A-Z][A-Z0-9_]*)[=\s]", line):
                        if ENV_PREFIX.fullmatch(m.group(1)):
                            found.append((rel, n, m.group(1)))
                    in_env = line.rstrip().endswith("\\")
        else:
            for n, line in enumerate(lines, 1):
                found += [(rel, n, m.group(0)) for m in ENV_PREFIX.finditer(line)]
    return found


def test_chart_and_image_variables_are_in_the_contract() -> None:
    names = _contract_env_names()
    unknown = [
        f"{file}:{line}: {name}"
        for file, line, name in _chart_and_image_env_names()
        if name not in names and name not in JUPYTERHUB_OWNED
    ]
    assert unknown == [], (
        "variables set by the chart or the images but not written down in "
        "claudehub/contract/env.py (add a documented constant there, or, for a variable "
        "only JupyterHub reads, to JUPYTERHUB_OWNED):\n" + "\n".join(unknown)
    )


def test_the_chart_scan_sees_the_variables_it_must() -> None:
    """The scan itself: a few variables known to be set must be found."""
    seen = {name for _, _, name in _chart_and_image_env_names()}
    assert {
        contract_env.KEYPROXY_DB_URL,
        contract_env.TOKEN_SECRET_FILE,
        contract_env.TUTOR_COMPLETIONS_COUNT,
        contract_env.CLAUDE_BIN,
        "JUPYTERHUB_CRYPT_KEY",
    } <= seen


def test_contract_env_names_are_written_once() -> None:
    """Every name in claudehub/contract/env.py is used through its constant elsewhere
    (help texts and docstrings may mention it: only a string that is exactly the name counts)."""
    names = _contract_env_names()
    where = []
    for path in _modules():
        rel = path.relative_to(REPO).as_posix()
        if _part_of(path) == "contract":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                where.append(
                    f"{rel}:{node.lineno}: {node.value!r} (use claudehub.contract.env."
                    f"{names[node.value]})"
                )
    assert where == [], "contract environment names typed out again:\n" + "\n".join(where)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "fallback"),
        ("", "fallback"),
        ("  ", "fallback"),
        ("1", True),
        (" TRUE ", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_the_one_true_false_rule(raw: str | None, expected: object) -> None:
    for fallback in (True, False):
        want = fallback if expected == "fallback" else expected
        assert contract_env.parse_bool("X", raw, fallback) is want


def test_an_unknown_true_false_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="CLAUDEHUB_X must be true or false, not 'maybe'"):
        contract_env.parse_bool("CLAUDEHUB_X", "maybe", True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", ("127.0.0.1", 1234)),
        ("http://10.0.0.5:8010", ("10.0.0.5", 8010)),
        ("http://keyproxy", ("keyproxy", 80)),
        ("https://keyproxy/", ("keyproxy", 443)),
        ("http://:9000", ("127.0.0.1", 9000)),
    ],
)
def test_the_one_service_url_rule(url: str, expected: tuple[str, int]) -> None:
    assert contract_env.listen_address(url, 1234) == expected
