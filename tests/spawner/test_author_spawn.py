"""Author sessions on Kubernetes (docs/authoring.md): an instructor's server on a draft.

``user_options = {"draft": id}`` is for instructors only, on a draft the course service lists
as theirs; the pod runs the author image, gets one writable emptyDir for its drafts (every
other sandbox invariant kept), ``CLAUDEHUB_DRAFT_ID``/``_DIR`` and no course, and a token
whose ``knd`` claim meters it apart from learning.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from tornado import web

from claudehub.contract.tokens import verify_token
from tests.spawner.conftest import SECRET, Cluster
from tests.spawner.pss import restricted_violations
from tests.spawner.test_kube_spawn import MakeSpawner, env_of, start_and_run, validate_everywhere

AUTHOR_IMAGE = "registry.local/claudehub/sandbox-author:1.2.3"
DRAFTS = {"ines": [{"id": "d-attention", "title": "Attention"}]}


def drafts_of(spawner: Any) -> list[dict[str, Any]]:
    return DRAFTS.get(spawner.user.name, [])


def instructor(spawner: Any, *classes: str) -> Any:
    spawner.user.roles = [SimpleNamespace(name=f"claudehub-instructor-{c}") for c in classes]
    spawner.user.roles.append(SimpleNamespace(name="user"))
    return spawner


@pytest.mark.asyncio
async def test_an_instructors_draft_gets_the_author_pod(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = instructor(
        make_spawner("ines", author_image=AUTHOR_IMAGE, draft_choices=drafts_of), "physics"
    )
    assert spawner.instructed_classes() == ["physics"]
    await spawner.apply_sandbox_options({"draft": "d-attention"})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    validate_everywhere(pod)
    assert restricted_violations(pod) == []
    spec = pod["spec"]
    assert "initContainers" not in spec  # no course to fetch: the server fills the draft
    (main,) = spec["containers"]
    assert main["image"] == AUTHOR_IMAGE
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    drafts = [v for v in spec["volumes"] if v["name"] == "claudehub-draft"]
    assert drafts == [{"name": "claudehub-draft", "emptyDir": {"sizeLimit": "256Mi"}}]
    writable = sorted(m["mountPath"] for m in main["volumeMounts"] if not m.get("readOnly"))
    assert writable == ["/home/claude", "/home/claude/drafts", "/tmp"]
    env = env_of(main)
    assert env["CLAUDEHUB_DRAFT_ID"] == "d-attention"
    assert env["CLAUDEHUB_DRAFT_DIR"] == "/home/claude/drafts/d-attention"
    assert "CLAUDEHUB_COURSE_ID" not in env and "CLAUDEHUB_COURSE_DIR" not in env
    claims = verify_token(SECRET, env["ANTHROPIC_API_KEY"])
    assert (claims.user, claims.kind) == ("ines", "author")


@pytest.mark.asyncio
async def test_a_learners_start_after_a_draft_is_a_learners_pod_again(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = instructor(
        make_spawner("ines", author_image=AUTHOR_IMAGE, draft_choices=drafts_of), "physics"
    )
    await spawner.apply_sandbox_options({"draft": "d-attention"})
    await spawner.apply_sandbox_options({"course": "git-basics"})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    (main,) = pod["spec"]["containers"]
    assert main["image"] != AUTHOR_IMAGE
    assert "claudehub-draft" not in {v["name"] for v in pod["spec"]["volumes"]}
    env = env_of(main)
    assert "CLAUDEHUB_DRAFT_ID" not in env and env["CLAUDEHUB_COURSE_ID"] == "git-basics"
    assert verify_token(SECRET, env["ANTHROPIC_API_KEY"]).kind is None


@pytest.mark.asyncio
async def test_drafts_are_refused_to_learners_others_and_bad_ids(
    make_spawner: MakeSpawner,
) -> None:
    learner = make_spawner("lea", author_image=AUTHOR_IMAGE, draft_choices=drafts_of)
    learner.user.roles = [SimpleNamespace(name="user")]
    with pytest.raises(web.HTTPError) as refused:
        await learner.apply_sandbox_options({"draft": "d-attention"})
    assert refused.value.status_code == 403 and "Only instructors" in str(refused.value)

    other = instructor(
        make_spawner("omar", author_image=AUTHOR_IMAGE, draft_choices=drafts_of), "bio"
    )
    with pytest.raises(web.HTTPError) as refused:
        await other.apply_sandbox_options({"draft": "d-attention"})
    assert refused.value.status_code == 404 and "not one of your drafts" in str(refused.value)

    ines = instructor(
        make_spawner("ines", author_image=AUTHOR_IMAGE, draft_choices=drafts_of), "physics"
    )
    for options, words in [
        ({"draft": "../etc"}, "must be a draft id"),
        ({"draft": "d-attention", "course": "git-basics"}, "not both"),
        ({"draft": "d-attention", "model": "claude-opus-9"}, "not offered"),
    ]:
        with pytest.raises(web.HTTPError, match=words):
            await ines.apply_sandbox_options(options)

    no_image = instructor(make_spawner("ines", draft_choices=drafts_of), "physics")
    with pytest.raises(web.HTTPError, match=r"sandbox\.authorImage"):
        await no_image.apply_sandbox_options({"draft": "d-attention"})
