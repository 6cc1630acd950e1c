"""Draws the web client's PNG icons (web/icons/icon-*.png) from the same shapes as web/icons/icon.svg.

    python -m infra.web_icons     # rewrites the PNGs; pure Python (zlib), no image library needed
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "web" / "icons"
TEAL, WHITE, GOLD = (0x0B, 0x5D, 0x5B), (0xFF, 0xFF, 0xFF), (0xF2, 0xB8, 0x4B)
# In the SVG's 64-unit box: the roof and the walls as strokes 5 units wide, the door as a rectangle.
ROOF = [((14, 31), (32, 16)), ((32, 16), (50, 31))]
WALLS = [((20, 29), (20, 48)), ((20, 48), (44, 48)), ((44, 48), (44, 29))]
DOOR = (28.5, 36, 35.5, 48)
STROKE = 5


def _segment_distance(px, py, a, b) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _colour_at(x: float, y: float, rounded: bool) -> tuple[int, int, int] | None:
    """The colour at a point of the 64-unit box, None outside the icon (transparent)."""
    if rounded:
        r = 14
        cx, cy = min(max(x, r), 64 - r), min(max(y, r), 64 - r)
        if math.hypot(x - cx, y - cy) > r:
            return None
    left, top, right, bottom = DOOR
    if left <= x <= right and top <= y <= bottom:
        return GOLD
    if any(_segment_distance(x, y, a, b) <= STROKE / 2 for a, b in ROOF + WALLS):
        return WHITE
    return TEAL


def draw(size: int, rounded: bool = True, scale: float = 1.0, samples: int = 3) -> bytes:
    """RGBA PNG bytes of the icon at `size` pixels; `scale` < 1 shrinks the house into a maskable safe zone."""
    rows = []
    step = 64 / size
    for py in range(size):
        row = bytearray([0])  # filter type 0
        for px in range(size):
            r = g = b = a = 0
            for sy in range(samples):
                for sx in range(samples):
                    x = (px + (sx + 0.5) / samples) * step
                    y = (py + (sy + 0.5) / samples) * step
                    colour = _colour_at(32 + (x - 32) / scale, 32 + (y - 32) / scale, False) if not rounded \
                        else _colour_at(x, y, True)
                    if colour:
                        r, g, b, a = r + colour[0], g + colour[1], b + colour[2], a + 1
            n = samples * samples
            row += bytes([r // a, g // a, b // a, 255 * a // n]) if a else bytes(4)
        rows.append(bytes(row))
    return _png(size, size, b"".join(rows))


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main() -> None:
    (ICONS / "icon-192.png").write_bytes(draw(192))
    (ICONS / "icon-512.png").write_bytes(draw(512))
    # Maskable: the background fills the square and the house sits inside the central 80% safe zone.
    (ICONS / "icon-maskable-512.png").write_bytes(draw(512, rounded=False, scale=0.7))
    print("wrote", ", ".join(sorted(p.name for p in ICONS.glob("*.png"))))


if __name__ == "__main__":
    main()
