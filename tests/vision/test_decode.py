"""Decoding accepts every supported format and turns every bad input into a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import ImageRejected
from facesearch.vision.decode import DecodeLimits, decode_image


def _encode(fmt: str, mode: str = "RGB", size: tuple[int, int] = (40, 30), **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 120).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(_encode(fmt))
    assert img.pixels.shape == (30, 40, 3) and img.pixels.dtype == np.uint8


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    px = decode_image(buf.getvalue()).pixels
    assert px[0, 0, 0] > 200 and px[0, 0, 2] < 50


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 20), 50)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    assert decode_image(buf.getvalue()).pixels.shape[:2] == (60, 20)


def test_greyscale_palette_alpha_and_16_bit_become_rgb() -> None:
    for mode in ("L", "P", "RGBA", "LA", "I;16"):
        fmt = "PNG"
        assert decode_image(_encode(fmt, mode)).pixels.shape == (30, 40, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am not an image" * 10, "not_an_image"),
    ],
)
def test_bad_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as err:
        decode_image(data)
    assert err.value.reason == reason


def test_truncated_jpeg() -> None:
    data = _encode("JPEG", size=(400, 300), quality=95)
    with pytest.raises(ImageRejected) as err:
        decode_image(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_limits_are_enforced_before_decoding() -> None:
    data = _encode("PNG", size=(300, 200))
    with pytest.raises(ImageRejected) as err:
        decode_image(data, DecodeLimits(max_pixels=10_000))
    assert err.value.reason == "decompression_bomb"
    with pytest.raises(ImageRejected) as err:
        decode_image(data, DecodeLimits(max_side=100))
    assert err.value.reason == "too_large"
    with pytest.raises(ImageRejected) as err:
        decode_image(data, DecodeLimits(max_file_bytes=10))
    assert err.value.reason == "too_large"


def test_unsupported_format_is_named() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "PDF")
    with pytest.raises(ImageRejected) as err:
        decode_image(buf.getvalue())
    assert err.value.reason in ("not_an_image", "unsupported_format")
