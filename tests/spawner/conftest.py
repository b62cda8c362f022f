"""Fixtures for ClaudeSpawner tests: a Kubernetes API emulator over real HTTP, a kubelet."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kmock
import kubespawner.clients
import pytest
import pytest_asyncio
from jupyterhub.objects import Hub
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets.config import Config

from claudehub.spawner.kube import ClaudeSpawner
from tests.spawner.emulator import ClusterEmulator, Kubelet

NAMESPACE = "claudehub"
SECRET = b"test-secret-0123456789abcdef0123"
COURSES = [
    {"id": "git-basics", "title": "Git basics"},
    {"id": "python-101", "title": "Python 101"},
]
MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5"]

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: emulator, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: test, user: {token: not-a-real-token}}]
contexts: [{name: emulator, context: {cluster: emulator, user: test}}]
current-context: emulator
"""


def reset_kubespawner() -> None:
    """KubeSpawner keeps clients, reflectors and the loaded config in globals."""
    kubespawner.clients._client_cache.clear()
    KubeSpawner.reflectors.clear()
    kubespawner.clients.load_config.cache_clear()


@dataclass
class Cluster:
    emulator: ClusterEmulator
    url: str
    kubelet: Kubelet
    namespace: str = NAMESPACE


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    # kubernetes_asyncio read $KUBECONFIG when it was imported; point its default at ours.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


@pytest_asyncio.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[Cluster]:
    reset_kubespawner()
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        async with Kubelet(url) as kubelet:
            try:
                yield Cluster(emulator=emulator, url=url, kubelet=kubelet)
            finally:
                await KubeSpawner._stop_all_reflectors()
    reset_kubespawner()


_ids = itertools.count(1)


def spawner_config(cluster: Cluster, **overrides: Any) -> Config:
    c = Config()
    s = c.ClaudeSpawner
    s.k8s_api_host = cluster.url
    s.namespace = cluster.namespace
    s.image = "registry.local/claudehub/sandbox:1.2.3"
    s.token_secret = SECRET.decode()
    s.keyproxy_url = "http://claudehub-keyproxy.claudehub.svc:8000"
    s.progress_url = "http://claudehub-progress.claudehub.svc:8000/services/progress/"
    s.allowed_models = MODELS
    s.course_choices = lambda spawner: COURSES
    # ceilings for a hang, not speeds: the emulator is local, but the machine is shared
    s.start_timeout = 60
    s.k8s_api_request_timeout = 20
    s.k8s_api_request_retry_timeout = 40
    for key, value in overrides.items():
        setattr(s, key, value)
    return c


@pytest.fixture
def make_spawner(cluster: Cluster) -> Callable[..., ClaudeSpawner]:
    def make(name: str = "alice", config: Config | None = None, **overrides: Any) -> ClaudeSpawner:
        user = SimpleNamespace(
            name=name,
            id=next(_ids),
            url=f"/user/{name}/",
            escaped_name=name,
            # the spawn form reads the learner's progress with a token of theirs; the course
            # service named in progress_url does not exist here, so the cards say "not started"
            new_api_token=lambda **kwargs: f"user-token-{name}",
        )
        hub = Hub(ip="10.43.0.10", port=8081, base_url="/hub/")
        return ClaudeSpawner(
            config=config or spawner_config(cluster, **overrides),
            user=user,
            hub=hub,
            api_token=f"hub-api-token-{name}",
        )

    return make
