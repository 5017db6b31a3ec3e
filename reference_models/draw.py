"""Numpy rasterization for the procedural data sets: shapes as boolean masks computed on their
bounding box only, textures, and cluttered backgrounds. Everything takes an explicit Generator."""

from __future__ import annotations

import numpy as np


class Canvas:
    """An RGB float image in [0, 1] with an optional integer label map painted in lockstep."""

    def __init__(self, h: int, w: int, labels: bool = False):
        self.h, self.w = h, w
        self.image = np.zeros((h, w, 3), np.float32)
        self.labels = np.zeros((h, w), np.uint8) if labels else None

    def paint(self, box: tuple[int, int, int, int] | None, mask: np.ndarray | None, fill, label: int | None = None):
        """Paint `fill` (an RGB triple or an HxWx3 texture for the box) where mask is set inside box."""
        if box is None or mask is None or not mask.any():
            return
        y0, y1, x0, x1 = box
        region = self.image[y0:y1, x0:x1]
        fill_arr = np.asarray(fill, np.float32)
        if fill_arr.ndim == 3:
            fill_arr = fill_arr[: y1 - y0, : x1 - x0]
            region[mask] = fill_arr[mask]
        else:
            region[mask] = fill_arr
        if label is not None and self.labels is not None:
            self.labels[y0:y1, x0:x1][mask] = label


def _grid(h: int, w: int, y0: float, y1: float, x0: float, x1: float):
    """Integer bounding box clipped to the canvas, and pixel-centre coordinates inside it."""
    by0, by1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)
    bx0, bx1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)
    if by0 >= by1 or bx0 >= bx1:
        return None, None, None
    yy, xx = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
    return (by0, by1, bx0, bx1), yy + 0.5, xx + 0.5


def capsule(h: int, w: int, p0, p1, r0: float, r1: float | None = None):
    """A limb: points within a (linearly tapering) radius of segment p0-p1. Points are (x, y)."""
    r1 = r0 if r1 is None else r1
    (xa, ya), (xb, yb) = p0, p1
    rmax = max(r0, r1)
    box, yy, xx = _grid(h, w, min(ya, yb) - rmax, max(ya, yb) + rmax, min(xa, xb) - rmax, max(xa, xb) + rmax)
    if box is None:
        return None, None
    dx, dy = xb - xa, yb - ya
    t = np.clip(((xx - xa) * dx + (yy - ya) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
    dist = np.hypot(xx - (xa + t * dx), yy - (ya + t * dy))
    return box, dist <= r0 + (r1 - r0) * t


def ellipse(h: int, w: int, centre, axes, angle: float = 0.0):
    (cx, cy), (a, b) = centre, axes
    r = max(a, b)
    box, yy, xx = _grid(h, w, cy - r, cy + r, cx - r, cx + r)
    if box is None:
        return None, None
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / max(a, 1e-3)
    v = (-(xx - cx) * s + (yy - cy) * c) / max(b, 1e-3)
    return box, u * u + v * v <= 1.0


def polygon(h: int, w: int, points: np.ndarray):
    """A convex polygon (points in order, (x, y))."""
    pts = np.asarray(points, np.float32)
    box, yy, xx = _grid(h, w, pts[:, 1].min(), pts[:, 1].max(), pts[:, 0].min(), pts[:, 0].max())
    if box is None:
        return None, None
    inside_pos = np.ones(yy.shape, bool)
    inside_neg = np.ones(yy.shape, bool)
    for k in range(len(pts)):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % len(pts)]
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return box, inside_pos | inside_neg


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random grid bilinearly upsampled."""
    gh, gw = cells + 1, max(int(cells * w / max(h, 1)), 1) + 1
    grid = rng.random((gh, gw, channels)).astype(np.float32)
    ys, xs = np.linspace(0, gh - 1, h), np.linspace(0, gw - 1, w)
    y0, x0 = np.floor(ys).astype(int).clip(0, gh - 2), np.floor(xs).astype(int).clip(0, gw - 2)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def texture(rng: np.random.Generator, h: int, w: int, base) -> np.ndarray:
    """A fill around a base colour: flat, stripes, checks or mottled."""
    base = np.asarray(base, np.float32)
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        mod = np.zeros((h, w), np.float32)
    elif kind == 1:
        period, ang = rng.uniform(3, 12), rng.uniform(0, np.pi)
        mod = 0.5 * (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period) > 0) - 0.25
    elif kind == 2:
        p = rng.uniform(4, 14)
        mod = 0.4 * (((xx // p) + (yy // p)) % 2) - 0.2
    else:
        mod = smooth_noise(rng, h, w, int(rng.integers(3, 9)))[..., 0] - 0.5
    tint = rng.uniform(0.1, 0.35)
    return np.clip(base[None, None, :] + tint * mod[..., None], 0, 1)


def background(rng: np.random.Generator, h: int, w: int, clutter: int) -> np.ndarray:
    """Cluttered scene: coloured noise plus random ellipses, bars and polygons."""
    c = Canvas(h, w)
    c.image[:] = 0.2 + 0.6 * smooth_noise(rng, h, w, int(rng.integers(2, 6)), 3)
    for _ in range(clutter):
        colour = rng.random(3)
        kind = rng.integers(3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        size = rng.uniform(0.03, 0.25) * min(h, w)
        if kind == 0:
            box, m = ellipse(h, w, (cx, cy), (size, size * rng.uniform(0.3, 1)), rng.uniform(0, np.pi))
        elif kind == 1:
            ang = rng.uniform(0, np.pi)
            d = np.array([np.cos(ang), np.sin(ang)]) * size * 1.5
            box, m = capsule(h, w, (cx - d[0], cy - d[1]), (cx + d[0], cy + d[1]), size * rng.uniform(0.1, 0.3))
        else:
            k = int(rng.integers(3, 6))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            pts = np.stack([cx + size * np.cos(angles), cy + size * np.sin(angles)], 1)
            box, m = polygon(h, w, pts)
        if box is not None:
            y0, y1, x0, x1 = box
            c.paint(box, m, texture(rng, y1 - y0, x1 - x0, colour))
    return c.image


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    """Skin colours from light to dark brown."""
    t = rng.uniform(0, 1)
    light, dark = np.array([0.96, 0.80, 0.69]), np.array([0.36, 0.22, 0.14])
    return (light * (1 - t) + dark * t + rng.normal(0, 0.03, 3)).clip(0, 1).astype(np.float32)


def finish(rng: np.random.Generator, image: np.ndarray, noise: float = 0.03) -> np.ndarray:
    """Global lighting gain/bias, a mild gradient and sensor noise; returns float32 in [0, 1]."""
    h, w, _ = image.shape
    gain = rng.uniform(0.7, 1.2)
    grad = 1 + rng.uniform(-0.2, 0.2) * (np.linspace(-1, 1, w)[None, :, None])
    out = image * gain * grad + rng.uniform(-0.05, 0.05) + rng.normal(0, noise, image.shape)
    return out.clip(0, 1).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an HxWx3 uint8 (or float [0,1]) image, with zlib only (no imaging dependency)."""
    import struct
    import zlib

    if image.dtype != np.uint8:
        image = to_uint8(image)
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


PALETTE = np.array([[0, 0, 0], [230, 25, 75], [255, 225, 25], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.uint8)


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    img = to_uint8(image).astype(np.float32)
    colour = PALETTE[labels % len(PALETTE)].astype(np.float32)
    mask = (labels > 0)[..., None]
    return np.where(mask, img * (1 - alpha) + colour * alpha, img).astype(np.uint8)


def draw_points(image: np.ndarray, points, colour=(255, 0, 0), radius: int = 2) -> np.ndarray:
    out = image.copy()
    h, w, _ = out.shape
    for x, y in points:
        y0, y1 = max(int(y) - radius, 0), min(int(y) + radius + 1, h)
        x0, x1 = max(int(x) - radius, 0), min(int(x) + radius + 1, w)
        out[y0:y1, x0:x1] = colour
    return out


def draw_line(image: np.ndarray, p0, p1, colour=(255, 255, 0)) -> np.ndarray:
    out = image.copy()
    h, w, _ = out.shape
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 1
    for t in np.linspace(0, 1, n):
        x, y = int(p0[0] + (p1[0] - p0[0]) * t), int(p0[1] + (p1[1] - p0[1]) * t)
        if 0 <= x < w and 0 <= y < h:
            out[y, x] = colour
    return out


def draw_box(image: np.ndarray, box, colour=(0, 255, 0)) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = image
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        out = draw_line(out, a, b, colour)
    return out


def grid(images: list[np.ndarray], cols: int) -> np.ndarray:
    h, w, _ = images[0].shape
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * (h + 4), cols * (w + 4), 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        out[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = im
    return out
