"""The claudehub jupyter-server extension: the Claude page, its terminal, the REST API.

The app is where the pieces are wired together: it builds the terminal sessions' manager
(:mod:`claudehub.server_ext.sessions`) and the course backend
(:mod:`claudehub.server_ext.course_handlers`) from its configuration, hands both to the
handlers through the tornado settings and connects the terminals' tutor markers to the
backend. No other module of the extension imports this one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

from jupyter_server._tz import utcnow
from jupyter_server.extension.application import ExtensionApp, ExtensionAppJinjaMixin
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from claudehub.contract import env

from . import lockdown as lockdown_mod
from .course_handlers import COURSE_BACKEND_SETTING, CourseBackend
from .course_handlers import default_handlers as course_handlers
from .drafts import DRAFT_BACKEND_SETTING, DraftBackend
from .drafts import default_handlers as draft_handlers
from .handlers import default_handlers
from .sessions import SessionManager, SessionMode, SessionSettings
from .terminal import PING_INTERVAL_SETTING, SESSIONS_SETTING

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


class ClaudeHubApp(ExtensionAppJinjaMixin, ExtensionApp):
    """Serves {base_url}claude: a Claude Code terminal beside the stage and progress panels."""

    name = "claude"
    description = "Claude Code in the browser, read-only, one process per user server."
    load_other_extensions = True
    default_url = Unicode("/claude").tag(config=True)
    static_paths = List([str(STATIC_DIR)]).tag(config=True)
    template_paths = List([str(TEMPLATES_DIR)]).tag(config=True)

    command = List(
        Unicode(),
        help="""Command run in the terminal (argv). The default is the claudehub launcher, which
        prepares ~/.claude.json and execs the Claude Code CLI. Benchmarks use an interactive
        shell, e.g. ["bash", "--norc", "--noprofile", "-i"].""",
    ).tag(config=True)

    @default("command")
    def _default_command(self) -> list[str]:
        return [sys.executable, "-m", "claudehub.server_ext.launcher"]

    term_env = Dict(
        Unicode(),
        help="Extra environment variables for the terminal's process.",
    ).tag(config=True)

    env_remove_prefixes = List(
        Unicode(),
        default_value=["JUPYTERHUB_", "JPY_"],
        help="""Environment variables of the server whose names start with one of these are not
        passed to the terminal's process (the server's hub API token must not reach Claude).""",
    ).tag(config=True)

    session_mode = Enum(
        ["shared", "per-connection"],
        default_value="shared",
        help="""'shared' (the product): one process per user server; a reload or a second tab
        reattaches to it. 'per-connection': every websocket gets its own process, ended when it
        closes (the terminado pattern; for transport benchmarks with many terminals).""",
    ).tag(config=True)

    replay_limit = Int(
        256 * 1024,
        help="Characters of recent output kept and replayed to a tab that (re)attaches.",
    ).tag(config=True)

    pause_timeout = Float(
        10.0,
        help="""Seconds a client's flow-control pause holds the terminal at most. A browser tab
        in the background can be throttled; it must not stall the output for the others.""",
    ).tag(config=True)

    ack_window = Int(
        512 * 1024,
        help="""Bytes of output (UTF-8) that may be sent to a browser tab and not yet drawn by
        it, for tabs that acknowledge what they draw (the page does). Beyond this the terminal's
        output is held back, so a flood never queues more than this in the browser. 0: no
        window.""",
    ).tag(config=True)

    ping_interval = Float(
        30.0,
        help="""Seconds between the terminal websocket's keep-alive pings; a connection that
        sends nothing for a whole interval after a ping is closed (a tab that vanished without
        closing its socket). 0: no pings.""",
    ).tag(config=True)

    activity_interval = Float(
        1.0,
        help="Terminal input/output updates the server's last activity at most this often (s).",
    ).tag(config=True)

    lockdown = Bool(
        True,
        help="""Serve only the Claude page, its terminal and the claudehub API: no terminals,
        kernels, contents writes, file editors, other extensions' pages (403 + a log line).""",
    ).tag(config=True)

    allowed_paths = List(
        Unicode(),
        default_value=list(lockdown_mod.DEFAULT_ALLOWED_PATHS),
        help="With lockdown: regexes (relative to base_url, anchored) of the paths served.",
    ).tag(config=True)

    hub_api_url = Unicode(
        help="The hub's API URL (for ending the session); default $JUPYTERHUB_API_URL.",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return env.read_env(env.HUB_API_URL)

    hub_prefix = Unicode(
        help="URL prefix of the hub pages, for links from the page (default from the hub env).",
    ).tag(config=True)

    @default("hub_prefix")
    def _default_hub_prefix(self) -> str:
        base = env.read_env(env.HUB_BASE_URL, "/")
        return base.rstrip("/") + "/hub/"

    progress_url = Unicode(
        help="""URL of the course+progress service (as the hub's service URL, e.g.
        http://127.0.0.1:8081/services/progress/); empty: no course API (503).
        Default $CLAUDEHUB_PROGRESS_URL (set by the spawner).""",
    ).tag(config=True)

    @default("progress_url")
    def _default_progress_url(self) -> str:
        return env.read_env(env.PROGRESS_URL)

    course_id = Unicode(
        help="""The course this session was started with; empty: none chosen.
        Default $CLAUDEHUB_COURSE_ID (set by the spawner).""",
    ).tag(config=True)

    @default("course_id")
    def _default_course_id(self) -> str:
        return env.read_env(env.COURSE_ID)

    course_dir = Unicode(
        help="""Where the course's files are in the sandbox; its .learner/progress.json is kept
        current. Default $CLAUDEHUB_COURSE_DIR (set by the spawner).""",
    ).tag(config=True)

    @default("course_dir")
    def _default_course_dir(self) -> str:
        return env.read_env(env.COURSE_DIR)

    draft_id = Unicode(
        help="""An author session's draft at the course service (docs/authoring.md); empty:
        a learner's session. Default $CLAUDEHUB_DRAFT_ID (set by the spawner).""",
    ).tag(config=True)

    @default("draft_id")
    def _default_draft_id(self) -> str:
        return env.read_env(env.DRAFT_ID)

    draft_dir = Unicode(
        help="""Where an author session's draft is in the sandbox (made from the course
        service's copy at start). Default $CLAUDEHUB_DRAFT_DIR (set by the spawner).""",
    ).tag(config=True)

    @default("draft_dir")
    def _default_draft_dir(self) -> str:
        return env.read_env(env.DRAFT_DIR)

    author_classes = List(
        Unicode(),
        help="""The classes the author session's instructor instructs: the page's Publish
        choices (the course service checks them again). Default $CLAUDEHUB_AUTHOR_CLASSES
        (comma-separated, set by the spawner).""",
    ).tag(config=True)

    @default("author_classes")
    def _default_author_classes(self) -> list[str]:
        return [c for c in env.read_env(env.AUTHOR_CLASSES).split(",") if c]

    draft_watch_interval = Float(
        1.0,
        help="""Seconds between two looks at an author session's draft folder; a change is sent
        to the course service once the files have stood still for one interval.""",
    ).tag(config=True)

    api_token = Unicode(
        help="""Token the course service is called with: the server's own hub token, which the
        service resolves (through the hub) to the server's owner. Default
        $JUPYTERHUB_API_TOKEN.""",
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self) -> str:
        return env.read_env(env.HUB_API_TOKEN)

    hub_host = Unicode(
        help="""The hub's public host, for the page's links to the hub (empty: the same
        origin). Default $JUPYTERHUB_HOST, read once.""",
    ).tag(config=True)

    @default("hub_host")
    def _default_hub_host(self) -> str:
        return env.read_env(env.HUB_HOST)

    hub_user = Unicode(
        help="""The hub user this server belongs to (the session endpoint stops their server).
        Default $JUPYTERHUB_USER, read once.""",
    ).tag(config=True)

    @default("hub_user")
    def _default_hub_user(self) -> str:
        return env.read_env(env.HUB_USER)

    server_name = Unicode(
        help="""This server's name at the hub ('' is the user's default server). Default
        $JUPYTERHUB_SERVER_NAME, read once.""",
    ).tag(config=True)

    @default("server_name")
    def _default_server_name(self) -> str:
        return env.read_env(env.SERVER_NAME)

    # ------------------------------------------------------------------ hooks

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        if "default_url" not in serverapp.config.get("ServerApp", {}):
            serverapp.default_url = self.default_url
        if self.lockdown:
            lockdown_mod.configure_server(serverapp)

    def initialize_settings(self) -> None:
        """Build the course backend and the terminal sessions, for the handlers."""
        self.course_backend = CourseBackend(
            progress_url=self.progress_url,
            token=self.api_token,
            course_id=self.course_id,
            course_dir=self.course_dir,
        )
        self.sessions = SessionManager(
            SessionSettings(
                command=tuple(self.command),
                term_env=dict(self.term_env),
                env_remove_prefixes=tuple(self.env_remove_prefixes),
                mode=cast(SessionMode, self.session_mode),  # the Enum trait allows no other
                replay_limit=self.replay_limit,
                pause_timeout=self.pause_timeout,
                ack_window=self.ack_window,
                activity_interval=self.activity_interval,
            ),
            on_activity=self._record_activity,
            on_marker=self.course_backend.on_marker,
        )
        self.settings[COURSE_BACKEND_SETTING] = self.course_backend
        self.draft_backend: DraftBackend | None = None
        if self.draft_id and self.draft_dir:
            self.draft_backend = DraftBackend(
                progress_url=self.progress_url,
                token=self.api_token,
                draft_id=self.draft_id,
                draft_dir=self.draft_dir,
                watch_interval=self.draft_watch_interval,
            )
            # before the server listens, so the launcher never starts Claude in an old copy
            self.draft_backend.clear()
        self.settings[DRAFT_BACKEND_SETTING] = self.draft_backend
        self.settings[SESSIONS_SETTING] = self.sessions
        self.settings[PING_INTERVAL_SETTING] = self.ping_interval
        self.settings["claude_lockdown_log"] = self.log

    def initialize_handlers(self) -> None:
        """The page, the terminal, the session and course APIs; with lockdown, the gate."""
        self.handlers.extend(default_handlers)
        self.handlers.extend(course_handlers)
        self.handlers.extend(draft_handlers)
        if self.lockdown:
            assert self.serverapp is not None
            lockdown_mod.install_gate(
                self.serverapp.web_app, self.serverapp.base_url, self.allowed_paths
            )

    def _record_activity(self) -> None:
        # jupyter-server's /api/status (and so the hub's idle culler) reports the latest of
        # these times: terminal traffic is what "in use" means on this server
        assert self.serverapp is not None
        settings = self.serverapp.web_app.settings
        settings.setdefault("last_activity_times", {})["claude"] = utcnow()

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """With the event loop running: fetch an author session's draft and watch it."""
        if self.draft_backend is not None:
            self.draft_backend.start()

    async def stop_extension(self) -> None:
        """Stop the terminal processes and the tutor-marker recordings still under way."""
        sessions: SessionManager | None = getattr(self, "sessions", None)
        if sessions is not None:
            await sessions.shutdown()
        backend: CourseBackend | None = getattr(self, "course_backend", None)
        if backend is not None:
            await backend.close()
        drafts: DraftBackend | None = getattr(self, "draft_backend", None)
        if drafts is not None:
            await drafts.close()
