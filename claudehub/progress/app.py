"""``claudehub-progress``: the course+progress service application.

Run by JupyterHub as a managed service (it reads the usual ``JUPYTERHUB_*``
environment) or standalone. All configuration is traitlets; a few settings fall back
to ``CLAUDEHUB_*`` environment variables so a Helm chart can set them easily::

    claudehub-progress --db-url=postgresql+psycopg://... --config=/etc/claudehub/progress_config.py
    claudehub-progress check-catalogue PATH   # a course repository's errors and warnings
    claudehub-progress export --output FILE   # every learner's progress as JSON ("-": stdout)
    claudehub-progress import --input FILE    # restore it (all or nothing; --replace)

Example config file::

    c.ProgressService.courses = [
        {"id": "intro", "repo": "https://github.com/org/intro.git", "ref": "main", "folder": ""},
    ]
    c.ProgressService.catalogues = [
        {"id": "papers", "repo": "https://github.com/org/catalogue.git", "ref": "main"},
    ]
    c.ProgressService.tutor_completions_count = False
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubAuth, HubOAuth
from jupyterhub.utils import make_ssl_context
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Float, Instance, Int, List, Unicode, default
from traitlets.config import Application

from claudehub.contract import env
from claudehub.contract.hub import PROGRESS_SERVICE

from .admin_page import admin_page_handlers
from .assets import DEFAULT_MAX_ASSET_BYTES
from .authoring.access import HubPeople
from .authoring.config import Authoring
from .authoring.drafts import DraftStore
from .authoring.handlers import AuthoringRuntime, authoring_handlers
from .authoring.publish import Publisher
from .authoring.repository import CourseRepository
from .catalogue import Catalogue, load_catalogue
from .class_page import class_page_handlers
from .classes import HubDirectory, UsageSource
from .handlers import service_handlers
from .service import ServiceState
from .store import Store

#: Where the service listens without JUPYTERHUB_SERVICE_URL (standalone).
DEFAULT_PORT = 10102
#: This part's own variables (nobody else sets them: an operator's, for the JSON lists).
COURSES_ENV = "CLAUDEHUB_COURSES"
CATALOGUES_ENV = "CLAUDEHUB_CATALOGUES"


def _json_list(name: str, raw: str) -> list[Any]:
    """``raw``, the value of the variable ``name``, as a JSON array ([] when empty)."""
    if not raw:
        return []
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a JSON array")
    return value


class ProgressService(Application):
    """The course + progress JupyterHub service."""

    name = "claudehub-progress"
    description = "claudehub course + progress service (a JupyterHub service)"
    classes = [Authoring]

    aliases = {
        "config": "ProgressService.config_file",
        "db-url": "ProgressService.db_url",
        "ip": "ProgressService.ip",
        "port": "ProgressService.port",
        "prefix": "ProgressService.service_prefix",
        "cache-dir": "ProgressService.cache_dir",
        "courses-json": "ProgressService.courses_json",
        "log-level": "Application.log_level",
    }
    subcommands = {
        "check-catalogue": (
            "claudehub.progress.check.CheckCatalogueApp",
            "Print every error and warning of the courses in a repository; exit 1 if one "
            "cannot load.",
        ),
        "export": (
            "claudehub.progress.backup.ExportApp",
            "Write every learner's progress to a JSON backup (--output FILE, '-': stdout).",
        ),
        "import": (
            "claudehub.progress.backup.ImportApp",
            "Restore a backup (--input FILE, '-': stdin) into the database, all or nothing; "
            "refused where progress exists unless --replace.",
        ),
    }
    flags = {
        "no-tutor-count": (
            {"ProgressService": {"tutor_completions_count": False}},
            "Tutor-only completions do not count toward 'complete'.",
        ),
    }

    config_file = Unicode("", help="Python config file to load.").tag(config=True)

    db_url = Unicode(
        help="SQLAlchemy URL of the progress database: sqlite:///path (default) or "
        "postgresql+psycopg://user:pass@host/db. Env fallback: CLAUDEHUB_PROGRESS_DB_URL."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return env.read_env(
            env.PROGRESS_DB_URL, "sqlite:///" + os.path.abspath("claudehub-progress.sqlite")
        )

    courses = List(
        Dict(),
        help="Single courses: [{id, title, description, repo (https:// git URL, file:// URL "
        "or local directory), ref, folder}]. Env fallback: CLAUDEHUB_COURSES (JSON).",
    ).tag(config=True)

    @default("courses")
    def _default_courses(self) -> list[Any]:
        return _json_list(COURSES_ENV, env.read_env(COURSES_ENV))

    catalogues = List(
        Dict(),
        help="Catalogue repositories: [{id, repo, ref, folder}]; every course folder in them "
        "(knowledge/courses.json or a CLAUDE.md stages block) is loaded; course ids are "
        "'<id>--<paper>--<course>'. Env fallback: CLAUDEHUB_CATALOGUES (JSON).",
    ).tag(config=True)

    @default("catalogues")
    def _default_catalogues(self) -> list[Any]:
        return _json_list(CATALOGUES_ENV, env.read_env(CATALOGUES_ENV))

    courses_json = Unicode(
        "",
        help="Path of a JSON file {courses: [...], catalogues: [...]} added to the above.",
    ).tag(config=True)

    cache_dir = Unicode(help="Where course repositories are cloned.").tag(config=True)

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        return env.read_env(env.COURSE_CACHE, os.path.abspath("claudehub-course-cache"))

    cache_max_age = Float(
        3600.0, help="Seconds a cloned course is used before it is fetched again."
    ).tag(config=True)

    refresh_interval = Float(
        0.0, help="Re-fetch the whole catalogue every this many seconds (0: only at start)."
    ).tag(config=True)

    tutor_completions_count = Bool(
        help="Whether stages completed by the tutor marker alone ([STAGE_COMPLETE:N]) count "
        "toward 'complete'. Stages without a quiz the service can judge always count. The "
        "class page shows how each completion was earned either way. Env fallback: "
        "CLAUDEHUB_TUTOR_COMPLETIONS_COUNT (true/false, empty: true; local mode sets it from "
        "ClassSettings.tutor_completions_count).",
    ).tag(config=True)

    @default("tutor_completions_count")
    def _default_tutor_count(self) -> bool:
        return env.read_env_bool(env.TUTOR_COMPLETIONS_COUNT, True)

    keyproxy_url = Unicode(
        help="""The key proxy's base URL, for the class page's tokens (its admin /usage).
        Empty: the class page shows tokens as unknown. Env fallback: CLAUDEHUB_KEYPROXY_URL."""
    ).tag(config=True)

    @default("keyproxy_url")
    def _default_keyproxy_url(self) -> str:
        return env.read_env(env.KEYPROXY_URL)

    keyproxy_admin_token = Unicode(
        help="""A key proxy admin token (its KeyProxyApp.admin_tokens) to read /usage with.
        Never logged. Env fallback: CLAUDEHUB_KEYPROXY_ADMIN_TOKEN."""
    ).tag(config=True)

    @default("keyproxy_admin_token")
    def _default_keyproxy_token(self) -> str:
        return env.read_env(env.KEYPROXY_ADMIN_TOKEN)

    max_bundle_bytes = Int(
        200 * 1024 * 1024, help="Largest course bundle served to a sandbox."
    ).tag(config=True)

    max_asset_bytes = Int(
        DEFAULT_MAX_ASSET_BYTES,
        help="""Largest course image served (bytes). A bigger file gets 413 without being
        read: a course repository cannot make the service hold or send huge files.""",
    ).tag(config=True)

    ip = Unicode(help="Address to listen on (default: from JUPYTERHUB_SERVICE_URL).").tag(
        config=True
    )

    @default("ip")
    def _default_ip(self) -> str:
        return env.read_env_service_url(DEFAULT_PORT)[0]

    port = Int(
        help="""Port to listen on (default: from JUPYTERHUB_SERVICE_URL, its scheme's port
        when it names none; without it 10102)."""
    ).tag(config=True)

    @default("port")
    def _default_port(self) -> int:
        return env.read_env_service_url(DEFAULT_PORT)[1]

    service_prefix = Unicode(help="URL prefix (default: JUPYTERHUB_SERVICE_PREFIX).").tag(
        config=True
    )

    @default("service_prefix")
    def _default_prefix(self) -> str:
        return env.read_env(env.SERVICE_PREFIX, f"/services/{PROGRESS_SERVICE}/")

    hub_auth = Instance(HubAuth)

    @default("hub_auth")
    def _default_hub_auth(self) -> HubAuth:
        # the JSON API: Authorization header tokens only (no cookies, so no CSRF)
        return HubAuth(parent=self)

    hub_oauth = Instance(HubOAuth)

    @default("hub_oauth")
    def _default_hub_oauth(self) -> HubOAuth:
        # the admin page in a browser: hub OAuth login, cookie (GET-only pages)
        return HubOAuth(parent=self)

    authoring = Instance(Authoring, help="Course authoring's settings (c.Authoring.*).")

    @default("authoring")
    def _default_authoring(self) -> Authoring:
        return Authoring(parent=self)

    state = Instance(ServiceState, allow_none=True)
    http_server = Instance(HTTPServer, allow_none=True)
    authoring_runtime = Instance(AuthoringRuntime, allow_none=True)

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            # command line wins over the file
            if self.cli_config:
                self.update_config(self.cli_config)
        # our modules and tornado log through the application's handler and level
        for name in ("claudehub", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.parent = self.log
            logger.setLevel(self.log.level)

    def _sources(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        courses = list(self.courses)
        catalogues = list(self.catalogues)
        if self.courses_json:
            data = json.loads(Path(self.courses_json).read_text())
            courses += data.get("courses", [])
            catalogues += data.get("catalogues", [])
        return courses, catalogues

    async def load_courses(self, force: bool = False) -> Catalogue:
        courses, catalogues = self._sources()
        cat = await load_catalogue(
            courses,
            catalogues,
            Path(self.cache_dir),
            max_age=0 if force else self.cache_max_age,
            force=force,
        )
        if self.authoring_runtime is not None:
            await self.authoring_runtime.publisher.add_to(cat)
        for err in cat.errors:
            self.log.error(
                "Course error: %s (%s): %s: %s", err.course_id, err.source, err.file, err.reason
            )
        if self.state is not None:
            self.state.catalogue = cat
        return cat

    def make_app(self) -> web.Application:
        assert self.state is not None
        return web.Application(
            [
                *service_handlers(self.service_prefix),
                *admin_page_handlers(self.service_prefix),
                *class_page_handlers(self.service_prefix),
                # always routed: with authoring off they answer a JSON 404 saying so
                *authoring_handlers(self.service_prefix),
            ],
            claudehub_authoring=self.authoring_runtime,
            claudehub_state=self.state,
            claudehub_prefix=self.service_prefix,
            hub_oauth=self.hub_oauth,
            cookie_secret=secrets.token_bytes(32),
            claudehub_reload=self.load_courses,
            claudehub_max_bundle=self.max_bundle_bytes,
            claudehub_max_asset_bytes=self.max_asset_bytes,
            hub_auth=self.hub_auth,
            claudehub_hub_directory=HubDirectory(
                api_url=str(self.hub_auth.api_url), token=str(self.hub_auth.api_token or "")
            ),
            claudehub_usage_source=(
                UsageSource(self.keyproxy_url, self.keyproxy_admin_token)
                if self.keyproxy_url and self.keyproxy_admin_token
                else None
            ),
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        # never log query strings: they could carry a token
        path = handler.request.path
        ms = 1000.0 * handler.request.request_time()
        level = self.log.info if status < 400 else self.log.warning
        level("%d %s %s %.1fms", status, handler.request.method, path, ms)

    async def start_async(self) -> None:
        """Open the store (migrating it), load courses (published ones too) and serve."""
        store = await Store.open(self.db_url)
        if self.authoring.enabled:
            self.authoring_runtime = await self._start_authoring(store)
        catalogue = await self.load_courses()
        self.state = ServiceState(
            store=store,
            catalogue=catalogue,
            tutor_completions_count=self.tutor_completions_count,
        )
        app = self.make_app()
        ssl_context = None
        # internal TLS: the files HubAuth already read (JUPYTERHUB_SSL_KEYFILE, ...)
        auth = self.hub_auth
        if auth.keyfile and auth.certfile:
            ssl_context = make_ssl_context(auth.keyfile, auth.certfile, auth.client_ca or None)
        self.http_server = HTTPServer(app, ssl_options=ssl_context, xheaders=True)
        self.http_server.listen(self.port, self.ip)
        self.log.info(
            "claudehub-progress listening on %s:%d%s (%d courses, %d course errors)",
            self.ip,
            self.port,
            self.service_prefix,
            len(catalogue.courses),
            len(catalogue.errors),
        )

    async def _start_authoring(self, store: Store) -> AuthoringRuntime:
        cfg = self.authoring
        repo = CourseRepository(
            Path(cfg.repository),
            branch=cfg.branch,
            author=cfg.commit_author,
            published_dir=Path(cfg.published_dir),
            remote_url=cfg.remote_url,
            deploy_key_file=cfg.deploy_key_file,
            known_hosts_file=cfg.known_hosts_file,
        )
        publisher = Publisher(repo, store)
        await publisher.load()
        return AuthoringRuntime(
            settings=cfg,
            drafts=DraftStore(Path(cfg.drafts_dir)),
            publisher=publisher,
            people=HubPeople(
                api_url=str(self.hub_auth.api_url), token=str(self.hub_auth.api_token or "")
            ),
        )

    async def refresh_loop(self) -> None:
        while self.refresh_interval > 0:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.load_courses(force=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Refreshing the course catalogue failed")

    async def stop_async(self) -> None:
        if self.http_server is not None:
            self.http_server.stop()
            self.http_server = None
        if self.state is not None:
            state, self.state = self.state, None
            await state.store.close()
        self.authoring_runtime = None

    async def _run(self) -> None:
        await self.start_async()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        refresher = asyncio.create_task(self.refresh_loop())
        await stop.wait()
        refresher.cancel()
        await self.stop_async()

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        asyncio.run(self._run())


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    app = ProgressService.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
