"""The NetworkPolicies allow exactly the connections the architecture names, no more.

The sandbox pod is the one ClaudeSpawner builds (its own labels), so a drift between the
spawner's labels and the chart's selectors fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.charts import NAMESPACE, Rendering, deep_merge, render
from tests.helm.netpol import External, Pod, Policies
from tests.helm.spawned import build_sandbox_pod, hub_config

COMPONENTS = ("hub", "proxy", "keyproxy", "progress")
INTERNET = External("internet", "203.0.113.7")  # e.g. api.anthropic.com, github.com
NODE = External("node", "192.168.1.10")  # a k3s server node: the API server on 6443
PRIVATE = External("private", "10.0.0.7")  # some other host on the LAN
METADATA = External("metadata", "169.254.169.254")  # cloud metadata service
POSTGRES = External("postgres", "10.0.12.5")  # the external database of the postgres set
PORTS = [(p, "TCP") for p in (22, 80, 443, 5432, 6443, 8000, 8001, 8080, 8081, 8888)] + [
    (53, "UDP"),
    (53, "TCP"),
]


def sandbox_namespace(rendering: Rendering) -> str:
    return rendering.values.get("sandbox", {}).get("namespace") or NAMESPACE


async def spawned_sandbox(rendering: Rendering, tmp_path: Path, username: str = "alice") -> Pod:
    """The sandbox pod ClaudeSpawner builds under the chart's hub config, as policies see it."""
    c, _ = hub_config(rendering, tmp_path)
    manifest = await build_sandbox_pod(c, username)
    assert manifest["metadata"]["namespace"] == sandbox_namespace(rendering)
    port = manifest["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert port == 8888, "the policies open the sandbox server port 8888"
    return Pod(
        "sandbox", manifest["metadata"]["namespace"], manifest["metadata"]["labels"], "10.42.1.20"
    )


def component_pods(rendering: Rendering) -> dict[str, Pod]:
    """The chart's own pods, labelled as their Deployments label them."""
    pods = {}
    for i, component in enumerate(COMPONENTS):
        deployment = rendering.one("Deployment", f"claudehub-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        pods[component] = Pod(component, NAMESPACE, labels, f"10.42.0.{10 + i}")
    return pods


def endpoints(rendering: Rendering, sandbox: Pod) -> tuple[list[Pod], list[Pod | External]]:
    pods = [
        *component_pods(rendering).values(),
        sandbox,
        Pod("dns", "kube-system", {"k8s-app": "kube-dns"}, "10.42.0.2"),
        Pod("traefik", "kube-system", {"app.kubernetes.io/name": "traefik"}, "10.42.0.3"),
        Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.42.0.4"),
        Pod("stranger", NAMESPACE, {"app": "something-else"}, "10.42.0.5"),
        Pod("stranger-in-sandbox-ns", sandbox.namespace, {"app": "something-else"}, "10.42.0.6"),
        Pod("other-ns", "default", {"app": "something-else"}, "10.42.0.7"),
    ]
    return pods, [*pods, INTERNET, NODE, PRIVATE, METADATA, POSTGRES]


def allowed(rendering: Rendering, sandbox: Pod) -> set[tuple[str, str, int, str]]:
    """Every (source, destination, port, protocol) the policies let through."""
    policies = Policies(rendering.without_hooks())
    pods, destinations = endpoints(rendering, sandbox)
    sources: list[Pod | External] = [*pods, INTERNET, PRIVATE]
    found = set()
    for src in sources:
        for dst in destinations:
            if src is dst or (isinstance(src, External) and isinstance(dst, External)):
                continue
            for port, proto in PORTS:
                if policies.allows(src, dst, port, proto):
                    found.add((src.name, dst.name, port, proto))
    return found


UNPOLICED = ("dns", "traefik", "prometheus", "stranger", "stranger-in-sandbox-ns", "other-ns")


def expected(rendering: Rendering) -> set[tuple[str, str, int, str]]:
    """What the architecture allows, for this rendering's values."""
    v = rendering.values
    dns = {(53, "UDP"), (53, "TCP")}
    exp: set[tuple[str, str, int, str]] = set()

    def allow(src: str, dst: str, *ports: tuple[int, str]) -> None:
        exp.update((src, dst, p, proto) for p, proto in ports)

    tcp = lambda *ports: [(p, "TCP") for p in ports]  # noqa: E731
    # Sandboxes: ingress only from CHP (and the hub's readiness check) on the server port;
    # egress only to the key proxy, the hub API, the course service and DNS.
    allow("proxy", "sandbox", *tcp(8888))
    allow("hub", "sandbox", *tcp(8888))
    allow("sandbox", "keyproxy", *tcp(8080))
    allow("sandbox", "hub", *tcp(8081))
    allow("sandbox", "progress", *tcp(8080))
    # The key proxy: reached by sandboxes and by the course service (the class page's tokens
    # column reads its admin /usage); reaches the Anthropic API and the hub.
    allow("progress", "keyproxy", *tcp(8080))
    allow("hub", "keyproxy", *tcp(8080))  # the audit hook's POST /audit
    allow("keyproxy", "internet", *tcp(443))
    allow("keyproxy", "hub", *tcp(8081))
    # CHP: the public port for everyone (or the ingress controller); API for the hub.
    public = (
        ["traefik"] if v.get("proxy", {}).get("publicFrom") else [*UNPOLICED, "internet", "private"]
    )
    for src in public:
        allow(src, "proxy", *tcp(8000))
    allow("hub", "proxy", *tcp(8001))
    allow("proxy", "hub", *tcp(8081))
    allow("proxy", "progress", *tcp(8080))
    # The hub: Kubernetes API on the nodes, the course list, its own API (culler).
    allow("hub", "node", *tcp(443, 6443))
    allow("hub", "private", *tcp(443, 6443))
    allow("hub", "postgres", *tcp(443, 6443))  # a LAN host, inside the kubeApi blocks
    allow("hub", "progress", *tcp(8080))
    # The course service: the hub API (token checks) and course repositories.
    allow("progress", "hub", *tcp(8081))
    allow("progress", "internet", *tcp(443))
    for component in ("hub", "proxy", "keyproxy", "progress", "sandbox"):
        allow(component, "dns", *dns)
    if v.get("auth", {}).get("type") == "github":
        allow("hub", "internet", *tcp(443))
    for component, key in (
        ("hub", ("hub", "db")),
        ("keyproxy", ("keyproxy", "usageDb")),
        ("progress", ("progress", "db")),
    ):
        if v.get(key[0], {}).get(key[1], {}).get("type") == "postgresql":
            allow(component, "postgres", *tcp(5432))
    authoring = v.get("authoring", {})
    if authoring.get("enabled") and authoring.get("fetch", {}).get("enabled"):
        # paper URLs (authoring.fetch): the course service, never a sandbox, fetches them
        allow("progress", "internet", *tcp(*authoring["fetch"].get("ports", [80, 443])))
    for port in v.get("networkPolicy", {}).get("internet", {}).get("ports", []):
        allow("progress", "internet", (port, "TCP"))
    if v.get("keyproxy", {}).get("metrics", {}).get("enabled"):
        allow("prometheus", "keyproxy", *tcp(8080))
    # Pods no chart policy selects may talk among themselves; they are not the chart's.
    unpoliced_dst = [*UNPOLICED, "internet", "node", "private", "metadata", "postgres"]
    for src in UNPOLICED:
        for dst in unpoliced_dst:
            if dst != src:
                allow(src, dst, *PORTS)
    for src in ("internet", "private"):
        for dst in UNPOLICED:
            allow(src, dst, *PORTS)
    return exp


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name",
    [
        "default",
        "github-oauth",
        "external-postgresql",
        "ingress-tls",
        "separate-namespace",
        "authoring",
    ],
)
async def test_policies_allow_exactly_the_documented_connections(
    renderings: dict[str, Rendering], kubeconfig: Path, tmp_path: Path, name: str
) -> None:
    rendering = renderings[name]
    sandbox = await spawned_sandbox(rendering, tmp_path)
    got = allowed(rendering, sandbox)
    want = expected(rendering)
    assert not got - want, f"allowed but not documented: {sorted(got - want)}"
    assert not want - got, f"documented but blocked: {sorted(want - got)}"


@pytest.mark.asyncio
async def test_sandbox_policy_selects_the_spawners_pods(
    default: Rendering, kubeconfig: Path, tmp_path: Path
) -> None:
    policies = Policies(default.without_hooks())
    for username in ("alice", "Bob.Smith@example.org", "ünïcode"):
        sandbox = await spawned_sandbox(default, tmp_path, username)
        names = {p["metadata"]["name"] for p in policies.selecting(sandbox, "Ingress")}
        assert names == {"claudehub-sandbox"}, username
        names = {p["metadata"]["name"] for p in policies.selecting(sandbox, "Egress")}
        assert names == {"claudehub-sandbox"}, username


@pytest.mark.asyncio
async def test_sandbox_cannot_reach_the_internet_or_the_lan(
    default: Rendering, kubeconfig: Path, tmp_path: Path
) -> None:
    policies = Policies(default.without_hooks())
    sandbox = await spawned_sandbox(default, tmp_path)
    for dst in (INTERNET, NODE, PRIVATE, METADATA):
        for port in (80, 443, 6443):
            assert not policies.allows(sandbox, dst, port), (dst, port)


def test_key_proxy_reaches_no_private_address(default: Rendering) -> None:
    policies = Policies(default.without_hooks())
    keyproxy = component_pods(default)["keyproxy"]
    assert policies.allows(keyproxy, INTERNET, 443)
    for dst in (NODE, PRIVATE, METADATA):
        assert not policies.allows(keyproxy, dst, 443), dst


def test_every_rule_says_why(renderings: dict[str, Rendering]) -> None:
    for rendering in renderings.values():
        for path, text in rendering.files.items():
            if "kind: NetworkPolicy" not in text or "/tests/" in path:
                continue
            lines = text.splitlines()
            for i, line in enumerate(lines):
                stripped = line.strip()
                if stripped.startswith(("- to:", "- from:", "- ports:")):
                    above = lines[i - 1].strip()
                    assert above.startswith("#"), (
                        f"{rendering.name} {path}: rule without a comment: {line!r}"
                    )


def test_policies_off_removes_them_all() -> None:
    r = render(
        deep_merge(
            {"keyproxy": {"apiKey": {"existingSecret": "k"}}}, {"networkPolicy": {"enabled": False}}
        )
    )
    assert not r.find("NetworkPolicy")
    assert "WARNING: networkPolicy.enabled is false" in r.notes


def test_helm_test_policies_are_hooks_only(default: Rendering) -> None:
    hooks = [
        o
        for o in default.objects
        if o["kind"] == "NetworkPolicy" and o not in default.without_hooks()
    ]
    assert {o["metadata"]["name"] for o in hooks} == {
        "claudehub-test",
        "claudehub-test-ingress",
        # The pre-pull hook's pods (templates/prepuller/netpol.yaml), for the hook's length.
        "claudehub-prepuller-hook",
        "claudehub-prepuller-awaiter",
    }
    for obj in hooks:
        test = obj["metadata"]["name"].startswith("claudehub-test")
        expected = "test" if test else "pre-install,pre-upgrade"
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == expected
        assert "hook-succeeded" in obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


def test_helm_test_pod_reaches_exactly_the_hub_and_the_key_proxy(default: Rendering) -> None:
    """With the hook policies in place (during `helm test`), and only then."""
    pods = component_pods(default)
    labels = default.one("Pod", "claudehub-test")["metadata"]["labels"]
    tester = Pod("test", NAMESPACE, labels, "10.42.0.30")
    during = Policies(default.objects)
    after = Policies(default.without_hooks())
    assert during.allows(tester, pods["hub"], 8081)
    assert during.allows(tester, pods["keyproxy"], 8080)
    assert not during.allows(tester, pods["progress"], 8080)
    assert not during.allows(tester, pods["proxy"], 8001)
    assert not during.allows(tester, INTERNET, 443)
    assert not after.allows(tester, pods["keyproxy"], 8080)
    # The hook policy opens the key proxy to the test pod only, not to other pods.
    stranger = Pod("stranger", NAMESPACE, {"app": "x"}, "10.42.0.31")
    assert not during.allows(stranger, pods["keyproxy"], 8080)
