"""A small NetworkPolicy evaluator over rendered objects (the networking.k8s.io/v1 semantics).

Enough for the chart's policies: pod/namespace selectors (matchLabels and matchExpressions),
ipBlock with except, numeric ports and protocols, policyTypes. A connection is allowed when the
source's egress and the destination's ingress both allow it; a pod no policy selects for a
direction is open in that direction.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod as the policies see it."""

    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.42.0.10"


@dataclass(frozen=True)
class External:
    """An address outside the cluster's pods (the internet, a database server)."""

    name: str
    ip: str


Endpoint = Pod | External


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _ns_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: dict[str, Any], policy_ns: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(endpoint.ip)
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not isinstance(endpoint, Pod):
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], _ns_labels(endpoint.namespace)):
            return False
    elif endpoint.namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector"), endpoint.labels)


def _ports_match(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports
    )


def _rules_allow(
    rules: list[dict[str, Any]], key: str, policy_ns: str, peer: Endpoint, port: int, protocol: str
) -> bool:
    for rule in rules or []:
        peers = rule.get(key)
        if peers is not None and not any(_peer_matches(p, policy_ns, peer) for p in peers):
            continue
        if _ports_match(rule.get("ports"), port, protocol):
            return True
    return False


class Policies:
    """The NetworkPolicies of a rendering."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        """Policies that select ``pod`` for ``direction`` ("Ingress" or "Egress")."""
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and selector_matches(p["spec"]["podSelector"], pod.labels)
        ]

    def egress_allows(self, src: Pod, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        selected = self.selecting(src, "Egress")
        if not selected:
            return True
        return any(
            _rules_allow(
                p["spec"].get("egress"), "to", p["metadata"]["namespace"], dst, port, protocol
            )
            for p in selected
        )

    def ingress_allows(self, src: Endpoint, dst: Pod, port: int, protocol: str = "TCP") -> bool:
        selected = self.selecting(dst, "Ingress")
        if not selected:
            return True
        return any(
            _rules_allow(
                p["spec"].get("ingress"), "from", p["metadata"]["namespace"], src, port, protocol
            )
            for p in selected
        )

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether ``src`` may open a connection to ``dst`` on ``port``."""
        if isinstance(src, Pod) and not self.egress_allows(src, dst, port, protocol):
            return False
        if isinstance(dst, Pod) and not self.ingress_allows(src, dst, port, protocol):
            return False
        return True
