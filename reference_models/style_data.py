"""Style-transfer data: textured content scenes, and style exemplars made of brush strokes whose size
is a parameter (the brush size the style model learns to control)."""

from __future__ import annotations

import numpy as np

from .draw import Canvas, background, capsule, finish

# A few exemplar palettes (warm oil, cool watercolour, ink-and-ochre).
PALETTES = {
    "sunset": np.array([[0.93, 0.55, 0.20], [0.85, 0.25, 0.25], [0.98, 0.85, 0.35], [0.45, 0.15, 0.35],
                        [0.20, 0.10, 0.25]]),
    "lagoon": np.array([[0.10, 0.45, 0.60], [0.25, 0.70, 0.75], [0.85, 0.92, 0.90], [0.05, 0.20, 0.35],
                        [0.55, 0.80, 0.55]]),
    "ink": np.array([[0.08, 0.08, 0.10], [0.80, 0.65, 0.35], [0.95, 0.92, 0.85], [0.45, 0.30, 0.15]]),
}
STYLE = "sunset"   # the style the reference model is trained for


def content(seed: int, index: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    return finish(rng, background(rng, size, size, clutter=int(rng.integers(5, 15))), noise=0.01)


def stroke_size(brush: float) -> float:
    """Stroke width in pixels for a brush setting in [0, 1]."""
    return 2.0 + 10.0 * float(brush)


def exemplar(size: int, brush: float, style: str = STYLE, seed: int = 7) -> np.ndarray:
    """Strokes of the palette's colours, of width stroke_size(brush), covering the canvas."""
    rng = np.random.default_rng([seed, int(brush * 1000)])
    palette = PALETTES[style]
    c = Canvas(size, size)
    c.image[:] = palette[0]
    width = stroke_size(brush)
    n = int(size * size / (width * width * 3)) + 10
    for _ in range(n):
        x, y = rng.uniform(0, size, 2)
        ang = rng.normal(0.6, 0.35)
        length = width * rng.uniform(2, 5)
        d = np.array([np.cos(ang), np.sin(ang)]) * length / 2
        colour = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
        box, m = capsule(size, size, (x - d[0], y - d[1]), (x + d[0], y + d[1]), width / 2)
        c.paint(box, m, np.clip(colour, 0, 1))
    return c.image
