"""Course images: raster files of a fetched course repository, served to the learner's page.

The checks live here; the tornado handler is ``handlers.AssetHandler``.
``GET {prefix}api/courses/{course_id}/assets/{path}`` serves ``path`` (relative to the
repository the course was loaded from) when all of these hold, and refuses it otherwise:

* ``path`` is relative, has no ``..``, ``.``, empty or backslash segment (404);
* the file, with every symlink resolved, is inside the repository (404: a symlink leaving
  the repository looks exactly like a missing file, so nothing about the outside leaks);
* it is a regular file no larger than ``max_asset_bytes`` (413, checked with ``fstat``
  before anything is read);
* its first bytes are PNG, JPEG, GIF or WebP (415). The type is taken from the content,
  never from the name, and SVG is never served: it can carry script, and this route is on
  the hub's origin.

With ``?w=`` (one of :data:`THUMBNAIL_WIDTHS`) the image is scaled down to that width and
served as WebP, so a page of course cards costs a few kilobytes per card instead of the
author's full-size picture. The image is decoded only when it declares at most
:data:`MAX_DECODE_PIXELS` pixels (a small file can declare a huge image: refused, 413).

Responses carry ``X-Content-Type-Options: nosniff``, ``Content-Security-Policy:
default-src 'none'`` and ``Cache-Control: private`` with an ``ETag`` and
``Last-Modified`` (``If-None-Match`` gets a 304).

Who may read: any hub user, like the rest of the course API (a learner's or a server's
token in the ``Authorization`` header, or the service's hub OAuth cookie, so that a hub
page can show a thumbnail with a plain ``<img>``). Images are only as public as the
course text they illustrate: a private course repository's images stay behind the hub
login. GET only, so a cookie cannot be used to change anything.
"""

from __future__ import annotations

import errno
import hmac
import io
import os
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from .model import Course

#: default ``ProgressService.max_asset_bytes``
DEFAULT_MAX_ASSET_BYTES = 5 * 1024 * 1024
#: tornado settings key holding the cap
MAX_ASSET_SETTING = "claudehub_max_asset_bytes"
#: browsers may reuse an image this long before asking again (ETag makes that cheap)
CACHE_CONTROL = "private, max-age=300"
#: the URL folder (under ``{prefix}api/courses/{id}/``) images are served from
ASSETS_SEGMENT = "assets/"
#: signed image URLs expire on a boundary of this many seconds (see AssetSigner.expiry)
SIGNATURE_PERIOD = 86400

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_SNIFF_BYTES = 16
#: the widths ``?w=`` may ask for (a fixed set, so the cache below stays small)
THUMBNAIL_WIDTHS = (160, 320, 640)
#: the width of a course card's thumbnail (twice the card's CSS width, for sharp screens)
CARD_THUMBNAIL_WIDTH = 320
#: an image declaring more pixels than this is never decoded (a decompression bomb)
MAX_DECODE_PIXELS = 40_000_000


class AssetRefused(Exception):
    """An asset request that must not be served: ``status`` and a reason for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Asset:
    """A checked image, read into memory (at most the size cap)."""

    content_type: str
    data: bytes
    mtime: float
    etag: str


def sniff_image(head: bytes) -> str | None:
    """The image MIME type the first bytes of a file announce, or None (not a raster
    type this service serves)."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def repository_root(course: Course) -> Path:
    """The folder of the repository (checkout) ``course`` was loaded from.

    Assets are served from anywhere in it: the catalogue layout keeps its images in the
    repository's ``assets/`` folder, beside the course folders.
    """
    return course.repo_root or course.path


def repository_relative(course: Course, path: Path) -> str | None:
    """``path`` as a POSIX path relative to the course's repository, or None if outside."""
    root = repository_root(course)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def clean_relative_path(path: str) -> PurePosixPath:
    """``path`` (already URL-decoded) as a relative POSIX path, or :class:`AssetRefused`.

    Refused: empty, absolute, NUL, backslash, ``..``, ``.`` or empty segments. Tornado
    decodes ``%2e%2e`` and ``%2f`` before the handler sees the path, so encoded forms
    arrive here as the plain ones and are refused the same way.
    """
    if not path or "\0" in path or "\\" in path or path.startswith("/"):
        raise AssetRefused(404, "not a path inside the course repository")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise AssetRefused(404, "not a path inside the course repository")
    return PurePosixPath(*parts)


def read_asset(root: Path, path: str, max_bytes: int) -> Asset:
    """Read and check the image at ``path`` inside ``root`` (blocking: run in a thread).

    Nothing outside ``root`` is opened: the path is resolved (symlinks followed by the
    resolver, not by ``open``) and checked against the resolved root first, and the
    final open uses ``O_NOFOLLOW`` so a symlink swapped in meanwhile is refused.
    """
    rel = clean_relative_path(path)
    real_root = root.resolve()
    try:
        target = (real_root / rel).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise AssetRefused(404, "no such file in the course repository") from None
    if not target.is_relative_to(real_root) or target == real_root:
        raise AssetRefused(404, "no such file in the course repository")
    # O_NONBLOCK: a FIFO in the repository must not hang the thread in open(); fstat then
    # refuses it like any other non-regular file
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(target, flags)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
            raise AssetRefused(404, "no such file in the course repository") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise AssetRefused(404, "no such file in the course repository")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise AssetRefused(413, f"image is larger than the {max_bytes}-byte limit")
        head = f.read(_SNIFF_BYTES)
        mime = sniff_image(head)
        if mime is None:
            raise AssetRefused(415, "only PNG, JPEG, GIF and WebP images are served")
        data = head + f.read(max_bytes + 1 - len(head))
    if len(data) > max_bytes:  # grew after fstat
        raise AssetRefused(413, f"image is larger than the {max_bytes}-byte limit")
    etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    return Asset(content_type=mime, data=data, mtime=st.st_mtime, etag=etag)


def scaled(asset: Asset, width: int) -> Asset:
    """``asset`` scaled down to ``width`` pixels wide (never up) as WebP (blocking: run in a
    thread). Raises :class:`AssetRefused` (413) for an image declaring too many pixels,
    (415) for one Pillow cannot decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(asset.data)) as img:
            if img.width * img.height > MAX_DECODE_PIXELS:
                raise AssetRefused(413, f"image has more than {MAX_DECODE_PIXELS} pixels")
            img.draft("RGB", (width, width))  # JPEG: decode at a reduced scale
            frame = img.convert("RGBA")
    except Image.DecompressionBombError:  # Pillow's own guard, beyond twice its limit
        raise AssetRefused(413, f"image has more than {MAX_DECODE_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise AssetRefused(415, "the image cannot be decoded") from None
    if frame.width > width:
        frame = frame.resize(
            (width, max(1, round(frame.height * width / frame.width))), Image.Resampling.LANCZOS
        )
    out = io.BytesIO()
    frame.save(out, "WEBP", quality=80, method=4)
    return Asset("image/webp", out.getvalue(), asset.mtime, f'{asset.etag[:-1]}-w{width}"')


def assets_base_url(prefix: str, course_id: str) -> str:
    """``{prefix}api/courses/{course_id}/assets/``: every image URL of a course starts so."""
    return f"{prefix.rstrip('/')}/api/courses/{quote(course_id, safe='')}/{ASSETS_SEGMENT}"


@dataclass(frozen=True)
class AssetSigner:
    """Signs the image URLs the service hands to hub users, so a plain ``<img>`` can load
    them without a token or cookie.

    Why: a hub page (the course picker) shows dozens of thumbnails at once, and a browser
    without the service's cookie would start one OAuth login per image; JupyterHub's OAuth
    state cookie does not survive concurrent logins, so most would fail. A URL signed for
    this course and path, valid for a day or two, is handed only to an authenticated user
    (in a course card or course text), like a presigned download link.

    The URL carries ``?exp=<unix time>&sig=<hex>``: an HMAC-SHA256 over the course id, the
    repository-relative path and the expiry. The key is derived from the service's hub API
    token (stable across restarts, never sent anywhere), or random when it has none.
    """

    key: bytes

    @classmethod
    @lru_cache(maxsize=4)
    def from_secret(cls, secret: str) -> AssetSigner:
        """The signer keyed by ``secret`` (the service's hub API token), or by a random key
        (one per process: then signed URLs end with the process)."""
        if not secret:
            return cls(secrets.token_bytes(32))
        return cls(hmac.new(secret.encode(), b"claudehub-progress assets v1", "sha256").digest())

    @staticmethod
    def expiry(now: float) -> int:
        """The expiry for URLs made at ``now``: the end of the next whole day, so URLs (and the
        course text holding them) stay the same for a day and stay valid 24-48 hours."""
        return (int(now) // SIGNATURE_PERIOD + 2) * SIGNATURE_PERIOD

    def signature(self, course_id: str, path: str, expires: int) -> str:
        message = f"{course_id}\0{path}\0{expires}".encode()
        return hmac.new(self.key, message, "sha256").hexdigest()[:32]

    def query(self, course_id: str, path: str, expires: int) -> str:
        """``exp=…&sig=…`` for ``path`` (repository-relative, not URL-encoded)."""
        return f"exp={expires}&sig={self.signature(course_id, path, expires)}"

    def verify(self, course_id: str, path: str, expires: str, sig: str, now: float) -> bool:
        """Whether ``sig`` signs this course and path until ``expires``, not yet passed."""
        if not expires.isdigit() or int(expires) < now or len(sig) != 32:
            return False
        return hmac.compare_digest(self.signature(course_id, path, int(expires)), sig)
