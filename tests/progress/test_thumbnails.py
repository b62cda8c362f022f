"""Course cards get small thumbnails: the service scales the author's picture down.

A page of cards on a slow school network must not fetch every author's full-size PNG.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from claudehub.progress.assets import (
    CARD_THUMBNAIL_WIDTH,
    MAX_DECODE_PIXELS,
    AssetRefused,
    read_asset,
    scaled,
)


def _big_png(path: Path, width: int = 1600, height: int = 900) -> None:
    # noisy pixels, so the full-size file is as heavy as a real screenshot
    img = Image.effect_noise((width, height), 64).convert("RGB")
    img.save(path, "PNG")


def test_a_thumbnail_is_a_small_webp_of_the_requested_width(tmp_path: Path) -> None:
    _big_png(tmp_path / "thumb.png")
    full = read_asset(tmp_path, "thumb.png", 10 * 1024 * 1024)
    small = scaled(full, CARD_THUMBNAIL_WIDTH)
    assert small.content_type == "image/webp" and small.etag != full.etag
    with Image.open(io.BytesIO(small.data)) as img:
        assert img.size == (CARD_THUMBNAIL_WIDTH, 180)
    assert len(small.data) * 10 < len(full.data), (len(small.data), len(full.data))


def test_a_small_picture_is_never_scaled_up(tmp_path: Path) -> None:
    _big_png(tmp_path / "tiny.png", 100, 50)
    small = scaled(read_asset(tmp_path, "tiny.png", 1 << 20), 640)
    with Image.open(io.BytesIO(small.data)) as img:
        assert img.size == (100, 50)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8_000, 50_000])  # 64 M pixels (our limit), 2.5 G (Pillow's)
def test_an_image_declaring_too_many_pixels_is_refused_without_decoding(
    tmp_path: Path, side: int
) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_declaring(side, side))
    asset = read_asset(tmp_path, "bomb.png", 1 << 20)
    assert side * side > MAX_DECODE_PIXELS and len(asset.data) < 200
    with pytest.raises(AssetRefused) as refused:
        scaled(asset, 320)
    assert refused.value.status == 413


def test_a_png_that_does_not_decode_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(AssetRefused) as refused:
        scaled(read_asset(tmp_path, "broken.png", 1 << 20), 320)
    assert refused.value.status == 415
