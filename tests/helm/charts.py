"""Render the claudehub chart with Helm's own engine (helm-python-sdk), for the chart tests.

Nothing here contacts a cluster: ``lookup`` returns nothing, so generated secrets are fresh
random values on every render.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "claudehub"
RELEASE = "claudehub"
NAMESPACE = "claudehub"
#: Kubernetes versions k3s ships today; kubernetes-validate has strict schemas for each.
KUBE_VERSIONS = ("1.32.0", "1.33.0", "1.34.0", "1.35.0")

KEY_SECRET = {"keyproxy": {"apiKey": {"existingSecret": "anthropic-key"}}}

#: Custom resources the chart can render (the Prometheus Operator's, monitoring.*): no core
#: schema exists for them, so kubernetes-validate skips them and tests/helm/test_monitoring.py
#: checks their shape instead.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

#: Realistic value sets an operator would write: the chart's ci/<name>-values.yaml files (also
#: examples for the operator guide). Each must render, validate, lint and pass checkov.
VALUE_SETS: dict[str, dict[str, Any]] = {
    path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text())
    for path in sorted((CHART / "ci").glob("*-values.yaml"))
}


@dataclass
class Rendering:
    """One rendering of the chart: every object, plus the NOTES text."""

    name: str
    values: dict[str, Any]
    files: dict[str, str]
    objects: list[dict[str, Any]]
    notes: str

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """Objects of ``kind`` (and ``name``, when given)."""
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def without_hooks(self) -> list[dict[str, Any]]:
        """The objects `helm install` creates (test hooks left out)."""
        return [
            o
            for o in self.objects
            if "helm.sh/hook" not in (o["metadata"].get("annotations") or {})
        ]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``extra`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(
    values: dict[str, Any], name: str = "custom", release: str = RELEASE, namespace: str = NAMESPACE
) -> Rendering:
    """Render the chart as `helm template` would; raises helm_python errors on bad values."""
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return Rendering(name=name, values=values, files=files, objects=objects, notes=notes)


def hub_files(rendering: Rendering) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hub's settings file and the chart schema beside it, parsed, as the hub ConfigMap
    of ``rendering`` holds them (templates/hub/configmap.yaml)."""
    [config_map] = [
        o for o in rendering.find("ConfigMap") if o["metadata"]["name"].endswith("-hub-config")
    ]
    data = config_map["data"]
    return yaml.safe_load(data["values.yaml"]), yaml.safe_load(data["values.schema.yaml"])


def write_hub_files(rendering: Rendering, folder: Path) -> Path:
    """The hub ConfigMap's files written into ``folder`` as the pod mounts them; the
    settings file's path (what $CLAUDEHUB_CONFIG names)."""
    [config_map] = [
        o for o in rendering.find("ConfigMap") if o["metadata"]["name"].endswith("-hub-config")
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in config_map["data"].items():
        (folder / name).write_text(text)
    return folder / "values.yaml"
