"""Classes, instructors and who may attach to a learner's server: the hub's side.

A class is a JupyterHub group of learners (``c.JupyterHub.load_groups``). Its instructors
get a role of their own, ``claudehub-instructor-<class>``, holding the custom scope
:data:`~claudehub.contract.hub.CLASS_READ_SCOPE` filtered to that group: the course
service's class page (``/services/progress/classes/<class>``) reads the caller's scopes
and shows a class only to its instructors and to admins. They may also stop the servers of
that group's members (``delete:servers!group=<class>``: the page's "End session"). Nothing
else: no ``access:servers``, so they never attach to a learner's Claude.

Whether hub admins may attach to a learner's server is :attr:`ClassSettings.admins_attach_servers`
(docs/security.md, "Who may look into a learner's live Claude"). JupyterHub's ``admin``
role always holds ``access:servers`` and cannot be redefined, so "off" means the people
named as admins are not made hub admins: they get :data:`OPERATOR_SCOPES` instead (see and
stop every session, read every class) through the ``claudehub-operator`` role.

Both hub configurations call :func:`configure_classes` last, after their services and
roles are set.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from traitlets import Bool, Dict, TraitError, default, validate
from traitlets.config import Configurable

from claudehub.contract import env
from claudehub.contract.hub import (
    CLASS_READ_SCOPE,
    CUSTOM_SCOPES,
    INSTRUCTOR_ROLE_PREFIX,
    KEYPROXY_SERVICE,
    OPERATOR_ROLE,
    PROGRESS_OAUTH_SCOPES,
    PROGRESS_SERVICE,
)
from claudehub.contract.limits import GROUP_LIMITS_PROPERTY, parse_limits

#: A class (group) name: it becomes part of a role name and of the class page's URL.
CLASS_NAME = r"[a-z0-9][a-z0-9_-]{0,62}"

#: What operators (admins who may not attach) hold: the admin page, every user and server
#: to see, start and stop, every class. Not ``access:servers`` (attach), ``tokens`` (a token
#: made for a learner attaches too), ``shares`` (sharing a learner's server with oneself),
#: ``admin:users`` (it reads auth state) or ``admin:services``.
OPERATOR_SCOPES = [
    "admin-ui",
    "list:users",
    "read:users",
    "users:activity",
    "admin:servers",
    "list:groups",
    "read:groups",
    "list:services",
    "read:services",
    "read:hub",
    "read:roles",
    "read:metrics",
    "access:services",
    CLASS_READ_SCOPE,
]

#: The hub's own variables (a local-mode operator's): the classes (JSON) and whether admins
#: attach (true/false, claudehub.contract.env's rule).
CLASSES_ENV = "CLAUDEHUB_CLASSES"
ADMINS_ATTACH_ENV = "CLAUDEHUB_ADMINS_ATTACH_SERVERS"


class ClassSettings(Configurable):
    """Classes, their instructors, and the admins' access to servers."""

    classes = Dict(
        help="""Classes: ``{"<class>": {"learners": [...], "instructors": [...], "limits":
        {...}}}``. Each becomes a hub group of its learners; its instructors see its class
        page and nothing else. A user may be in several classes. ``limits`` (optional) are
        the key proxy's limits for the class's learners (claudehub.contract.limits:
        daily_token_budget, rate_limit_per_minute, rate_limit_burst, allowed_models), kept
        in the group's properties. Env fallback: CLAUDEHUB_CLASSES (JSON)."""
    ).tag(config=True)

    @default("classes")
    def _default_classes(self) -> dict[str, Any]:
        raw = env.read_env(CLASSES_ENV)
        value = json.loads(raw) if raw else {}
        return _checked_classes(value)

    @validate("classes")
    def _check_classes(self, proposal: dict[str, Any]) -> dict[str, Any]:
        return _checked_classes(proposal["value"])

    admins_attach_servers = Bool(
        help="""Whether hub admins may open a learner's server (their Claude terminal and
        conversation). On (the default): the admins are hub admins, as in plain JupyterHub.
        Off: they are operators instead (the claudehub-operator role): they see and stop
        every session and read every class, but cannot attach, make tokens for others or
        share servers. Off needs an authenticator that checks each user's own credentials
        (not the shared password). Env fallback: CLAUDEHUB_ADMINS_ATTACH_SERVERS (true/false,
        empty: on)."""
    ).tag(config=True)

    @default("admins_attach_servers")
    def _default_attach(self) -> bool:
        return env.read_env_bool(ADMINS_ATTACH_ENV, True)

    tutor_completions_count = Bool(
        help="""Whether stages completed by the tutor's marker alone ([STAGE_COMPLETE:N], which
        a learner can also type or post) count toward 'complete'. Passed to the course
        service (its ProgressService.tutor_completions_count). Env fallback:
        CLAUDEHUB_TUTOR_COMPLETIONS_COUNT (true/false, empty: on)."""
    ).tag(config=True)

    @default("tutor_completions_count")
    def _default_tutor(self) -> bool:
        return env.read_env_bool(env.TUTOR_COMPLETIONS_COUNT, True)


def _checked_classes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TraitError(f"classes must be a mapping of class name to members, not {value!r}")
    out: dict[str, Any] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not re.fullmatch(CLASS_NAME, name):
            raise TraitError(
                f"class name {name!r} must be lower-case letters, digits, '-' or '_' "
                f"(at most 63, starting with a letter or digit)"
            )
        if not isinstance(spec, dict):
            raise TraitError(f"classes.{name} must be a mapping with learners and instructors")
        unknown = set(spec) - {"learners", "instructors", "limits"}
        if unknown:
            raise TraitError(f"classes.{name}: unknown key(s) {', '.join(sorted(unknown))}")
        members: dict[str, list[str]] = {}
        for key in ("learners", "instructors"):
            names = spec.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise TraitError(f"classes.{name}.{key} must be a list of user names")
            members[key] = list(names)
        entry: dict[str, Any] = dict(members)
        if spec.get("limits") is not None:
            try:
                entry["limits"] = parse_limits(spec["limits"], f"classes.{name}.limits")
            except ValueError as e:
                raise TraitError(str(e)) from None
        out[name] = entry
    return out


def instructor_role(name: str, instructors: list[str]) -> dict[str, Any]:
    """The role of class ``name``'s instructors: read that class, nothing else."""
    return {
        "name": INSTRUCTOR_ROLE_PREFIX + name,
        "description": f"Instructors of class {name}: its class page, ending its sessions",
        # delete:servers only stops a server: it neither starts nor opens one
        "scopes": [f"{CLASS_READ_SCOPE}!group={name}", f"delete:servers!group={name}"],
        "users": list(instructors),
    }


def _get(section: Any, name: str, fallback: Any) -> Any:
    # Reading an unset name off a traitlets Config stores a LazyConfigValue there, which
    # JupyterHub would then take for the setting: look before reading.
    return section[name] if name in section else fallback


def _services(c: Any) -> list[dict[str, Any]]:
    services = _get(c.JupyterHub, "services", [])
    return list(services) if isinstance(services, list) else []


def configure_classes(c: Any, settings: ClassSettings) -> None:
    """Add classes, instructors, the admins' server access and the course service's class
    settings to JupyterHub config ``c`` (after its services and roles are set)."""
    c.JupyterHub.custom_scopes = {**CUSTOM_SCOPES}
    # A class's group properties are the configuration's: its key proxy limits (an empty
    # mapping when it sets none, so limits removed here are removed from the hub too).
    groups = {
        name: {
            "users": list(spec["learners"]),
            "properties": {GROUP_LIMITS_PROPERTY: dict(spec.get("limits", {}))},
        }
        for name, spec in settings.classes.items()
    }
    if groups:
        c.JupyterHub.load_groups = groups
    existing = _get(c.JupyterHub, "load_roles", [])
    roles = list(existing) if isinstance(existing, list) else []
    for name, spec in settings.classes.items():
        if spec["instructors"]:
            roles.append(instructor_role(name, spec["instructors"]))

    if not settings.admins_attach_servers:
        if _get(c.JupyterHub, "authenticator_class", "") == "shared-password":
            raise ValueError(
                "admins_attach_servers off needs an authenticator that checks each user's own "
                "credentials; with the shared-password authenticator, admins are known only "
                "by their admin password, which makes them hub admins"
            )
        admins = sorted(_get(c.Authenticator, "admin_users", set()))
        # Hub admins always hold access:servers (JupyterHub's admin role is fixed), so the
        # people named as admins are made operators instead.
        c.Authenticator.admin_users = set()
        roles.append(
            {
                "name": OPERATOR_ROLE,
                "description": "See and stop every session, read every class; never attach",
                "scopes": list(OPERATOR_SCOPES),
                "users": admins,
            }
        )
    c.JupyterHub.load_roles = roles

    services = _services(c)
    keyproxy = next((s for s in services if s.get("name") == KEYPROXY_SERVICE), None)
    for service in services:
        if service.get("name") != PROGRESS_SERVICE:
            continue
        # the class page must see the caller's class scopes in its OAuth token
        allowed = list(service.get("oauth_client_allowed_scopes", []))
        service["oauth_client_allowed_scopes"] = allowed + [
            s for s in PROGRESS_OAUTH_SCOPES if s not in allowed
        ]
        if "command" in service:  # a service the hub runs (local mode)
            environment = dict(service.get("environment", {}))
            environment[env.TUTOR_COMPLETIONS_COUNT] = env.bool_value(
                settings.tutor_completions_count
            )
            if keyproxy is not None and "command" in keyproxy and keyproxy.get("url"):
                # the class page's token column reads the key proxy's /usage, for admins only
                kp_env = dict(keyproxy.get("environment", {}))
                token = kp_env.get(env.KEYPROXY_ADMIN_TOKEN) or secrets.token_urlsafe(32)
                kp_env[env.KEYPROXY_ADMIN_TOKEN] = token
                keyproxy["environment"] = kp_env
                environment[env.KEYPROXY_ADMIN_TOKEN] = token
                environment[env.KEYPROXY_URL] = str(keyproxy["url"])
            service["environment"] = environment
    c.JupyterHub.services = services
