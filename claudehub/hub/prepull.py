"""The chart's pre-pull awaiter: wait until an image-puller DaemonSet is ready on every node.

The install/upgrade hook (helm/claudehub/templates/prepuller/hook.yaml) runs, in the hub
image, ``python3 -m claudehub.hub.prepull --namespace NS --daemonset NAME --timeout SECONDS``
with its service account (get/list/watch of daemonsets and pods in NS). It exits 0 once every
pod the DaemonSet schedules is updated and ready (a DaemonSet that schedules no pod at all is
done too: there is no node to pull to), and 1 after the timeout with one line naming the
nodes still pulling.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config


@dataclass
class PullStatus:
    """Where a puller DaemonSet stands."""

    desired: int = 0
    ready: int = 0
    updated: int = 0
    #: False until the controller has looked at the DaemonSet's latest spec.
    observed: bool = False
    #: Nodes whose puller pod is not ready yet (from the pods, when the DaemonSet is not done).
    pulling: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.observed and self.updated == self.desired and self.ready == self.desired

    def describe(self) -> str:
        nodes = ", ".join(self.pulling) if self.pulling else "nodes not known yet"
        return f"{self.ready}/{self.desired} nodes ready; still pulling: {nodes}"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _json(response: Any) -> dict[str, Any]:
    """The body of a ``_preload_content=False`` call: plain JSON, no model (a model insists
    on every field the API server always sends, which a partial status may lack)."""
    async with response:
        if not 200 <= response.status < 300:
            raise client.ApiException(status=response.status, reason=response.reason)
        body: dict[str, Any] = await response.json()
        return body


async def pull_status(api: client.ApiClient, namespace: str, name: str) -> PullStatus:
    """The DaemonSet's status, and the nodes of its pods that are not ready."""
    daemonset = await _json(
        await client.AppsV1Api(api).read_namespaced_daemon_set(
            name, namespace, _preload_content=False
        )
    )
    status = daemonset.get("status") or {}
    result = PullStatus(
        desired=status.get("desiredNumberScheduled") or 0,
        ready=status.get("numberReady") or 0,
        updated=status.get("updatedNumberScheduled") or 0,
        observed=(status.get("observedGeneration") or 0)
        >= (daemonset["metadata"].get("generation") or 0),
    )
    if result.done:
        return result
    labels: dict[str, str] = (daemonset.get("spec") or {}).get("selector", {}).get(
        "matchLabels"
    ) or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = await _json(
        await client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
    )
    owned = [
        pod
        for pod in pods.get("items") or []
        if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
    ]
    result.pulling = sorted(
        (pod.get("spec") or {}).get("nodeName") or f"(pod {pod['metadata']['name']}: no node yet)"
        for pod in owned
        if not _ready(pod)
    )
    return result


def _transient(error: Exception) -> bool:
    """An API hiccup worth another try: the server busy or briefly away."""
    if isinstance(error, client.ApiException):
        return error.status is None or error.status == 429 or error.status >= 500
    return isinstance(error, aiohttp.ClientError | asyncio.TimeoutError)


async def await_pullers(
    api: client.ApiClient, namespace: str, name: str, within: float, interval: float = 2.0
) -> PullStatus:
    """Poll the DaemonSet until it is done or ``within`` seconds passed; its last status.

    A transient API error is retried until then (the last one is raised at the deadline if
    no status came at all); any other, such as a missing DaemonSet or a refused right, is
    raised at once."""
    deadline = time.monotonic() + within
    status: PullStatus | None = None
    while True:
        try:
            status = await pull_status(api, namespace, name)
        except (TimeoutError, client.ApiException, aiohttp.ClientError) as error:
            if not _transient(error) or (status is None and time.monotonic() > deadline):
                raise
        if status is not None and (status.done or time.monotonic() + interval > deadline):
            return status
        await asyncio.sleep(interval)


def _api_error(error: Exception) -> str:
    if isinstance(error, client.ApiException):
        return f"the Kubernetes API answered {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}".rstrip(": ")


async def _main(args: argparse.Namespace) -> int:
    where = f"daemonset {args.namespace}/{args.daemonset}"
    try:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()  # outside a pod: the operator's kubeconfig
    except config.ConfigException as error:
        print(f"{where}: no Kubernetes API to ask: {error}", file=sys.stderr)
        return 1
    try:
        async with client.ApiClient() as api:
            status = await await_pullers(api, args.namespace, args.daemonset, args.timeout)
    except (TimeoutError, client.ApiException, aiohttp.ClientError) as error:
        print(f"{where}: {_api_error(error)}", file=sys.stderr)
        return 1
    if status.done:
        print(f"the image is on every node ({status.desired} nodes)")
        return 0
    print(
        f"{where} not ready after {args.timeout:g}s: " + status.describe(),
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--daemonset", required=True)
    parser.add_argument("--timeout", type=float, required=True, help="seconds")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
