"""Fixtures of the container tier: the built images, podman objects per test, the sandbox pod.

The tier runs for real or fails saying why: a machine where podman cannot run containers,
or where `make images` has not built the images, gets a failure naming that, never a skip.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.containers.kubelet import PodRunner
from tests.containers.podman import HUB_IMAGE, SANDBOX_IMAGE, Podman, PodmanError, podman
from tests.helm.charts import render
from tests.helm.conftest import kubeconfig  # noqa: F401  (the same kubeconfig pointing nowhere)
from tests.helm.spawned import build_sandbox_pod, hub_config

#: What an operator would set for images built with `make images` (nothing else changed).
VALUES: dict[str, Any] = {
    "keyproxy": {"apiKey": {"existingSecret": "anthropic"}},
    "sandbox": {"image": {"repository": "localhost/claudehub/sandbox", "tag": "dev"}},
    "image": {"repository": "localhost/claudehub/hub", "tag": "dev"},
}
HUB_HOST = "claudehub-hub.claudehub.svc"
COURSES = [{"id": "git-basics", "title": "Git basics"}]


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """The two images `make images` builds, present in podman's store."""
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}")
    except (PodmanError, OSError) as err:
        pytest.fail(f"podman cannot run on this machine: {err}")
    found = {}
    for image in (SANDBOX_IMAGE, HUB_IMAGE):
        try:
            data = json.loads(podman("image", "inspect", image))
        except PodmanError:
            pytest.fail(f"{image} is not in podman's store: run `make images`")
        found[image] = data[0]["Id"]
    return found


@pytest.fixture
def pm(images: dict[str, str]) -> Iterator[Podman]:
    """A fresh set of podman objects, removed by name afterwards."""
    objects = Podman()
    try:
        yield objects
    finally:
        objects.cleanup()


@pytest.fixture
def pod_network(pm: Podman) -> str:
    """The cluster's pod network: internal, no way out.

    Its bridge (and the gateway address host-side fakes listen on) exists only while
    something is attached, so an empty pod holds it up for the test's duration."""
    network = pm.network("pods", internal=True)
    anchor = pm.name("anchor")
    podman("pod", "create", "--name", anchor, "--network", network)
    pm.pods.append(anchor)
    podman("pod", "start", anchor)
    return network


@pytest.fixture
def runner(pm: Podman, pod_network: str) -> PodRunner:
    """The kubelet; the hub's Service name resolves to the network's gateway (a fake hub)."""
    return PodRunner(pm, pod_network, add_hosts=[f"{HUB_HOST}:{pm.gateway(pod_network)}"])


async def spawner_pod(
    tmp_path: Path,
    *,
    values: dict[str, Any] | None = None,
    user_options: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """The pod ClaudeSpawner builds from the chart's rendered hub settings."""
    rendering = render({**VALUES, **(values or {})})
    c, _ = hub_config(rendering, tmp_path)
    c.ClaudeSpawner.course_choices = lambda spawner: COURSES
    for key, value in config.items():
        setattr(c.ClaudeSpawner, key, value)
    # The hub's address as the chart's Service names it (the hub config's hub_connect_url).
    return await build_sandbox_pod(
        c, "alice", user_options=user_options, hub_host=HUB_HOST, apply_options=True
    )


def sandbox_pod(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`spawner_pod` from synchronous tests (the pod runner is synchronous)."""
    return asyncio.run(spawner_pod(tmp_path, **kwargs))
