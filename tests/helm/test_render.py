"""The chart renders with realistic values into objects Kubernetes 1.32 to 1.35 accepts."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.helm.charts import (
    CHART,
    CUSTOM_RESOURCES,
    KUBE_VERSIONS,
    NAMESPACE,
    VALUE_SETS,
    Rendering,
    deep_merge,
    render,
)

WORKLOADS = ("hub", "proxy", "keyproxy", "progress")


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_passes_strict_kubernetes_schema(
    renderings: dict[str, Rendering], version: str
) -> None:
    for rendering in renderings.values():
        for obj in rendering.objects:
            if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
                continue  # no core schema: test_monitoring.py checks these
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(
                    f"{rendering.name}: {obj['kind']}/{obj['metadata']['name']} invalid for "
                    f"Kubernetes {version}: {err.message} at {list(err.path)}"
                )


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(name: str) -> None:
    for version in ("v1.32.0", "v1.35.0"):
        report = helm_python.lint(
            CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version=version
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, (report["errors"], problems)


@pytest.mark.parametrize("namespace", ["", "claudehub"])
def test_lint_strict_with_the_least_values_an_operator_sets(namespace: str) -> None:
    """Only the key's Secret set, with or without a namespace: cluster-scoped names stay valid."""
    values = {"keyproxy": {"apiKey": {"existingSecret": "anthropic"}}}
    report = helm_python.lint(
        CHART, values, strict=True, namespace=namespace, kube_version="v1.35.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, (report["errors"], problems)
    chart = helm_python.Chart.load(CHART)
    files = chart.render(values, name="test-release", namespace=namespace, is_install=True)
    text = "\n".join(files.values())
    names = re.findall(r"^kind: PriorityClass\nmetadata:\n  name: (\S+)", text, re.MULTILINE)
    assert names, "the sandbox PriorityClass is rendered"
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
        assert name.endswith(
            ("test-release-claudehub-sandbox", "test-release-claudehub-prepuller")
        ), name


def test_default_install_has_every_component(default: Rendering) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in default.without_hooks()}
    for component in WORKLOADS:
        assert ("Deployment", f"claudehub-{component}") in kinds
    assert ("Service", "claudehub-proxy-public") in kinds
    assert ("Service", "claudehub-keyproxy") in kinds
    assert ("PodDisruptionBudget", "claudehub-keyproxy") in kinds
    assert ("ResourceQuota", "claudehub-sandbox") in kinds
    assert ("LimitRange", "claudehub-sandbox") in kinds
    # SQLite on volumes by default: the hub DB, the usage DB, the progress DB + course cache.
    pvcs = {n for k, n in kinds if k == "PersistentVolumeClaim"}
    assert pvcs == {"claudehub-hub-db", "claudehub-keyproxy-usage", "claudehub-progress-data"}
    public = default.one("Service", "claudehub-proxy-public")
    assert public["spec"]["type"] == "NodePort"
    assert public["spec"]["ports"][0]["nodePort"] == 31000


def test_objects_carry_recommended_labels_and_namespace(renderings: dict[str, Rendering]) -> None:
    for rendering in renderings.values():
        for obj in rendering.objects:
            labels = obj["metadata"].get("labels", {})
            where = f"{rendering.name}: {obj['kind']}/{obj['metadata']['name']}"
            for key in (
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
                "app.kubernetes.io/managed-by",
                "helm.sh/chart",
            ):
                assert key in labels, f"{where} lacks label {key}"
            if obj["kind"] not in ("Namespace", "PriorityClass"):
                assert obj["metadata"].get("namespace"), f"{where} has no namespace"


def test_hub_is_one_recreated_replica_with_config_checksum(default: Rendering) -> None:
    hub = default.one("Deployment", "claudehub-hub")
    assert hub["spec"]["replicas"] == 1
    assert hub["spec"]["strategy"] == {"type": "Recreate"}
    annotations = hub["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64
    # A config change rolls the hub: the checksum follows the settings file.
    changed = render(deep_merge(default.values, {"limits": {"maxActiveSessions": 9}}))
    changed_hub = changed.one("Deployment", "claudehub-hub")
    assert (
        changed_hub["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        != annotations["checksum/config"]
    )


def test_every_pod_is_hardened(renderings: dict[str, Rendering]) -> None:
    for rendering in renderings.values():
        for obj in rendering.objects:
            if obj["kind"] not in ("Deployment", "Pod"):
                continue
            spec = _pod_spec(obj)
            where = f"{rendering.name}: {obj['kind']}/{obj['metadata']['name']}"
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # Only the hub talks to the Kubernetes API.
            is_hub = obj["metadata"]["name"] == "claudehub-hub"
            assert spec["automountServiceAccountToken"] is is_hub, where
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["capabilities"] == {"drop": ["ALL"]}, where
                assert "limits" in container["resources"], where


def test_the_real_key_reaches_only_the_key_proxy(renderings: dict[str, Rendering]) -> None:
    for rendering in renderings.values():
        key_secret = rendering.values["keyproxy"]["apiKey"].get("existingSecret") or (
            "claudehub-anthropic-key"
        )
        for obj in rendering.objects:
            if obj["kind"] not in ("Deployment", "Pod"):
                continue
            text = str(obj)
            mentions = key_secret in text
            assert mentions == (obj["metadata"]["name"] == "claudehub-keyproxy"), (
                f"{rendering.name}: {obj['metadata']['name']} mounts the Anthropic key Secret"
            )
    gpu = renderings["gpu"]
    secret = gpu.one("Secret", "claudehub-anthropic-key")
    assert set(secret["data"]) == {"api-key"}


def test_hub_secret_holds_generated_values(default: Rendering) -> None:
    secret = default.one("Secret", "claudehub-hub")
    assert set(secret["data"]) >= {
        "cookie-secret",
        "proxy-token",
        "crypt-key",
        "token-secret",
        "keyproxy-api-token",
        "progress-api-token",
        "password",
    }
    # The hub and the key proxy share the sandbox-token secret as a file.
    for name in ("claudehub-hub", "claudehub-keyproxy"):
        volumes = _pod_spec(default.one("Deployment", name))["volumes"]
        items = [
            v["secret"].get("items")
            for v in volumes
            if v.get("secret", {}).get("secretName") == "claudehub-hub"
        ]
        assert items == [[{"key": "token-secret", "path": "token-secret"}]]


def test_external_postgresql_replaces_every_volume(renderings: dict[str, Rendering]) -> None:
    pg = renderings["external-postgresql"]
    assert {o["metadata"]["name"] for o in pg.find("PersistentVolumeClaim")} == {
        "claudehub-progress-data"  # the course cache stays on a volume
    }
    keyproxy = pg.one("Deployment", "claudehub-keyproxy")
    assert keyproxy["spec"]["replicas"] == 2
    assert keyproxy["spec"]["strategy"]["type"] == "RollingUpdate"
    spread = _pod_spec(keyproxy)["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e for e in _pod_spec(keyproxy)["containers"][0]["env"]}
    assert env["CLAUDEHUB_KEYPROXY_DB_URL"]["value"].startswith("postgresql+psycopg://keyproxy@")
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg-keyproxy",
        "key": "password",
    }


def test_ingress_with_tls(renderings: dict[str, Rendering]) -> None:
    r = renderings["ingress-tls"]
    ingress = r.one("Ingress", "claudehub")
    assert ingress["spec"]["tls"] == [{"secretName": "claude-tls", "hosts": ["claude.example.org"]}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "claudehub-proxy-public"
    assert r.one("Service", "claudehub-proxy-public")["spec"]["type"] == "ClusterIP"
    assert "https://claude.example.org/" in r.notes


def test_separate_namespace_moves_sandbox_objects(renderings: dict[str, Rendering]) -> None:
    r = renderings["separate-namespace"]
    ns = r.one("Namespace", "claudehub-sandboxes")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind in ("Role", "RoleBinding", "ResourceQuota", "LimitRange"):
        # (The pre-pull hook's awaiter reads its DaemonSet in the release namespace.)
        for obj in (o for o in r.without_hooks() if o["kind"] == kind):
            assert obj["metadata"]["namespace"] == "claudehub-sandboxes", kind
    binding = r.one("RoleBinding", "claudehub-hub")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "claudehub-hub", "namespace": NAMESPACE}
    ]
    # Only sandboxes live there: the storage quota is the sandboxes' own.
    storage = r.one("ResourceQuota", "claudehub-sandbox-storage")
    assert storage["spec"]["hard"] == {
        "persistentvolumeclaims": "50",
        "requests.storage": "51200Mi",
    }


def test_shared_namespace_storage_quota_leaves_room_for_the_charts_volumes(
    default: Rendering,
) -> None:
    storage = default.one("ResourceQuota", "claudehub-sandbox-storage")
    # 50 user volumes of 50Gi in all, plus hub-db 1Gi, usage 1Gi, progress 2Gi.
    assert storage["spec"]["hard"] == {
        "persistentvolumeclaims": "53",
        "requests.storage": "55296Mi",
    }
    pods = default.one("ResourceQuota", "claudehub-sandbox")
    assert pods["spec"]["scopeSelector"]["matchExpressions"][0]["values"] == [
        "claudehub-claudehub-sandbox"
    ]
    assert (
        default.one("PriorityClass", "claudehub-claudehub-sandbox")["preemptionPolicy"] == "Never"
    )


def test_hub_role_is_limited_to_what_the_spawner_needs(default: Rendering) -> None:
    role = default.one("Role", "claudehub-hub")
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        ("pods",): {"get", "watch", "list", "create", "delete"},
        ("persistentvolumeclaims",): {"get", "watch", "list", "create", "delete"},
    }
    assert not default.find("ClusterRole") and not default.find("ClusterRoleBinding")


def test_notes_say_how_to_log_in(renderings: dict[str, Rendering]) -> None:
    assert ":31000/" in renderings["default"].notes
    assert "jsonpath='{.data.password}'" in renderings["default"].notes
    github = renderings["github-oauth"].notes
    assert "https://claude.example.org/hub/oauth_callback" in github
    assert "helm test claudehub" in github


def test_helm_test_hook_checks_hub_and_keyproxy(default: Rendering) -> None:
    pod = default.one("Pod", "claudehub-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    compile(script, "helm-test", "exec")  # the embedded check is valid Python
    assert "/hub/api" in script and "/v1/messages" in script and "401" in script
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env == {
        "HUB_URL": "http://claudehub-hub.claudehub.svc:8081",
        "KEYPROXY_URL": "http://claudehub-keyproxy.claudehub.svc:8080",
    }


def test_secrets_are_generated_unless_given() -> None:
    import base64
    import re

    from tests.helm.charts import KEY_SECRET

    def data(values: dict[str, Any]) -> dict[str, str]:
        secret = render(values).one("Secret", "claudehub-hub")
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    first, second = data(KEY_SECRET), data(KEY_SECRET)
    # Offline there is no live Secret to keep values from, so each render generates afresh;
    # on a cluster `lookup` returns the live values and upgrades keep them.
    assert first["token-secret"] != second["token-secret"]
    assert re.fullmatch("[0-9a-f]{64}", first["cookie-secret"])
    assert re.fullmatch("[0-9a-f]{64}", first["crypt-key"])
    assert len(first["password"]) >= 8
    given = data(
        deep_merge(
            KEY_SECRET,
            {
                "hub": {"cookieSecret": "ab" * 32},
                "proxy": {"secretToken": "chp-token-given-by-the-operator"},
                "auth": {"password": {"value": "trial-password-1"}},
            },
        )
    )
    assert given["cookie-secret"] == "ab" * 32
    assert given["proxy-token"] == "chp-token-given-by-the-operator"
    assert given["password"] == "trial-password-1"


def test_the_realistic_value_sets_are_all_there() -> None:
    assert set(VALUE_SETS) >= {
        "default",
        "github-oauth",
        "external-postgresql",
        "ingress-tls",
        "gpu",
        "separate-namespace",
    }


def test_every_chart_pod_meets_the_restricted_pod_security_standard(
    renderings: dict[str, Rendering],
) -> None:
    from tests.spawner.pss import restricted_violations

    for rendering in renderings.values():
        for obj in rendering.objects:
            if obj["kind"] not in ("Deployment", "Pod"):
                continue
            pod = obj if obj["kind"] == "Pod" else obj["spec"]["template"]
            problems = restricted_violations(pod)
            assert not problems, (rendering.name, obj["metadata"]["name"], problems)


def test_local_course_repositories_are_mounted_read_only() -> None:
    """An air-gapped cluster serves file:// course repositories from an existing claim."""
    rendering = render(
        {
            "keyproxy": {"apiKey": {"existingSecret": "anthropic"}},
            "progress": {
                "localRepositories": {"existingClaim": "course-repos"},
                "courses": [{"id": "intro", "repo": "file:///srv/course-repos/intro.git"}],
            },
        }
    )
    spec = rendering.one("Deployment", "claudehub-progress")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "repositories")
    assert volume["persistentVolumeClaim"] == {"claimName": "course-repos", "readOnly": True}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "repositories")
    assert mount == {"name": "repositories", "mountPath": "/srv/course-repos", "readOnly": True}
    without = render({"keyproxy": {"apiKey": {"existingSecret": "anthropic"}}})
    spec = without.one("Deployment", "claudehub-progress")["spec"]["template"]["spec"]
    assert all(v["name"] != "repositories" for v in spec["volumes"])


@pytest.mark.parametrize("drain", [None, 5, 600])
def test_the_key_proxys_drain_fits_in_its_grace_period(
    default: Rendering, drain: int | None
) -> None:
    """Kubernetes never SIGKILLs a key proxy while it lets answers finish, and the drain the
    pod is given is the one its command line sets."""
    from claudehub.proxy.app import KeyProxyApp

    rendering = (
        default
        if drain is None
        else render(deep_merge(default.values, {"keyproxy": {"drainSeconds": drain}}))
    )
    pod = _pod_spec(rendering.one("Deployment", "claudehub-keyproxy"))
    args = pod["containers"][0]["args"]
    app = KeyProxyApp()
    app.parse_command_line(args[1:])
    expected = 120 if drain is None else drain
    assert app.shutdown_timeout == expected
    assert pod["terminationGracePeriodSeconds"] == expected + 15
