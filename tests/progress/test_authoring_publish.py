"""Publishing against a real git repository and a real progress database: versions and tags,
the push to a remote, versions rebuilt from the repository, nothing half-published when a
step after the commit fails, and course ids that are not the draft's to take."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from claudehub.progress.authoring.access import Person
from claudehub.progress.authoring.drafts import Draft, DraftStore
from claudehub.progress.authoring.publish import Publisher, PublishError
from claudehub.progress.authoring.repository import CourseRepository
from claudehub.progress.catalogue import Catalogue
from claudehub.progress.parsing import parse_course
from claudehub.progress.store import Publication, Store
from tests.helpers import postgres_server

from .coursekit import PAPER, write_catalogue_course
from .test_authoring_api import write_draft

TINA = Person("tina", frozenset(), frozenset({"alpha"}))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def init_bare(path: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)


@pytest_asyncio.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Publisher, DraftStore, Path]]:
    remote = tmp_path / "remote.git"
    init_bare(remote)
    store = await Store.open(f"sqlite:///{tmp_path / 'progress.sqlite'}")
    repo = CourseRepository(
        tmp_path / "courses.git",
        published_dir=tmp_path / "published",
        remote_url=f"file://{remote}",
    )
    publisher = Publisher(repo, store)
    await publisher.load()
    try:
        yield publisher, DraftStore(tmp_path / "drafts"), remote
    finally:
        await store.close()


async def draft_with_course(drafts: DraftStore, tmp_path: Path, title: str) -> Draft:
    draft = await drafts.create("tina", title, {}, {"paper/paper.md": b"# paper\n"})
    write_draft(draft.files)
    return draft


@pytest.mark.asyncio
async def test_versions_are_commits_and_tags_pushed_and_rebuilt(
    parts: tuple[Publisher, DraftStore, Path], tmp_path: Path
) -> None:
    publisher, drafts, remote = parts
    draft = await draft_with_course(drafts, tmp_path, "Ledgers")
    cat, first = await publisher.publish(Catalogue(), draft, TINA, ["alpha"], "ledgers")
    assert first["version"] == 1 and first["pushed"] is True
    cat, second = await publisher.publish(cat, draft, TINA, ["alpha"], "ledgers")
    assert second["version"] == 2
    repo = publisher.repo.path
    # one commit per publish, each tagged; the remote has the same
    assert git(repo, "rev-list", "--count", "main").strip() == "2"
    assert git(repo, "rev-parse", "ledgers/v1").strip() == first["commit"]
    assert git(remote, "rev-parse", "ledgers/v2").strip() == second["commit"]
    assert "ledgers/paper/paper.md" not in git(repo, "ls-tree", "-r", "--name-only", "main")
    # the unpacked versions are only a cache of the repository
    shutil.rmtree(tmp_path / "published")
    courses, errors = await publisher.courses()
    assert errors == [] and [c.id for c in courses] == ["ledgers"]
    assert [s.title for s in courses[0].stages] == ["Foundations", "Consensus"]
    assert (tmp_path / "published" / "ledgers" / "v2" / "core" / "CLAUDE.md").is_file()


@pytest.mark.asyncio
async def test_a_failure_after_the_commit_publishes_nothing(
    parts: tuple[Publisher, DraftStore, Path], tmp_path: Path
) -> None:
    publisher, drafts, remote = parts
    draft = await draft_with_course(drafts, tmp_path, "Ledgers")
    # the versions' folder cannot be made: the step after the commit fails
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    publisher.repo.published_dir = blocker
    cat = Catalogue()
    with pytest.raises(PublishError) as failed:
        await publisher.publish(cat, draft, TINA, ["alpha"], "ledgers")
    assert failed.value.status == 500 and "nothing was published" in failed.value.message
    assert git(publisher.repo.path, "for-each-ref") == ""
    assert await publisher.store.publications() == []
    assert publisher.visibility == {} and cat.courses == {}
    assert git(remote, "for-each-ref") == ""
    # once it can, the same draft publishes as version 1
    publisher.repo.published_dir = tmp_path / "published"
    _, answer = await publisher.publish(cat, draft, TINA, ["alpha"], "ledgers")
    assert answer["version"] == 1


@pytest.mark.asyncio
async def test_course_ids_taken_elsewhere_are_refused(
    parts: tuple[Publisher, DraftStore, Path], tmp_path: Path
) -> None:
    publisher, drafts, _ = parts
    catalogue_course = write_catalogue_course(tmp_path / "cat" / "bitcoin", "core", paper=PAPER)
    cat = Catalogue(courses={"bitcoin": parse_course(catalogue_course, "bitcoin")})
    draft = await draft_with_course(drafts, tmp_path, "Ledgers")
    other = await draft_with_course(drafts, tmp_path, "Ledgers again")
    for course_id, status, words in (
        ("bitcoin", 409, "taken by a catalogue course"),
        ("a..b", 400, "invalid course id"),
        ("-x", 400, "invalid course id"),
    ):
        with pytest.raises(PublishError) as refused:
            await publisher.publish(cat, draft, TINA, ["alpha"], course_id)
        assert refused.value.status == status and words in refused.value.message
    cat, _ = await publisher.publish(cat, draft, TINA, ["alpha"], "ledgers")
    with pytest.raises(PublishError) as refused:
        await publisher.publish(cat, other, TINA, ["alpha"], "ledgers")
    assert refused.value.status == 409 and "another draft" in refused.value.message
    # the default id comes from the title, and stays the draft's once published
    assert publisher.default_course_id(other) == "ledgers-again"
    assert publisher.default_course_id(draft) == "ledgers"


@pytest.mark.asyncio
async def test_any_broken_json_file_stops_a_publish(
    parts: tuple[Publisher, DraftStore, Path], tmp_path: Path
) -> None:
    publisher, drafts, _ = parts
    draft = await draft_with_course(drafts, tmp_path, "Ledgers")
    # the catalogue only warns about a broken paper.json; a draft may not publish one
    (draft.files / "paper.json").write_text('{"title": "Ledgers",')
    with pytest.raises(PublishError) as refused:
        await publisher.publish(Catalogue(), draft, TINA, ["alpha"], "ledgers")
    assert refused.value.status == 422
    assert [(e["file"], e["reason"][:12]) for e in refused.value.errors] == [
        ("paper.json", "invalid JSON")
    ]
    assert git(publisher.repo.path, "for-each-ref") == ""


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL server's SQLAlchemy URL."""
    with postgres_server() as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_publications_round_trip_on_postgresql(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        first = Publication(
            "ledgers", "0123456789ab", "tina", 1, "a" * 40, "core", ("alpha",),
            datetime(2026, 12, 8, 3, 0, tzinfo=UTC),
        )  # fmt: skip
        await store.save_publication(first)
        second = replace(first, version=2, commit="b" * 40, classes=("alpha", "beta"))
        await store.save_publication(second)
        assert await store.publications() == [second]
    finally:
        await store.close()
