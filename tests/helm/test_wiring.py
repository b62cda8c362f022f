"""Every URL one component is given points at a Service the chart creates, on its port.

Rendered under another release name and namespace than the defaults, so no name is wired by
coincidence.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.helm.charts import KEY_SECRET, VALUE_SETS, Rendering, deep_merge, hub_files, render

RELEASE, NS = "prod", "tutoring"


@pytest.fixture(scope="module")
def prod() -> Rendering:
    values = deep_merge(KEY_SECRET, {"sandbox": {"namespace": "tutoring-sandboxes"}})
    return render(values, release=RELEASE, namespace=NS)


def _service_targets(rendering: Rendering) -> dict[tuple[str, int], dict[str, Any]]:
    """(host, port) -> Service, for every in-cluster name a Service answers to."""
    targets = {}
    for svc in rendering.find("Service"):
        name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        for port in svc["spec"]["ports"]:
            targets[(f"{name}.{ns}.svc", port["port"])] = svc
    return targets


def _assert_points_at_service(rendering: Rendering, url: str, component: str) -> None:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    svc = _service_targets(rendering).get((parts.hostname, parts.port))
    assert svc is not None, f"{url} is no Service of the chart"
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == component, url
    assert svc["spec"]["selector"]["app.kubernetes.io/instance"] == RELEASE
    # The Service's targetPort is a port the component's pods declare.
    deployment = next(
        d
        for d in rendering.find("Deployment")
        if d["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    )
    ports = {
        p["name"]: p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    target = next(p["targetPort"] for p in svc["spec"]["ports"] if p["port"] == parts.port)
    assert target in ports, (url, target, ports)


def _env(rendering: Rendering, deployment: str) -> dict[str, str]:
    spec = rendering.one("Deployment", deployment)["spec"]["template"]["spec"]
    return {e["name"]: e["value"] for e in spec["containers"][0]["env"] if "value" in e}


def test_hub_settings_point_at_the_charts_services(prod: Rendering) -> None:
    chart = hub_files(prod)[0]["chart"]
    _assert_points_at_service(prod, chart["hubUrl"], "hub")
    _assert_points_at_service(prod, chart["proxyApiUrl"], "proxy")
    _assert_points_at_service(prod, chart["keyproxyUrl"], "keyproxy")
    _assert_points_at_service(prod, chart["progressUrl"], "progress")
    assert chart["sandboxNamespace"] == "tutoring-sandboxes"
    assert chart["sandboxPriorityClass"] == "tutoring-prod-claudehub-sandbox"
    prod.one("PriorityClass", "tutoring-prod-claudehub-sandbox")


def test_services_and_chp_point_at_the_hub(prod: Rendering) -> None:
    for deployment in ("prod-claudehub-keyproxy", "prod-claudehub-progress"):
        _assert_points_at_service(prod, _env(prod, deployment)["JUPYTERHUB_API_URL"], "hub")
    chp = prod.one("Deployment", "prod-claudehub-proxy")["spec"]["template"]["spec"]
    args = chp["containers"][0]["args"]
    target = next(a.split("=", 1)[1] for a in args if a.startswith("--default-target="))
    _assert_points_at_service(prod, target, "hub")
    test_pod = prod.one("Pod", "prod-claudehub-test")
    env = {e["name"]: e["value"] for e in test_pod["spec"]["containers"][0]["env"]}
    _assert_points_at_service(prod, env["HUB_URL"], "hub")
    _assert_points_at_service(prod, env["KEYPROXY_URL"], "keyproxy")


def test_the_course_service_points_at_the_key_proxy(prod: Rendering) -> None:
    # The class page's tokens column (the key proxy's admin /usage).
    url = _env(prod, "prod-claudehub-progress")["CLAUDEHUB_KEYPROXY_URL"]
    _assert_points_at_service(prod, url, "keyproxy")


def test_services_listen_where_their_service_points(prod: Rendering) -> None:
    for deployment in ("prod-claudehub-keyproxy", "prod-claudehub-progress"):
        listen = urlsplit(_env(prod, deployment)["JUPYTERHUB_SERVICE_URL"])
        spec = prod.one("Deployment", deployment)["spec"]["template"]["spec"]
        assert listen.hostname == "0.0.0.0"
        assert listen.port == spec["containers"][0]["ports"][0]["containerPort"]


def test_policies_name_the_namespaces_they_cross(prod: Rendering) -> None:
    sandbox_policy = prod.one("NetworkPolicy", "prod-claudehub-sandbox")
    assert sandbox_policy["metadata"]["namespace"] == "tutoring-sandboxes"
    text = yaml.safe_dump(sandbox_policy["spec"])
    # Every peer of the sandbox policy lives in the release namespace, named explicitly.
    assert text.count("kubernetes.io/metadata.name: tutoring\n") == 5
    keyproxy = prod.one("NetworkPolicy", "prod-claudehub-keyproxy")
    peer = keyproxy["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "tutoring-sandboxes"}
    }


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_whitespace_only_lines(renderings: dict[str, Rendering], name: str) -> None:
    for path, text in renderings[name].files.items():
        for number, line in enumerate(text.splitlines(), 1):
            assert not re.fullmatch(r"\s+", line), f"{path}:{number} is blank but indented"
