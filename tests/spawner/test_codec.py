"""The fast model <-> dict conversion gives what kubernetes_asyncio's own would."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client import ApiClient

from claudehub.spawner import codec
from tests.spawner.test_objects import weak_pod


def test_round_trip_matches_kubernetes_asyncio() -> None:
    pod: dict[str, Any] = weak_pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}
    pod["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    pod["spec"]["tolerations"] = [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}
                ]
            }
        }
    }

    async def reference() -> tuple[Any, Any]:
        async with ApiClient() as client:
            model = client._ApiClient__deserialize(pod, "V1Pod")  # type: ignore[attr-defined]
            return model, client.sanitize_for_serialization(model)

    ref_model, ref_dict = asyncio.run(reference())
    model = codec.to_model(pod, "V1Pod")
    assert model == ref_model
    assert codec.to_dict(model) == ref_dict == pod
    # Plain dicts inside models (as KubeSpawner's config puts there) pass through.
    model.spec.volumes = [{"name": "x", "emptyDir": {}}]
    assert codec.to_dict(model)["spec"]["volumes"] == [{"name": "x", "emptyDir": {}}]


def test_primitives_are_coerced_like_kubernetes_asyncio() -> None:
    pod: dict[str, Any] = weak_pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": 2.0, "memory": 1073741824}}

    async def reference() -> Any:
        async with ApiClient() as client:
            model = client._ApiClient__deserialize(pod, "V1Pod")  # type: ignore[attr-defined]
            return client.sanitize_for_serialization(model)

    ours = codec.to_dict(codec.to_model(pod, "V1Pod"))
    assert ours == asyncio.run(reference())
    assert ours["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "2.0",
        "memory": "1073741824",
    }
