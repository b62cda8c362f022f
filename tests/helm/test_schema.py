"""values.schema.json is generated from values.schema.yaml and covers values.yaml exactly."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.helm.charts import CHART
from tests.helm.generate_schema import TARGET, render_schema


def test_generated_schema_is_up_to_date() -> None:
    assert TARGET.read_text(encoding="utf-8") == render_schema(), (
        "values.schema.json is stale: run .venv/bin/python tests/helm/generate_schema.py"
    )


def _objects(
    schema: dict[str, Any], root: dict[str, Any], path: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    found = []
    if schema.get("type") == "object" and "properties" in schema:
        found.append((path or "/", schema))
        for key, sub in schema["properties"].items():
            found += _objects(sub, root, f"{path}/{key}")
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found += _objects(schema["items"], root, f"{path}/*")
    return found


def test_every_object_forbids_unknown_keys() -> None:
    schema = json.loads(TARGET.read_text())
    objects = _objects(schema, schema)
    assert len(objects) > 40
    for path, obj in objects:
        assert obj.get("additionalProperties") is False, path
    for name, definition in schema["definitions"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name

    # No object accepts arbitrary keys, except string-to-string maps (labels, annotations,
    # node selectors), whose values the schema still types, and maps whose keys have a
    # pattern (class names) and whose values are closed objects themselves.
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                extra = node.get("additionalProperties")
                if isinstance(extra, dict) and extra.get("type") == "object":
                    assert node.get("propertyNames", {}).get("pattern"), path
                    assert extra.get("additionalProperties") is False, path
                else:
                    assert extra is False or extra == {"type": "string"}, path
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(schema, "")


def _keys(values: Any, path: str = "") -> set[str]:
    if not isinstance(values, dict):
        return set()
    out = set()
    for key, value in values.items():
        out.add(f"{path}/{key}")
        if isinstance(value, dict) and value:
            out |= _keys(value, f"{path}/{key}")
    return out


def _schema_keys(schema: dict[str, Any], root: dict[str, Any], path: str = "") -> set[str]:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    out = set()
    for key, sub in (schema.get("properties") or {}).items():
        out.add(f"{path}/{key}")
        out |= _schema_keys(sub, root, f"{path}/{key}")
    return out


def test_every_default_value_is_in_the_schema_and_commented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads(TARGET.read_text())
    keys = _keys(values)
    missing = keys - _schema_keys(schema, schema)
    # Free-form maps (selectors, annotations) have no fixed keys.
    missing = {k for k in missing if "/matchLabels/" not in k}
    assert not missing, missing
    # Every key has a comment right above it, except the inside of self-explaining maps
    # (resources' requests/limits, label selectors) and list items.
    lines = (CHART / "values.yaml").read_text().splitlines()
    free_form = (
        "resources:",
        "matchLabels:",
        "requests:",
        "limits:",
        "except:",
        "namespaceSelector:",
        "podSelector:",
    )
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        if stripped.startswith("- "):  # a list item: its keys are documented by the list's comment
            stack.append((len(line) - len(line.lstrip()) + 1, "except:"))
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_free_form = any(key in free_form for _, key in stack)
        stack.append((indent, stripped.split(" ")[0]))
        if inside_free_form:
            continue
        assert lines[i - 1].strip().startswith("#"), f"values.yaml:{i + 1} {line!r} has no comment"
