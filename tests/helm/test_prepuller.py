"""The image pre-puller (templates/prepuller/): a DaemonSet keeping the sandbox image on every
node where sandboxes land, and an install/upgrade hook that waits until it is there."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.helm.charts import KEY_SECRET, KUBE_VERSIONS, NAMESPACE, Rendering, deep_merge, render

CONTINUOUS = "claudehub-prepuller"
HOOK = "claudehub-prepuller-hook"
AWAITER = "claudehub-prepuller-awaiter"
HOOK_KINDS = {
    ("DaemonSet", HOOK),
    ("ServiceAccount", AWAITER),
    ("Role", AWAITER),
    ("RoleBinding", AWAITER),
    ("Job", AWAITER),
    ("NetworkPolicy", HOOK),
    ("NetworkPolicy", AWAITER),
}
PLACED = {
    "sandbox": {
        "namespace": "claudehub-sandboxes",
        "nodeSelector": {"claudehub/sandboxes": "yes"},
        "tolerations": [{"key": "sandboxes", "operator": "Exists", "effect": "NoSchedule"}],
        "image": {"repository": "registry.local/sandbox", "tag": "1.2.3"},
    },
    "imagePullSecrets": ["regcred"],
}


def _mine(rendering: Rendering) -> list[dict[str, Any]]:
    return [o for o in rendering.objects if "-prepuller" in o["metadata"]["name"]]


@pytest.fixture(scope="module")
def placed() -> Rendering:
    return render(deep_merge(KEY_SECRET, PLACED), name="placed")


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_defaults_render_the_daemonset_and_the_hook(default: Rendering) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in _mine(default)}
    assert kinds == HOOK_KINDS | {
        ("DaemonSet", CONTINUOUS),
        ("NetworkPolicy", CONTINUOUS),
        ("PriorityClass", "claudehub-claudehub-prepuller"),
    }
    for obj in _mine(default):
        annotations = obj["metadata"].get("annotations") or {}
        is_hook = (obj["kind"], obj["metadata"]["name"]) in HOOK_KINDS
        assert ("helm.sh/hook" in annotations) is is_hook, obj["metadata"]["name"]
        if is_hook:
            assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert annotations["helm.sh/hook-delete-policy"] == (
                "before-hook-creation,hook-succeeded"
            )
            # The awaiter runs after everything it needs is there.
            weight = -10 if obj["kind"] != "Job" else 0
            assert annotations["helm.sh/hook-weight"] == str(weight)


@pytest.mark.parametrize("name", [CONTINUOUS, HOOK])
def test_the_pullers_pull_the_sandbox_image_where_sandboxes_land(
    placed: Rendering, name: str
) -> None:
    daemonset = placed.one("DaemonSet", name)
    spec = _spec(daemonset)
    namespace = "claudehub-sandboxes" if name == CONTINUOUS else NAMESPACE
    assert daemonset["metadata"]["namespace"] == namespace
    for container in spec["initContainers"] + spec["containers"]:
        assert container["image"] == "registry.local/sandbox:1.2.3"
        assert container["imagePullPolicy"] == "IfNotPresent"
    assert spec["initContainers"][0]["command"] == ["/bin/true"]
    assert spec["containers"][0]["command"] == ["/usr/bin/tini", "--", "/bin/sleep", "infinity"]
    assert spec["nodeSelector"] == {"claudehub/sandboxes": "yes"}
    assert spec["tolerations"] == PLACED["sandbox"]["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 1000  # the sandbox image's user
    if name == CONTINUOUS:
        assert spec["priorityClassName"] == "claudehub-claudehub-prepuller"
    else:
        # A hook runs before the chart's PriorityClass exists.
        assert "priorityClassName" not in spec


def test_the_default_image_is_the_hubs_default_sandbox_image(default: Rendering) -> None:
    spec = _spec(default.one("DaemonSet", CONTINUOUS))
    assert spec["containers"][0]["image"] == "claudehub/sandbox:" + _app_version(default)
    assert "nodeSelector" not in spec and "tolerations" not in spec


def _app_version(rendering: Rendering) -> str:
    labels = rendering.one("DaemonSet", CONTINUOUS)["metadata"]["labels"]
    return str(labels["app.kubernetes.io/version"])


def test_gpu_nodes_get_the_image_too() -> None:
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    rendering = render(
        deep_merge(
            KEY_SECRET,
            {
                "sandbox": {
                    "gpu": {"enabled": True, "tolerations": [gpu_toleration]},
                    "quota": {"gpus": 1},
                }
            },
        )
    )
    assert _spec(rendering.one("DaemonSet", CONTINUOUS))["tolerations"] == [gpu_toleration]


def test_the_awaiter_waits_for_the_hook_daemonset(placed: Rendering) -> None:
    job = placed.one("Job", AWAITER)
    spec = _spec(job)
    assert job["metadata"]["namespace"] == NAMESPACE
    assert spec["serviceAccountName"] == AWAITER and spec["automountServiceAccountToken"]
    [container] = spec["containers"]
    assert container["args"] == [
        "python3",
        "-m",
        "claudehub.hub.prepull",
        f"--namespace={NAMESPACE}",
        f"--daemonset={HOOK}",
        "--timeout=240",
    ]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 300
    longer = render(deep_merge(KEY_SECRET, {"prePuller": {"hook": {"timeout": 900}}}))
    assert _spec(longer.one("Job", AWAITER))["containers"][0]["args"][-1] == "--timeout=900"


def test_the_awaiter_may_only_read_daemonsets_and_pods(default: Rendering) -> None:
    role = default.one("Role", AWAITER)
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("apps",), ("daemonsets",)): {"get", "list", "watch"},
        (("",), ("pods",)): {"get", "list", "watch"},
    }
    binding = default.one("RoleBinding", AWAITER)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": AWAITER, "namespace": NAMESPACE}
    ]


def test_the_pullers_have_no_network_and_the_awaiter_only_the_api(placed: Rendering) -> None:
    for name in (CONTINUOUS, HOOK):
        policy = placed.one("NetworkPolicy", name)["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["ingress"] == [] and policy["egress"] == []
    policy = placed.one("NetworkPolicy", AWAITER)["spec"]
    assert policy["ingress"] == []
    [rule] = policy["egress"]
    assert {p["port"] for p in rule["ports"]} == {443, 6443}
    assert all("ipBlock" in peer for peer in rule["to"])


@pytest.mark.parametrize(
    ("values", "left"),
    [
        ({"prePuller": {"continuous": {"enabled": False}}}, HOOK_KINDS),
        (
            {"prePuller": {"hook": {"enabled": False}}},
            {
                ("DaemonSet", CONTINUOUS),
                ("NetworkPolicy", CONTINUOUS),
                ("PriorityClass", "claudehub-claudehub-prepuller"),
            },
        ),
        ({"prePuller": {"continuous": {"enabled": False}, "hook": {"enabled": False}}}, set()),
    ],
)
def test_turning_them_off(values: dict[str, Any], left: set[tuple[str, str]]) -> None:
    rendering = render(deep_merge(KEY_SECRET, values))
    assert {(o["kind"], o["metadata"]["name"]) for o in _mine(rendering)} == left


@pytest.mark.parametrize("version", [KUBE_VERSIONS[0], KUBE_VERSIONS[-1]])
def test_kubernetes_accepts_them(placed: Rendering, version: str) -> None:
    for obj in _mine(placed):
        kubernetes_validate.validate(obj, version, strict=True)


def test_their_pods_meet_the_restricted_pod_security_standard(
    default: Rendering, placed: Rendering
) -> None:
    from tests.spawner.pss import restricted_violations

    for rendering in (default, placed):
        for obj in _mine(rendering):
            if obj["kind"] in ("DaemonSet", "Job"):
                problems = restricted_violations(obj["spec"]["template"])
                assert not problems, (obj["metadata"]["name"], problems)
                for container in _spec(obj).get("initContainers", []) + _spec(obj)["containers"]:
                    sc = container["securityContext"]
                    assert sc["readOnlyRootFilesystem"] is True
                    assert sc["capabilities"] == {"drop": ["ALL"]}
                    assert "limits" in container["resources"]


def test_with_authoring_the_pullers_pull_the_author_image_too() -> None:
    """Author sessions (docs/authoring.md) run sandbox.authorImage: pulled beside the sandbox
    image; without authoring.enabled it is not (the default rendering has one init container)."""
    values = deep_merge(
        deep_merge(KEY_SECRET, PLACED),
        {
            "authoring": {"enabled": True},
            "sandbox": {
                "authorImage": {"repository": "registry.local/sandbox-author", "tag": "1.2.3"}
            },
        },
    )
    rendering = render(values, name="placed")
    for name in (CONTINUOUS, HOOK):
        inits = _spec(rendering.one("DaemonSet", name))["initContainers"]
        assert [(c["name"], c["image"]) for c in inits] == [
            ("pull", "registry.local/sandbox:1.2.3"),
            ("pull-author", "registry.local/sandbox-author:1.2.3"),
        ]
        assert inits[1]["securityContext"] == inits[0]["securityContext"]
        assert inits[1]["command"] == ["/bin/true"]
    without = render(deep_merge(KEY_SECRET, PLACED), name="placed")
    assert len(_spec(without.one("DaemonSet", CONTINUOUS))["initContainers"]) == 1
