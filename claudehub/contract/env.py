"""Environment variables that cross from one part to another, and the one way to read them.

Every name here is set by one side and read by another: the spawners set the sandbox
variables and the extension, the launcher and the course-fetch init container read them;
the hub configurations and the chart set the services' variables and the key proxy and the
course service read them; the chart and the images set the hub's and the sandbox's. A name
only one part uses stays private to that part (a constant in its module).

**Where the environment is read.** Product code reads the environment only in a traitlets
``@default`` method, through :func:`read_env`, :func:`read_env_bool` or
:func:`read_env_service_url` (a setting read once, when first used; never per request).
The exceptions are the places that build a child process's environment from their own
(an exec boundary) and a command-line tool's own argument parsing, each one justified
beside it; ``tests/test_contract.py`` lists them and fails on any other read, on a
chart or image variable that is not written down here, and on a name of this module typed
out again as a string elsewhere in the package.

**True and false.** A true/false variable is read by :func:`read_env_bool`, the one rule:
``1``/``true``/``yes``/``on`` are true and ``0``/``false``/``no``/``off`` false (any case,
surrounding white space ignored); unset, empty or only white space means the setting's
default (an empty value is the same as no value); anything else is an error naming the
variable. A part that writes one for another writes :func:`bool_value` (``true``/``false``).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

# -- the sandbox: the spawners set these; the extension, the launcher and the course-fetch
# init container read them ---------------------------------------------------------------

#: The key proxy's URL, as Claude Code expects it (it appends ``/v1/messages``).
ANTHROPIC_BASE_URL = "ANTHROPIC_BASE_URL"
#: In a sandbox: the sandbox token (never the real key). In the key proxy: the real key
#: (the hub configurations and the chart set it there).
ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY"
#: The model the learner picked (one of the operator's allowed models).
ANTHROPIC_MODEL = "ANTHROPIC_MODEL"

#: The course service's base URL, ending in ``/`` (e.g. ``.../services/progress/``).
PROGRESS_URL = "CLAUDEHUB_PROGRESS_URL"
#: The id of the course the learner picked (see :mod:`claudehub.contract.course`).
COURSE_ID = "CLAUDEHUB_COURSE_ID"
#: Where the course's files are unpacked, read-only for the sandbox.
COURSE_DIR = "CLAUDEHUB_COURSE_DIR"
#: An author session's draft (docs/authoring.md): its id at the course service, set by the
#: spawner instead of ``CLAUDEHUB_COURSE_ID`` when an instructor starts a server on a draft.
DRAFT_ID = "CLAUDEHUB_DRAFT_ID"
#: Where an author session's draft is, the one folder its Claude may write (an emptyDir in
#: the pod, a per-user folder in local mode); filled from the course service at start.
DRAFT_DIR = "CLAUDEHUB_DRAFT_DIR"
#: The classes an author session's instructor instructs (comma-separated), for its page's
#: Publish choices; the course service checks them again at publish.
AUTHOR_CLASSES = "CLAUDEHUB_AUTHOR_CLASSES"

#: The Claude Code CLI the launcher execs (a path or a name on ``PATH``); the sandbox image
#: sets it (images/sandbox/Dockerfile), the launcher reads it (``Launcher.claude_bin``).
CLAUDE_BIN = "CLAUDEHUB_CLAUDE_BIN"

#: What the spawners put in a sandbox's environment, and nothing else of claudehub's.
SANDBOX_ENV = (
    ANTHROPIC_BASE_URL,
    ANTHROPIC_API_KEY,
    ANTHROPIC_MODEL,
    PROGRESS_URL,
    COURSE_ID,
    COURSE_DIR,
    DRAFT_ID,
    DRAFT_DIR,
    AUTHOR_CLASSES,
)

# -- the token secret: shared by the hub (it mints) and the key proxy (it verifies) ---------

#: The HMAC secret sandbox tokens are signed with, shared by the hub and the key proxy.
TOKEN_SECRET = "CLAUDEHUB_TOKEN_SECRET"
#: A file holding that secret (wins over :data:`TOKEN_SECRET`; a mounted Kubernetes Secret).
TOKEN_SECRET_FILE = "CLAUDEHUB_TOKEN_SECRET_FILE"

# -- the key proxy: local mode's hub configuration and the chart set these; the key proxy
# reads them (``KeyProxyApp``) --------------------------------------------------------------

#: The Anthropic API base URL the key proxy forwards to (``KeyProxyApp.upstream_url``).
ANTHROPIC_UPSTREAM_URL = "ANTHROPIC_UPSTREAM_URL"
#: A file holding the real key (``KeyProxyApp.api_key_file``, wins over the key itself).
ANTHROPIC_API_KEY_FILE = "ANTHROPIC_API_KEY_FILE"
#: The key proxy's usage (and audit) database URL (``KeyProxyApp.db_url``).
KEYPROXY_DB_URL = "CLAUDEHUB_KEYPROXY_DB_URL"
#: The old name of :data:`KEYPROXY_DB_URL` (local mode set it before): still read when the
#: new one is unset, for compatibility; nothing sets it any more.
KEYPROXY_DB_URL_OLD = "CLAUDEHUB_USAGE_DB_URL"
#: A key proxy admin token (``KeyProxyApp.admin_tokens``): the chart's Secret gives it to
#: the key proxy, the hub (its audit hook posts to ``/audit``) and the course service (the
#: class page reads ``/usage``); local mode generates one and passes it to all three.
KEYPROXY_ADMIN_TOKEN = "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"

# -- the course service: local mode's hub configuration and the chart set these; the course
# service reads them (``ProgressService``) -------------------------------------------------

#: The course service's database URL (``ProgressService.db_url``).
PROGRESS_DB_URL = "CLAUDEHUB_PROGRESS_DB_URL"
#: Where the course service clones course repositories (``ProgressService.cache_dir``).
COURSE_CACHE = "CLAUDEHUB_COURSE_CACHE"
#: Whether tutor-only completions count (true/false, :func:`read_env_bool`); the hub's
#: ``ClassSettings.tutor_completions_count`` decides it (``ProgressService.tutor_completions_count``).
TUTOR_COMPLETIONS_COUNT = "CLAUDEHUB_TUTOR_COMPLETIONS_COUNT"
#: The key proxy's base URL, for the class page's token column (``ProgressService.keyproxy_url``).
KEYPROXY_URL = "CLAUDEHUB_KEYPROXY_URL"

# -- the hub: the chart sets these; the hub's Kubernetes configuration reads them ----------

#: The hub's settings file (the chart's values, mounted).
HUB_CONFIG = "CLAUDEHUB_CONFIG"
#: The trial login's shared password (also local mode's, ``LocalSettings.dev_password``).
DEV_PASSWORD = "CLAUDEHUB_DEV_PASSWORD"
#: The password the configured admins log in with.
ADMIN_PASSWORD = "CLAUDEHUB_ADMIN_PASSWORD"
#: The hub API tokens of the key proxy and the course service (the chart's default
#: ``services.*.apiTokenEnv``), which the hub registers for its two services.
KEYPROXY_API_TOKEN = "CLAUDEHUB_KEYPROXY_API_TOKEN"
PROGRESS_API_TOKEN = "CLAUDEHUB_PROGRESS_API_TOKEN"

# -- JupyterHub's: set by the hub for a managed service or a single-user server (and by the
# chart for the key proxy and the course service, which run outside the hub); claudehub's
# parts read them --------------------------------------------------------------------------

#: Where a service listens (``http://host:port``); see :func:`listen_address`.
SERVICE_URL = "JUPYTERHUB_SERVICE_URL"
#: A service's URL prefix (``/services/<name>/``).
SERVICE_PREFIX = "JUPYTERHUB_SERVICE_PREFIX"
#: The hub's API URL and this process's hub API token.
HUB_API_URL = "JUPYTERHUB_API_URL"
HUB_API_TOKEN = "JUPYTERHUB_API_TOKEN"
#: The hub's base URL (``/``), its public host (empty: same origin), and, in a single-user
#: server, its owner and its name (empty: the default server).
HUB_BASE_URL = "JUPYTERHUB_BASE_URL"
HUB_HOST = "JUPYTERHUB_HOST"
HUB_USER = "JUPYTERHUB_USER"
SERVER_NAME = "JUPYTERHUB_SERVER_NAME"
#: Internal TLS (``c.JupyterHub.internal_ssl``): a process's key, certificate and the CA
#: its peers are checked with.
SSL_KEYFILE = "JUPYTERHUB_SSL_KEYFILE"
SSL_CERTFILE = "JUPYTERHUB_SSL_CERTFILE"
SSL_CLIENT_CA = "JUPYTERHUB_SSL_CLIENT_CA"
SSL_VARIABLES = (SSL_KEYFILE, SSL_CERTFILE, SSL_CLIENT_CA)

#: The words :func:`parse_bool` takes for true and for false (compared in lower case).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

#: Where a service listens when :data:`SERVICE_URL` is unset or names no host.
DEFAULT_LISTEN_HOST = "127.0.0.1"


def read_env(name: str, fallback: str = "") -> str:
    """The variable ``name`` as set (an empty value stays empty), else ``fallback``.

    Call it only from a traitlets ``@default`` (tests/test_contract.py checks)."""
    return os.environ.get(name, fallback)


def parse_bool(name: str, raw: str | None, fallback: bool) -> bool:
    """``raw`` (the value of the variable ``name``) as true or false, by the module's rule:
    unset, empty or white space is ``fallback``; anything unknown raises ValueError naming
    ``name``."""
    word = (raw or "").strip().lower()
    if not word:
        return fallback
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be true or false, not {word!r}")


def read_env_bool(name: str, fallback: bool) -> bool:
    """The true/false variable ``name`` (:func:`parse_bool`); only from a ``@default``."""
    return parse_bool(name, os.environ.get(name), fallback)


def bool_value(flag: bool) -> str:
    """How one part writes a true/false variable for another (``true`` or ``false``)."""
    return "true" if flag else "false"


def listen_address(url: str, fallback_port: int) -> tuple[str, int]:
    """Host and port to listen on for a service URL (:data:`SERVICE_URL`), one rule for
    every service: the URL's host and port; a URL without a port gets its scheme's
    (443 for ``https``, else 80: where the hub sends the service's requests); an empty
    URL gets :data:`DEFAULT_LISTEN_HOST` and ``fallback_port`` (the service's own), and
    one without a host gets :data:`DEFAULT_LISTEN_HOST`."""
    if not url:
        return DEFAULT_LISTEN_HOST, fallback_port
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or DEFAULT_LISTEN_HOST, port


def read_env_service_url(fallback_port: int) -> tuple[str, int]:
    """Where this service listens, from :data:`SERVICE_URL` (:func:`listen_address`);
    only from a ``@default``."""
    return listen_address(os.environ.get(SERVICE_URL, ""), fallback_port)
