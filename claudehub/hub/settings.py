"""The hub's settings in Kubernetes mode: the chart's own values, checked, or one line naming the key.

The chart hands the hub its values (``helm/claudehub/templates/hub/_config.tpl``): the
sections the hub reads (:data:`SECTIONS`) exactly as the operator gave them, merged over
values.yaml, minus the keys that hold secrets (those reach the hub from the hub Secret as
environment variables), and under ``chart`` what the templates compute (:data:`CHART_KEYS`:
service URLs, names, the sandbox image). The file is mounted at
``/etc/claudehub/config/values.yaml`` (``$CLAUDEHUB_CONFIG``) with the chart's schema beside it
(``values.schema.yaml``, the source of the values.schema.json Helm applies at install).

So each setting is described once and defaulted once: its schema entry says what it may be,
values.yaml holds its default, and :data:`claudehub.hub.kubernetes.VALUE_TRAITS` says which
trait it sets. The hub checks the file against the same schema (a ConfigMap can be edited by
hand), then only what a schema cannot say (:func:`check_more`). Any problem stops the hub at
start with one line naming the key, e.g.::

    claudehub settings (/etc/claudehub/config/values.yaml): limits.maxActiveSessions: -1 is
    less than the minimum of 0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from claudehub.contract.models import check_allowlist

DEFAULT_PATH = "/etc/claudehub/config/values.yaml"
#: The chart's schema, beside the values (templates/hub/configmap.yaml).
SCHEMA_NAME = "values.schema.yaml"

#: The values sections the chart hands the hub (the keys holding secrets taken out).
SECTIONS = (
    "imagePullSecrets",
    "auth",
    "classes",
    "hub",
    "sandbox",
    "limits",
    "culling",
    "progress",
)

#: What the chart computes for the hub (names and URLs of its own objects).
CHART_KEYS = (
    "hubBindUrl",
    "hubUrl",
    "hubDbUrl",
    "proxyApiUrl",
    "sandboxNamespace",
    "sandboxImage",
    "sandboxPriorityClass",
    "sandboxAuthorImage",
    "keyproxyUrl",
    "progressUrl",
    "tokenSecretFile",
)


class SettingsError(ValueError):
    """The settings file is missing, unreadable, or has an unknown, missing or invalid key."""


def value(settings: Mapping[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` (``limits.startSlots``); SettingsError if it is missing.

    The hub has no defaults of its own for chart settings: values.yaml sets every key, so a
    missing one means a hand-written or truncated file.
    """
    node: Any = settings
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise SettingsError(f"{key}: missing (the chart's values.yaml sets every key)")
        node = node[part]
    return node


def _shown(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = " ".join(error.message.split())
    if len(message) > 300:
        message = message[:299] + "…"
    return f"{where}: {message}"


def _values_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's schema narrowed to the sections the hub is handed, plus ``chart``."""
    properties = schema.get("properties") or {}
    missing = [s for s in SECTIONS if s not in properties]
    if missing:
        raise SettingsError(f"the chart's schema has no {', '.join(missing)}")
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [*SECTIONS, "chart"],
        "definitions": schema.get("definitions") or {},
        "properties": {
            **{s: properties[s] for s in SECTIONS},
            "chart": {
                "type": "object",
                "additionalProperties": False,
                "required": list(CHART_KEYS),
                "properties": {k: {"type": "string"} for k in CHART_KEYS},
            },
        },
    }


def check_more(settings: Mapping[str, Any]) -> None:
    """What the chart's schema cannot say; SettingsError naming the key."""
    # The chart's templates/validate.yaml refuses these at install too; the hub checks again
    # what would open it to everyone (a hand-edited ConfigMap).
    auth = value(settings, "auth")
    if auth["type"] == "github":
        if not auth["allowedUsers"] and not value(settings, "auth.github.allowedOrganizations"):
            raise SettingsError(
                "auth.allowedUsers / auth.github.allowedOrganizations: name at least one user "
                "or organization, or anyone with a GitHub account could log in"
            )
    try:
        # the contract's rule for model names: the schema's patterns say what an id looks
        # like (sandbox.models: ids only), not that a class pattern allows every model
        for name, spec in value(settings, "classes").items():
            models = ((spec or {}).get("limits") or {}).get("allowedModels")
            if models is not None:
                check_allowlist(models, f"classes.{name}.limits.allowedModels")
    except ValueError as e:
        raise SettingsError(str(e)) from None


def validate(data: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``data`` (the parsed file) against the chart's ``schema``, then :func:`check_more`.

    Returns ``data`` as it is: the hub adds no defaults.
    """
    validator = jsonschema.Draft7Validator(_values_schema(schema))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise SettingsError(_shown(error))
    assert isinstance(data, dict)
    check_more(data)
    return data


def load(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and check the settings file (``path``, else :data:`DEFAULT_PATH`) against the
    schema beside it. The hub's config file passes ``$CLAUDEHUB_CONFIG``
    (``claudehub.contract.env.HUB_CONFIG``) when the chart sets it.

    Raises :class:`SettingsError` whose message starts with the file's path.
    """
    where = Path(path or DEFAULT_PATH)
    prefix = f"claudehub settings ({where})"
    texts = {}
    for name, file in (("values", where), ("schema", where.with_name(SCHEMA_NAME))):
        try:
            texts[name] = file.read_text()
        except OSError as e:
            raise SettingsError(f"{prefix}: cannot read {file}: {e.strerror}") from e
    try:
        data = yaml.safe_load(texts["values"])
        schema = yaml.safe_load(texts["schema"])
    except yaml.YAMLError as e:
        raise SettingsError(f"{prefix}: not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(schema, dict):
        raise SettingsError(f"{prefix}: {SCHEMA_NAME} beside it is not the chart's schema")
    try:
        return validate(data, schema)
    except SettingsError as e:
        raise SettingsError(f"{prefix}: {e}") from e
