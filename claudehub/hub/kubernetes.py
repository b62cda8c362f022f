"""Kubernetes mode's JupyterHub configuration, built from the checked settings file.

``hub_config/jupyterhub_config.py`` (the file the chart's hub Deployment runs) is::

    from claudehub.hub.kubernetes import configure_kubernetes
    from claudehub.hub.settings import load
    configure_kubernetes(get_config(), load())

Secrets never come from the settings file. The hub reads them from its environment, filled
from the chart's Secrets: ``JPY_COOKIE_SECRET``, ``CONFIGPROXY_AUTH_TOKEN``,
``JUPYTERHUB_CRYPT_KEY`` (read by JupyterHub itself), ``GITHUB_CLIENT_ID`` /
``GITHUB_CLIENT_SECRET`` (read by oauthenticator), ``CLAUDEHUB_DEV_PASSWORD`` and
``CLAUDEHUB_ADMIN_PASSWORD`` (trial password login), the services' API tokens (names in
``services.*.apiTokenEnv``) and the sandbox-token secret file (``spawner.tokenSecretFile``).
A missing one stops the hub at start with a message naming it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from tornado.httpclient import AsyncHTTPClient
from traitlets import TraitError

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

from .audit import ADMIN_TOKEN_ENV, configure_audit
from .classes import ClassSettings, configure_classes
from .pages import configure_pages
from .settings import SettingsError


def _secret(environ: Mapping[str, str], name: str, why: str, min_length: int = 1) -> str:
    value = environ.get(name, "")
    if len(value) < min_length:
        need = f"at least {min_length} characters" if min_length > 1 else "set"
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
    settings: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hub services (key proxy, progress service, culler) and their narrowest roles."""
    svc = settings["services"]
    keyproxy_env = svc["keyproxy"]["apiTokenEnv"]
    progress_env = svc["progress"]["apiTokenEnv"]
    services: list[dict[str, Any]] = [
        {
            # No url: the key proxy is reached inside the cluster only, never through the
            # public proxy (CHP must not route the internet to it).
            "name": KEYPROXY_SERVICE,
            "api_token": _secret(environ, keyproxy_env, "the key proxy's hub API token", 16),
            "display": False,
        },
        {
            # With url: the hub routes /services/progress/ through the public proxy, for
            # the admin progress view and the service's OAuth login.
            "name": PROGRESS_SERVICE,
            "url": svc["progress"]["url"],
            "api_token": _secret(environ, progress_env, "the progress service's hub API token", 16),
            "display": False,
            "oauth_no_confirm": True,
        },
    ]
    culling = settings["culling"]
    if culling["enabled"]:
        services.append(
            {"name": CULLER_SERVICE, "command": culler_command(culling), "display": False}
        )
    return services, service_roles(culler=culling["enabled"])


def profile_list(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """KubeSpawner ``profile_list`` entries for the configured sandbox profiles (GPU, ...)."""
    profiles = []
    for p in settings["spawner"]["profiles"]:
        override: dict[str, Any] = {}
        if p["resources"]:
            override["sandbox_resources"] = p["resources"]
        if p["gpu"]["count"]:
            override["gpu_limit"] = p["gpu"]["count"]
            override["gpu_runtime_class"] = p["gpu"]["runtimeClassName"]
        if p["nodeSelector"]:
            override["node_selector"] = p["nodeSelector"]
        if p["tolerations"]:
            override["tolerations"] = p["tolerations"]
        profiles.append(
            {
                "slug": p["slug"],
                "display_name": p["displayName"],
                "description": p["description"],
                "default": p["default"],
                "kubespawner_override": override,
            }
        )
    return profiles


def configure_auth(c: Any, auth: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """GitHub OAuth (allowed users/organisations) or one shared password for trials."""
    admins = set(auth["admins"])
    allowed = set(auth["allowedUsers"])
    if auth["type"] == "github":
        c.JupyterHub.authenticator_class = "github"
        _secret(environ, "GITHUB_CLIENT_ID", "the GitHub OAuth app's client id")
        _secret(environ, "GITHUB_CLIENT_SECRET", "the GitHub OAuth app's client secret")
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
    c.SharedPasswordAuthenticator.user_password = _secret(
        environ, "CLAUDEHUB_DEV_PASSWORD", "the trial login password", 8
    )
    if allowed:
        c.Authenticator.allowed_users = allowed
    else:
        c.Authenticator.allow_all = True
    if admins:
        c.Authenticator.admin_users = admins
        c.SharedPasswordAuthenticator.admin_password = _secret(
            environ, "CLAUDEHUB_ADMIN_PASSWORD", "the password auth.admins log in with", 32
        )


#: The settings file's (and the chart's) names of a class's limits, and the contract's.
LIMIT_NAMES = {
    "dailyTokenBudget": "daily_token_budget",
    "rateLimitPerMinute": "rate_limit_per_minute",
    "rateLimitBurst": "rate_limit_burst",
    "allowedModels": "allowed_models",
}


def class_settings(settings: Mapping[str, Any]) -> ClassSettings:
    """:class:`ClassSettings` from the settings file's ``classes``,
    ``auth.adminsAttachServers`` and ``services.progress.tutorCompletionsCount``; one the
    file leaves out (None) comes from the hub's environment (the traits' defaults).

    Raises :class:`~claudehub.hub.settings.SettingsError` naming the class and limit.
    """
    given: dict[str, Any] = {}
    if settings["classes"] is not None:
        classes = {}
        for name, spec in settings["classes"].items():
            where = f"classes.{name}.limits"
            limits = {LIMIT_NAMES[k]: v for k, v in spec["limits"].items()}
            try:
                # the contract's own check, so the key proxy reads what the hub writes
                checked = parse_limits(limits, where)
            except ValueError as e:
                raise SettingsError(str(e)) from None
            classes[name] = {
                "learners": list(spec["learners"]),
                "instructors": list(spec["instructors"]),
                **({"limits": checked} if checked else {}),
            }
        given["classes"] = classes
    if settings["auth"]["adminsAttachServers"] is not None:
        given["admins_attach_servers"] = settings["auth"]["adminsAttachServers"]
    tutor = settings["services"]["progress"]["tutorCompletionsCount"]
    if tutor is not None:
        given["tutor_completions_count"] = tutor
    try:
        result = ClassSettings(**given)
        # The environment fallbacks are read (and checked) on first use: here, so a bad
        # CLAUDEHUB_CLASSES stops the hub with one line like a bad settings file.
        _ = (result.classes, result.admins_attach_servers, result.tutor_completions_count)
    except (TraitError, ValueError) as e:
        raise SettingsError(str(e)) from None
    return result


def configure_spawner(c: Any, spawner: Mapping[str, Any]) -> None:
    """ClaudeSpawner settings: image, namespace, resources, storage, URLs, profiles."""
    from claudehub.spawner.kube import ClaudeSpawner

    c.JupyterHub.spawner_class = ClaudeSpawner
    s = c.ClaudeSpawner
    if spawner["namespace"]:
        s.namespace = spawner["namespace"]
    s.image = spawner["image"]
    s.image_pull_policy = spawner["imagePullPolicy"]
    s.image_pull_secrets = list(spawner["imagePullSecrets"])
    s.start_timeout = spawner["startTimeout"]
    # The pod may be Running before jupyterhub-singleuser answers.
    s.http_timeout = 120
    s.sandbox_uid = spawner["uid"]
    s.sandbox_gid = spawner["gid"]
    s.sandbox_resources = spawner["resources"]
    s.storage_capacity = spawner["storage"]["capacity"]
    if spawner["storage"]["storageClassName"]:
        s.storage_class = spawner["storage"]["storageClassName"]
    s.node_selector = spawner["nodeSelector"]
    s.tolerations = spawner["tolerations"]
    if spawner["priorityClassName"]:
        s.priority_class_name = spawner["priorityClassName"]
    s.keyproxy_url = spawner["keyproxyUrl"]
    s.progress_url = spawner["progressUrl"]
    s.token_secret_file = spawner["tokenSecretFile"]
    s.allowed_models = list(spawner["models"])
    profiles = profile_list({"spawner": spawner})
    if profiles:
        s.profile_list = profiles


def configure_kubernetes(
    c: Any, settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> None:
    """Fill JupyterHub config ``c`` for Kubernetes mode from checked ``settings``.

    Raises :class:`~claudehub.hub.settings.SettingsError` naming a missing secret or a
    class setting the hub cannot use.
    """
    env = os.environ if environ is None else environ
    hub = settings["hub"]
    c.JupyterHub.hub_bind_url = hub["bindUrl"]
    if hub["connectUrl"]:
        c.JupyterHub.hub_connect_url = hub["connectUrl"]
    c.JupyterHub.base_url = hub["baseUrl"]
    c.JupyterHub.db_url = hub["dbUrl"]
    c.JupyterHub.log_level = hub["logLevel"]
    # The chart runs configurable-http-proxy in its own Deployment.
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = settings["proxy"]["apiUrl"]
    _secret(env, "CONFIGPROXY_AUTH_TOKEN", "shared with configurable-http-proxy", 16)
    # Sandboxes keep running while the hub restarts or upgrades; the new hub finds them.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    # One Claude per user. Users land on the home page ("Continue <course> at stage N", or
    # the course picker with model and profile); the hub's pages are claudehub's templates.
    c.JupyterHub.allow_named_servers = False
    configure_pages(c)

    limits = settings["limits"]
    # JupyterHub refuses a spawn beyond these with HTTP 429 and a message saying why.
    c.JupyterHub.active_server_limit = limits["maxActiveSessions"]
    c.JupyterHub.concurrent_spawn_limit = limits["concurrentSpawnLimit"]

    # Users keep the default "user" role ("self": start and stop their own server) and may
    # call the course service. Their server's token may report activity, reach the course
    # service on their behalf (the page's course panels) and stop its own server (the
    # page's "End session"); nothing more.
    c.JupyterHub.extra_user_scopes = list(USER_EXTRA_SCOPES)
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)

    configure_auth(c, settings["auth"], env)
    configure_spawner(c, settings["spawner"])
    # Within those limits, pods are created startSlots at a time and the others wait their
    # turn, told their place (claudehub.spawner.startqueue): a class logging in at once gets
    # its sandboxes later rather than an error page. The wait counts against start_timeout,
    # which grows by one startTimeout per wave; each pod still has startTimeout to run.
    starting = min(
        [n for n in (limits["concurrentSpawnLimit"], limits["maxActiveSessions"]) if n] or [0]
    )
    c.ClaudeSpawner.start_slots = limits["startSlots"]
    c.ClaudeSpawner.sandbox_start_timeout = settings["spawner"]["startTimeout"]
    c.ClaudeSpawner.start_timeout = queued_start_timeout(
        settings["spawner"]["startTimeout"], limits["startSlots"], starting
    )
    # The spawner (course bundles) and the picker (courses, progress) call the course service
    # with tornado's shared client, which queues beyond max_clients (10) and fails a request
    # that waited 20 s there ("599: Timeout in request queue"): let every start through.
    AsyncHTTPClient.configure(None, max_clients=max(10, limits["concurrentSpawnLimit"]))
    services, roles = services_and_roles(settings, env)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    # Classes, instructors and the admins' access to servers (docs/instructors.md): last,
    # once the services and roles are set.
    classes = class_settings(settings)
    try:
        configure_classes(c, classes)
    except ValueError as e:  # admins may not attach, with the shared password (from the env)
        raise SettingsError(f"auth.adminsAttachServers: {e}") from None
    # The audit log (docs/security.md): what only the hub sees goes to the key proxy's /audit,
    # with the admin token from the hub Secret (keyproxy-admin-token).
    configure_audit(c, settings["spawner"]["keyproxyUrl"], env.get(ADMIN_TOKEN_ENV, ""))
