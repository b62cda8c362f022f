"""A Kubernetes API that is slow or stops answering while a sandbox starts (benchmarks/scale:
a hub busy with a class starting at once saw its API requests "time out" after KubeSpawner's
3 s, and learners read "did not start within 300 seconds")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from claudehub.spawner.kube import ClaudeSpawner, SandboxStartError
from tests.helpers import PATIENCE
from tests.spawner.conftest import Cluster, spawner_config
from tests.spawner.emulator import running_status

PODS = "post /api/v1/namespaces/claudehub/pods"


@pytest.mark.asyncio
async def test_an_api_that_stops_answering_is_named(
    cluster: Cluster, make_spawner: Callable[..., ClaudeSpawner]
) -> None:
    never = asyncio.Event()
    cluster.emulator[PODS] << (lambda: never.wait())
    config = spawner_config(
        cluster, k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=300
    )
    spawner = make_spawner("ivan", config=config)
    await spawner.apply_sandbox_options({})
    with pytest.raises(SandboxStartError) as info:
        await asyncio.wait_for(spawner.start(), PATIENCE)
    message = str(info.value)
    assert message.startswith("The cluster did not answer the hub in time"), message
    assert "did not start within" not in message
    never.set()


@pytest.mark.asyncio
async def test_an_api_answering_in_seconds_still_starts_the_sandbox(
    cluster: Cluster, make_spawner: Callable[..., ClaudeSpawner]
) -> None:
    # The pod's creation answered after 5 s (a busy hub's loop, a busy API server).
    cluster.emulator[PODS] << (lambda: asyncio.sleep(5))
    config = spawner_config(cluster)
    del config.ClaudeSpawner["k8s_api_request_timeout"]  # ClaudeSpawner's own defaults
    del config.ClaudeSpawner["k8s_api_request_retry_timeout"]
    spawner = make_spawner("judy", config=config)
    await spawner.apply_sandbox_options({})
    started = asyncio.ensure_future(spawner.start())
    pod = await cluster.kubelet.wait_for_pod(cluster.namespace, spawner.pod_name, within=PATIENCE)
    await cluster.kubelet.set_status(cluster.namespace, spawner.pod_name, running_status(pod))
    url = await asyncio.wait_for(started, PATIENCE)
    assert url
    await spawner.stop(now=True)
