"""Safe image decoding: every way a file can be unacceptable becomes an `ImageRejected` with a
short reason code, checked before pixels are decoded wherever the header allows it.

Large images are decoded *reduced*, to at most `DecodeLimits.max_decode_pixels` pixels (the
detector never needs more than a few megapixels): a JPEG through the decoder's draft mode (DCT
scaling: the full-size image is never materialised), any other format decoded once in its own
mode (at most `max_pixels`, four bytes a pixel at worst) and reduced by an integer factor at
once, before orientation and colour conversion. The original dimensions are kept as provenance
(`original_width`, `original_height`) together with the factor (`scale`) that maps coordinates
on the decoded pixels back onto the original image."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from facesearch.config import Settings
from facesearch.errors import ImageRejected
from facesearch.vision.formats import ACCEPTED_FORMATS
from facesearch.vision.model import RGBImage


@dataclass(frozen=True)
class DecodeLimits:
    max_file_bytes: int = 50_000_000
    max_pixels: int = 60_000_000
    max_side: int = 20_000
    #: Largest image handed to the model; larger ones are decoded reduced (aspect kept).
    max_decode_pixels: int = 12_000_000

    @classmethod
    def of(cls, settings: Settings) -> DecodeLimits:
        """The limits a deployment's settings give."""
        return cls(
            settings.max_file_bytes,
            settings.max_image_pixels,
            settings.max_image_side,
            settings.max_decode_pixels,
        )


@dataclass(frozen=True)
class DecodedImage:
    pixels: RGBImage
    format: str
    #: The image's own dimensions (after EXIF orientation), whatever size it was decoded at.
    original_width: int = 0
    original_height: int = 0

    def __post_init__(self) -> None:
        if not self.original_width or not self.original_height:
            object.__setattr__(self, "original_width", self.width)
            object.__setattr__(self, "original_height", self.height)

    @property
    def scale(self) -> float:
        """Original pixels per decoded pixel (1.0 when decoded at full size)."""
        return self.original_width / self.width if self.width else 1.0

    def to_original(self, values: list[int]) -> list[int]:
        """Coordinates on the decoded pixels (a box) as coordinates on the original image."""
        scale = self.scale
        return values if scale == 1.0 else [round(v * scale) for v in values]

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
            orientation = _orientation(image)
            reduced = _load_reduced(image, limits.max_decode_pixels)
            oriented = _orient(reduced, orientation)
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
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return DecodedImage(pixels=pixels, format=fmt, original_width=width, original_height=height)


def header_pixels(data: bytes) -> int:
    """Pixels an image says it has (its header only, nothing decoded); 0 when unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Exception:
        return 0
    return max(0, width) * max(0, height)


def reduction_factor(width: int, height: int, max_pixels: int) -> int:
    """The smallest integer factor that brings width x height to at most `max_pixels`."""
    factor = 1
    while (-(-width // factor)) * (-(-height // factor)) > max_pixels:
        factor += 1
    return factor


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _load_reduced(image: Image.Image, max_pixels: int) -> Image.Image:
    """The image's pixels, at most `max_pixels` of them."""
    width, height = image.size
    if width * height <= max_pixels:
        image.load()
        return image
    factor = reduction_factor(width, height, max_pixels)
    if image.format in ("JPEG", "MPO"):
        # DCT scaling (1/2, 1/4, 1/8): the decoder never builds the full-size image
        image.draft(image.mode, (-(-width // factor), -(-height // factor)))
    image.load()
    width, height = image.size
    factor = reduction_factor(width, height, max_pixels)
    if factor == 1:
        return image
    try:
        reduced = image.reduce(factor)
    except ValueError:  # modes reduce() does not handle (palette, bilevel, I;16)
        size = (max(1, width // factor), max(1, height // factor))
        reduced = image.resize(size, Image.Resampling.NEAREST, reducing_gap=None)
    image.close()  # drop the full-size pixels at once
    return reduced


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
