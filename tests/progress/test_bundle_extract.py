"""Course bundles unpack safely with and without tarfile's "data" filter (Python < 3.11.4)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from claudehub.contract.course_client import UnsafeBundleError, unpack_bundle


def bundle(*members: tuple[str, bytes | None, str]) -> bytes:
    """A gzip'd tar of (name, content or None for a folder, kind) entries."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                data = content or b""
                info.size, info.mode = len(data), 0o4755  # a set-uid bit to be dropped
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(params=["filter", "no-filter"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """This Python, and one like Debian bookworm's 3.11.2 without tarfile.data_filter."""
    if request.param == "no-filter":
        monkeypatch.delattr(tarfile, "data_filter")
    return str(request.param)


def test_a_bundle_unpacks_read_only_without_special_bits(python: str, tmp_path: Path) -> None:
    data = bundle(("lesson", None, "dir"), ("lesson/README.md", b"# Stage 1", "file"))
    folder = unpack_bundle(data, tmp_path / "course")
    readme = folder / "lesson" / "README.md"
    assert readme.read_text() == "# Stage 1"
    assert not readme.stat().st_mode & 0o6222  # no set-uid, nobody may write


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_a_member_leaving_the_folder_is_refused(python: str, kind: str, tmp_path: Path) -> None:
    member = ("../escape.txt", b"x", "file") if kind == "dotdot" else ("link", None, "symlink")
    with pytest.raises((UnsafeBundleError, tarfile.FilterError)):
        unpack_bundle(bundle(member), tmp_path / "course")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "course").exists()


def test_an_absolute_member_never_lands_outside(python: str, tmp_path: Path) -> None:
    """Refused without the filter; the filter itself keeps it inside the folder."""
    target = Path(f"/tmp/claudehub-abs-{tmp_path.name}.txt")
    try:
        unpack_bundle(bundle((str(target), b"x", "file")), tmp_path / "course")
    except (UnsafeBundleError, tarfile.FilterError):
        pass
    assert not target.exists()
