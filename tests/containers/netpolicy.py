"""Enforce the chart's rendered NetworkPolicies on a pod with nftables, in its own netns.

A CNI with NetworkPolicy support (k3s's kube-router) filters each pod's traffic by the
policies that select it. Here the same filter is derived from the rendered policies and
loaded into the pod's network namespace: for each policy that selects the pod, its egress
rules become accepted (destination, protocol, port) triples and its ingress rules accepted
(source, protocol, port) triples; everything else is dropped. Replies to allowed connections
pass (connection tracking), as they do under any CNI.

Peers are resolved from the pods running at that moment (their labels and IPs); the
cluster DNS peer (``kube-system``/``k8s-app: kube-dns``) is the network's own resolver.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from tests.containers.podman import podman
from tests.helm.netpol import selector_matches
from tests.helpers import PATIENCE

DNS_SELECTOR = {"k8s-app": "kube-dns"}


def selects(policy: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return selector_matches(policy["spec"].get("podSelector"), dict(labels))


def _peer_ips(
    peer: Mapping[str, Any], pods: Iterable[tuple[Mapping[str, str], str]], dns_ip: str
) -> list[str]:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if block.get("except"):
            raise ValueError("ipBlock with except is not needed for sandboxes")
        return [str(ipaddress.ip_network(block["cidr"]))]
    namespaces = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    if namespaces is not None:
        names = (namespaces.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
        if names == "kube-system" and (pod_selector or {}).get("matchLabels") == DNS_SELECTOR:
            return [dns_ip]
        raise ValueError(f"unsupported namespaceSelector {namespaces}")
    return [ip for labels, ip in pods if selector_matches(pod_selector, dict(labels))]


def _ports(rule: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    ports = rule.get("ports") or []
    if not ports:
        return [("any", None)]
    out = []
    for port in ports:
        if not isinstance(port.get("port"), int):
            raise ValueError(f"named or missing port {port}")
        out.append((str(port.get("protocol", "TCP")).lower(), int(port["port"])))
    return out


def _accepts(
    direction: str, rules: Iterable[Mapping[str, Any]], pods: list[Any], dns_ip: str
) -> list[str]:
    key, field = ("to", "daddr") if direction == "egress" else ("from", "saddr")
    lines = []
    for rule in rules:
        peers = rule.get(key)
        targets = (
            ["0.0.0.0/0"]
            if not peers
            else [ip for peer in peers for ip in _peer_ips(peer, pods, dns_ip)]
        )
        for ip in targets:
            for proto, port in _ports(rule):
                if proto == "any":
                    lines.append(f"ip {field} {ip} accept")
                else:
                    lines.append(f"ip {field} {ip} {proto} dport {port} accept")
    return lines


def nft_script(
    policies: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
    pods: list[tuple[Mapping[str, str], str]],
    dns_ip: str,
) -> str:
    """The nftables ruleset enforcing every policy that selects a pod with ``labels``."""
    mine = [p for p in policies if selects(p, labels)]
    chains = []
    for direction, hook, iface in (
        ("egress", "output", "oifname"),
        ("ingress", "input", "iifname"),
    ):
        kind = direction.capitalize()
        governed = [p for p in mine if kind in (p["spec"].get("policyTypes") or [])]
        if not governed:
            continue
        rules = [r for p in governed for r in p["spec"].get(direction) or []]
        body = [
            f"type filter hook {hook} priority 0; policy drop;",
            "ct state established,related accept",
            f'{iface} "lo" accept',
            *_accepts(direction, rules, pods, dns_ip),
        ]
        chains.append(f"  chain {direction} {{\n" + "\n".join(f"    {b}" for b in body) + "\n  }")
    table = "table inet claudehub_netpol"
    # add + delete first, so loading the script again replaces the table atomically.
    return f"add {table}\ndelete {table}\n{table} {{\n" + "\n".join(chains) + "\n}\n"


def apply(infra_container: str, script: str) -> None:
    """Load ``script`` into the network namespace of the pod's infra container."""
    pid = json.loads(podman("container", "inspect", infra_container))[0]["State"]["Pid"]
    subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        check=True,
        timeout=PATIENCE,
    )
