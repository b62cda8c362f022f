"""``claudehub-keyproxy``: the key proxy as a traitlets application (a JupyterHub service).

Run by the hub as a managed service (it then reads JUPYTERHUB_SERVICE_URL, JUPYTERHUB_API_URL
and JUPYTERHUB_API_TOKEN), or standalone (no hub: tokens are checked by signature and expiry
only). ``claudehub-keyproxy mint-token --user NAME --ttl 3600`` prints a sandbox token;
``claudehub-keyproxy export-usage --output FILE`` and ``import-usage --input FILE`` back up
and restore the usage database (:mod:`claudehub.proxy.backup`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
from typing import Any

import sqlalchemy as sa
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import Application, Configurable

from claudehub.contract import env
from claudehub.contract.hub import KEYPROXY_SERVICE
from claudehub.contract.limits import parse_limits
from claudehub.contract.models import check_allowlist
from claudehub.contract.tokens import load_token_secret, mint_token
from claudehub.proxy import backup
from claudehub.proxy.limits import Limits
from claudehub.proxy.service import KeyProxy, KeyProxyOptions
from claudehub.proxy.settings import DEFAULT_FORWARD_HEADERS, ProxySettings
from claudehub.proxy.usage import UsageStore

log = logging.getLogger("claudehub.proxy")

#: Where the key proxy listens without JUPYTERHUB_SERVICE_URL (standalone).
DEFAULT_PORT = 8787


class TokenSecretMixin(Configurable):
    """The HMAC secret shared with the hub (env CLAUDEHUB_TOKEN_SECRET or a file)."""

    token_secret = Unicode(
        help="HMAC secret for sandbox tokens, shared with the hub. Default: env CLAUDEHUB_TOKEN_SECRET.",
    ).tag(config=True)

    @default("token_secret")
    def _token_secret_default(self) -> str:
        return env.read_env(env.TOKEN_SECRET)

    token_secret_file = Unicode(
        help="File holding the token secret (wins over token_secret). Default: env CLAUDEHUB_TOKEN_SECRET_FILE.",
    ).tag(config=True)

    @default("token_secret_file")
    def _token_secret_file_default(self) -> str:
        return env.read_env(env.TOKEN_SECRET_FILE)

    def load_secret(self) -> bytes:
        """The secret from token_secret_file when set, else token_secret."""
        return load_token_secret(self.token_secret, self.token_secret_file)


class MintTokenApp(TokenSecretMixin, Application):
    """Print a sandbox token for a user (standalone mode, benchmarks, operators)."""

    name = "claudehub-keyproxy mint-token"
    description = "Mint a sandbox token for USER with the shared token secret and print it."
    user = Unicode("", help="Hub user name the token is for.").tag(config=True)
    server = Unicode("", help="Server name ('' is the user's default server).").tag(config=True)
    ttl = Float(3600.0, help="Seconds until the token expires (0: no expiry).").tag(config=True)
    aliases = {
        "user": "MintTokenApp.user",
        "server": "MintTokenApp.server",
        "ttl": "MintTokenApp.ttl",
        "secret-file": "MintTokenApp.token_secret_file",
    }

    def start(self) -> None:
        secret = self.load_secret()
        if not secret:
            sys.exit("No token secret: set CLAUDEHUB_TOKEN_SECRET or pass --secret-file.")
        if not self.user:
            sys.exit("--user is required")
        print(mint_token(secret, self.user, self.server, ttl=self.ttl or None))


class KeyProxyApp(TokenSecretMixin, Application):
    """The key proxy: the only holder of the real Anthropic key."""

    name = "claudehub-keyproxy"
    description = __doc__
    subcommands = {
        "mint-token": (MintTokenApp, MintTokenApp.description),
        "export-usage": (
            "claudehub.proxy.app.ExportUsageApp",
            "Write usage, daily totals and audit log to JSON.",
        ),
        "import-usage": (
            "claudehub.proxy.app.ImportUsageApp",
            "Restore a usage backup, all or nothing.",
        ),
    }

    aliases = {
        "ip": "KeyProxyApp.ip",
        "port": "KeyProxyApp.port",
        "upstream-url": "KeyProxyApp.upstream_url",
        "api-key-file": "KeyProxyApp.api_key_file",
        "token-secret-file": "KeyProxyApp.token_secret_file",
        "db-url": "KeyProxyApp.db_url",
        "rate-limit": "KeyProxyApp.rate_limit_per_minute",
        "daily-token-budget": "KeyProxyApp.daily_token_budget",
        "allowed-models": "KeyProxyApp.allowed_models",
        "max-tokens-cap": "KeyProxyApp.max_tokens_cap",
        "config": "KeyProxyApp.config_file",
        "log-level": "Application.log_level",
    }
    flags = {
        "standalone": (
            {"KeyProxyApp": {"standalone": True}},
            "Run without a hub (tokens: signature and expiry only).",
        ),
        "access-log": (
            {"KeyProxyApp": {"access_log": True}},
            "Log one line per forwarded request.",
        ),
    }

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    config_file = Unicode("keyproxy_config.py", help="Config file to load (if it exists).").tag(
        config=True
    )

    # -- listening -------------------------------------------------------------------------
    ip = Unicode(
        help="Address to listen on. Default: host of JUPYTERHUB_SERVICE_URL, else 127.0.0.1."
    ).tag(config=True)
    port = Integer(
        help="Port to listen on. Default: port of JUPYTERHUB_SERVICE_URL, else 8787."
    ).tag(config=True)

    @default("ip")
    def _ip_default(self) -> str:
        return env.read_env_service_url(DEFAULT_PORT)[0]

    @default("port")
    def _port_default(self) -> int:
        # JUPYTERHUB_SERVICE_URL's port, its scheme's without one (claudehub.contract.env)
        return env.read_env_service_url(DEFAULT_PORT)[1]

    service_prefix = Unicode(
        help="Hub service prefix the local endpoints also answer under. Default: env JUPYTERHUB_SERVICE_PREFIX."
    ).tag(config=True)

    @default("service_prefix")
    def _service_prefix_default(self) -> str:
        return env.read_env(env.SERVICE_PREFIX, f"/services/{KEYPROXY_SERVICE}/")

    # -- upstream and key -------------------------------------------------------------------
    upstream_url = Unicode(
        help="Anthropic API base URL. Default: env ANTHROPIC_UPSTREAM_URL, else https://api.anthropic.com."
    ).tag(config=True)

    @default("upstream_url")
    def _upstream_default(self) -> str:
        return env.read_env(env.ANTHROPIC_UPSTREAM_URL) or "https://api.anthropic.com"

    upstream_ca_file = Unicode(
        "",
        help="CA bundle to verify an https upstream with (e.g. an egress gateway's); default: the system CAs.",
    ).tag(config=True)

    api_key = Unicode(
        help="The real Anthropic API key. Default: env ANTHROPIC_API_KEY. Prefer api_key_file."
    ).tag(config=True)

    @default("api_key")
    def _api_key_default(self) -> str:
        return env.read_env(env.ANTHROPIC_API_KEY)

    api_key_file = Unicode(
        help="File holding the real key (wins over api_key); re-read when it changes. Default: env ANTHROPIC_API_KEY_FILE."
    ).tag(config=True)

    @default("api_key_file")
    def _api_key_file_default(self) -> str:
        return env.read_env(env.ANTHROPIC_API_KEY_FILE)

    file_poll_interval = Float(
        5.0, help="Seconds between checks of api_key_file and token_secret_file for changes."
    ).tag(config=True)

    forward_headers = List(
        Unicode(),
        list(DEFAULT_FORWARD_HEADERS),
        help="Request headers copied upstream byte for byte (names; a trailing * matches a prefix). Credentials, cookies and framing headers are never copied.",
    ).tag(config=True)

    # -- hub ----------------------------------------------------------------------------------
    hub_api_url = Unicode(help="JupyterHub API URL. Default: env JUPYTERHUB_API_URL.").tag(
        config=True
    )

    @default("hub_api_url")
    def _hub_api_url_default(self) -> str:
        return env.read_env(env.HUB_API_URL)

    hub_api_token = Unicode(
        help="JupyterHub API token (scopes list:users, read:servers; list:groups, read:groups for class limits; read:users for admin checks). Default: env JUPYTERHUB_API_TOKEN."
    ).tag(config=True)

    @default("hub_api_token")
    def _hub_api_token_default(self) -> str:
        return env.read_env(env.HUB_API_TOKEN)

    standalone = Bool(
        help="Run without a hub: tokens are checked by signature and expiry only. Default: true when no hub API URL/token is set."
    ).tag(config=True)

    @default("standalone")
    def _standalone_default(self) -> bool:
        return not (self.hub_api_url and self.hub_api_token)

    hub_poll_interval = Float(
        15.0,
        help="Seconds between polls of the hub for running servers and classes (a stopped server's token dies within this plus a request's latency; a class's changed limits apply within it).",
    ).tag(config=True)
    hub_stale_after = Float(
        60.0, help="Refuse requests (503) when the last successful hub poll is older than this."
    ).tag(config=True)

    @validate("hub_poll_interval")
    def _check_poll(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 < value <= 30:
            raise TraitError("hub_poll_interval must be in (0, 30] seconds")
        return value

    # -- limits ---------------------------------------------------------------------------------
    rate_limit_per_minute = Float(60.0, help="Requests per minute per user (0: no limit).").tag(
        config=True
    )
    rate_limit_burst = Integer(
        0,
        help="Requests a user may make at once before the rate applies (0: rate_limit_per_minute).",
    ).tag(config=True)
    daily_token_budget = Integer(0, help="Tokens per user per UTC day (0: no budget).").tag(
        config=True
    )
    budget_overrides = Dict(
        value_trait=Integer(),
        help="Per-user daily token budgets, {user: tokens}; 0 means unlimited for that user.",
    ).tag(config=True)
    user_limits = Dict(
        value_trait=Dict(),
        help="""Per-user limits, ``{user: {daily_token_budget, rate_limit_per_minute,
        rate_limit_burst, allowed_models}}`` (each field optional, as in a class's limits:
        claudehub.contract.limits). A field set here wins over the user's classes and over
        the defaults; budget_overrides is the shorthand for the budget alone.""",
    ).tag(config=True)

    @validate("user_limits")
    def _check_user_limits(self, proposal: Any) -> dict[str, dict[str, Any]]:
        out = {}
        for user, spec in proposal["value"].items():
            try:
                out[str(user)] = parse_limits(spec, f"KeyProxyApp.user_limits[{user!r}]")
            except ValueError as e:
                raise TraitError(str(e)) from None
        return out

    author_limits = Dict(
        help="""Limits of instructors' author sessions (docs/authoring.md), ``{daily_token_budget,
        rate_limit_per_minute, rate_limit_burst, allowed_models}`` (each field optional, as in
        a class's limits); a field left out is the key proxy's default. An author session's
        token says so (its ``knd`` claim); its usage is recorded as ``<user>/author``, with a
        budget and a rate of its own, apart from the same user's learning, and no class's
        limits apply to it. ``user_limits["<user>/author"]`` overrides them for one author.
        The chart's keyproxy.limits.authors.""",
    ).tag(config=True)

    @validate("author_limits")
    def _check_author_limits(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for key, item in value.items():
            # the command line gives key=value pairs as strings: each value is JSON there
            # (--KeyProxyApp.author_limits=daily_token_budget=100, the chart's form)
            if isinstance(item, str):
                try:
                    value[key] = json.loads(item)
                except ValueError:
                    raise TraitError(
                        f"KeyProxyApp.author_limits.{key}: {item!r} is not a JSON value"
                    ) from None
        try:
            return parse_limits(value, "KeyProxyApp.author_limits")
        except ValueError as e:
            raise TraitError(str(e)) from None

    cache_read_budget_weight = Float(
        0.1, help="Weight of cache-read input tokens against the budget (they cost a tenth)."
    ).tag(config=True)
    allowed_models = List(
        Unicode(),
        help="""Models every learner may call: model ids (each also allows its dated
        snapshots, claude-haiku-4-5 allows claude-haiku-4-5-20251001) or patterns such as
        claude-haiku-* (docs/key-proxy.md, "Models"). A class's allowed_models replaces this
        list for its learners. Empty: every model. A request for any other model is refused
        (403) before anything goes upstream. The hub configurations set it from the models
        learners may choose (CLAUDEHUB_MODELS, the chart's sandbox.models).""",
    ).tag(config=True)

    @validate("allowed_models")
    def _check_allowed_models(self, proposal: Any) -> list[str]:
        try:
            return check_allowlist(proposal["value"], "KeyProxyApp.allowed_models")
        except ValueError as e:
            raise TraitError(str(e)) from None

    max_tokens_cap = Integer(0, help="Largest max_tokens a request may ask for (0: no cap).").tag(
        config=True
    )
    max_tokens_policy = Enum(
        ["clamp", "reject"],
        "clamp",
        help="Over the cap: lower max_tokens to the cap, or refuse (403).",
    ).tag(config=True)

    # -- protocol limits and timeouts ----------------------------------------------------------
    max_body_bytes = Integer(
        32 * 1024 * 1024, help="Largest request body accepted (413 beyond)."
    ).tag(config=True)
    max_header_bytes = Integer(
        64 * 1024, help="Largest request line + headers accepted (431 beyond)."
    ).tag(config=True)
    header_timeout = Float(
        20.0,
        help="Seconds a client has to send a request's headers (and to start one on a new connection).",
    ).tag(config=True)
    body_timeout = Float(120.0, help="Seconds a client has to send a request body.").tag(
        config=True
    )
    keepalive_timeout = Float(75.0, help="Seconds an idle client connection stays open.").tag(
        config=True
    )
    max_connections = Integer(
        10000,
        help="Client connections held at once; more are closed at accept (needs ulimit -n of about twice this).",
    ).tag(config=True)
    upstream_connect_timeout = Float(
        10.0, help="Seconds to connect to the upstream (504 beyond)."
    ).tag(config=True)
    upstream_timeout = Float(
        600.0, help="Seconds to wait for the upstream's response headers (504 beyond)."
    ).tag(config=True)
    upstream_idle_timeout = Float(
        300.0, help="Seconds a started response may go silent before the stream is ended."
    ).tag(config=True)
    upstream_pool_size = Integer(256, help="Idle keep-alive upstream connections kept.").tag(
        config=True
    )
    upstream_pool_idle_timeout = Float(
        30.0, help="Seconds an idle pooled upstream connection is kept before it is closed."
    ).tag(config=True)
    shutdown_timeout = Float(
        120.0, help="On SIGTERM, seconds open requests and streams get to finish."
    ).tag(config=True)

    # -- usage, metrics, admin --------------------------------------------------------------------
    db_url = Unicode(
        help="SQLAlchemy URL of the usage database (sqlite:///... or postgresql://...). Default: env CLAUDEHUB_KEYPROXY_DB_URL, else sqlite:///keyproxy-usage.sqlite in the working directory. The old name CLAUDEHUB_USAGE_DB_URL is still read when CLAUDEHUB_KEYPROXY_DB_URL is unset (deprecated: local mode no longer sets it)."
    ).tag(config=True)

    @default("db_url")
    def _db_url_default(self) -> str:
        return (
            env.read_env(env.KEYPROXY_DB_URL)
            or env.read_env(env.KEYPROXY_DB_URL_OLD)
            or "sqlite:///keyproxy-usage.sqlite"
        )

    usage_flush_interval = Float(1.0, help="Seconds between batched usage writes.").tag(config=True)
    shared_limits_interval = Float(
        1.0,
        help="""Seconds between syncs of budgets and rate limits with the other key proxies on
        the same usage database (db_url): each writes its usage and reads everyone's totals,
        and enforces 1/N of the rate limit with N replicas alive. A user can overshoot the
        daily budget by what they start on other replicas in 2 x this interval
        (docs/key-proxy.md). 0: every replica keeps its own limits.""",
    ).tag(config=True)
    admin_tokens = List(
        Unicode(),
        help="Tokens that may read /usage and /metrics. Default: env CLAUDEHUB_KEYPROXY_ADMIN_TOKEN.",
    ).tag(config=True)

    @default("admin_tokens")
    def _admin_tokens_default(self) -> list[str]:
        token = env.read_env(env.KEYPROXY_ADMIN_TOKEN)
        return [token] if token else []

    authenticate_metrics = Bool(
        True, help="Require an admin (or read:metrics hub token) for /metrics."
    ).tag(config=True)
    access_log = Bool(
        False,
        help="Log one line per forwarded request (user, model, status, latency; never content).",
    ).tag(config=True)
    audit_retention_days = Float(
        365.0,
        help="""Days the audit log (claudehub_audit in the usage database: sessions ended and
        servers opened by someone else, class limits changed, key rotations, forged tokens;
        docs/security.md) keeps an event; older ones are pruned hourly. 0: keep forever.""",
    ).tag(config=True)

    @validate("audit_retention_days")
    def _check_retention(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if value < 0:
            raise TraitError("audit_retention_days must be 0 (keep forever) or more")
        return value

    # -- life cycle --------------------------------------------------------------------------------
    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if self.subapp is not None:
            return
        if self.config_file and os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
        # our modules log to "claudehub.proxy"; send that through the app's handler and level
        ours = logging.getLogger("claudehub")
        ours.setLevel(self.log.level)
        if not ours.handlers:
            for handler in self.log.handlers:
                ours.addHandler(handler)
            ours.propagate = False

    def build_settings(self) -> ProxySettings:
        """The server's settings: each :class:`ProxySettings` field from the trait of its name."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ProxySettings)}
        # copies, so that the server never shares (or mutates) the app's trait values
        values["api_key"] = self.api_key.strip()
        values["forward_headers"] = list(self.forward_headers)
        return ProxySettings(**values)

    #: The Limits argument each limit trait is handed as (the per-request limits object).
    LIMIT_TRAITS = {
        "rate_limit_per_minute": "rate_per_minute",
        "rate_limit_burst": "burst",
        "daily_token_budget": "daily_token_budget",
        "budget_overrides": "budget_overrides",
        "user_limits": "user_limits",
        "author_limits": "author_limits",
        "allowed_models": "allowed_models",
        "max_tokens_cap": "max_tokens_cap",
        "max_tokens_policy": "max_tokens_policy",
        "cache_read_budget_weight": "cache_read_weight",
    }
    #: KeyProxyOptions fields that are not a trait of their name: built here from traits.
    BUILT_OPTIONS = ("settings", "limits", "token_secret", "hub_api_url", "hub_api_token")

    def build_options(self) -> KeyProxyOptions:
        """The service's options: every :class:`KeyProxyOptions` field from the trait of its
        name (a test keeps the two in step), except :data:`BUILT_OPTIONS`."""
        if not self.allowed_models:
            self.log.warning(
                "No model allowlist (KeyProxyApp.allowed_models): learners may call every model"
            )
        limits = Limits(
            **{arg: copy.deepcopy(getattr(self, trait)) for trait, arg in self.LIMIT_TRAITS.items()}
        )
        hub = not self.standalone
        values = {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in dataclasses.fields(KeyProxyOptions)
            if f.name not in self.BUILT_OPTIONS
        }
        return KeyProxyOptions(
            settings=self.build_settings(),
            limits=limits,
            token_secret=self.token_secret.encode(),
            hub_api_url=self.hub_api_url if hub else "",
            hub_api_token=self.hub_api_token if hub else "",
            **values,
        )

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        options = self.build_options()
        if not self.standalone and not options.hub_mode:
            self.log.critical(
                "Hub mode needs JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (or --standalone)."
            )
            sys.exit(2)
        proxy = KeyProxy(options)
        await proxy.start(self.ip, self.port)
        # everything allocated so far lives for the whole run: keep it out of GC scans
        gc.collect()
        gc.freeze()
        log.info(
            "claudehub key proxy on http://%s:%d -> %s (%s mode)",
            self.ip,
            proxy.server.port,
            self.upstream_url,
            "hub" if options.hub_mode else "standalone",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info(
            "Shutting down: letting open requests finish (up to %.0f s)", self.shutdown_timeout
        )
        await proxy.stop(self.shutdown_timeout)
        log.info("Stopped")

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            asyncio.run(self.run())
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self.run())


class _UsageBackupApp(Application):
    """The key proxy's usage database: KeyProxyApp's own ``db_url`` trait and default."""

    aliases = {"db-url": "KeyProxyApp.db_url", "config": "KeyProxyApp.config_file"}
    classes = [KeyProxyApp]

    def usage_store(self) -> UsageStore:
        app = KeyProxyApp(config=self.config)
        if app.config_file and os.path.exists(app.config_file):
            app.load_config_file(app.config_file)
            app.update_config(self.cli_config)
        return UsageStore(app.db_url)


class ExportUsageApp(_UsageBackupApp):
    """``claudehub-keyproxy export-usage --output FILE``."""

    name = "claudehub-keyproxy export-usage"
    description = """Write the usage, daily totals and audit log of the key proxy's database
    to FILE ("-": standard output) as one versioned JSON document (docs/operator-guide.md)."""
    output = Unicode("-", help='Where to write the backup ("-": standard output).').tag(config=True)
    aliases = {**_UsageBackupApp.aliases, "output": "ExportUsageApp.output"}

    def start(self) -> None:
        store = self.usage_store()
        try:
            doc = backup.export_backup(store)
        except sa.exc.SQLAlchemyError as e:
            sys.exit(f"export failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        finally:
            store.close()
        backup.write_document(doc, self.output, sys.stdout)
        counts = ", ".join(f"{n}: {len(r)}" for n, r in doc["tables"].items())
        print(f"exported usage ({counts})", file=sys.stderr)


class ImportUsageApp(_UsageBackupApp):
    """``claudehub-keyproxy import-usage --input FILE [--replace]``."""

    name = "claudehub-keyproxy import-usage"
    description = """Restore a backup written by `claudehub-keyproxy export-usage` into the
    key proxy's database, all or nothing. A database already holding usage or audit rows is
    refused unless --replace (which replaces them whole). Stop the key proxy first: its
    budgets are read back from the database at start-up."""
    input = Unicode("-", help='The backup to read ("-": standard input).').tag(config=True)
    replace = Bool(
        False, help="Replace the usage a database already holds (else it is refused)."
    ).tag(config=True)
    aliases = {**_UsageBackupApp.aliases, "input": "ImportUsageApp.input"}
    flags = {"replace": ({"ImportUsageApp": {"replace": True}}, "Replace the usage already there.")}

    def start(self) -> None:
        try:
            doc = backup.parse_backup(backup.read_document(self.input, sys.stdin))
        except (OSError, UnicodeDecodeError, backup.BackupError) as e:
            sys.exit(f"import refused: {e}")
        store = self.usage_store()
        try:
            written = backup.import_backup(store, doc, replace=self.replace)
        except backup.BackupError as e:
            sys.exit(f"import refused: {e}")
        except sa.exc.SQLAlchemyError as e:
            sys.exit(f"import failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        finally:
            store.close()
        counts = ", ".join(f"{n}: {c}" for n, c in written.items())
        print(f"imported usage ({counts})", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (a bad setting stops it with one line naming the setting)."""
    KeyProxyApp.launch_instance(argv)


if __name__ == "__main__":
    main()
