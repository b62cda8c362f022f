"""Monitoring: the ServiceMonitor, PrometheusRule and Grafana dashboard the chart can ship, and
every metric their PromQL names is one the code exports (the key proxy's /metrics scraped from a
real in-process KeyProxy, the hub's from JupyterHub's own metrics module)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import helm_python
import kubernetes_validate
import pytest

from tests.helm.charts import (
    CUSTOM_RESOURCES,
    KEY_SECRET,
    NAMESPACE,
    VALUE_SETS,
    Rendering,
    deep_merge,
    render,
)

ALL_ON = deep_merge(
    KEY_SECRET,
    {
        "keyproxy": {"metrics": {"enabled": True}},
        "monitoring": {
            "serviceMonitor": {"enabled": True, "hubToken": {"existingSecret": "hub-metrics"}},
            "prometheusRule": {"enabled": True, "additionalAlertLabels": {"team": "teaching"}},
            "dashboards": {"enabled": True},
        },
    },
)

#: PromQL words that are not metric names: functions, aggregations, their modifiers, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "absent", "vector", "scalar", "time",
    "label_values", "deriv", "predict_linear", "avg_over_time", "max_over_time", "min_over_time",
    "sum_over_time", "inf", "nan",
}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana label_values) expression reads.

    Strings, label matchers (``{...}``), ranges (``[...]``) and the label lists of ``by``,
    ``without``, ``on`` and ``ignoring`` are dropped first; what is left that is an identifier
    and neither a PromQL word nor a function call is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"[0-9.e]+", word) or word.startswith("$"):
            continue
        names.add(word)
    # label_values(metric, label): the label is not a metric.
    for match in re.finditer(r"label_values\(\s*[^,]+,\s*([a-zA-Z_]+)\s*\)", expr):
        names.discard(match.group(1))
    return names


def test_metric_names_tokenizer() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{status="x",le!="1"}[5m])))'
    ) == {"a_seconds_bucket"}
    assert metric_names("sum(rate(x_total[5m])) / clamp_min(sum(y_total), 0.001) > 0.05") == {
        "x_total",
        "y_total",
    }
    assert metric_names('max by (pod) (g{namespace="$namespace"}) == 0') == {"g"}
    assert metric_names("label_values(k_configured, namespace)") == {"k_configured"}


@pytest.fixture(scope="module")
def monitored() -> Rendering:
    return render(ALL_ON, name="monitoring")


def _dashboard(rendering: Rendering) -> dict[str, Any]:
    [config_map] = rendering.find("ConfigMap", "claudehub-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["claudehub.json"])


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']} has an empty expr"
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def _rules(rendering: Rendering) -> list[dict[str, Any]]:
    [rule] = rendering.find("PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_defaults_render_no_monitoring_objects(default: Rendering) -> None:
    kinds = {o["kind"] for o in default.objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not default.find("ConfigMap", "claudehub-dashboards")


def test_every_object_is_valid_and_crds_have_their_shape(monitored: Rendering) -> None:
    """Core kinds against Kubernetes' strict schema; the two CRD kinds (no core schema exists)
    checked for the shape the Prometheus Operator reads."""
    for obj in monitored.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, obj.keys()
            assert obj["metadata"]["namespace"] == NAMESPACE
            assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "monitoring"
            continue
        kubernetes_validate.validate(obj, "1.35.0", strict=True)
    [monitor] = monitored.find("ServiceMonitor")
    endpoints = {e["path"]: e for e in monitor["spec"]["endpoints"]}
    assert set(endpoints) == {"/metrics", "/hub/metrics"}
    assert endpoints["/metrics"]["authorization"]["credentials"] == {
        "name": "claudehub-hub",
        "key": "keyproxy-admin-token",
    }
    assert endpoints["/hub/metrics"]["authorization"]["credentials"] == {
        "name": "hub-metrics",
        "key": "token",
    }
    # Each endpoint's port is a named port of a Service the selector picks.
    services = [
        s
        for s in monitored.find("Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] in ("keyproxy", "hub")
    ]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in endpoints.values()} <= ports
    for rule in _rules(monitored):
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["labels"]["team"] == "teaching"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert "{{ $value" in rule["annotations"]["description"] or "$labels" in str(rule)


def test_without_a_hub_token_only_the_key_proxy_is_scraped() -> None:
    values = deep_merge(
        ALL_ON, {"monitoring": {"serviceMonitor": {"hubToken": {"existingSecret": ""}}}}
    )
    [monitor] = render(values).find("ServiceMonitor")
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    [components] = [
        m["values"]
        for m in monitor["spec"]["selector"]["matchExpressions"]
        if m["key"] == "app.kubernetes.io/component"
    ]
    assert components == ["keyproxy"]


def test_alerts_cover_what_the_issue_asks(monitored: Rendering) -> None:
    alerts = {r["alert"] for r in _rules(monitored)}
    assert alerts == {
        "ClaudehubSpawnFailures",
        "ClaudehubUpstreamErrors",
        "ClaudehubBudgetsExhausted",
        "ClaudehubKeyProxyWithoutKey",
    }


async def _keyproxy_metric_names(tmp_path: Path) -> set[str]:
    """The metric families a real key proxy's /metrics declares (# TYPE lines), histograms'
    series names included."""
    from claudehub.proxy.limits import Limits
    from claudehub.proxy.service import KeyProxy, KeyProxyOptions
    from claudehub.proxy.settings import ProxySettings

    admin = "admin-token-for-monitoring-tests"
    proxy = KeyProxy(
        KeyProxyOptions(
            settings=ProxySettings(upstream_url="http://127.0.0.1:9", api_key="sk-ant-api03-x" * 4),
            limits=Limits(),
            db_url=f"sqlite:///{tmp_path}/usage.sqlite",
            token_secret=b"monitoring-test-secret",
            admin_tokens=[admin],
        )
    )
    await proxy.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{proxy.url}/metrics", headers={"Authorization": f"Bearer {admin}"}) as r,
        ):
            assert r.status == 200
            text = await r.text()
    finally:
        await proxy.stop(0)
    names = set()
    for line in text.splitlines():
        match = re.match(r"# TYPE (\S+) (\S+)", line)
        if match:
            names.add(match.group(1))
            if match.group(2) == "histogram":
                names.update(match.group(1) + s for s in HISTOGRAM_SUFFIXES)
    return names


def _hub_metric_names() -> set[str]:
    """Every series name on prometheus_client's default registry once JupyterHub's metrics
    module and the spawners' start queue are imported (what /hub/metrics serves)."""
    import jupyterhub.metrics  # noqa: F401  (registers its metrics)
    from prometheus_client import REGISTRY

    import claudehub.spawner.startqueue  # noqa: F401  (the start queue's gauges)

    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(family.name + s for s in HISTOGRAM_SUFFIXES)
    return names


@pytest.mark.asyncio
async def test_every_metric_named_is_exported(monitored: Rendering, tmp_path: Path) -> None:
    exprs = _dashboard_exprs(_dashboard(monitored)) + [r["expr"] for r in _rules(monitored)]
    named = set().union(*(metric_names(e) for e in exprs))
    keyproxy = await _keyproxy_metric_names(tmp_path)
    hub = _hub_metric_names()
    assert "claudehub_keyproxy_key_configured" in keyproxy
    assert "jupyterhub_running_servers" in hub
    missing = sorted(n for n in named if n not in keyproxy | hub)
    assert not missing, f"named in the dashboard or alerts but exported by nothing: {missing}"
    # Both sources are used: the dashboard shows the hub's sessions and the key proxy's traffic.
    assert named & keyproxy and named & hub


def test_dashboard_panels_the_issue_asks_for(monitored: Rendering) -> None:
    dashboard = _dashboard(monitored)
    text = " ".join(_dashboard_exprs(dashboard))
    for metric in (
        "jupyterhub_running_servers",
        "jupyterhub_server_spawn_duration_seconds_bucket",
        "jupyterhub_server_spawn_duration_seconds_count",
        "claudehub_keyproxy_tokens_total",
        "claudehub_keyproxy_refusals_total",
        "claudehub_keyproxy_upstream_errors_total",
        "claudehub_keyproxy_upstream_ttfb_seconds_bucket",
        "claudehub_start_queue_waiting",
    ):
        assert metric in text, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_hub_admits_the_scraper_only_when_it_is_scraped(
    monitored: Rendering, default: Rendering
) -> None:
    def hub_ingress(rendering: Rendering) -> list[dict[str, Any]]:
        policy = rendering.one("NetworkPolicy", "claudehub-hub")
        return list(policy["spec"]["ingress"])

    scraped = hub_ingress(monitored)
    assert len(scraped) == len(hub_ingress(default)) + 1
    assert scraped[-1]["ports"] == [{"port": 8081, "protocol": "TCP"}]
    no_token = deep_merge(
        ALL_ON, {"monitoring": {"serviceMonitor": {"hubToken": {"existingSecret": ""}}}}
    )
    assert len(hub_ingress(render(no_token))) == len(hub_ingress(default))


def test_a_service_monitor_without_the_scraper_admitted_fails_naming_the_key() -> None:
    values = deep_merge(ALL_ON, {"keyproxy": {"metrics": {"enabled": False}}})
    with pytest.raises(helm_python.HelmError, match=re.escape("keyproxy.metrics.enabled: set it")):
        render(values)
    # Without NetworkPolicies nothing keeps Prometheus out.
    render(deep_merge(values, {"networkPolicy": {"enabled": False}}))


def test_custom_resources_of_every_value_set_have_their_shape(
    renderings: dict[str, Rendering],
) -> None:
    """What test_render.py leaves to this file: every custom resource of ci/*-values.yaml is
    one the Prometheus Operator knows, shaped as it reads it; the example enables them all."""
    assert "monitoring" in VALUE_SETS
    seen = set()
    for rendering in renderings.values():
        for obj in rendering.objects:
            if "monitoring.coreos.com" not in obj["apiVersion"]:
                continue
            assert (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES, obj["kind"]
            assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
            assert set(obj["metadata"]) == {"name", "namespace", "labels"}
            seen.add((rendering.name, obj["kind"]))
            if obj["kind"] == "ServiceMonitor":
                spec = obj["spec"]
                assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
                for endpoint in spec["endpoints"]:
                    assert set(endpoint) == {"port", "path", "interval", "authorization"}
                    assert endpoint["authorization"]["type"] == "Bearer"
                    assert set(endpoint["authorization"]["credentials"]) == {"name", "key"}
            else:
                for group in obj["spec"]["groups"]:
                    assert set(group) == {"name", "rules"}
                    for rule in group["rules"]:
                        assert {"alert", "expr", "labels", "annotations"} <= set(rule)
    assert seen == {("monitoring", "ServiceMonitor"), ("monitoring", "PrometheusRule")}
