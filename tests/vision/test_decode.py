"""Decoding accepts every supported format and turns every bad input into a clear reason."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import ImageRejected
from facesearch.vision.decode import DecodeLimits, decode_image, header_pixels
from tests.conftest import REPO_ROOT


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


# -- large images are decoded reduced (issue 11, Medium 8) ----------------------------------------
_PEAK = """
import sys
from facesearch.vision.decode import decode_image
data = open(sys.argv[1], "rb").read()
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
before = hwm()
image = decode_image(data)
print(hwm() - before, image.width, image.height, image.original_width, image.original_height)
"""


def _bomb(tmp_path: Path, fmt: str) -> Path:
    """7700 x 7700: 59.3 megapixels, under the accepted limit of 60 (a 192 KB PNG)."""
    path = tmp_path / f"bomb.{fmt.lower()}"
    Image.new("RGB", (7700, 7700), (120, 130, 140)).save(path, fmt)
    return path


def _decode_peak(path: Path) -> tuple[int, list[int]]:
    """Decode in a fresh process and report how far its resident peak rose (VmHWM)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=120,
    ).stdout.split()
    return int(out[0]), [int(v) for v in out[1:]]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize(("fmt", "budget_mb"), [("PNG", 330), ("JPEG", 150)])
def test_a_7700_square_bomb_is_decoded_reduced_within_a_memory_budget(
    tmp_path: Path, fmt: str, budget_mb: int
) -> None:
    path = _bomb(tmp_path, fmt)
    if fmt == "PNG":
        assert path.stat().st_size < 300_000  # the attack: a small file, a huge image
    peak, (width, height, orig_w, orig_h) = _decode_peak(path)
    # before: the full 7700 x 7700 image was materialised several times over (794 MB)
    assert peak < budget_mb * 1_000_000, f"{fmt}: peak rose by {peak / 1e6:.0f} MB"
    assert width * height <= DecodeLimits().max_decode_pixels
    assert (orig_w, orig_h) == (7700, 7700)  # provenance keeps the original dimensions


def test_reduced_decoding_keeps_orientation_and_maps_boxes_back() -> None:
    image = Image.new("RGB", (3000, 1000), 50)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    decoded = decode_image(buf.getvalue(), DecodeLimits(max_decode_pixels=300_000))
    assert decoded.width * decoded.height <= 300_000
    assert (decoded.original_width, decoded.original_height) == (1000, 3000)
    assert decoded.height > decoded.width
    assert decoded.to_original([0, 0, decoded.width, decoded.height]) == [0, 0, 1000, 3000]


@pytest.mark.parametrize("mode", ["P", "1", "I;16", "RGBA", "LA", "L"])
def test_every_mode_is_reduced(mode: str) -> None:
    data = _encode("PNG", mode, size=(1200, 900))
    decoded = decode_image(data, DecodeLimits(max_decode_pixels=100_000))
    assert decoded.pixels.shape[2] == 3 and decoded.width * decoded.height <= 100_000
    assert (decoded.original_width, decoded.original_height) == (1200, 900)


def test_small_images_are_decoded_at_full_size() -> None:
    decoded = decode_image(_encode("PNG", size=(400, 300)))
    assert (decoded.width, decoded.height, decoded.scale) == (400, 300, 1.0)


def test_header_pixels_reads_only_the_header() -> None:
    assert header_pixels(_encode("PNG", size=(400, 300))) == 120_000
    assert header_pixels(b"not an image") == 0
