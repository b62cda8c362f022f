"""An author session's draft folder as the server keeps it (server_ext/drafts.py): what is
sent back to the course service, and how the course service's copy is unpacked."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from claudehub.contract.course_client import unpack_draft
from claudehub.server_ext.drafts import DraftBackend


def backend(draft: Path) -> DraftBackend:
    return DraftBackend(
        progress_url="http://127.0.0.1:9/", token="t", draft_id="d", draft_dir=str(draft)
    )


def tar_of(members: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tar.addfile(info)
    return buf.getvalue()


def test_what_is_sent_back_is_the_drafts_own_regular_files(tmp_path: Path) -> None:
    draft = tmp_path / "draft"
    (draft / "paper" / "figures").mkdir(parents=True)
    (draft / "paper" / "paper.md").write_text("the service's")
    (draft / "demo" / "knowledge").mkdir(parents=True)
    (draft / "demo" / "knowledge" / "courses.json").write_text("[]")
    (draft / "paper.json").write_text("{}")
    outside = tmp_path / "secret.txt"
    outside.write_text("not the draft's")
    (draft / "leak.txt").symlink_to(outside)
    (draft / "leakdir").symlink_to(tmp_path)
    b = backend(draft)
    with tarfile.open(fileobj=io.BytesIO(b.archive()), mode="r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers())
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in tar.getmembers())
    assert names == ["demo/knowledge/courses.json", "paper.json"]
    before = b.signature()
    (draft / "paper.json").write_text('{"title": "T"}')
    assert b.signature() != before
    (draft / "paper" / "paper.md").write_text("changed by nobody that matters")
    after = b.signature()
    (draft / "paper" / "new.md").write_text("x")
    assert b.signature() == after  # paper/ is the service's: no save for it


def test_the_services_copy_appears_whole_and_writable(tmp_path: Path) -> None:
    dest = tmp_path / "drafts" / "d"
    unpack_draft(tar_of({"paper/paper.md": b"text", "paper.json": b"{}"}), dest)
    assert (dest / "paper" / "paper.md").read_text() == "text"
    assert os.access(dest / "paper.json", os.W_OK) and os.access(dest / "paper", os.W_OK)
    backend(dest).clear()
    assert not dest.exists()


@pytest.mark.parametrize(
    "members, link",
    [({"../escape.md": b"x"}, None), ({"ok.md": b"x"}, ("out", "/etc"))],
    ids=["dot-dot", "link-out"],
)
def test_an_unsafe_bundle_leaves_no_draft(
    tmp_path: Path, members: dict[str, bytes], link: tuple[str, str] | None
) -> None:
    dest = tmp_path / "drafts" / "d"
    with pytest.raises((ValueError, tarfile.TarError)):
        unpack_draft(tar_of(members, link=link), dest)
    assert not dest.exists()
    assert not (tmp_path / "drafts" / "escape.md").exists()
    assert [p.name for p in (tmp_path / "drafts").iterdir()] == []
