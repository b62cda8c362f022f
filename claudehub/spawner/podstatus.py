"""Read a sandbox pod's status the way a user would want it explained (pure functions).

The spawner polls the pod it created; these functions turn the pod's status into a
progress line ("Fetching course…") or, for states a pod does not recover from on its own
(an image that cannot be pulled, a course that cannot be fetched, a crashed server), a
message that says what went wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .objects import FETCH_CONTAINER

#: Waiting reasons that mean the image will not arrive without an operator's help.
IMAGE_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
#: Waiting reasons that mean the container cannot be created as configured.
CONFIG_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})


def _statuses(pod: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get(key) or [])


def _waiting(cs: Mapping[str, Any]) -> Mapping[str, Any]:
    return (cs.get("state") or {}).get("waiting") or {}


def _terminated(cs: Mapping[str, Any]) -> Mapping[str, Any]:
    return (cs.get("state") or {}).get("terminated") or {}


def _detail(state: Mapping[str, Any]) -> str:
    reason = state.get("reason") or ""
    message = state.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def start_failure(pod: Mapping[str, Any] | None, main_container: str = "notebook") -> str | None:
    """Why this pod will not start by itself, or None while it still may."""
    if not pod:
        return None
    status = pod.get("status") or {}
    for cs in _statuses(pod, "initContainerStatuses") + _statuses(pod, "containerStatuses"):
        waiting = _waiting(cs)
        reason = waiting.get("reason")
        if reason in IMAGE_PULL_FAILURES:
            return (
                f"The sandbox image {cs.get('image') or ''!s} could not be pulled "
                f"({_detail(waiting)}). Ask your operator to load the image into the cluster."
            )
        if reason in CONFIG_FAILURES:
            return f"The sandbox could not be created ({_detail(waiting)}). Ask your operator."
    for cs in _statuses(pod, "initContainerStatuses"):
        terminated = _terminated(cs)
        crashing = _waiting(cs).get("reason") == "CrashLoopBackOff"
        if cs.get("name") == FETCH_CONTAINER and (
            crashing or (terminated and terminated.get("exitCode", 0) != 0)
        ):
            why = _detail(terminated) or "it kept failing"
            return f"Fetching the course failed ({why}). Try again, or pick another course."
    for cs in _statuses(pod, "containerStatuses"):
        if cs.get("name") != main_container:
            continue
        terminated = _terminated(cs)
        if terminated:
            return (
                "Claude's server exited while starting "
                f"(exit code {terminated.get('exitCode')}, {_detail(terminated) or 'no reason'})."
            )
        if _waiting(cs).get("reason") == "CrashLoopBackOff":
            return "Claude's server keeps crashing while starting. Ask your operator."
    if status.get("phase") == "Failed":
        why = _detail(status) or "no reason given"
        return f"The sandbox stopped while starting ({why})."
    return None


def progress_message(pod: Mapping[str, Any] | None) -> str:
    """One line a user understands about where this start is."""
    if not pod:
        return "Requesting a sandbox…"
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return "Waiting for room in the cluster…"
    for cs in _statuses(pod, "initContainerStatuses"):
        if cs.get("name") == FETCH_CONTAINER and not _terminated(cs):
            return "Fetching course…"
    if status.get("phase") == "Running":
        return "Starting Claude…"
    for cs in _statuses(pod, "containerStatuses"):
        if _waiting(cs).get("reason") == "ContainerCreating":
            return "Starting Claude…"
    spec = pod.get("spec") or {}
    if any(c.get("name") == FETCH_CONTAINER for c in spec.get("initContainers") or []) and not (
        _statuses(pod, "containerStatuses")
    ):
        return "Fetching course…"
    return "Preparing your sandbox…"
