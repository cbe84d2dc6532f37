"""A synthetic 1920 x 1080 "group photo": LFW DevTrain faces pasted at 20-35 px on a textured
background, with their true boxes. Used by tests/vision/test_yunet.py and bench/detector_bench.py;
composed on the fly from ../shared/faces, never stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

WIDTH, HEIGHT = 1920, 1080
#: Side of the square cut around the centre of a 250 x 250 deep-funnelled LFW image, and the
#: width of the face inside it (LFW faces are about 100 px wide there).
LFW_CROP = 150
LFW_FACE = 100


def compose_crowd(
    lfw: Path, count: int = 16, sizes: tuple[int, int] = (20, 35), seed: int = 8
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """(RGB image, face boxes (left, top, right, bottom)) with `count` faces, widths in `sizes`,
    one per person, spread over a jittered grid."""
    rng = np.random.default_rng(seed)
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    chosen = [people[i] for i in rng.choice(len(people), size=count, replace=False)]
    noise = rng.integers(60, 200, (HEIGHT // 24, WIDTH // 24, 3), dtype=np.uint8)
    background = (
        Image.fromarray(noise)
        .resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        .filter(ImageFilter.GaussianBlur(6))
    )
    canvas = np.asarray(background).copy()
    columns = int(np.ceil(np.sqrt(count * WIDTH / HEIGHT)))
    rows = int(np.ceil(count / columns))
    cell_w, cell_h = WIDTH // columns, HEIGHT // rows
    boxes = []
    for index, person in enumerate(chosen):
        face_width = int(rng.integers(sizes[0], sizes[1] + 1))
        side = round(LFW_CROP * face_width / LFW_FACE)
        with Image.open(sorted(person.glob("*.jpg"))[0]) as image:
            rgb = image.convert("RGB")
        margin = (rgb.width - LFW_CROP) // 2
        patch = rgb.crop((margin, margin, margin + LFW_CROP, margin + LFW_CROP)).resize(
            (side, side), Image.Resampling.LANCZOS
        )
        r, c = divmod(index, columns)
        x = c * cell_w + int(rng.integers(0, cell_w - side))
        y = r * cell_h + int(rng.integers(0, cell_h - side))
        canvas[y : y + side, x : x + side] = np.asarray(patch)
        inset = (side - face_width) // 2
        boxes.append((x + inset, y + inset, x + inset + face_width, y + inset + face_width))
    return canvas, boxes


def matched(truth: list[tuple[int, int, int, int]], found: list[tuple[int, int, int, int]]) -> int:
    """How many true faces have a detection whose centre lies inside their box."""
    hits = 0
    for left, top, right, bottom in truth:
        for fl, ft, fr, fb in found:
            cx, cy = (fl + fr) / 2, (ft + fb) / 2
            if left <= cx <= right and top <= cy <= bottom:
                hits += 1
                break
    return hits
