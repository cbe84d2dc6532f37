"""Safe image decoding: every way a file can be unacceptable becomes an `ImageRejected` with a
short reason code, checked before pixels are decoded wherever the header allows it."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesearch.errors import ImageRejected
from facesearch.vision.model import RGBImage

#: Formats we accept, by Pillow's format name.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"})
#: File name suffixes the folder walker offers to the decoder.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)


@dataclass(frozen=True)
class DecodeLimits:
    max_file_bytes: int = 50_000_000
    max_pixels: int = 60_000_000
    max_side: int = 20_000


@dataclass(frozen=True)
class DecodedImage:
    pixels: RGBImage
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> DecodedImage:
    """Decode bytes into an RGB array, applying EXIF orientation; GIFs give their first frame."""
    limits = limits or DecodeLimits()
    if not data:
        raise ImageRejected("empty", "the file has zero bytes")
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(
            "too_large", f"{len(data)} bytes exceeds the limit of {limits.max_file_bytes}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "not a recognised image format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("decompression_bomb", str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected("corrupt", f"cannot read the image header: {exc}") from exc
    with image:
        fmt = image.format or "unknown"
        if fmt not in ACCEPTED_FORMATS:
            raise ImageRejected("unsupported_format", f"{fmt} images are not accepted")
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageRejected("bad_dimensions", f"{width}x{height}")
        if width > limits.max_side or height > limits.max_side:
            raise ImageRejected(
                "too_large", f"{width}x{height} exceeds the side limit of {limits.max_side}"
            )
        if width * height > limits.max_pixels:
            raise ImageRejected(
                "decompression_bomb",
                f"{width}x{height} = {width * height} pixels exceeds {limits.max_pixels}",
            )
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            oriented = ImageOps.exif_transpose(image)
            rgb = _to_rgb(oriented)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected("decompression_bomb", str(exc)) from exc
        except OSError as exc:
            message = str(exc)
            reason = "truncated" if "truncated" in message.lower() else "corrupt"
            raise ImageRejected(reason, f"cannot decode the image: {message}") from exc
        except (ValueError, SyntaxError, EOFError) as exc:
            raise ImageRejected("corrupt", f"cannot decode the image: {exc}") from exc
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return DecodedImage(pixels=pixels, format=fmt)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr / top * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def encode_jpeg(pixels: RGBImage, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
