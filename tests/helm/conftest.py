"""Fixtures of the chart tests: every realistic value set, rendered once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helm.charts import VALUE_SETS, Rendering, render
from tests.helm.spawned import reset_kubespawner, write_kubeconfig


@pytest.fixture(scope="session")
def renderings() -> dict[str, Rendering]:
    """Each value set of charts.VALUE_SETS, rendered."""
    return {name: render(values, name=name) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def default(renderings: dict[str, Rendering]) -> Rendering:
    """The chart rendered with its default values (plus the required key Secret name)."""
    return renderings["default"]


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A kubeconfig pointing nowhere: KubeSpawner loads one when it is constructed."""
    from kubernetes_asyncio.config import kube_config

    path = write_kubeconfig(tmp_path)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    reset_kubespawner()
    yield path
    reset_kubespawner()
