"""The spawn form's HTML (templates/options_form.html and kube_options_form.html).

JupyterHub wraps the form in ``form#spawn_form`` with its own submit button; the browser
tests pick ``select[name=course]`` / ``#claudehub-course``, so the ids and names are fixed.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from claudehub.spawner.common import render_options_form
from claudehub.spawner.kube import ClaudeSpawner


class FormSpawner:
    """Just what the form functions read from a spawner."""

    def __init__(
        self,
        courses: list[dict[str, Any]],
        models: list[str],
        profiles: list[dict[str, Any]] | None = None,
    ) -> None:
        self.allowed_models = models
        self._courses = courses
        self._profile_list = profiles or []

    async def list_course_choices(self) -> list[dict[str, Any]]:
        return self._courses

    def _profiles(self) -> list[dict[str, Any]]:
        return self._profile_list


async def sandbox_form(spawner: FormSpawner) -> str:
    return await render_options_form(cast(Any, spawner))


def kube_form() -> Any:
    handler = ClaudeSpawner.__dict__["_default_options_form"]
    return handler.func(None)


@pytest.mark.asyncio
async def test_the_form_markup_the_hub_and_the_browser_tests_rely_on() -> None:
    form = await sandbox_form(
        FormSpawner([{"id": "git", "title": "Git"}, {"id": "py"}], ["m1", "m2"])
    )
    assert form == (
        '<div class="form-group"><label for="claudehub-course">Course</label>'
        '<select class="form-control" id="claudehub-course" name="course">'
        '<option value="git">Git</option>\n<option value="py">py</option></select></div>\n'
        '<div class="form-group"><label for="claudehub-model">Model</label>'
        '<select class="form-control" id="claudehub-model" name="model">'
        '<option value="m1">m1</option>\n<option value="m2">m2</option></select></div>'
    )
    one_model = await sandbox_form(FormSpawner([{"id": "git"}], ["m1"]))
    assert 'name="course"' in one_model and 'name="model"' not in one_model
    assert await sandbox_form(FormSpawner([], ["m1"])) == ""


@pytest.mark.asyncio
async def test_every_value_on_the_form_is_escaped() -> None:
    spawner = FormSpawner(
        [{"id": 'x"><script>', "title": "<script>alert(1)</script>"}],
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
        assert "<script>" not in form and "<m>" not in form
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
    spawner = FormSpawner([{"id": "git"}], [], [{"slug": "default"}])
    assert await kube_form()(spawner) == await sandbox_form(spawner)
