"""The service over HTTP, with its real HubAuth against a stand-in hub API endpoint.

(The real JupyterHub is used in test_hub_auth.py; here the hub's ``/hub/api/user`` is
served by a tiny fake so each test runs in well under a second.)
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from claudehub.contract.course_client import ProgressAPIError, fetch_course_bundle, resume_hint
from claudehub.progress import handlers
from tests.helpers import PATIENCE

from .conftest import FakeHubAPI, ServiceFactory
from .coursekit import catalogue_modules, write_catalogue_course

CATALOGUE_COURSE = "papers--bitcoin--core"
SECRETS = [
    "A ledger is a record of transactions.",
    "Hashes are one-way functions.",
    "The nonce makes the hash meet the target.",
    "nonce",
    "correctAnswer",
    '"answer"',
    '"explanation"',
]


def _no_secret_keys(data: Any) -> None:
    if isinstance(data, dict):
        for key in ("answer", "correctAnswer", "explanation", "answers"):
            assert key not in data, f"{key} leaked"
        for value in data.values():
            _no_secret_keys(value)
    elif isinstance(data, list):
        for value in data:
            _no_secret_keys(value)


@pytest.fixture
def users(fake_hub_api: FakeHubAPI) -> FakeHubAPI:
    fake_hub_api.add_user("tok-alice", "alice")
    fake_hub_api.add_user("tok-bob", "bob")
    fake_hub_api.add_user("tok-admin", "root", admin=True)
    fake_hub_api.add_user("tok-noscope", "carol", scopes=[])
    return fake_hub_api


@pytest.mark.asyncio
async def test_courses_and_detail_have_no_answers(start_service: ServiceFactory, users) -> None:
    svc = await start_service()
    alice = svc.client("tok-alice")
    cards = await alice.courses()
    assert [c["id"] for c in cards] == [CATALOGUE_COURSE, "t101"]
    assert cards[0]["title"].startswith("Bitcoin: A Peer-to-Peer")
    assert cards[0]["paper"]["authors"] == ["Satoshi Nakamoto"]
    for course_id in (CATALOGUE_COURSE, "t101"):
        detail = await alice.course(course_id)
        _no_secret_keys(detail)
        text = json.dumps(detail)
        for secret in SECRETS:
            assert secret not in text
    detail = await alice.course(CATALOGUE_COURSE)
    quiz = detail["stages"][0]["quizzes"][0]
    assert quiz["options"] == ["Weather", "Transactions", "Music"]
    assert quiz["judged_by"] == "service"
    assert "<h2>Ledgers</h2>" in detail["stages"][0]["concepts"][0]["content_html"]


@pytest.mark.asyncio
async def test_quiz_wrong_then_right_completes_stage(start_service: ServiceFactory, users) -> None:
    svc = await start_service()
    alice = svc.client("tok-alice")
    wrong = await alice.answer("t101", "q1", "1")
    assert wrong["status"] == "wrong" and "explanation" not in wrong
    assert wrong["progress"]["completed_stages"] == []
    _no_secret_keys(wrong)
    right = await alice.answer("t101", "q1", "Frequent pairs")
    assert right["status"] == "correct" and right["stage_completed"]
    progress = await alice.progress("t101")
    assert progress["completed_stages"] == [1]
    stage1 = progress["stages"][0]
    assert stage1["method"] == "quiz" and stage1["quiz_at"]
    assert stage1["quizzes"]["q1"] == {"passed": True, "attempts": 2}
    assert progress["resume_stage"] == 2
    assert "Resume at stage 2: Attention" in progress["resume_hint"]
    # bob sees nothing of it: progress is per authenticated user
    bob = await svc.client("tok-bob").progress("t101")
    assert bob["user"] == "bob" and bob["completed_stages"] == []


@pytest.mark.asyncio
async def test_catalogue_stages_need_all_quizzes_and_prerequisites(
    start_service: ServiceFactory,
    users,
) -> None:
    svc = await start_service()
    alice = svc.client("tok-alice")
    # "hashing" needs "ledger": locked until ledger's quiz is passed
    with pytest.raises(ProgressAPIError) as err:
        await alice.answer(CATALOGUE_COURSE, "hashing", "2")
    assert err.value.status == 409
    # stage 2 needs stage 1
    with pytest.raises(ProgressAPIError) as err:
        await alice.answer(CATALOGUE_COURSE, "pow", "nonce")
    assert err.value.status == 409
    first = await alice.answer(CATALOGUE_COURSE, "ledger", "2")
    assert first["correct"] and not first["stage_completed"]
    assert first["explanation"] == "A ledger is a record of transactions."
    second = await alice.answer(CATALOGUE_COURSE, "hashing", "No")
    assert second["stage_completed"]
    assert second["progress"]["stages"][1]["unlocked"]
    free = await alice.answer(CATALOGUE_COURSE, "pow", "something else")
    assert free["status"] == "tutor"
    done = await alice.answer(CATALOGUE_COURSE, "pow", " Nonce ")
    assert done["stage_completed"] and done["progress"]["course_complete"]


@pytest.mark.asyncio
async def test_forged_completions_refused(start_service: ServiceFactory, users) -> None:
    svc = await start_service(tutor_completions_count=False)
    alice = svc.client("tok-alice")
    for body in ({"stage": 1, "method": "quiz"}, {"stage": 1, "method": "quiz", "user": "x"}):
        with pytest.raises(ProgressAPIError) as err:
            await alice.request("POST", "courses/t101/completions", body)
        assert err.value.status == 403
    with pytest.raises(ProgressAPIError) as err:
        await alice.request("POST", "courses/t101/quizzes/q1/answer", {"answer": ""})
    assert err.value.status == 400
    with pytest.raises(ProgressAPIError) as err:
        await alice.request("POST", "courses/t101/quizzes/nope/answer", {"answer": "1"})
    assert err.value.status == 404
    # a tutor marker is recorded as such, and with tutor_completions_count=False it
    # does not complete a stage whose quiz the service judges
    await alice.tutor_completion("t101", 1)
    progress = await alice.progress("t101")
    assert progress["stages"][0]["method"] == "tutor"
    assert progress["completed_stages"] == []
    # answering the quiz upgrades it to a quiz completion
    await alice.answer("t101", "q1", "2")
    progress = await alice.progress("t101")
    assert progress["stages"][0]["method"] == "quiz"
    assert progress["stages"][0]["tutor_at"] and progress["stages"][0]["quiz_at"]
    assert progress["completed_stages"] == [1]
    # nothing happened to bob
    assert (await svc.client("tok-bob").progress("t101"))["completed_stages"] == []


@pytest.mark.asyncio
async def test_tutor_markers_count_when_operator_allows(
    start_service: ServiceFactory, users
) -> None:
    svc = await start_service()
    alice = svc.client("tok-alice")
    await alice.tutor_completion("t101", 1)
    await alice.tutor_completion("t101", 1)  # re-rendered marker: no duplicate
    await alice.tutor_completion("t101", None)
    progress = await alice.progress("t101")
    assert progress["completed_stages"] == [1]
    assert progress["stages"][0]["method"] == "tutor"
    assert progress["course_complete"]
    with pytest.raises(ProgressAPIError) as err:
        await alice.tutor_completion("t101", 9)
    assert err.value.status == 404
    completions = (await svc.client("tok-admin").request("GET", "admin/progress"))["completions"]
    assert [(c["user"], c["stage"], c["method"]) for c in completions] == [
        ("alice", 0, "tutor"),
        ("alice", 1, "tutor"),
    ]


@pytest.mark.asyncio
async def test_authentication_and_admin(start_service: ServiceFactory, users) -> None:
    svc = await start_service()
    http = AsyncHTTPClient()
    with pytest.raises(HTTPClientError) as err:
        await http.fetch(svc.url + "api/courses")
    assert err.value.code == 401
    for token in ("not-a-token", "tok-noscope"):
        with pytest.raises(ProgressAPIError) as perr:
            await svc.client(token).courses()
        assert perr.value.status == 403
    health = await http.fetch(svc.url + "api/health")
    assert json.loads(health.body) == {"status": "ok"}
    alice = svc.client("tok-alice")
    await alice.answer("t101", "q1", "2")
    await svc.client("tok-bob").tutor_completion("t101", 1)
    for path in ("admin/progress", "admin/progress.csv", "admin/errors"):
        with pytest.raises(ProgressAPIError) as perr:
            await alice.request("GET", path, raw=True)
        assert perr.value.status == 403
    admin = svc.client("tok-admin")
    rows = (await admin.request("GET", "admin/progress"))["completions"]
    assert {(r["user"], r["stage"], r["method"]) for r in rows} == {
        ("alice", 1, "quiz"),
        ("bob", 1, "tutor"),
    }
    text = (await admin.request("GET", "admin/progress.csv", raw=True)).decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert {(r["user"], r["course_title"], r["stage_title"], r["method"]) for r in table} == {
        ("alice", "Transformers 101", "Tokens", "quiz"),
        ("bob", "Transformers 101", "Tokens", "tutor"),
    }
    # admins read their own progress through the same endpoint: never someone else's
    own = await admin.progress("t101")
    assert own["user"] == "root" and own["completed_stages"] == []


@pytest.mark.asyncio
async def test_course_errors_visible_to_operator(
    start_service: ServiceFactory,
    users,
    tmp_path: Path,
) -> None:
    write_catalogue_course(
        tmp_path / "courses" / "catalogue" / "broken", modules={"modules": catalogue_modules()}
    )
    svc = await start_service()
    errors = (await svc.client("tok-admin").request("GET", "admin/errors"))["errors"]
    assert {
        "course_id": "papers--broken--core",
        "source": str(tmp_path / "courses" / "catalogue"),
        "file": "knowledge/courses.json",
        "reason": "must be a JSON array of modules, got dict",
    } in errors
    # the good courses are unaffected
    assert len(await svc.client("tok-alice").courses()) == 2


@pytest.mark.asyncio
async def test_bundle_has_no_answers_and_a_progress_snapshot(
    start_service: ServiceFactory,
    users,
    tmp_path: Path,
) -> None:
    svc = await start_service()
    t101 = tmp_path / "courses" / "t101"
    (t101 / ".claude").mkdir()
    (t101 / ".claude" / "settings.json").write_text('{"hooks": {}}')
    (t101 / ".claude" / "commands").mkdir()
    (t101 / ".claude" / "commands" / "explain.md").write_text("Explain the stage.")
    (t101 / ".mcp.json").write_text('{"mcpServers": {}}')
    (t101 / "escape").symlink_to("/etc/passwd")
    alice = svc.client("tok-alice")
    await alice.answer(CATALOGUE_COURSE, "ledger", "2")
    await alice.answer(CATALOGUE_COURSE, "hashing", "2")
    for course_id in (CATALOGUE_COURSE, "t101"):
        data = await alice.bundle(course_id)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            contents = {
                m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }
        assert "CLAUDE.md" in names
        assert ".learner/progress.json" in names
        for name, text in contents.items():
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} in {name}"
    dest = tmp_path / "sandbox" / "course"
    await fetch_course_bundle(svc.url, "tok-alice", CATALOGUE_COURSE, dest)
    snapshot = json.loads((dest / ".learner" / "progress.json").read_text())
    assert snapshot["user"] == "alice"
    assert snapshot["completed_concepts"] == ["ledger", "hashing"]
    assert snapshot["current_concept"] == "pow"
    modules = json.loads((dest / "knowledge" / "courses.json").read_text())
    assert modules[0]["lessons"][0]["exercise"].startswith("What does a ledger record?")
    assert not os.access(dest / "CLAUDE.md", os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE((dest / "CLAUDE.md").stat().st_mode) == 0o444
    assert stat.S_IMODE((dest / "knowledge").stat().st_mode) == 0o555
    # t101: the CLAUDE.md stages block is still there, minus the answers
    t101 = await fetch_course_bundle(svc.url, "tok-alice", "t101", tmp_path / "t101")
    names = sorted(p.relative_to(t101).as_posix() for p in t101.rglob("*"))
    assert names == [
        ".claude",
        ".claude/commands",
        ".claude/commands/explain.md",
        ".learner",
        ".learner/RESUME.md",
        ".learner/progress.json",
        "CLAUDE.md",
    ]
    text = (t101 / "CLAUDE.md").read_text()
    assert '"options"' in text and "correctAnswer" not in text
    hint = await resume_hint(svc.url, "tok-alice", CATALOGUE_COURSE)
    assert "Resume at stage 2: Consensus" in hint and "Next concept: Proof of work" in hint


@pytest.mark.asyncio
async def test_progress_survives_restart(start_service: ServiceFactory, users) -> None:
    svc = await start_service()
    await svc.client("tok-alice").answer("t101", "q1", "2")
    await svc.app.stop_async()
    svc2 = await start_service()
    progress = await svc2.client("tok-alice").progress("t101")
    assert progress["completed_stages"] == [1]
    assert progress["stages"][0]["method"] == "quiz"


@pytest.mark.asyncio
async def test_long_poll_returns_on_change(
    start_service: ServiceFactory, users, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the poll may wait far longer than this test waits for its answer: an answer within
    # PATIENCE is the change's doing, not the poll's timeout, however slow the machine
    monkeypatch.setattr(handlers, "MAX_WAIT", 10 * PATIENCE)
    svc = await start_service()
    alice = svc.client("tok-alice")
    first = await alice.progress("t101")
    waiter = asyncio.create_task(alice.progress("t101", wait=10 * PATIENCE, since=first["version"]))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await alice.answer("t101", "q1", "2")
    changed = await asyncio.wait_for(waiter, PATIENCE)
    assert changed["completed_stages"] == [1]


@pytest.mark.asyncio
async def test_many_clients_at_once(start_service: ServiceFactory, users: FakeHubAPI) -> None:
    """30 learners answer, re-answer and get tutor markers concurrently over HTTP."""
    svc = await start_service()
    names = [f"learner{i}" for i in range(30)]
    for name in names:
        users.add_user(f"tok-{name}", name)

    async def learner(name: str) -> None:
        client = svc.client(f"tok-{name}")
        await asyncio.gather(
            client.answer("t101", "q1", "1"),
            client.answer("t101", "q1", "2"),
            client.answer("t101", "q1", "Frequent pairs"),
            client.tutor_completion("t101", 3),
            client.tutor_completion("t101", 3),
        )

    await asyncio.gather(*(learner(n) for n in names))
    rows = (await svc.client("tok-admin").request("GET", "admin/progress"))["completions"]
    assert sorted((r["user"], r["stage"], r["method"]) for r in rows) == sorted(
        [(n, 1, "quiz") for n in names] + [(n, 3, "tutor") for n in names]
    )
    for name in names[:3]:
        progress = await svc.client(f"tok-{name}").progress("t101")
        assert progress["stages"][0]["quizzes"]["q1"] == {"passed": True, "attempts": 3}


@pytest.mark.asyncio
async def test_admin_reload_picks_up_course_changes(
    start_service: ServiceFactory, users: FakeHubAPI, tmp_path: Path
) -> None:
    svc = await start_service()
    claude_md = tmp_path / "courses" / "t101" / "CLAUDE.md"
    claude_md.write_text(claude_md.read_text().replace('"title": "Tokens"', '"title": "Tokens!"'))
    with pytest.raises(ProgressAPIError) as err:
        await svc.client("tok-alice").request("POST", "admin/reload")
    assert err.value.status == 403
    result = await svc.client("tok-admin").request("POST", "admin/reload")
    assert result["courses"] == 2
    detail = await svc.client("tok-alice").course("t101")
    assert detail["stages"][0]["title"] == "Tokens!"
