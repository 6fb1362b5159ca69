"""Draw the Teams app icons (connector/teams_app/color.png, outline.png) without an imaging library.

    .venv/bin/python connector/teams_app/make_icons.py   # rewrites both PNGs beside this file

The glyph is a document with a check mark ("an approval"). color.png: 192x192, a rounded square in the accent
colour with a white document and an accent check mark. outline.png: 32x32, the same glyph drawn as white strokes
on a fully transparent background (Teams requires only white and transparent pixels). Edges are anti-aliased by
4x4 supersampling; partly covered outline pixels stay pure white with partial alpha.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root, for `connector`

from connector.manifest import ACCENT_COLOR, encode_png  # noqa: E402

Shape = Callable[[float, float], bool]
RGB = tuple[int, int, int]
SS = 4  # supersampling per axis


def hex_rgb(value: str) -> RGB:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return False
        cx = min(max(x, x0 + r), x1 - r)
        cy = min(max(y, y0 + r), y1 - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r

    return inside


def polygon(points: list[tuple[float, float]]) -> Shape:
    def inside(x: float, y: float) -> bool:
        hit = False
        n = len(points)
        for i in range(n):
            (xa, ya), (xb, yb) = points[i], points[(i + 1) % n]
            if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
                hit = not hit
        return hit

    return inside


def _seg_dist(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    (xa, ya), (xb, yb) = a, b
    dx, dy = xb - xa, yb - ya
    t = max(0.0, min(1.0, ((x - xa) * dx + (y - ya) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - (xa + t * dx), y - (ya + t * dy))


def stroke(points: list[tuple[float, float]], width: float, closed: bool = False) -> Shape:
    segs = list(zip(points, points[1:] + (points[:1] if closed else [])))
    half = width / 2

    def inside(x: float, y: float) -> bool:
        return any(_seg_dist(x, y, a, b) <= half for a, b in segs)

    return inside


def render(size: int, layers: list[tuple[Shape, RGB, float]]) -> bytes:
    """Composite the layers (shape, colour, opacity) back to front onto transparency; RGBA rows."""
    out = bytearray()
    offsets = [(i + 0.5) / SS for i in range(SS)]
    for py in range(size):
        for px in range(size):
            r = g = b = a = 0.0  # premultiplied
            for shape, (cr, cg, cb), opacity in layers:
                hits = sum(shape(px + ox, py + oy) for oy in offsets for ox in offsets)
                if not hits:
                    continue
                la = opacity * hits / (SS * SS)
                r, g, b = cr * la + r * (1 - la), cg * la + g * (1 - la), cb * la + b * (1 - la)
                a = la + a * (1 - la)
            if a <= 0:
                out += b"\x00\x00\x00\x00"
            else:
                out += bytes((round(r / a), round(g / a), round(b / a), round(a * 255)))
    return bytes(out)


def document(x0: float, y0: float, x1: float, y1: float, fold: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1 - fold, y0), (x1, y0 + fold), (x1, y1), (x0, y1)]


def color_icon() -> bytes:
    size = 192
    accent = hex_rgb(ACCENT_COLOR)
    white = (255, 255, 255)
    light = (207, 224, 242)  # accent tint for the folded corner and text lines
    x0, y0, x1, y1, fold = 56.0, 36.0, 136.0, 156.0, 26.0
    layers: list[tuple[Shape, RGB, float]] = [
        (rounded_rect(0, 0, size, size, 36), accent, 1.0),
        (polygon(document(x0, y0, x1, y1, fold)), white, 1.0),
        (polygon([(x1 - fold, y0), (x1 - fold, y0 + fold), (x1, y0 + fold)]), light, 1.0),
        (stroke([(72, 62), (104, 62)], 8), light, 1.0),
        (stroke([(72, 80), (120, 80)], 8), light, 1.0),
        (stroke([(74, 116), (90, 132), (120, 100)], 13), accent, 1.0),
    ]
    return encode_png(size, size, render(size, layers))


def outline_icon() -> bytes:
    size = 32
    white = (255, 255, 255)
    x0, y0, x1, y1, fold = 7.0, 3.0, 25.0, 29.0, 6.0
    layers: list[tuple[Shape, RGB, float]] = [
        (stroke(document(x0, y0, x1, y1, fold), 2.0, closed=True), white, 1.0),
        (stroke([(x1 - fold, y0), (x1 - fold, y0 + fold), (x1, y0 + fold)], 1.6), white, 1.0),
        (stroke([(11.0, 18.5), (14.5, 22.0), (21.0, 15.0)], 2.4), white, 1.0),
    ]
    return encode_png(size, size, render(size, layers))


def main() -> None:
    (HERE / "color.png").write_bytes(color_icon())
    (HERE / "outline.png").write_bytes(outline_icon())
    print(f"wrote {HERE / 'color.png'} and {HERE / 'outline.png'}")


if __name__ == "__main__":
    main()
