"""The pre-pull awaiter (claudehub/hub/prepull.py) against the Kubernetes API emulator over
real HTTP: it is done when every scheduled puller pod is updated and ready, and otherwise
names the nodes still pulling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.config import kube_config

from claudehub.hub import prepull
from tests.spawner.emulator import ClusterEmulator

NS = "claudehub"
NAME = "claudehub-prepuller-hook"
LABELS = {"app.kubernetes.io/name": "claudehub", "app.kubernetes.io/component": "prepuller-hook"}
DS_URL = f"/apis/apps/v1/namespaces/{NS}/daemonsets"
PODS_URL = f"/api/v1/namespaces/{NS}/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}


class Api:
    """The emulator's URL, a plain HTTP session to set objects up, and the awaiter's client."""

    def __init__(self, url: str, session: aiohttp.ClientSession, api: client.ApiClient) -> None:
        self.url, self.session, self.api = url, session, api

    async def post(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(self.url + path, json=body) as resp:
            resp.raise_for_status()

    async def patch(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.patch(self.url + path, json=body, headers=MERGE) as resp:
            resp.raise_for_status()

    async def daemonset(self, status: dict[str, Any], generation: int = 1) -> None:
        body = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": NAME, "namespace": NS, "labels": LABELS, "generation": generation},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": {"containers": []}},
            },
            "status": status,
        }
        await self.post(DS_URL, body)

    async def status(self, status: dict[str, Any]) -> None:
        await self.patch(f"{DS_URL}/{NAME}", {"status": status})

    async def pod(self, name: str, node: str | None, ready: bool, labels: dict[str, str]) -> None:
        spec: dict[str, Any] = {"containers": [{"name": "hold", "image": "sandbox"}]}
        if node:
            spec["nodeName"] = node
        condition = {"type": "Ready", "status": "True" if ready else "False"}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": spec,
            "status": {"phase": "Running" if ready else "Pending", "conditions": [condition]},
        }
        await self.post(PODS_URL, body)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources["apps/v1/daemonsets"] = kmock.ResourceInfo(namespaced=True)
        url = str(server.url).rstrip("/")
        configuration = client.Configuration(host=url)
        async with (
            aiohttp.ClientSession() as session,
            client.ApiClient(configuration) as k8s,
        ):
            yield Api(url, session, k8s)


def _counts(desired: int, ready: int, updated: int, observed: int = 1) -> dict[str, Any]:
    return {
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "observedGeneration": observed,
    }


@pytest.mark.asyncio
async def test_done_when_every_scheduled_pod_is_updated_and_ready(api: Api) -> None:
    await api.daemonset(_counts(desired=3, ready=3, updated=3))
    status = await prepull.await_pullers(api.api, NS, NAME, within=5, interval=0.05)
    assert status.done and status.pulling == []


@pytest.mark.asyncio
async def test_a_daemonset_with_no_node_to_run_on_is_done(api: Api) -> None:
    await api.daemonset(_counts(desired=0, ready=0, updated=0))
    assert (await prepull.await_pullers(api.api, NS, NAME, within=5, interval=0.05)).done


@pytest.mark.parametrize(
    "counts",
    [
        _counts(desired=2, ready=1, updated=2),  # one node still pulling
        _counts(desired=2, ready=2, updated=1),  # ready, but one pod is the old image's
        _counts(desired=2, ready=2, updated=2, observed=0),  # status of the previous spec
    ],
)
@pytest.mark.asyncio
async def test_not_done_until_status_says_so(api: Api, counts: dict[str, Any]) -> None:
    await api.daemonset(counts)
    status = await prepull.pull_status(api.api, NS, NAME)
    assert not status.done


@pytest.mark.asyncio
async def test_names_the_nodes_still_pulling_after_the_timeout(api: Api) -> None:
    await api.daemonset(_counts(desired=3, ready=1, updated=3))
    await api.pod("p-a", "node-a", ready=True, labels=LABELS)
    await api.pod("p-b", "node-b", ready=False, labels=LABELS)
    await api.pod("p-c", None, ready=False, labels=LABELS)
    # Another component's pod on a slow node is not the DaemonSet's (the emulator ignores label
    # selectors; a real API server filters it out already).
    await api.pod("other", "node-z", ready=False, labels={"app.kubernetes.io/component": "hub"})
    status = await prepull.await_pullers(api.api, NS, NAME, within=0.3, interval=0.05)
    assert not status.done
    assert status.pulling == ["(pod p-c: no node yet)", "node-b"]
    assert status.describe() == ("1/3 nodes ready; still pulling: (pod p-c: no node yet), node-b")


@pytest.mark.asyncio
async def test_waits_until_the_pullers_become_ready(api: Api) -> None:
    await api.daemonset(_counts(desired=2, ready=0, updated=2))
    waiting = asyncio.create_task(
        prepull.await_pullers(api.api, NS, NAME, within=20, interval=0.05)
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await api.status(_counts(desired=2, ready=2, updated=2))
    status = await asyncio.wait_for(waiting, 10)
    assert status.done and (status.desired, status.ready) == (2, 2)


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: emulator, cluster: {{server: "{url}"}}}}]
users: [{{name: test, user: {{token: not-a-real-token}}}}]
contexts: [{{name: emulator, context: {{cluster: emulator, user: test}}}}]
current-context: emulator
"""


@pytest.fixture
def outside_a_pod(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No service account here: the awaiter falls back to a kubeconfig naming the emulator."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(url=api.url))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.asyncio
@pytest.mark.usefixtures("outside_a_pod")
async def test_main_exits_1_with_one_line_naming_the_nodes(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line the hook runs: outside a pod it falls back to the kubeconfig."""
    await api.daemonset(_counts(desired=2, ready=1, updated=2))
    await api.pod("p-a", "node-a", ready=True, labels=LABELS)
    await api.pod("p-b", "node-b", ready=False, labels=LABELS)
    args = prepull.argparse.Namespace(namespace=NS, daemonset=NAME, timeout=0.2)
    assert await prepull._main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (
        f"daemonset {NS}/{NAME} not ready after 0.2s: 1/2 nodes ready; still pulling: node-b\n"
    )
    await api.status(_counts(desired=2, ready=2, updated=2))
    assert await prepull._main(args) == 0
    assert "every node (2 nodes)" in capsys.readouterr().out


@pytest.mark.asyncio
@pytest.mark.usefixtures("outside_a_pod")
async def test_main_names_a_missing_daemonset_in_one_line(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    args = prepull.argparse.Namespace(namespace=NS, daemonset=NAME, timeout=5)
    assert await prepull._main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"daemonset {NS}/{NAME}: ")
    assert "404" in err


@pytest.mark.asyncio
async def test_main_without_any_api_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    args = prepull.argparse.Namespace(namespace=NS, daemonset=NAME, timeout=5)
    assert await prepull._main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Kubernetes API to ask" in err
