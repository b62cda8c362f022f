"""`python -m claudehub.server_ext.singleuser`: jupyterhub-singleuser, lean.

Every user pays the server's memory beside Claude's, so the sandbox starts the stock
jupyterhub-singleuser through this module, which only changes *what gets imported*:

* optional format-checker plugins of jsonschema (pulled in by jupyter_events' validator:
  a grammar parser, colour tables, ...) are marked absent, so jsonschema skips those formats;
  jupyter-server's event schemas do not use them; likewise aiohttp's optional c-ares DNS
  resolver (it falls back to the system resolver), the compiled parsers of aiohttp and PyYAML
  (their pure-Python twins, loaded anyway, serve a few hub requests and the start-up schemas)
  and curses (tornado only asks it whether a tty has colours);
* the hub-side database layer (SQLAlchemy, the ORM, alembic), which the single-user server
  imports only because `jupyterhub.scopes` and `jupyterhub.utils` are shared with the hub, is
  not loaded: the single-user server never touches it (its scope checks run with
  ``db=None``); if anything does, the ORM modules load on first use and fail loudly;
* `websocket` (websocket-client), used only by a remote kernel gateway, and `unittest.mock`,
  used by the hub client only to build the login redirect, load on first use;
* aiohttp (the hub client) builds a verified TLS context when it is imported, loading every
  CA certificate of the system (~50-100 ms of CPU, a tenth of the start-up): when the hub is
  reached over plain http (``JUPYTERHUB_API_URL`` is ``http://``, no ``JUPYTERHUB_SSL_*``),
  that default context is never used, so it is made without CA certificates; an https
  request through it would fail certificate verification, never pass unverified;
* `jupyterhub.log`, imported only for its request logger, would pull the hub's page handlers
  (and with them the ORM and spawner): jupyter-server's own request logger stands in.

Once started it freezes the start-up heap out of the garbage collector's way (latency), and
it resets SIGINT to its default: a server started in the background from a
non-interactive shell inherits SIGINT ignored, which would otherwise leak into everything
it starts (the terminal's process resets it itself too).

Nothing else differs from `jupyterhub-singleuser` (same arguments, same environment).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.machinery
import importlib.util
import os
import signal
import ssl
import sys
import types
from collections.abc import Mapping
from typing import Any

from claudehub.contract import env as contract_env

#: ``uvloop`` runs the server's event loop on uvloop (:func:`use_uvloop`; off by default).
EVENT_LOOP_ENV = "CLAUDEHUB_EVENT_LOOP"

#: optional plugins of jsonschema's format checker (it skips a format whose library is absent)
OPTIONAL_ABSENT = (
    "rfc3987_syntax",
    "lark",
    "webcolors",
    "fqdn",
    "isoduration",
    "uri_template",
    "rfc3339_validator",
    "rfc3986_validator",
    "jsonpointer",
    # aiohttp (the hub client) then resolves names with the system resolver in a thread
    "aiodns",
    "pycares",
    # aiohttp's compiled HTTP/websocket parsers (~0.7 MB resident): the hub client makes a
    # request every few minutes (activity) and at login; aiohttp's pure-Python parsers, which
    # it imports anyway, serve those
    "aiohttp._http_parser",
    "aiohttp._http_writer",
    "aiohttp._websocket.reader_c",
    "aiohttp._websocket.mask",
    # tornado's log formatter imports curses only to ask a tty whether it has colours; the
    # server's stderr is a log file or pipe, and without it the formatter writes plain text
    "curses",
    # PyYAML's libyaml binding: jupyter-events parses its few event schemas once at start-up,
    # the pure-Python parser does that as well (and is loaded anyway)
    "yaml._yaml",
)

#: modules loaded on first attribute access instead of at import
LAZY = ("jupyterhub.orm", "jupyterhub.roles", "websocket", "unittest", "unittest.mock")


def _absent(names: tuple[str, ...]) -> None:
    for name in names:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


class _LazyModule(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports it.

    (importlib.util.LazyLoader does not help here: on Python 3.11 the import statement itself
    touches the module's attributes and so loads it.)"""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        real = sys.modules.get(name)
        if real is self or real is None:
            del sys.modules[name]
            real = importlib.import_module(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, real)
        return getattr(real, attr)


def _lazy(name: str) -> None:
    if name in sys.modules:
        return
    parent_name = name.rpartition(".")[0]
    parent_module = sys.modules.get(parent_name)
    if isinstance(parent_module, _LazyModule):  # find it without loading the parent
        spec = importlib.machinery.PathFinder.find_spec(name, parent_module.__path__)
    else:
        spec = importlib.util.find_spec(name)
    if spec is None:
        return
    module = _LazyModule(name)
    module.__spec__ = spec
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _light_request_log() -> None:
    from jupyter_server.log import log_request

    module = types.ModuleType("jupyterhub.log", "request logging (jupyter-server's, see claudehub)")
    module.log_request = log_request  # type: ignore[attr-defined]
    sys.modules.setdefault("jupyterhub.log", module)


class _NoDatabase(Exception):
    """Stands for sqlalchemy's SQLAlchemyError: nothing raises it without a database."""


def _no_sqlalchemy() -> None:
    """The single-user server has no database; `jupyterhub.utils` and `jupyterhub.scopes`
    import SQLAlchemy only for hub-side code paths (an ``except SQLAlchemyError`` around
    database calls, ``sa.inspect`` of ORM objects). Stand in for it, unless it is loaded.

    The sandbox image does not install it at all (images/sandbox/Dockerfile); there the
    stand-in is all there is, and anything that really needs the database fails loudly."""
    if "sqlalchemy" in sys.modules:
        return
    package = _LazyModule("sqlalchemy")
    spec = importlib.util.find_spec("sqlalchemy") or importlib.machinery.ModuleSpec(
        "sqlalchemy", None
    )
    exc = types.ModuleType("sqlalchemy.exc")
    exc.SQLAlchemyError = _NoDatabase  # type: ignore[attr-defined]
    package.__spec__ = spec
    package.__path__ = []  # no further submodules through the stand-in
    package.exc = exc  # type: ignore[attr-defined]
    sys.modules["sqlalchemy"] = package
    sys.modules["sqlalchemy.exc"] = exc


def _hub_over_plain_http(environ: Mapping[str, str] | None = None) -> bool:
    # Before start-up (tests/test_contract.py allows it): this decides what gets imported,
    # before jupyter-server or any traitlets application exists to hold a setting.
    env = os.environ if environ is None else environ
    return env.get(contract_env.HUB_API_URL, "").startswith("http://") and not any(
        env.get(name) for name in contract_env.SSL_VARIABLES
    )


def _context_without_cas(
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: Any = None,
    capath: Any = None,
    cadata: Any = None,
) -> ssl.SSLContext:
    if cafile or capath or cadata or purpose != ssl.Purpose.SERVER_AUTH:
        return _REAL_DEFAULT_CONTEXT(purpose, cafile=cafile, capath=capath, cadata=cadata)
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, and trusts no one


_REAL_DEFAULT_CONTEXT = ssl.create_default_context


def _aiohttp_without_default_cas() -> None:
    """Import aiohttp's connector with its default context made without CA certificates
    (see the module docstring: only when the hub is reached over plain http)."""
    if "aiohttp.connector" in sys.modules or not _hub_over_plain_http():
        return
    ssl.create_default_context = _context_without_cas
    try:
        import aiohttp.connector  # noqa: F401
    finally:
        ssl.create_default_context = _REAL_DEFAULT_CONTEXT


def prepare() -> None:
    """Apply the import changes (before anything imports jupyter-server or jupyterhub)."""
    _absent(OPTIONAL_ABSENT)
    _no_sqlalchemy()
    for name in LAZY:
        _lazy(name)
    _aiohttp_without_default_cas()
    _light_request_log()


#: seconds after start-up when the start-up heap is frozen (see freeze_startup_heap)
FREEZE_AFTER = 10.0


def freeze_startup_heap() -> None:
    """Take what start-up allocated (tens of thousands of long-lived objects: modules,
    classes, config) out of the cyclic garbage collector's full collections, which otherwise
    stop the server for 15-25 ms here every so often: every keystroke in flight waits."""
    gc.collect()
    gc.freeze()


def use_uvloop() -> bool:
    """Run the event loop on uvloop if ``CLAUDEHUB_EVENT_LOOP=uvloop`` (off by default).

    Measured, not assumed (benchmarks/terminal/RESULTS.md, 2026-11-27): with tornado's
    websocket and again with claudehub's own websocket transport, runs that differ only in the
    loop show no consistent gain in keystroke echo or 50-terminal latency, and uvloop costs
    ~2.2 MB of idle RSS against a 60 MB budget. The switch stays for re-measuring; it must
    take effect before the first loop exists."""
    # Before start-up (tests/test_contract.py allows it): the loop is chosen before the
    # first one exists, so before any traitlets application could hold the setting.
    if os.environ.get(EVENT_LOOP_ENV, "asyncio") != "uvloop":
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prepare()
    use_uvloop()
    from tornado.ioloop import IOLoop

    # the loop jupyter-server will run (it uses IOLoop.current() too)
    IOLoop.current().call_later(FREEZE_AFTER, freeze_startup_heap)
    from jupyterhub.singleuser import main as singleuser_main

    sys.exit(singleuser_main())


if __name__ == "__main__":
    main()
