"""The fault matrix (issue 26, item 2): each part of a running stack killed for real while a
learner's answer streams, and what the learner notices.

One stack for the module (tests/containers/faults.py: the chart's Deployments as pods, the
key proxy at two replicas on a PostgreSQL container) and one learner in Chromium on the
Claude page. Each test injects one fault (``podman kill``; DNS dropped by nftables in the
sandbox's network namespace), lets the kubelet restart what Kubernetes would, and asserts the
targets: no session killed by a hub or CHP restart (the page reconnects by itself to the same
Claude), no usage lost or undercounted (a request cut by a dying key proxy is charged at its
reservation), no progress lost. A killed sandbox is test_kubernetes_mode.py's last test.
Repeated runs and their medians: benchmarks/faults/run.py; the table: docs/performance.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.containers import faults
from tests.containers.faults import LEARNER, Stack
from tests.containers.test_kubernetes_mode import open_claude
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE, jp_asyncio_loop  # noqa: F401

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with faults.fault_stack(tmp_path_factory.mktemp("faults")) as built:
        yield built


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[Any]:
    """The learner's Claude page, open for the whole module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield open_claude(stack, chromium, LEARNER)
        finally:
            chromium.close()


@pytest.fixture
def learner(page: Any) -> Any:
    """The page, connected and at Claude's prompt, before each fault."""
    page.wait_for_function(
        "() => document.getElementById('status')?.textContent === 'connected'",
        timeout=PATIENCE * 1000,
    )
    return page


def report(outcome: dict[str, Any]) -> None:
    """What the drill measured, in the test's output (the figures come from the benchmark)."""
    print(json.dumps(outcome))


def test_a_hub_killed_mid_answer_kills_no_session(stack: Stack, learner: Any) -> None:
    report(faults.drill_hub(stack, learner, "Hub"))


def test_chp_killed_mid_answer_the_page_reconnects_to_the_same_claude(
    stack: Stack, learner: Any
) -> None:
    report(faults.drill_chp(stack, learner, "Proxy"))
    # and the session goes on
    faults.ask_quickly(stack, learner, "Proxy-after")


def test_hub_and_chp_killed_together_the_page_waits_for_them_without_a_reload(
    stack: Stack, learner: Any
) -> None:
    report(faults.drill_hub_and_chp(stack, learner, "Rollout"))


def test_one_of_two_key_proxies_killed_mid_answer_loses_no_usage(
    stack: Stack, learner: Any
) -> None:
    report(faults.drill_keyproxy(stack, learner, "Replica", both=False))


def test_both_key_proxies_killed_mid_answer_lose_no_usage(stack: Stack, learner: Any) -> None:
    # the charge itself is the test above's; here the reservation is found owed (or charged)
    report(faults.drill_keyproxy(stack, learner, "Both", both=True, charged=False))


def test_postgres_killed_mid_answer_loses_no_usage(stack: Stack, learner: Any) -> None:
    report(faults.drill_postgres(stack, learner, "Database"))


def test_the_course_service_killed_loses_no_progress(stack: Stack, learner: Any) -> None:
    report(faults.drill_progress(stack, learner, "Course"))


def test_dns_lost_mid_answer(stack: Stack, learner: Any) -> None:
    sandbox = stack.cluster.node.by_name(f"claudehub-{LEARNER}")
    assert sandbox is not None
    report(faults.drill_dns(stack, learner, "Names", sandbox))
