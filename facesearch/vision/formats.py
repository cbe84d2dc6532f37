"""Which files are images, by name: light (no decoder), for the folder walker and the CLI."""

from __future__ import annotations

#: Formats we accept, by Pillow's format name.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"})
#: File name suffixes the folder walker offers to the decoder.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
