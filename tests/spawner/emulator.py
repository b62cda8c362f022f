"""A Kubernetes API emulator good enough for KubeSpawner, and a test-driven kubelet.

kmock 0.8's :class:`KubernetesEmulator` serves objects over real HTTP, but as shipped it
fails KubeSpawner (see ../shared/TOOLCHAIN.md). :class:`ClusterEmulator` fixes:

1. kubernetes_asyncio sends ``watch=True``; kmock only recognises ``watch=true``;
2. stored objects lack ``metadata.namespace``, ``uid``, ``resourceVersion``,
   ``creationTimestamp`` and an initial ``status``;
3. ``timeoutSeconds`` of a watch is ignored (the stream never ends on its own).

It still ignores label/field selectors, grace periods, strategic merge, admission and
quota. :class:`Kubelet` plays the node: it PATCHes ``pods/NAME/status`` the way a kubelet
would (Running with a podIP and container statuses, or a failure).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import kmock
from kmock._internal import aiobus, enums, rendering

#: Requests kmock's own log keeps (see ClusterEmulator.__call__).
REQUEST_LOG = 2000

CORE_RESOURCES = ("v1/pods", "v1/persistentvolumeclaims", "v1/events", "v1/services")


class _RecordingBus(aiobus.Bus[Any]):
    """A bus that also numbers every event and keeps it, so a watch can resume."""

    def __init__(self, emulator: ClusterEmulator) -> None:
        super().__init__()
        self._emulator = emulator

    async def put(self, *items: Any) -> None:
        self._emulator._record(items)
        await super().put(*items)


class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the fixes KubeSpawner needs.

    Beyond the three fixes above it keeps an event history, so list + watch behave as on a
    real API server: a list returns the current ``resourceVersion`` and a watch from that
    version replays what happened in between (KubeSpawner's reflector relies on it: a pod
    deleted between its list and its watch must still be reported as DELETED).
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = 0
        self.history: list[tuple[int, Any, dict[str, Any]]] = []
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        self._buses = collections.defaultdict(lambda: _RecordingBus(self))
        for name in CORE_RESOURCES:
            self.resources[name] = kmock.ResourceInfo(namespaced=True)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, events: tuple[Any, ...]) -> None:
        # Called under the emulator's lock, in the order the events happen.
        for event in events:
            obj = event.get("object") or {}
            obj.setdefault("metadata", {})
            if event.get("type") == "DELETED":
                event["object"] = obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = self._next_rv()
            rv = int(obj["metadata"].get("resourceVersion") or 0)
            self.history.append((rv, self._resource_of(obj), event))

    def _resource_of(self, obj: dict[str, Any]) -> str:
        return str(obj.get("kind", "")).lower()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock keeps every request and finds each new one's handler by scanning them all:
        # quadratic, and seconds per request after some 10^5 (benchmarks/scale). Nothing
        # here reads that log (``received`` is ours), so only recent requests are kept.
        if len(self._requests) > REQUEST_LOG:
            del self._requests[: -REQUEST_LOG // 2]
        if raw_request.query.get("watch", "").lower() in ("true", "1"):
            rel_url = raw_request.rel_url.update_query(watch="true")
            raw_request = raw_request.clone(rel_url=rel_url)
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            if request.action == enums.action.CREATE:
                # Kept exactly as the client sent it, before the server fills anything in.
                self.received.append((request.resource.plural, copy.deepcopy(data)))
            meta = data.setdefault("metadata", {})
            if request.action == enums.action.CREATE:
                meta.setdefault("namespace", request.namespace)
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = (
                    datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
                )
                pending = request.resource.plural in ("pods", "persistentvolumeclaims")
                data.setdefault("status", {"phase": "Pending"} if pending else {})
            if request.action in (enums.action.CREATE, enums.action.UPDATE):
                async with self._lock:
                    meta["resourceVersion"] = self._next_rv()
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        rv = self._rv  # events after this are replayed by a watch from this version
        result = await super()._serve_list(request)
        assert isinstance(result, dict)
        result["metadata"] = {"resourceVersion": str(rv)}
        return result

    def _matches(self, request: rendering.Request, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return (request.namespace is None or meta.get("namespace") == request.namespace) and (
            request.name is None or meta.get("name") == request.name
        )

    async def _watch_events(self, request: rendering.Request) -> AsyncIterator[Any]:
        assert request.resource is not None
        kind = {"pods": "pod", "persistentvolumeclaims": "persistentvolumeclaim"}.get(
            str(request.resource.plural), str(request.resource.plural)
        )
        bus = self._buses[request.resource]
        marker = await bus.mark()  # subscribe before the snapshot: no gap
        try:
            since = request.params.get("resourceVersion") or ""
            async with self._lock:
                seen = self._rv
                if since.isdigit() and int(since) > 0:
                    replay = [
                        e
                        for rv, res, e in self.history
                        if rv > int(since) and res == kind and self._matches(request, e["object"])
                    ]
                else:
                    replay = [
                        {"type": "ADDED", "object": obj.raw}
                        for (resource, _, _), obj in self.objects.items()
                        if resource == request.resource
                        and not obj.deleted
                        and self._matches(request, dict(obj.raw))
                    ]
            for event in replay:
                yield event
            async for event in bus.stream(since=marker):
                obj = event.get("object") or {}
                rv = int((obj.get("metadata") or {}).get("resourceVersion") or 0)
                if rv > seen and self._matches(request, obj):
                    yield event
        finally:
            await bus.unmark(marker)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        # Send the headers at once, as the API server does, even if nothing happens.
        yield b""
        stream = self._watch_events(request)
        timeout = float(request.params.get("timeoutSeconds") or 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else float("inf")
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(
                        anext(stream), None if remaining == float("inf") else remaining
                    )
                except (TimeoutError, StopAsyncIteration):
                    return
                yield item
        finally:
            await stream.aclose()

    # -- helpers for assertions --------------------------------------------------------

    def created(self, plural: str) -> list[dict[str, Any]]:
        """Bodies of every CREATE request for ``plural``, exactly as they reached the API."""
        return [body for kind, body in self.received if kind == plural]

    def live(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None if it does not exist (or was deleted)."""
        for (resource, ns, obj_name), obj in self.objects.items():
            if resource.plural == plural and ns == namespace and obj_name == name:
                return None if obj.deleted else dict(obj.raw)
        return None


def running_status(pod: dict[str, Any], pod_ip: str = "10.42.0.7") -> dict[str, Any]:
    """What a kubelet reports for a pod whose containers all started and are ready."""
    spec = pod.get("spec") or {}
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()

    def cs(c: dict[str, Any], terminated: bool) -> dict[str, Any]:
        state = (
            {"terminated": {"exitCode": 0, "reason": "Completed"}}
            if terminated
            else {"running": {"startedAt": now}}
        )
        return {
            "name": c["name"],
            "image": c["image"],
            "imageID": f"docker.io/{c['image']}@sha256:{'0' * 64}",
            "ready": not terminated,
            "restartCount": 0,
            "started": not terminated,
            "state": state,
        }

    return {
        "phase": "Running",
        "podIP": pod_ip,
        "hostIP": "192.168.1.10",
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "True"}],
        "initContainerStatuses": [cs(c, True) for c in spec.get("initContainers") or []],
        "containerStatuses": [cs(c, False) for c in spec.get("containers") or []],
    }


def waiting_status(
    pod: dict[str, Any], container: str, reason: str, message: str
) -> dict[str, Any]:
    """A Pending pod whose ``container`` waits with ``reason`` (e.g. ImagePullBackOff)."""
    spec = pod.get("spec") or {}
    statuses: dict[str, list[dict[str, Any]]] = {
        "initContainerStatuses": [],
        "containerStatuses": [],
    }
    for key, field in (
        ("initContainerStatuses", "initContainers"),
        ("containerStatuses", "containers"),
    ):
        for c in spec.get(field) or []:
            state: dict[str, Any] = (
                {"waiting": {"reason": reason, "message": message}}
                if c["name"] == container
                else {"waiting": {"reason": "PodInitializing"}}
            )
            statuses[key].append(
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": state,
                }
            )
    return {"phase": "Pending", **statuses}


class Kubelet:
    """Plays the node: reports pod status through the API, as a kubelet does."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kubelet:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        assert self._session is not None
        url = f"{self.api_url}/api/v1/namespaces/{namespace}/pods/{name}"
        async with self._session.get(url) as resp:
            if resp.status == 404:
                return None
            resp.raise_for_status()
            pod: dict[str, Any] = await resp.json()
            return pod

    async def wait_for_pod(self, namespace: str, name: str, within: float = 60) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            pod = await self.get_pod(namespace, name)
            if pod is not None:
                return pod
            await asyncio.sleep(0.02)
        raise TimeoutError(f"pod {namespace}/{name} was never created")

    async def set_status(
        self, namespace: str, name: str, status: dict[str, Any], missing_ok: bool = False
    ) -> None:
        assert self._session is not None
        url = f"{self.api_url}/api/v1/namespaces/{namespace}/pods/{name}/status"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self._session.patch(url, json={"status": status}, headers=headers) as resp:
            if resp.status == 404 and missing_ok:
                return  # deleted meanwhile: a kubelet just forgets the pod
            resp.raise_for_status()

    async def run(self, namespace: str, name: str, pod_ip: str = "10.42.0.7") -> dict[str, Any]:
        """Wait for the pod to be created, then report it Running and ready."""
        pod = await self.wait_for_pod(namespace, name)
        await self.set_status(namespace, name, running_status(pod, pod_ip))
        return pod

    async def serve(self, namespace: str, pod_ip: str = "127.0.0.1") -> None:
        """Report every pod that appears in ``namespace`` Running, until cancelled."""
        assert self._session is not None
        url = f"{self.api_url}/api/v1/namespaces/{namespace}/pods"
        pending: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=None)
        async with self._session.get(url, params={"watch": "true"}, timeout=timeout) as resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                pod = event.get("object") or {}
                if (
                    event.get("type") != "ADDED"
                    or (pod.get("status") or {}).get("phase") != "Pending"
                ):
                    continue
                name = pod["metadata"]["name"]
                task = asyncio.ensure_future(
                    self.set_status(namespace, name, running_status(pod, pod_ip), missing_ok=True)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
