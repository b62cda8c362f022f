"""Every chart value the hub is handed reaches its trait through the one table.

``claudehub.hub.kubernetes.VALUE_TRAITS`` maps a values key to the trait it sets. For each
operator setting in it, the chart is rendered with that key changed to another valid value
(made from the key's own schema entry), the hub loads what the chart hands it, and the trait
must hold the new value. Every key in the sections the chart hands the hub must be in the
table, be read by a named function (``READ_BY_CODE``) or be one only the templates use
(``CHART_ONLY``): adding a chart setting for the hub is its values.yaml entry with its schema,
and its line in the table, and this test says which one is missing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from claudehub.hub.kubernetes import (
    CHART_ONLY,
    READ_BY_CODE,
    UNSET,
    VALUE_TRAITS,
    configure_kubernetes,
)
from claudehub.hub.settings import SECTIONS, validate, value
from tests.helm.charts import CHART, KEY_SECRET, hub_files, render
from tests.hub.test_kubernetes import ENV, secrets_from

DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = yaml.safe_load((CHART / "values.schema.yaml").read_text())
#: Strings tried, in order, for a string setting: the first its schema accepts that differs
#: from the default is used.
STRINGS = ("DEBUG", "Always", "fast-ssd", "3Gi", "claude-test-model-1", "registry-creds")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_of(key: str) -> dict[str, Any]:
    node = SCHEMA
    for part in key.split("."):
        node = _resolve(node)["properties"][part]
    return _resolve(node)


def _string(schema: dict[str, Any], default: Any) -> str:
    choices = schema.get("enum") or STRINGS
    for candidate in choices:
        pattern = schema.get("pattern")
        if candidate != default and (not pattern or re.search(pattern, candidate)):
            return str(candidate)
    raise AssertionError(f"no sample string fits {schema}: add one to STRINGS")


def another_value(key: str) -> Any:
    """A valid value for ``key`` other than its default, from its schema entry."""
    schema = schema_of(key)
    default = value(DEFAULTS, key)
    kind = schema.get("type")
    if kind == "boolean":
        return not default
    if kind == "integer":
        new = default + 3
        return min(new, schema["maximum"]) if "maximum" in schema else new
    if kind == "number":
        return default + 1.5
    if kind == "string":
        return _string(schema, default)
    if kind == "array":
        items = _resolve(schema.get("items", {}))
        if items.get("type") == "string":
            return [_string(items, None)]
        return [{"key": "claudehub.test/dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    if kind == "object":
        if "requests" in schema.get("properties", {}):  # Kubernetes resources
            return {
                "requests": {"cpu": "300m", "memory": "600Mi"},
                "limits": {"cpu": "2", "memory": "2Gi"},
            }
        return {"claudehub.test/pool": "tutoring"}
    raise AssertionError(f"{key}: no way to make another value for schema {schema}")


def _values_with(key: str, new: Any) -> dict[str, Any]:
    values = copy.deepcopy(KEY_SECRET)
    *path, last = key.split(".")
    node = values
    for part in path:
        node = node.setdefault(part, {})
    node[last] = new
    return values


def _configured(values: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    settings = validate(*hub_files(render(values)))
    c = Config()
    configure_kubernetes(c, settings, secrets_from(ENV))
    return c, settings


def _trait(c: Config, trait: str) -> Any:
    section, name = trait.split(".")
    return getattr(c, section).get(name, UNSET)


OPERATOR_KEYS = sorted(k for k in VALUE_TRAITS if not k.startswith("chart."))


@pytest.mark.parametrize("key", OPERATOR_KEYS)
def test_a_changed_value_reaches_its_trait(key: str) -> None:
    trait, convert = VALUE_TRAITS[key]
    new = another_value(key)
    c, settings = _configured(_values_with(key, new))
    assert value(settings, key) == new, "the chart hands the value over as the operator wrote it"
    expected = convert(copy.deepcopy(new)) if convert is not None else new
    assert _trait(c, trait) == expected, f"{key} -> {trait}"


def test_the_charts_own_names_reach_their_traits() -> None:
    c, settings = _configured(
        {**KEY_SECRET, "sandbox": {"namespace": "tutoring", "quota": {"enabled": True}}}
    )
    for key, (trait, convert) in VALUE_TRAITS.items():
        if not key.startswith("chart."):
            continue
        raw = value(settings, key)
        expected = convert(raw) if convert is not None else raw
        if expected is not UNSET:
            assert _trait(c, trait) == expected, f"{key} -> {trait}"
    assert c.ClaudeSpawner.namespace == "tutoring"


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node and prefix.split(".")[0] != "classes":
        for name, child in node.items():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix


def _covered(key: str, keys: Any) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def test_every_value_the_hub_is_handed_has_a_place() -> None:
    settings, _ = hub_files(render(KEY_SECRET))
    assert sorted(k for k in settings if k != "chart") == sorted(SECTIONS)
    homeless = [
        key
        for key in _leaves({k: v for k, v in settings.items() if k != "chart"})
        if not _covered(key, VALUE_TRAITS)
        and not _covered(key, READ_BY_CODE)
        and not _covered(key, CHART_ONLY)
    ]
    assert not homeless, (
        f"{homeless}: add each to claudehub.hub.kubernetes.VALUE_TRAITS (the trait it sets), "
        "or READ_BY_CODE / CHART_ONLY"
    )
    # and nothing in the tables names a key the chart no longer has
    for key in [*VALUE_TRAITS, *READ_BY_CODE, *CHART_ONLY]:
        value(settings, key)


def test_the_hub_has_no_default_of_its_own() -> None:
    """A key missing from the settings file is an error naming it, not a quiet default."""
    settings, schema = hub_files(render(KEY_SECRET))
    del settings["limits"]["startSlots"]
    c = Config()
    with pytest.raises(ValueError, match=r"limits\.startSlots: missing"):
        configure_kubernetes(c, validate(settings, schema), secrets_from(ENV))
