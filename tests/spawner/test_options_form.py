"""The spawn form's HTML: the course picker (templates/options_form.html) and its checks.

JupyterHub wraps the form in ``form#spawn_form`` with a submit button. Each course is a
radio input named ``course`` with a label (keyboard and screen readers); the model and the
machine stay ``select[name=model]`` / ``select[name=profile]``, so the form's fields, and
the API that posts them, are what they were.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from tornado import web

from claudehub.spawner.common import SandboxSpawnerMixin, render_options_form
from claudehub.spawner.kube import ClaudeSpawner
from claudehub.spawner.picker import ChoiceError, home_summary

KOREAN = {
    "id": "papers--attention--ko",
    "title": "어텐션이 전부다",
    "description": "트랜스포머를 한 단계씩 읽습니다.",
    "language": "ko",
    "stage_count": 5,
    "thumbnail_url": "/services/progress/api/courses/papers--attention--ko/thumbnail",
    "paper": {
        "authors": ["Ashish Vaswani", "Noam Shazeer", "Niki Parmar", "Jakob Uszkoreit"],
        "organization": "Google Brain",
    },
}
ENGLISH = {
    "id": "bitcoin",
    "title": "Bitcoin, block by block",
    "description": "A peer-to-peer electronic cash system.",
    "language": "en",
    "stage_count": 3,
    "thumbnail_url": "https://tracker.example/pixel.png",
    "paper": {"authors": ["Satoshi Nakamoto"], "organization": "Common Computer"},
}
PLAIN = {"id": "py"}


class FormSpawner:
    """Just what the form functions read from a spawner."""

    def __init__(
        self,
        courses: list[dict[str, Any]],
        models: list[str],
        profiles: list[dict[str, Any]] | None = None,
        progress: dict[str, dict[str, Any]] | None = None,
        user_options: dict[str, Any] | None = None,
    ) -> None:
        self.allowed_models = models
        self._courses = courses
        self._profile_list = profiles or []
        self._progress = progress or {}
        self.user_options = user_options or {}
        self.active = False
        self.form_option_names = ("course", "model")

    async def list_course_choices(self) -> list[dict[str, Any]]:
        return self._courses

    async def learner_progress(self) -> dict[str, dict[str, Any]]:
        return self._progress

    def _profiles(self) -> list[dict[str, Any]]:
        return self._profile_list

    async def apply_sandbox_options(self, options: dict[str, Any]) -> None:
        await SandboxSpawnerMixin.apply_sandbox_options(cast(Any, self), options)


async def sandbox_form(spawner: FormSpawner) -> str:
    return await render_options_form(cast(Any, spawner))


def kube_form() -> Any:
    handler = ClaudeSpawner.__dict__["_default_options_form"]
    return handler.func(None)


def from_form(spawner: FormSpawner) -> Any:
    handler = SandboxSpawnerMixin.__dict__["_default_options_from_form"]
    return handler.func(spawner)


def card(form: str, course_id: str) -> str:
    """The markup of one course's card."""
    match = re.search(
        rf'<li class="ch-card[^"]*"[^>]*>\s*<input type="radio" name="course" id="[^"]+" '
        rf'value="{re.escape(course_id)}".*?</li>',
        form,
        re.S,
    )
    assert match, f"no card for {course_id} in the form"
    return match.group(0)


@pytest.mark.asyncio
async def test_each_course_is_a_labelled_radio_card_with_what_a_learner_needs() -> None:
    progress = {
        KOREAN["id"]: {
            "course_id": KOREAN["id"],
            "completed_stages": [1, 2],
            "resume_stage": 3,
            "course_complete": False,
        },
        "bitcoin": {"course_id": "bitcoin", "completed_stages": [1, 2, 3], "course_complete": True},
    }
    spawner = FormSpawner([KOREAN, ENGLISH, PLAIN], ["m1", "m2"], progress=progress)
    form = await sandbox_form(spawner)

    ko = card(form, KOREAN["id"])
    assert '<span class="ch-title" lang="ko">어텐션이 전부다</span>' in ko
    assert '<span class="ch-desc" lang="ko">트랜스포머를 한 단계씩 읽습니다.</span>' in ko
    assert "Ashish Vaswani, Noam Shazeer, Niki Parmar et al. · Google Brain" in ko
    assert '<span class="ch-lang">한국어</span>' in ko and "5 stages" in ko
    assert '<span class="ch-state">stage 3 of 5</span>' in ko
    assert 'src="/services/progress/api/courses/papers--attention--ko/thumbnail"' in ko
    # the radio and its label belong together: a click or a screen reader names the card
    radio_id = re.search(r'id="(claudehub-course-\d+)"', ko)
    assert radio_id and f'<label for="{radio_id.group(1)}">' in ko

    en = card(form, "bitcoin")
    assert '<span class="ch-state">completed</span>' in en and "3 stages" in en
    # a thumbnail on another host is never loaded by a learner's browser
    assert "tracker.example" not in form
    assert '<span class="ch-thumb ch-nothumb" aria-hidden="true">B</span>' in en

    plain = card(form, "py")
    assert '<span class="ch-title">py</span>' in plain
    assert '<span class="ch-state">not started</span>' in plain

    # the language filter lists each language once, by its own name
    assert '<option value="en">English</option>' in form
    assert '<option value="ko">한국어</option>' in form
    # search and filter are not posted (no name) and wait for the script to show them
    assert '<div class="ch-tools" id="claudehub-tools" hidden>' in form
    assert 'id="claudehub-search"' in form and 'name="search"' not in form
    assert '<select class="form-control" id="claudehub-model" name="model">' in form


@pytest.mark.asyncio
async def test_the_last_course_is_preselected_and_nothing_else() -> None:
    spawner = FormSpawner([KOREAN, ENGLISH], [], user_options={"course": "bitcoin"})
    form = await sandbox_form(spawner)
    assert " checked" in card(form, "bitcoin") and " checked" not in card(form, KOREAN["id"])
    gone = FormSpawner([KOREAN], [], user_options={"course": "bitcoin"})
    assert " checked" not in await sandbox_form(gone)


@pytest.mark.asyncio
async def test_nothing_to_choose_is_no_form() -> None:
    one_model = await sandbox_form(FormSpawner([PLAIN], ["m1"]))
    assert 'name="course"' in one_model and 'name="model"' not in one_model
    assert await sandbox_form(FormSpawner([], ["m1"])) == ""
    models_only = await sandbox_form(FormSpawner([], ["m1", "m2"]))
    assert 'name="model"' in models_only and "claudehub-picker" not in models_only


@pytest.mark.asyncio
async def test_every_value_on_the_form_is_escaped() -> None:
    spawner = FormSpawner(
        [
            {
                "id": 'x"><script>',
                "title": "<script>alert(1)</script>",
                "description": "<img src=x onerror=alert(1)>",
                "language": '"><b>',
                "paper": {"authors": ["<i>a</i>"], "organization": "<u>o</u>"},
            }
        ],
        ["<m>", "m2"],
        [
            {"slug": "default", "display_name": "<script>std</script>", "default": True},
            {"slug": "g'pu"},
        ],
    )
    for form in (
        await sandbox_form(spawner),
        await kube_form()(spawner),
    ):
        assert "<script>alert" not in form and "<m>" not in form and "<img src=x" not in form
        assert "<i>a</i>" not in form and "<u>o</u>" not in form and '"><b>' not in form
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in form
        assert 'value="x&#34;&gt;&lt;script&gt;"' in form
    kube = await kube_form()(spawner)
    # the sandbox fields are escaped once, not twice, inside the Kubernetes form
    assert "&amp;lt;" not in kube and kube.startswith(await sandbox_form(spawner))
    assert '<option value="default" selected>&lt;script&gt;std&lt;/script&gt;</option>' in kube
    assert '<option value="g&#39;pu">g&#39;pu</option>' in kube
    assert 'id="claudehub-profile" name="profile"' in kube


@pytest.mark.asyncio
async def test_one_profile_is_no_choice() -> None:
    spawner = FormSpawner([PLAIN], [], [{"slug": "default"}])
    assert await kube_form()(spawner) == await sandbox_form(spawner)


@pytest.mark.asyncio
async def test_the_form_is_checked_on_the_server_in_plain_words() -> None:
    spawner = FormSpawner([KOREAN, ENGLISH], ["m1", "m2"])
    check = from_form(spawner)
    assert await check({"course": ["bitcoin"], "model": ["m2"], "search": ["x"]}) == {
        "course": "bitcoin",
        "model": "m2",
    }
    refusals = [
        (
            {"course": ["papers--forged--9"]},
            "The course “papers--forged--9” is not offered here. Choose one of the courses below.",
        ),
        ({}, "Choose a course first: pick one of the cards below, then start."),
        (
            {"course": ["bitcoin"], "model": ["claude-evil"]},
            "Model 'claude-evil' is not offered here; choose one of: m1, m2",
        ),
    ]
    for formdata, sentence in refusals:
        with pytest.raises(ChoiceError) as err:
            await check(formdata)
        assert isinstance(err.value, web.HTTPError) and err.value.status_code == 400
        # JupyterHub shows jupyterhub_message on the spawn page, instead of str(error)
        assert err.value.jupyterhub_message == sentence


@pytest.mark.asyncio
async def test_the_home_page_knows_the_last_course_and_its_stage() -> None:
    progress = {KOREAN["id"]: {"completed_stages": [1], "resume_stage": 2}}
    spawner = FormSpawner(
        [KOREAN, ENGLISH],
        [],
        progress=progress,
        user_options={"course": KOREAN["id"], "model": "m1"},
    )
    summary = await home_summary(spawner)
    assert summary is not None
    assert summary["title"] == "어텐션이 전부다" and summary["language"] == "ko"
    assert summary["state"]["text"] == "stage 2 of 5" and summary["state"]["stage"] == 2
    assert summary["options"] == {"course": KOREAN["id"], "model": "m1"}
    assert await home_summary(FormSpawner([KOREAN], [])) is None, "no course yet"
    retired = FormSpawner([ENGLISH], [], user_options={"course": KOREAN["id"]})
    assert await home_summary(retired) is None, "a course that left the catalogue"


@pytest.mark.asyncio
async def test_a_long_description_is_shortened_on_its_card() -> None:
    abstract = "Attention " + "is all you need, " * 60
    form = await sandbox_form(FormSpawner([{"id": "long", "description": abstract}], []))
    shown = re.search(r'<span class="ch-desc">([^<]*)</span>', form)
    assert shown and shown.group(1).endswith("…") and len(shown.group(1)) <= 241
    assert shown.group(1).startswith("Attention is all you need")


class DownSpawner(FormSpawner):
    async def list_course_choices(self) -> list[dict[str, Any]]:
        raise ConnectionRefusedError("the course service is not answering")


@pytest.mark.asyncio
async def test_a_course_service_that_does_not_answer_is_said_in_words() -> None:
    with pytest.raises(web.HTTPError) as err:
        await sandbox_form(DownSpawner([], ["m1", "m2"]))
    # not an empty form: JupyterHub would start a session with no course without asking
    assert err.value.status_code == 503
    assert err.value.log_message == (
        "The course list cannot be loaded right now. Please try again in a minute."
    )
