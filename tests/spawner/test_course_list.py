"""A learner's start asks the real course service for the course list once: the picker
form's check and the options' check share it (and a start refused with HTTP 429 and retried
reuses it), so a class starting at once does not send each learner's list through the hub
two or three times (benchmarks/scale: those round trips timed out under 1,000 learners)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from claudehub.spawner.picker import check_course_choice
from tests.progress.conftest import FakeHubAPI, ServiceFactory, fake_hub_api, start_service  # noqa: F401  (fixtures)
from tests.spawner.conftest import Cluster, spawner_config


class AccessLog(logging.Handler):
    """The course service's access log lines (``200 GET /services/progress/api/courses``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def course_lists(self) -> int:
        return sum(1 for line in self.lines if " GET /services/progress/api/courses " in line)


@pytest.mark.asyncio
async def test_one_start_reads_the_course_list_once(
    cluster: Cluster,
    start_service: ServiceFactory,  # noqa: F811
    fake_hub_api: FakeHubAPI,  # noqa: F811
    make_spawner: Any,
) -> None:
    service = await start_service()
    log = AccessLog()
    service.app.log.addHandler(log)
    service.app.log.setLevel(logging.INFO)
    config = spawner_config(cluster, progress_url=service.url)
    del config.ClaudeSpawner["course_choices"]  # the real list, from the service
    for name in ("alice", "bob"):
        fake_hub_api.add_user(f"user-token-{name}", name)
    alice = make_spawner("alice", config=config)
    bob = make_spawner("bob", config=config)

    # the picker form's check, then the options' check, as JupyterHub runs them
    await check_course_choice(alice, {"course": "t101"})
    await alice.apply_sandbox_options({"course": "t101"})
    assert alice.course_id == "t101"
    # a start refused with 429 is posted again: the same list still serves its checks
    await check_course_choice(alice, {"course": "t101"})
    assert log.course_lists() == 1, log.lines

    # each learner's list is their own (the service may show them other courses)
    await check_course_choice(bob, {"course": "t101"})
    assert log.course_lists() == 2, log.lines
    assert fake_hub_api.checks == ["user-token-alice", "user-token-bob"]
