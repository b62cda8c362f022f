"""Local mode's JupyterHub configuration: hub, proxy, key proxy and course service on one machine.

``hub_config/local_config.py`` calls :func:`configure_local` with :class:`LocalSettings`,
whose traits take their defaults from the environment (so ``make run`` honours
``ANTHROPIC_API_KEY`` and ``ANTHROPIC_UPSTREAM_URL``) and may also be set in the config file.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from claudehub.contract import env
from claudehub.contract.hub import (
    KEYPROXY_SERVICE,
    PROGRESS_SERVICE,
    SERVER_TOKEN_SCOPES,
    USER_EXTRA_SCOPES,
    service_roles,
)
from claudehub.contract.models import check_model_ids
from claudehub.hub.audit import configure_audit, keyproxy_admin
from claudehub.hub.classes import ClassSettings, configure_classes
from claudehub.hub.database import configure_database
from claudehub.hub.pages import configure_pages
from claudehub.spawner.startqueue import start_timeout_for


class LocalSettings(Configurable):
    """Everything local mode needs to know. Defaults come from the environment."""

    bind_url = Unicode(help="Where the hub's public proxy listens (CLAUDEHUB_BIND_URL).").tag(
        config=True
    )
    state_dir = Unicode(
        help="Folder for the hub database, secrets and users' homes (CLAUDEHUB_STATE_DIR)."
    ).tag(config=True)
    dev_password = Unicode(
        help="""Password every user logs in with (CLAUDEHUB_DEV_PASSWORD). Default: a
        random one, kept in <state_dir>/dev-password and printed at start-up."""
    ).tag(config=True)
    dev_password_from_env = Bool(
        help="""Whether dev_password came from CLAUDEHUB_DEV_PASSWORD (read once, at start-up):
        the banner then names the variable instead of printing the operator's password."""
    )

    @default("dev_password_from_env")
    def _d_password_from_env(self) -> bool:
        return bool(env.read_env(env.DEV_PASSWORD))

    admin_users = List(Unicode(), help="Hub admins (CLAUDEHUB_ADMIN_USERS, comma separated).").tag(
        config=True
    )
    admin_password = Unicode(
        help="""Password admins log in with (CLAUDEHUB_ADMIN_PASSWORD). Default: a random
        one in <state_dir>/admin-password, printed at start-up when admins are configured."""
    ).tag(config=True)
    anthropic_api_key = Unicode(
        help="The real Anthropic key (ANTHROPIC_API_KEY); handed to the key proxy alone."
    ).tag(config=True)
    upstream_url = Unicode(
        help="Anthropic API base URL the key proxy forwards to (ANTHROPIC_UPSTREAM_URL)."
    ).tag(config=True)
    keyproxy_port = Int(help="Port of the key proxy on 127.0.0.1 (CLAUDEHUB_KEYPROXY_PORT).").tag(
        config=True
    )
    hub_port = Int(help="Port of the hub's internal API on 127.0.0.1 (CLAUDEHUB_HUB_PORT).").tag(
        config=True
    )
    proxy_api_port = Int(
        help="Port of configurable-http-proxy's REST API on 127.0.0.1 (CLAUDEHUB_PROXY_API_PORT)."
    ).tag(config=True)
    progress_port = Int(
        help="Port of the course+progress service on 127.0.0.1 (CLAUDEHUB_PROGRESS_PORT)."
    ).tag(config=True)
    catalog_file = Unicode(
        help="""Course catalogue for the course+progress service (CLAUDEHUB_CATALOG): a JSON
        file ``{"courses": [...], "catalogues": [...]}`` (see docs/courses.md). Default: the
        example courses shipped in the repository's ``examples/`` folder."""
    ).tag(config=True)
    allowed_models = List(
        Unicode(),
        help="""Models learners may choose, and the only ones the key proxy forwards for them
        (CLAUDEHUB_MODELS, comma separated model ids; the first is preselected). Empty: no
        choice offered and every model forwarded. A class's allowed_models replaces the list
        at the key proxy for its learners (docs/key-proxy.md, "Models").""",
    ).tag(config=True)
    keyproxy_drain_seconds = Float(
        2.0,
        help="""Seconds the key proxy lets open answers finish when local mode stops (Ctrl-C)
        before it cuts them. Kept well under the 10 s JupyterHub gives a service after SIGINT,
        so that local mode stops within 10 s even with answers streaming.""",
    ).tag(config=True)

    class_size = Int(
        100,
        help="""Learners who may log in at the same moment and must all get their Claude,
        later rather than never (CLAUDEHUB_CLASS_SIZE). Starts queue (the spawner's
        start_slots at a time); start_timeout is derived from this and the machine's cores,
        and the hub's own spawn limit (its "too many users" page) is set above it.""",
    ).tag(config=True)

    start_slots = Int(
        help="""Servers starting at once; the rest queue (CLAUDEHUB_START_SLOTS). Default 0:
        the spawner's own default, two per core.""",
    ).tag(config=True)

    preload_server = Bool(
        help="""Fork learners' servers from one process that has already imported the
        single-user server (CLAUDEHUB_PRELOAD_SERVER, default true): about a tenth of a
        fresh server's start-up CPU. false: a fresh Python per server.""",
    ).tag(config=True)

    authoring = Bool(
        True,
        help="""Course authoring (docs/authoring.md): instructors turn a paper into a course in
        an author session and publish it for their classes. The course service keeps drafts,
        the managed course repository and published versions under the state folder.""",
    ).tag(config=True)

    @default("preload_server")
    def _d_preload_server(self) -> bool:
        return env.read_env_bool("CLAUDEHUB_PRELOAD_SERVER", True)

    @default("start_slots")
    def _d_start_slots(self) -> int:
        return int(env.read_env("CLAUDEHUB_START_SLOTS", "0"))

    @default("class_size")
    def _d_class_size(self) -> int:
        return int(env.read_env("CLAUDEHUB_CLASS_SIZE", "100"))

    @validate("class_size")
    def _class_size_positive(self, proposal: dict[str, Any]) -> int:
        if int(proposal["value"]) < 1:
            raise TraitError(f"class_size must be at least 1, not {proposal['value']}")
        return int(proposal["value"])

    @validate("keyproxy_drain_seconds")
    def _drain_fits_the_hubs_wait(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 8:
            raise TraitError(
                f"keyproxy_drain_seconds must be between 0 and 8 (JupyterHub kills a service "
                f"10 s after asking it to stop), not {value:g}"
            )
        return value

    @default("bind_url")
    def _d_bind(self) -> str:
        return env.read_env("CLAUDEHUB_BIND_URL", "http://127.0.0.1:8000")

    @default("state_dir")
    def _d_state(self) -> str:
        return env.read_env("CLAUDEHUB_STATE_DIR", str(Path.cwd() / ".state"))

    @default("dev_password")
    def _d_password(self) -> str:
        # Defaults bypass @validate, so check the environment's value here too.
        return _checked_password(
            env.read_env(env.DEV_PASSWORD)
            or _stored_secret(Path(self.state_dir) / "dev-password", 9)
        )

    @default("admin_users")
    def _d_admins(self) -> list[str]:
        return [u.strip() for u in env.read_env("CLAUDEHUB_ADMIN_USERS").split(",") if u.strip()]

    @default("admin_password")
    def _d_admin_password(self) -> str:
        if not self.admin_users:
            return ""
        return env.read_env(env.ADMIN_PASSWORD) or _stored_secret(
            Path(self.state_dir) / "admin-password", 24
        )

    @default("anthropic_api_key")
    def _d_key(self) -> str:
        return env.read_env(env.ANTHROPIC_API_KEY)

    @default("upstream_url")
    def _d_upstream(self) -> str:
        return env.read_env(env.ANTHROPIC_UPSTREAM_URL, "https://api.anthropic.com")

    @default("keyproxy_port")
    def _d_kp(self) -> int:
        return int(env.read_env("CLAUDEHUB_KEYPROXY_PORT", "8010"))

    @default("hub_port")
    def _d_hp(self) -> int:
        return int(env.read_env("CLAUDEHUB_HUB_PORT", "8081"))

    @default("proxy_api_port")
    def _d_pap(self) -> int:
        return int(env.read_env("CLAUDEHUB_PROXY_API_PORT", "8001"))

    @default("progress_port")
    def _d_pp(self) -> int:
        return int(env.read_env("CLAUDEHUB_PROGRESS_PORT", "8020"))

    @default("catalog_file")
    def _d_catalog(self) -> str:
        return env.read_env("CLAUDEHUB_CATALOG") or _example_catalog(Path(self.state_dir))

    @default("allowed_models")
    def _d_models(self) -> list[str]:
        # Defaults bypass @validate: check the environment's value here too.
        raw = [m for m in env.read_env("CLAUDEHUB_MODELS").split(",") if m.strip()]
        return _checked_models(raw, "CLAUDEHUB_MODELS")

    @validate("allowed_models")
    def _check_models(self, proposal: dict[str, Any]) -> list[str]:
        return _checked_models(proposal["value"], "LocalSettings.allowed_models")

    @validate("dev_password")
    def _check_password(self, proposal: dict[str, Any]) -> str:
        return _checked_password(str(proposal["value"]))


def _checked_models(value: Any, where: str) -> list[str]:
    try:
        return check_model_ids(value, where)
    except ValueError as e:
        raise TraitError(str(e)) from None


def _checked_password(value: str) -> str:
    if len(value) < 8:
        raise ValueError("CLAUDEHUB_DEV_PASSWORD must be at least 8 characters long")
    return value


def _example_catalog(state: Path) -> str:
    """A catalogue of the repository's example courses (absolute paths), or '' if absent."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    if not examples.is_dir():
        return ""
    catalog = {
        "courses": [
            {
                "id": "attention",
                "title": "Attention, step by step",
                "description": "Read 'Attention Is All You Need' one idea at a time.",
                "repo": str(examples),
                "folder": "courses/attention",
            }
        ],
        "catalogues": [{"id": "papers", "repo": str(examples), "folder": "catalogue"}],
    }
    state.mkdir(parents=True, exist_ok=True)
    path = state / "example-catalog.json"
    path.write_text(json.dumps(catalog, indent=2) + "\n")
    return str(path)


def _stored_secret(path: Path, nbytes: int) -> str:
    """A random secret kept in ``path`` (mode 0600), made on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def configure_local(c: Any, settings: LocalSettings) -> None:
    """Fill JupyterHub config ``c`` for local mode from ``settings``."""
    from claudehub.spawner.local import LocalSandboxSpawner

    # At exit the interpreter's last garbage collections walk the whole heap (seconds for a
    # hub that served a class, measured by benchmarks/stop/measure_stop.py); nothing needs
    # collecting then, so the heap is frozen out of their way once the hub has cleaned up.
    atexit.register(gc.freeze)

    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    token_secret = _stored_secret(state / "token-secret", 32)
    keyproxy_url = f"http://127.0.0.1:{settings.keyproxy_port}"
    progress_url = f"http://127.0.0.1:{settings.progress_port}"

    c.JupyterHub.bind_url = settings.bind_url
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    configure_database(c, c.JupyterHub.db_url)  # commits without a disk wait each
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    # One Claude per user. Learners land on the home page ("Continue <course> at stage
    # N", or the course picker); the hub's pages are claudehub's templates.
    c.JupyterHub.allow_named_servers = False
    configure_pages(c)

    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = settings.dev_password
    c.Authenticator.allow_all = True
    if settings.admin_users:
        c.Authenticator.admin_users = set(settings.admin_users)
        c.SharedPasswordAuthenticator.admin_password = settings.admin_password

    c.JupyterHub.spawner_class = LocalSandboxSpawner
    c.LocalSandboxSpawner.sandbox_root = str(state / "users")
    c.LocalSandboxSpawner.keyproxy_url = keyproxy_url
    c.LocalSandboxSpawner.token_secret = token_secret
    c.LocalSandboxSpawner.progress_url = f"{progress_url}/services/{PROGRESS_SERVICE}/"
    c.LocalSandboxSpawner.allowed_models = list(settings.allowed_models)
    if settings.anthropic_api_key:
        c.LocalSandboxSpawner.real_key_values = [settings.anthropic_api_key]
    # A user may call the course service; so may their server, on their behalf (the
    # extension's course panels), and the server may stop itself ("End session").
    c.JupyterHub.extra_user_scopes = list(USER_EXTRA_SCOPES)  # hub >= 5
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)
    # A class logging in at once queues in the spawner (claudehub.spawner.startqueue) and
    # waits its turn: the wait counts against start_timeout, derived from the class size
    # and the cores; a server is already listening when the hub's http_timeout begins.
    # JupyterHub's own limit answers 429 (an error page) beyond it, so it sits above the class.
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = start_timeout_for(settings.class_size, os.cpu_count() or 1)
    c.JupyterHub.concurrent_spawn_limit = 2 * settings.class_size
    if settings.start_slots > 0:
        c.LocalSandboxSpawner.start_slots = settings.start_slots
    # Servers fork from one preloaded process (claudehub.server_ext.forkserver): a class
    # logging in at once no longer pays a whole Python start-up per learner.
    c.LocalSandboxSpawner.preload_server = settings.preload_server
    # The spawner (course bundles) and the picker (courses, progress) call the course service
    # with tornado's shared client, which queues beyond max_clients (10) and fails a request
    # that waited 20 s ("599: Timeout in request queue"): let a whole class through.
    AsyncHTTPClient.configure(None, max_clients=max(10, settings.class_size))

    keyproxy_env = {
        env.ANTHROPIC_UPSTREAM_URL: settings.upstream_url,
        env.TOKEN_SECRET: token_secret,
        env.KEYPROXY_DB_URL: f"sqlite:///{state / 'usage.sqlite'}",
    }
    if settings.anthropic_api_key:
        keyproxy_env[env.ANTHROPIC_API_KEY] = settings.anthropic_api_key
    progress_env = {
        env.PROGRESS_DB_URL: f"sqlite:///{state / 'progress.sqlite'}",
        env.COURSE_CACHE: str(state / "courses"),
    }
    progress_cmd = [sys.executable, "-m", "claudehub.progress.app"]
    if settings.catalog_file:
        progress_cmd.append(f"--ProgressService.courses_json={settings.catalog_file}")
    if settings.authoring:
        progress_cmd += [
            "--Authoring.enabled=True",
            f"--Authoring.drafts_dir={state / 'drafts'}",
            f"--Authoring.repository={state / 'courses.git'}",
            f"--Authoring.published_dir={state / 'published'}",
        ]

    c.JupyterHub.services = [
        {
            "name": KEYPROXY_SERVICE,
            "url": keyproxy_url,
            # JupyterHub stops its services one after another, each with SIGINT and then
            # 10 s (the service spawner's interrupt_timeout, not configurable) before it
            # kills it: the key proxy's drain must fit in that, and Ctrl-C should take the
            # whole of local mode down in under 10 s, so open answers get a short drain.
            "command": [
                sys.executable,
                "-m",
                "claudehub.proxy.app",
                f"--KeyProxyApp.shutdown_timeout={settings.keyproxy_drain_seconds:g}",
                # the models learners choose are the only ones forwarded for them
                *(f"--KeyProxyApp.allowed_models={m}" for m in settings.allowed_models),
            ],
            "environment": keyproxy_env,
            "display": False,
        },
        {
            "name": PROGRESS_SERVICE,
            "url": progress_url,
            "command": progress_cmd,
            "environment": progress_env,
            "display": False,
            # The course service is ours: its pages (class pages, the admin page) open
            # straight away instead of behind JupyterHub's "Authorize access" page.
            "oauth_no_confirm": True,
        },
    ]
    c.JupyterHub.load_roles = service_roles()
    # Classes, instructors, the admins' access to servers and the course service's switches
    # (docs/instructors.md): last, once the services and roles are set.
    configure_classes(c, ClassSettings(parent=settings))
    # The audit log (docs/security.md): what only the hub sees goes to the key proxy's
    # /audit with its admin token (the one the course service shares, or a new one).
    configure_audit(c, *keyproxy_admin(c))


def banner(settings: LocalSettings) -> str:
    """What ``make run`` prints: where to go and how to log in."""
    lines = [
        "",
        "claudehub local mode",
        f"  open      {settings.bind_url}",
        "  log in    any user name, password: "
        + (
            settings.dev_password
            if not settings.dev_password_from_env
            else "$CLAUDEHUB_DEV_PASSWORD"
        ),
    ]
    if settings.admin_users:
        lines.append(
            f"  admins    {', '.join(settings.admin_users)} (admin password in {settings.state_dir}/admin-password)"
        )
    if not settings.anthropic_api_key:
        lines.append(
            "  warning   ANTHROPIC_API_KEY is not set: Claude will answer with an"
            " authentication error until you set it and restart."
        )
    lines.append("")
    return "\n".join(lines)
