"""The hub's settings file in Kubernetes mode: load, check, fail fast naming the key.

The chart renders this YAML file into a ConfigMap (``helm/claudehub/templates/hub/_config.tpl``)
and mounts it at ``/etc/claudehub/values.yaml``; ``$CLAUDEHUB_CONFIG`` may point elsewhere.
It holds no secret: secrets reach the hub as environment variables and files.

:data:`SCHEMA` is the single description of what the file may contain. Every key is optional
(its default is shown there) unless marked :class:`Required`; a default of None means "not
set here": the class settings then come from the hub's environment, as
:class:`~claudehub.hub.classes.ClassSettings` reads it. An unknown key, a value of the wrong
type or out of range stops the hub at start with a message naming the key, e.g.::

    claudehub settings (/etc/claudehub/values.yaml): limits.maxActiveSessions: must be an
    integer >= 0, got -1
    claudehub settings (...): classes.physics.limits.dailyTokenBudget: must be an integer >= 0,
    got -5
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from claudehub.contract.models import check_allowlist, check_model_ids

from .classes import CLASS_NAME

DEFAULT_PATH = "/etc/claudehub/values.yaml"


class SettingsError(ValueError):
    """The settings file is missing, unreadable, or has an unknown or invalid key."""


Check = Callable[[str, Any], Any]


class Required:
    """Marks a schema entry without a default."""

    def __init__(self, check: Check) -> None:
        self.check = check


def _fail(key: str, why: str, value: Any) -> SettingsError:
    return SettingsError(f"{key}: {why}, got {value!r}")


def string(pattern: str = "", *, choices: tuple[str, ...] = (), empty: bool = True) -> Check:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(key, "must be a string", value)
        if choices and value not in choices:
            raise _fail(key, f"must be one of {', '.join(choices)}", value)
        if not empty and not value:
            raise _fail(key, "must not be empty", value)
        if pattern and value and not re.fullmatch(pattern, value):
            raise _fail(key, f"must match {pattern}", value)
        return value

    return check


URL = r"https?://[^\s/]+(/\S*)?"


def integer(minimum: int = 0) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(key, f"must be an integer >= {minimum}", value)
        return value

    return check


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "must be true or false", value)
    return value


def number(minimum: float = 0) -> Check:
    def check(key: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < minimum
        ):
            raise _fail(key, f"must be a number >= {minimum:g}", value)
        return float(value)

    return check


def strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "must be a list of non-empty strings", value)
    return list(value)


def string_map(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(key, "must be a mapping of strings to strings", value)
    return dict(value)


def mappings(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _fail(key, "must be a list of mappings", value)
    return [dict(v) for v in value]


QUANTITY = r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|E|Ei|P|Pi)?"


def resources(key: str, value: Any) -> dict[str, dict[str, str]]:
    """Kubernetes ``resources``: {requests, limits} of quantities (cpu, memory, ...)."""
    if not isinstance(value, dict):
        raise _fail(key, "must be a mapping with requests and/or limits", value)
    out: dict[str, dict[str, str]] = {}
    for part, amounts in value.items():
        where = f"{key}.{part}"
        if part not in ("requests", "limits"):
            raise SettingsError(f"{where}: unknown setting (known: limits, requests)")
        if not isinstance(amounts, dict):
            raise _fail(where, "must be a mapping of resource names to quantities", amounts)
        out[part] = {}
        for name, amount in amounts.items():
            text = (
                str(amount)
                if isinstance(amount, int | float) and not isinstance(amount, bool)
                else amount
            )
            if not isinstance(text, str) or not re.fullmatch(QUANTITY, text):
                raise _fail(
                    f"{where}.{name}", "must be a Kubernetes quantity like 500m or 1Gi", amount
                )
            out[part][str(name)] = text
    return out


def list_of(schema: Mapping[str, Any]) -> Check:
    def check(key: str, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise _fail(key, "must be a list", value)
        return [_apply(schema, item, f"{key}[{i}]") for i, item in enumerate(value)]

    return check


PROFILE: dict[str, Any] = {
    "slug": Required(string(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")),
    "displayName": Required(string(empty=False)),
    "description": ("", string()),
    "default": (False, boolean),
    "resources": ({}, resources),
    "gpu": {
        "count": (0, integer(0)),
        "runtimeClassName": ("", string()),
    },
    "nodeSelector": ({}, string_map),
    "tolerations": ([], mappings),
}

#: Every key the settings file may hold: ``(default, check)``, a nested mapping, or
#: :class:`Required`.
SCHEMA: dict[str, Any] = {
    "hub": {
        "bindUrl": ("http://0.0.0.0:8081", string(URL)),
        "connectUrl": ("", string(URL)),
        "baseUrl": ("/", string(r"/(\S*/)?")),
        "dbUrl": ("sqlite:////srv/jupyterhub/jupyterhub.sqlite", string(empty=False)),
        "logLevel": ("INFO", string(choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))),
    },
    "proxy": {
        "apiUrl": Required(string(URL)),
    },
    "auth": {
        "type": ("password", string(choices=("github", "password"))),
        "admins": ([], strings),
        "allowedUsers": ([], strings),
        # None: from the hub's environment (ClassSettings.admins_attach_servers)
        "adminsAttachServers": (None, boolean),
        "github": {
            "callbackUrl": ("", string(URL)),
            "allowedOrganizations": ([], strings),
        },
    },
    "spawner": {
        "namespace": ("", string(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")),
        "image": Required(string(empty=False)),
        "imagePullPolicy": ("IfNotPresent", string(choices=("Always", "IfNotPresent", "Never"))),
        "imagePullSecrets": ([], lambda k, v: _pull_secrets(k, v)),
        "startTimeout": (300, integer(1)),
        "uid": (1000, integer(1)),
        "gid": (1000, integer(1)),
        "resources": ({}, resources),
        "storage": {
            "capacity": ("1Gi", string(QUANTITY)),
            "storageClassName": ("", string()),
        },
        "nodeSelector": ({}, string_map),
        "tolerations": ([], mappings),
        "priorityClassName": ("", string()),
        "keyproxyUrl": Required(string(URL)),
        "progressUrl": Required(string(URL)),
        "tokenSecretFile": ("/etc/claudehub/secrets/token-secret", string(empty=False)),
        "models": ([], lambda k, v: _model_ids(k, v)),
        "profiles": ([], list_of(PROFILE)),
    },
    "limits": {
        "maxActiveSessions": (4, integer(0)),
        "concurrentSpawnLimit": (4, integer(0)),
        "startSlots": (4, integer(0)),
    },
    "culling": {
        "enabled": (True, boolean),
        "idleTimeout": (3600, integer(60)),
        "maxAge": (28800, integer(0)),
        "every": (300, integer(10)),
    },
    "services": {
        "keyproxy": {
            "apiTokenEnv": ("CLAUDEHUB_KEYPROXY_API_TOKEN", string(r"[A-Z_][A-Z0-9_]*")),
        },
        "progress": {
            "url": Required(string(URL)),
            "apiTokenEnv": ("CLAUDEHUB_PROGRESS_API_TOKEN", string(r"[A-Z_][A-Z0-9_]*")),
            # None: from the hub's environment (ClassSettings.tutor_completions_count)
            "tutorCompletionsCount": (None, boolean),
        },
    },
    # None: from the hub's environment (ClassSettings.classes, CLAUDEHUB_CLASSES)
    "classes": (None, lambda k, v: _classes(k, v)),
}

#: A class's key proxy limits in the settings file; each is optional (left out: the class
#: does not set it). claudehub.hub.kubernetes maps them onto claudehub.contract.limits.
CLASS_LIMITS: dict[str, Check] = {
    "dailyTokenBudget": integer(0),
    "rateLimitPerMinute": number(0),
    "rateLimitBurst": integer(0),
    "allowedModels": lambda k, v: _models(k, v),
}


def _models(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _fail(key, "must be a list of model ids or patterns (empty: every model)", value)
    try:
        return check_allowlist(value, key)
    except ValueError as e:
        raise SettingsError(str(e)) from None


def _model_ids(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _fail(key, "must be a list of model ids", value)
    try:
        return check_model_ids(value, key)
    except ValueError as e:
        raise SettingsError(str(e)) from None


def _classes(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """``{<class>: {learners, instructors, limits}}``; limits keep only the fields given."""
    if not isinstance(value, dict):
        raise _fail(key, "must be a mapping of class names to their members", value)
    out: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not re.fullmatch(CLASS_NAME, name):
            raise _fail(
                key,
                "class names must be lower-case letters, digits, '-' or '_' (at most 63, "
                "starting with a letter or digit)",
                name,
            )
        where = f"{key}.{name}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise _fail(where, "must be a mapping with learners, instructors and limits", spec)
        unknown = sorted(str(k) for k in set(spec) - {"learners", "instructors", "limits"})
        if unknown:
            raise SettingsError(
                f"{where}.{unknown[0]}: unknown setting (known here: instructors, learners, limits)"
            )
        entry: dict[str, Any] = {
            part: strings(f"{where}.{part}", spec[part]) if spec.get(part) is not None else []
            for part in ("learners", "instructors")
        }
        limits = spec.get("limits")
        if limits is None:
            limits = {}
        if not isinstance(limits, dict):
            raise _fail(f"{where}.limits", "must be a mapping of limits", limits)
        unknown = sorted(str(k) for k in set(limits) - set(CLASS_LIMITS))
        if unknown:
            raise SettingsError(
                f"{where}.limits.{unknown[0]}: unknown setting "
                f"(known here: {', '.join(sorted(CLASS_LIMITS))})"
            )
        entry["limits"] = {
            field: CLASS_LIMITS[field](f"{where}.limits.{field}", raw)
            for field, raw in limits.items()
            if raw is not None
        }
        out[name] = entry
    return out


def _pull_secrets(key: str, value: Any) -> list[str]:
    """Accept ``[name]`` or the Kubernetes shape ``[{name: ...}]``; return names."""
    if not isinstance(value, list):
        raise _fail(key, "must be a list of Secret names", value)
    names = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise _fail(key, "must be a list of Secret names (or {name: ...})", value)
        names.append(name)
    return names


def _apply(schema: Mapping[str, Any], data: Any, prefix: str) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(prefix or "(top level)", "must be a mapping", data)
    unknown = sorted(set(data) - set(schema))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise SettingsError(f"{key}: unknown setting (known here: {', '.join(sorted(schema))})")
    out: dict[str, Any] = {}
    for name, entry in schema.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(entry, dict):
            out[name] = _apply(entry, data.get(name), key)
        elif isinstance(entry, Required):
            if name not in data or data[name] is None:
                raise SettingsError(f"{key}: required setting is missing")
            out[name] = entry.check(key, data[name])
        else:
            default, check = entry
            out[name] = (
                check(key, data[name]) if data.get(name) is not None else copy.deepcopy(default)
            )
    return out


def validate(data: Any) -> dict[str, Any]:
    """Check ``data`` (the parsed file) against :data:`SCHEMA`; return it with defaults."""
    settings = _apply(SCHEMA, data, "")
    profiles = settings["spawner"]["profiles"]
    slugs = [p["slug"] for p in profiles]
    if len(set(slugs)) != len(slugs):
        raise SettingsError(f"spawner.profiles: slugs must be unique, got {slugs!r}")
    if sum(1 for p in profiles if p["default"]) > 1:
        raise SettingsError("spawner.profiles: at most one profile may be the default")
    if settings["auth"]["adminsAttachServers"] is False and settings["auth"]["type"] == "password":
        raise SettingsError(
            "auth.adminsAttachServers: false needs auth.type github: the shared-password "
            "login knows admins only by the admin password, which makes them hub admins"
        )
    if settings["auth"]["type"] == "github":
        github = settings["auth"]["github"]
        if not github["callbackUrl"]:
            raise SettingsError("auth.github.callbackUrl: required when auth.type is github")
        if not settings["auth"]["allowedUsers"] and not github["allowedOrganizations"]:
            raise SettingsError(
                "auth.allowedUsers / auth.github.allowedOrganizations: name at least one user "
                "or organization, or anyone with a GitHub account could log in"
            )
    return settings


def load(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and check the settings file (``path``, else $CLAUDEHUB_CONFIG, else the default).

    Raises :class:`SettingsError` whose message starts with the file's path.
    """
    where = Path(path or os.environ.get("CLAUDEHUB_CONFIG") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(where.read_text())
    except OSError as e:
        raise SettingsError(f"claudehub settings ({where}): cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise SettingsError(f"claudehub settings ({where}): not valid YAML: {e}") from e
    try:
        return validate(data)
    except SettingsError as e:
        raise SettingsError(f"claudehub settings ({where}): {e}") from e
