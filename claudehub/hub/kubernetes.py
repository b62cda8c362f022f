"""Kubernetes mode's JupyterHub configuration, built from the chart's checked values.

``hub_config/jupyterhub_config.py`` (the file the chart's hub Deployment runs) is::

    from claudehub.hub.kubernetes import configure_kubernetes
    from claudehub.hub.settings import load
    configure_kubernetes(get_config(), load())

Secrets never come from the settings file. The hub reads them from its environment, filled
from the chart's Secrets: ``JPY_COOKIE_SECRET``, ``CONFIGPROXY_AUTH_TOKEN``,
``JUPYTERHUB_CRYPT_KEY`` (read by JupyterHub itself), ``GITHUB_CLIENT_ID`` /
``GITHUB_CLIENT_SECRET`` (read by oauthenticator), ``CLAUDEHUB_DEV_PASSWORD`` and
``CLAUDEHUB_ADMIN_PASSWORD`` (trial password login), the services' API tokens
(``claudehub.contract.env.KEYPROXY_API_TOKEN``, ``PROGRESS_API_TOKEN``) and the sandbox-token secret
file (``chart.tokenSecretFile``). A missing one stops the hub at start with a message naming it.

Chart values reach traits through one table, :data:`VALUE_TRAITS`; the few that need more
than a trait each are read by the functions :data:`READ_BY_CODE` names.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tornado.httpclient import AsyncHTTPClient
from traitlets import TraitError, Unicode, default
from traitlets.config import Configurable

from claudehub.contract import env
from claudehub.contract.env import read_env
from claudehub.contract.hub import (
    CULLER_SERVICE,
    KEYPROXY_SERVICE,
    PROGRESS_SERVICE,
    SERVER_TOKEN_SCOPES,
    USER_EXTRA_SCOPES,
    service_roles,
)
from claudehub.contract.limits import parse_limits
from claudehub.spawner.startqueue import queued_start_timeout

from .audit import configure_audit
from .classes import ClassSettings, configure_classes
from .database import configure_database
from .pages import configure_pages
from .settings import SettingsError, value


class HubEnvironment(Configurable):
    """What the chart puts in the hub's environment: where its settings are, and the secrets
    (from the hub Secret) that never go into the settings file. Each trait's default is read
    once from its variable (:data:`VARIABLES`)."""

    #: trait -> the variable the chart sets it in
    VARIABLES = {
        "config_file": env.HUB_CONFIG,
        "proxy_auth_token": "CONFIGPROXY_AUTH_TOKEN",
        "github_client_id": "GITHUB_CLIENT_ID",
        "github_client_secret": "GITHUB_CLIENT_SECRET",
        "dev_password": env.DEV_PASSWORD,
        "admin_password": env.ADMIN_PASSWORD,
        "keyproxy_api_token": env.KEYPROXY_API_TOKEN,
        "progress_api_token": env.PROGRESS_API_TOKEN,
        "keyproxy_admin_token": env.KEYPROXY_ADMIN_TOKEN,
    }

    config_file = Unicode(
        help="The settings file (the chart's values, its schema beside it); '' for the default."
    ).tag(config=True)
    proxy_auth_token = Unicode(help="configurable-http-proxy's API token.").tag(config=True)
    github_client_id = Unicode(help="The GitHub OAuth app's client id.").tag(config=True)
    github_client_secret = Unicode(help="The GitHub OAuth app's client secret.").tag(config=True)
    dev_password = Unicode(help="The trial login's shared password.").tag(config=True)
    admin_password = Unicode(help="The password auth.admins log in with (trials).").tag(config=True)
    keyproxy_api_token = Unicode(help="The key proxy's hub API token.").tag(config=True)
    progress_api_token = Unicode(help="The course service's hub API token.").tag(config=True)
    keyproxy_admin_token = Unicode(
        help="The key proxy's admin token, for the audit hook's POST /audit ('' reports nothing)."
    ).tag(config=True)

    @default("config_file")
    def _d_config_file(self) -> str:
        return read_env(self.VARIABLES["config_file"])

    @default("proxy_auth_token")
    def _d_proxy_auth_token(self) -> str:
        return read_env(self.VARIABLES["proxy_auth_token"])

    @default("github_client_id")
    def _d_github_client_id(self) -> str:
        return read_env(self.VARIABLES["github_client_id"])

    @default("github_client_secret")
    def _d_github_client_secret(self) -> str:
        return read_env(self.VARIABLES["github_client_secret"])

    @default("dev_password")
    def _d_dev_password(self) -> str:
        return read_env(self.VARIABLES["dev_password"])

    @default("admin_password")
    def _d_admin_password(self) -> str:
        return read_env(self.VARIABLES["admin_password"])

    @default("keyproxy_api_token")
    def _d_keyproxy_api_token(self) -> str:
        return read_env(self.VARIABLES["keyproxy_api_token"])

    @default("progress_api_token")
    def _d_progress_api_token(self) -> str:
        return read_env(self.VARIABLES["progress_api_token"])

    @default("keyproxy_admin_token")
    def _d_keyproxy_admin_token(self) -> str:
        return read_env(self.VARIABLES["keyproxy_admin_token"])

    def require(self, trait: str, why: str, min_length: int = 1) -> str:
        """The value of ``trait``, or SettingsError naming its variable and what it is for."""
        value = str(getattr(self, trait))
        if len(value) < min_length:
            need = f"at least {min_length} characters" if min_length > 1 else "set"
            name = self.VARIABLES[trait]
            raise SettingsError(f"environment variable {name} must be {need} ({why})")
        return value


def culler_command(culling: Mapping[str, Any], python: str = sys.executable) -> list[str]:
    """The idle culler's command line: stop servers idle for ``idleTimeout`` seconds, and
    any server older than ``maxAge`` seconds (0: no age limit), checking every ``every``."""
    command = [
        python,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={culling['idleTimeout']}",
        f"--cull-every={culling['every']}",
    ]
    if culling["maxAge"]:
        command.append(f"--max-age={culling['maxAge']}")
    return command


def services_and_roles(
    settings: Mapping[str, Any], secrets: HubEnvironment
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hub services (key proxy, progress service, culler) and their narrowest roles."""
    services: list[dict[str, Any]] = [
        {
            # No url: the key proxy is reached inside the cluster only, never through the
            # public proxy (CHP must not route the internet to it).
            "name": KEYPROXY_SERVICE,
            "api_token": secrets.require("keyproxy_api_token", "the key proxy's hub API token", 16),
            "display": False,
        },
        {
            # With url: the hub routes /services/progress/ through the public proxy, for
            # the admin progress view and the service's OAuth login.
            "name": PROGRESS_SERVICE,
            "url": value(settings, "chart.progressUrl"),
            "api_token": secrets.require(
                "progress_api_token", "the progress service's hub API token", 16
            ),
            "display": False,
            "oauth_no_confirm": True,
        },
    ]
    culling = value(settings, "culling")
    if culling["enabled"]:
        services.append(
            {"name": CULLER_SERVICE, "command": culler_command(culling), "display": False}
        )
    return services, service_roles(culler=culling["enabled"])


def profile_list(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """KubeSpawner ``profile_list``: the standard profile (``sandbox.resources``) and, with
    ``sandbox.gpu.enabled``, the GPU profile the ``sandbox.gpu`` values describe."""
    profiles: list[dict[str, Any]] = [
        {
            "slug": "default",
            "display_name": "Standard",
            "description": "",
            "default": True,
            "kubespawner_override": {"sandbox_resources": value(settings, "sandbox.resources")},
        }
    ]
    gpu = value(settings, "sandbox.gpu")
    if gpu["enabled"]:
        override: dict[str, Any] = {
            "sandbox_resources": gpu["resources"],
            "gpu_limit": gpu["count"],
            "gpu_runtime_class": gpu["runtimeClassName"],
        }
        if gpu["nodeSelector"]:
            override["node_selector"] = gpu["nodeSelector"]
        if gpu["tolerations"]:
            override["tolerations"] = gpu["tolerations"]
        profiles.append(
            {
                "slug": "gpu",
                "display_name": gpu["displayName"],
                "description": "",
                "default": False,
                "kubespawner_override": override,
            }
        )
    return profiles


def configure_auth(c: Any, auth: Mapping[str, Any], secrets: HubEnvironment) -> None:
    """GitHub OAuth (allowed users/organisations) or one shared password for trials."""
    admins = set(auth["admins"])
    allowed = set(auth["allowedUsers"])
    if auth["type"] == "github":
        c.JupyterHub.authenticator_class = "github"
        # oauthenticator reads them itself; checked here so a missing one is named at start
        secrets.require("github_client_id", "the GitHub OAuth app's client id")
        secrets.require("github_client_secret", "the GitHub OAuth app's client secret")
        c.GitHubOAuthenticator.oauth_callback_url = auth["github"]["callbackUrl"]
        c.GitHubOAuthenticator.allowed_organizations = set(auth["github"]["allowedOrganizations"])
        # Organisation membership is read with the user's token; read:org lets private
        # memberships count too.
        c.GitHubOAuthenticator.scope = ["read:org"]
        if allowed:
            c.GitHubOAuthenticator.allowed_users = allowed
        if admins:
            c.Authenticator.admin_users = admins
        return
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = secrets.require(
        "dev_password", "the trial login password", 8
    )
    if allowed:
        c.Authenticator.allowed_users = allowed
    else:
        c.Authenticator.allow_all = True
    if admins:
        c.Authenticator.admin_users = admins
        c.SharedPasswordAuthenticator.admin_password = secrets.require(
            "admin_password", "the password auth.admins log in with", 32
        )


#: The settings file's (and the chart's) names of a class's limits, and the contract's.
LIMIT_NAMES = {
    "dailyTokenBudget": "daily_token_budget",
    "rateLimitPerMinute": "rate_limit_per_minute",
    "rateLimitBurst": "rate_limit_burst",
    "allowedModels": "allowed_models",
}


def class_settings(settings: Mapping[str, Any]) -> ClassSettings:
    """:class:`ClassSettings` from the values ``classes``, ``auth.adminsAttachServers`` and
    ``progress.tutorCompletionsCount``.

    Raises :class:`~claudehub.hub.settings.SettingsError` naming the class and limit.
    """
    classes = {}
    for name, spec in value(settings, "classes").items():
        spec = spec or {}
        where = f"classes.{name}.limits"
        limits = {LIMIT_NAMES[k]: v for k, v in (spec.get("limits") or {}).items()}
        try:
            # the contract's own check, so the key proxy reads what the hub writes
            checked = parse_limits(limits, where)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        classes[name] = {
            "learners": list(spec.get("learners") or []),
            "instructors": list(spec.get("instructors") or []),
            **({"limits": checked} if checked else {}),
        }
    try:
        return ClassSettings(
            classes=classes,
            admins_attach_servers=value(settings, "auth.adminsAttachServers"),
            tutor_completions_count=value(settings, "progress.tutorCompletionsCount"),
        )
    except (TraitError, ValueError) as e:
        raise SettingsError(str(e)) from None


#: A conversion of a chart value for its trait; :data:`UNSET` leaves the trait's default.
Convert = Callable[[Any], Any]
UNSET = object()


def _unless_empty(raw: Any) -> Any:
    return raw if raw else UNSET


def _secret_names(raw: list[Any]) -> list[str]:
    # imagePullSecrets may be [name] or, as in a pod spec, [{name: ...}]
    return [item["name"] if isinstance(item, dict) else item for item in raw]


def _services_path(raw: str) -> str:
    return f"{raw}/services/{PROGRESS_SERVICE}/"


#: The one table from a chart value to the hub trait it sets, with its conversion (None: as
#: it is). A chart setting for the hub is its values.yaml entry (the default, once), its
#: schema entry (what it may be) and a line here; tests/hub/test_values_to_traits.py renders
#: the chart with every key changed and proves it reaches its trait. ``chart.*`` are what the
#: templates compute (URLs, names), not operator settings.
VALUE_TRAITS: dict[str, tuple[str, Convert | None]] = {
    "chart.hubBindUrl": ("JupyterHub.hub_bind_url", None),
    "chart.hubUrl": ("JupyterHub.hub_connect_url", None),
    "chart.hubDbUrl": ("JupyterHub.db_url", None),
    "chart.proxyApiUrl": ("ConfigurableHTTPProxy.api_url", None),
    "hub.logLevel": ("JupyterHub.log_level", None),
    "hub.upgradeDatabase": ("JupyterHub.upgrade_db", None),
    "limits.maxActiveSessions": ("JupyterHub.active_server_limit", None),
    "limits.concurrentSpawnLimit": ("JupyterHub.concurrent_spawn_limit", None),
    "limits.startSlots": ("ClaudeSpawner.start_slots", None),
    "hub.startTimeout": ("ClaudeSpawner.sandbox_start_timeout", None),
    "chart.sandboxNamespace": ("ClaudeSpawner.namespace", None),
    "chart.sandboxImage": ("ClaudeSpawner.image", None),
    "chart.sandboxAuthorImage": ("ClaudeSpawner.author_image", None),
    "sandbox.draftSizeLimit": ("ClaudeSpawner.draft_size_limit", None),
    "chart.sandboxPriorityClass": ("ClaudeSpawner.priority_class_name", _unless_empty),
    "chart.keyproxyUrl": ("ClaudeSpawner.keyproxy_url", None),
    "chart.progressUrl": ("ClaudeSpawner.progress_url", _services_path),
    "chart.tokenSecretFile": ("ClaudeSpawner.token_secret_file", None),
    "imagePullSecrets": ("ClaudeSpawner.image_pull_secrets", _secret_names),
    "sandbox.image.pullPolicy": ("ClaudeSpawner.image_pull_policy", None),
    "sandbox.resources": ("ClaudeSpawner.sandbox_resources", None),
    "sandbox.storage.capacity": ("ClaudeSpawner.storage_capacity", None),
    "sandbox.storage.storageClassName": ("ClaudeSpawner.storage_class", _unless_empty),
    "sandbox.nodeSelector": ("ClaudeSpawner.node_selector", None),
    "sandbox.tolerations": ("ClaudeSpawner.tolerations", None),
    "sandbox.models": ("ClaudeSpawner.allowed_models", None),
}

#: Values the hub reads through code rather than one trait each (the function that does).
READ_BY_CODE: dict[str, str] = {
    "auth": "configure_auth: the authenticator and its users",
    "auth.adminsAttachServers": "class_settings",
    "classes": "class_settings: groups, limits and instructor roles",
    "progress.tutorCompletionsCount": "class_settings",
    "culling": "services_and_roles: the idle culler's command line",
    "sandbox.gpu": "profile_list: the GPU profile",
}

#: Values in the sections the hub is handed that only the chart's templates use.
CHART_ONLY = (
    "hub.resources",
    "hub.db",
    "hub.nodeSelector",
    "hub.tolerations",
    "sandbox.namespace",
    "sandbox.createNamespace",
    "sandbox.image.repository",
    "sandbox.image.tag",
    "sandbox.authorImage.repository",
    "sandbox.authorImage.tag",
    "sandbox.quota",
    "sandbox.limitRange",
)


def apply_value_traits(c: Any, settings: Mapping[str, Any]) -> None:
    """Set every trait of :data:`VALUE_TRAITS` from its chart value."""
    for key, (trait, convert) in VALUE_TRAITS.items():
        raw = copy.deepcopy(value(settings, key))
        result = convert(raw) if convert is not None else raw
        if result is UNSET:
            continue
        section, name = trait.split(".")
        setattr(getattr(c, section), name, result)


#: Seconds between the hub's checks that CHP has a route for every running sandbox.
ROUTE_CHECK_SECONDS = 10


def configure_kubernetes(c: Any, settings: Mapping[str, Any], secrets: HubEnvironment) -> None:
    """Fill JupyterHub config ``c`` for Kubernetes mode from the checked chart values and
    the secrets the chart put in the hub's environment (``secrets``).

    Raises :class:`~claudehub.hub.settings.SettingsError` naming a missing secret or a
    class setting the hub cannot use.
    """
    from claudehub.spawner.kube import ClaudeSpawner

    apply_value_traits(c, settings)
    # The hub's SQLite commits (the chart's default database) without a wait for the disk
    # each: they block the hub's event loop (claudehub.hub.database).
    configure_database(c, value(settings, "chart.hubDbUrl"))
    # The chart runs configurable-http-proxy in its own Deployment.
    c.ConfigurableHTTPProxy.should_start = False
    secrets.require("proxy_auth_token", "shared with configurable-http-proxy", 16)
    # Sandboxes keep running while the hub restarts or upgrades; the new hub finds them.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    # CHP keeps its routes in memory: restarted (a crash, a node drain) it knows no sandbox
    # until the hub's next route check, made with each activity update. Often enough that a
    # learner's page, which reconnects for 15 s before it reloads, finds its route again
    # (docs/operator-guide.md, "When a part fails"); JupyterHub's default is 5 minutes.
    c.JupyterHub.last_activity_interval = ROUTE_CHECK_SECONDS
    # One Claude per user. Users land on the home page ("Continue <course> at stage N", or
    # the course picker with model and profile); the hub's pages are claudehub's templates.
    c.JupyterHub.allow_named_servers = False
    configure_pages(c)

    # Users keep the default "user" role ("self": start and stop their own server) and may
    # call the course service. Their server's token may report activity, reach the course
    # service on their behalf (the page's course panels) and stop its own server (the
    # page's "End session"); nothing more.
    c.JupyterHub.extra_user_scopes = list(USER_EXTRA_SCOPES)
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)

    configure_auth(c, value(settings, "auth"), secrets)
    c.JupyterHub.spawner_class = ClaudeSpawner
    # The pod may be Running before jupyterhub-singleuser answers.
    c.ClaudeSpawner.http_timeout = 120
    c.ClaudeSpawner.profile_list = profile_list(settings)
    # JupyterHub refuses a spawn beyond limits.* with HTTP 429 and a message saying why.
    # Within them, pods are created startSlots at a time and the others wait their turn,
    # told their place (claudehub.spawner.startqueue): a class logging in at once gets its
    # sandboxes later rather than an error page. The wait counts against start_timeout,
    # which grows by one startTimeout per wave; each pod still has startTimeout to run.
    limits = value(settings, "limits")
    starting = min(
        [n for n in (limits["concurrentSpawnLimit"], limits["maxActiveSessions"]) if n] or [0]
    )
    start_timeout = value(settings, "hub.startTimeout")
    c.ClaudeSpawner.start_timeout = queued_start_timeout(
        start_timeout, limits["startSlots"], starting
    )
    # The spawner (course bundles) and the picker (courses, progress) call the course service
    # with tornado's shared client, which queues beyond max_clients (10) and fails a request
    # that waited 20 s there ("599: Timeout in request queue"): let every start through.
    AsyncHTTPClient.configure(None, max_clients=max(10, limits["concurrentSpawnLimit"]))
    services, roles = services_and_roles(settings, secrets)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    # Classes, instructors and the admins' access to servers (docs/instructors.md): last,
    # once the services and roles are set.
    classes = class_settings(settings)
    try:
        configure_classes(c, classes)
    except ValueError as e:  # admins may not attach, with the shared password
        raise SettingsError(f"auth.adminsAttachServers: {e}") from None
    # The audit log (docs/security.md): what only the hub sees goes to the key proxy's /audit,
    # with the admin token from the hub Secret (keyproxy-admin-token).
    configure_audit(c, value(settings, "chart.keyproxyUrl"), secrets.keyproxy_admin_token)
