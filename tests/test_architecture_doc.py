"""ARCHITECTURE.md is the map of the code: everything it cites must exist, and it must name
every module.

The rules (each failure message says which line of the document to fix, and how):

(a) **Paths.** Anything that looks like a repository path starting with ``claudehub/``,
    ``tests/``, ``helm/``, ``images/``, ``hub_config/``, ``benchmarks/``, ``docs/``,
    ``examples/`` or ``jupyter-config/`` (in backticks or not, code blocks included; not
    inside a longer path such as ``/etc/claudehub/...``, and not an image name such as
    ``claudehub/hub:<appVersion>``) must exist; a ``*`` in it must match at least one file,
    and ``path.py::name`` must name a function or class defined in that file. A backticked
    path written relative to a part's folder (``spawner/startqueue.py``,
    ``server_ext/static/``) must exist under ``claudehub/``; any other backticked token that
    looks like a file (it ends in a known extension) or a folder (it ends in ``/``) must exist
    relative to the repository, ``claudehub/``, ``helm/claudehub/`` or, in a table row that
    names a folder in backticks, that folder. Tokens starting with ``/``, ``~`` or ``.``, or
    holding ``<``, ``{`` or a space, are runtime paths, not repository ones, and are skipped.

(b) **Python names.** Every backticked dotted name is checked when its first part is
    ``claudehub`` (it must import, as a module or a module's attribute), the name of a
    module of the package (``objects.harden_pod``: some ``claudehub/**/objects.py`` must
    define ``harden_pod``), or a CamelCase class (``KeyProxyApp.allowed_models``: a class of
    that name in ``claudehub/`` must define the attribute, in its body or a base's, by import
    if the AST does not show it). Every backticked bare CamelCase word must be a class
    defined in ``claudehub/`` (or be in ``EXTERNAL``, which maps it to where it really
    lives, checked by import). Every backticked bare snake_case word with an underscore
    (``configure_local``, ``daily_token_budget``) and every backticked UPPER_CASE word with an
    underscore (an environment name such as ``CLAUDEHUB_TOKEN_SECRET``, a constant such as
    ``IMPORT_TIME_ENV``) must occur as a word in the package, ``hub_config/``, ``images/`` or
    the chart's templates. ``from claudehub... import a, b`` lines in code blocks must
    import. A dotted word that the package writes as a string literal (an audit action such
    as ``server.access``, the ``claudehub.v2`` subprotocol) is a value, not a name, and is
    not checked; nor are other lowercase dotted words (chart values such as
    ``sandbox.models``, ``window.claudehub``).

(c) **Completeness.** Every module of the package (a ``.py`` file in ``claudehub/`` other
    than ``__init__.py`` and those under ``migrations/``) must be named in backticks by its
    path relative to ``claudehub/`` (``spawner/startqueue.py``) or its full path; so must
    every test tier (a folder of ``tests/``), every file of ``hub_config/``, every folder of
    ``images/`` and every folder of ``helm/claudehub/templates/``.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC_NAME = "ARCHITECTURE.md"
DOC = REPO / DOC_NAME
PACKAGE = REPO / "claudehub"

ROOTS = (
    "claudehub",
    "tests",
    "helm",
    "images",
    "hub_config",
    "benchmarks",
    "docs",
    "examples",
    "jupyter-config",
)
PARTS = ("contract", "hub", "spawner", "server_ext", "proxy", "progress")
FILE_EXTENSIONS = (
    ".py",
    ".md",
    ".html",
    ".json",
    ".yaml",
    ".yml",
    ".tpl",
    ".txt",
    ".sh",
    ".css",
    ".js",
    ".conf",
    ".toml",
    ".mako",
)
# Backticked CamelCase names that are not claudehub's classes, and where they live.
EXTERNAL = {"KubeSpawner": "kubespawner.KubeSpawner"}

PREFIXED_PATH = re.compile(
    r"(?<![\w./-])((?:" + "|".join(map(re.escape, ROOTS)) + r")/[\w./*-]*)(?:::(\w+))?(:?)"
)
BACKTICKED = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+|[A-Z][a-z0-9]+[A-Z]\w*")
SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
UPPER = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def _lines() -> list[tuple[int, str, bool]]:
    """(line number, text, inside a fenced code block) for every line of the document."""
    out, fenced = [], False
    for n, line in enumerate(DOC.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        out.append((n, line, fenced))
    return out


def _modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
        and "migrations" not in p.relative_to(PACKAGE).parts
        and "__pycache__" not in p.parts
    )


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _defined(body: list[ast.stmt]) -> set[str]:
    """Names a module or class body binds: defs, classes, assignments, imports."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names |= _defined(node.body)
    return names


@cache
def _classes() -> dict[str, list[tuple[Path, ast.ClassDef]]]:
    found: dict[str, list[tuple[Path, ast.ClassDef]]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append((path, node))
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _class_has(name: str, attr: str, seen: frozenset[str] = frozenset()) -> bool:
    for path, node in _classes().get(name, []):
        if attr in _defined(node.body):
            return True
        for base in node.bases:
            base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if base_name in _classes() and base_name not in seen:
                if _class_has(base_name, attr, seen | {name}):
                    return True
        try:  # inherited from outside claudehub (a KubeSpawner trait, say)
            cls = getattr(importlib.import_module(_module_name(path)), name)
        except Exception:
            continue
        if hasattr(cls, attr):
            return True
    return False


def _imports(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@cache
def _words() -> set[str]:
    """Every word of the package, the hub configuration, the images and the chart templates."""
    files = [*PACKAGE.rglob("*"), *(REPO / "hub_config").rglob("*"), *(REPO / "images").rglob("*")]
    files += (REPO / "helm" / "claudehub" / "templates").rglob("*")
    words: set[str] = set()
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts and "vendor" not in f.parts:
            try:
                words.update(re.findall(r"\w+", f.read_text()))
            except UnicodeDecodeError:
                continue
    return words


@cache
def _string_literals() -> set[str]:
    """Every string constant in the package's Python source."""
    return {
        node.value
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def _path_exists(rel: str) -> bool:
    rel = rel.rstrip("/.,;")
    if "*" in rel:
        return any(REPO.glob(rel))
    return (REPO / rel).exists()


def test_every_path_the_architecture_doc_cites_exists() -> None:
    problems = []
    for n, line, _ in _lines():
        for m in PREFIXED_PATH.finditer(line):
            path, name, colon = m.group(1).rstrip("/.,;"), m.group(2), m.group(3)
            if colon:  # an image name such as claudehub/hub:<appVersion>
                continue
            if not _path_exists(path):
                problems.append(f"{DOC_NAME}:{n}: `{path}` does not exist: fix or drop it")
            elif name and not re.search(
                rf"^\s*(async def|def|class) {name}\b", (REPO / path).read_text(), re.MULTILINE
            ):
                problems.append(
                    f"{DOC_NAME}:{n}: `{path}::{name}`: {path} defines no function or class "
                    f"{name}: fix the name"
                )
        row_folders = [
            t.rstrip("/") for t in BACKTICKED.findall(line) if line.startswith("|") and "/" in t
        ]
        row_folders = [f for f in row_folders if (REPO / f).is_dir()]
        for token in BACKTICKED.findall(line):
            token = token.strip()
            if (
                token.startswith(("/", "~", "."))
                or any(c in token for c in "<{ *")
                or "://" in token
            ):
                continue
            if token.split("/")[0] in ROOTS or "::" in token:
                continue  # checked above
            if token.split("/")[0] in PARTS and "/" in token:
                if not (PACKAGE / token).exists():
                    problems.append(
                        f"{DOC_NAME}:{n}: `{token}` (relative to claudehub/) does not exist: "
                        "fix or drop it"
                    )
                continue
            if not (token.endswith("/") or token.endswith(FILE_EXTENSIONS)):
                continue
            bases = [REPO, PACKAGE, REPO / "helm" / "claudehub", *(REPO / f for f in row_folders)]
            if not any((b / token).exists() for b in bases):
                problems.append(
                    f"{DOC_NAME}:{n}: `{token}` is neither in the repository, claudehub/, "
                    "helm/claudehub/ nor the row's folder: fix or drop it"
                )
    assert not problems, "\n".join(problems)


def test_every_python_name_the_architecture_doc_cites_resolves() -> None:
    module_stems: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        module_stems.setdefault(path.stem, []).append(path)
    problems = []

    def fail(n: int, msg: str) -> None:
        problems.append(f"{DOC_NAME}:{n}: {msg}")

    for n, line, fenced in _lines():
        if fenced:
            m = re.match(r"\s*from (claudehub[\w.]*) import ([\w, ]+)$", line)
            if m:
                for name in (x.strip() for x in m.group(2).split(",")):
                    if not _imports(f"{m.group(1)}.{name}"):
                        fail(n, f"`from {m.group(1)} import {name}` fails: fix the example")
            continue
        for token in BACKTICKED.findall(line):
            token = token.strip().rstrip("()")
            if token in _string_literals():
                continue  # a value the package writes as a string, not a Python name
            if DOTTED.fullmatch(token) and not token.endswith(FILE_EXTENSIONS):
                head, *rest = token.split(".")
                if head == "claudehub":
                    if not _imports(token):
                        fail(n, f"`{token}` does not import: fix the dotted name")
                elif head in module_stems:
                    if not any(rest[0] in _defined(_tree(p).body) for p in module_stems[head]):
                        where = ", ".join(str(p.relative_to(REPO)) for p in module_stems[head])
                        fail(n, f"`{token}`: {where} defines no `{rest[0]}`: fix the name")
                elif CAMEL.fullmatch(head):
                    if head not in _classes():
                        fail(n, f"`{token}`: no class `{head}` in claudehub/: fix the name")
                    elif not _class_has(head, rest[0]):
                        fail(n, f"`{token}`: class `{head}` has no `{rest[0]}`: fix the name")
            elif CAMEL.fullmatch(token):
                if token in EXTERNAL:
                    if not _imports(EXTERNAL[token]):
                        fail(n, f"`{token}`: {EXTERNAL[token]} does not import")
                elif token not in _classes():
                    fail(
                        n,
                        f"`{token}` is not a class defined in claudehub/: fix the name (or, for "
                        "another project's class, add it to EXTERNAL in "
                        "tests/test_architecture_doc.py)",
                    )
            elif SNAKE.fullmatch(token) or UPPER.fullmatch(token):
                if token not in _words():
                    fail(
                        n,
                        f"`{token}` occurs nowhere in claudehub/, hub_config/, images/ or the "
                        "chart's templates: fix the name",
                    )
    assert not problems, "\n".join(problems)


def test_the_architecture_doc_names_every_module_and_folder() -> None:
    cited = {t.strip().rstrip("/") for t in BACKTICKED.findall(DOC.read_text())}
    missing = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in cited and f"claudehub/{rel}" not in cited:
            part = rel.split("/")[0]
            missing.append(
                f"claudehub/{rel} is not named in {DOC_NAME}: add the line "
                f"'- `{rel}`: <what it is for>.' to the {part} list under '## The modules'"
            )
    folders = {
        "tests": [p for p in (REPO / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"],
        "hub_config": [p for p in (REPO / "hub_config").glob("*.py")],
        "images": [p for p in (REPO / "images").iterdir() if p.is_dir()],
        "helm/claudehub/templates": [
            p for p in (REPO / "helm/claudehub/templates").iterdir() if p.is_dir()
        ],
    }
    for kind, paths in folders.items():
        for p in sorted(paths):
            rel = p.relative_to(REPO).as_posix()
            short = p.relative_to(REPO / kind).as_posix()
            if not {rel, short, f"templates/{short}"} & cited:
                missing.append(f"{rel}: name `{rel}` in {DOC_NAME}, with what it holds")
    assert not missing, "\n".join(missing)
