"""The style loss's feature extractor: a fixed random-filter conv net (no pretrained VGG, nothing to
download). Random multi-scale conv features with Gram statistics are known to capture texture
(Ustyuzhaninov et al., 'What does it take to generate natural textures?', ICLR 2017).

The weights come from a seeded numpy generator, so the numpy version here (used at evaluation) and
the torch version (used in training) compute the same features."""

from __future__ import annotations

import numpy as np

CHANNELS = (3, 32, 48, 64)
WEIGHT_SEED = 2017


def random_filters() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(WEIGHT_SEED)
    layers = []
    for cin, cout in zip(CHANNELS[:-1], CHANNELS[1:]):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
        layers.append((w, b))
    return layers


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x: C x H x W, 'same' padding."""
    c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    cols = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(1, 2))  # C x H x W x 3 x 3
    return np.einsum("chwij,ocij->ohw", cols, w, optimize=True) + b[:, None, None]


def features(image_chw: np.ndarray) -> list[np.ndarray]:
    """ReLU features after each layer; 2x2 average pooling between layers."""
    x = image_chw.astype(np.float32)
    out = []
    for k, (w, b) in enumerate(random_filters()):
        if k:
            c, h, wd = x.shape
            x = x[:, : h // 2 * 2, : wd // 2 * 2].reshape(c, h // 2, 2, wd // 2, 2).mean((2, 4))
        x = np.maximum(_conv3x3(x, w, b), 0)
        out.append(x)
    return out


def gram(f: np.ndarray) -> np.ndarray:
    c = f.shape[0]
    m = f.reshape(c, -1)
    return m @ m.T / m.shape[1]


def style_distance(image_chw: np.ndarray, target_grams: list[np.ndarray]) -> float:
    """Sum over layers of the mean squared Gram difference (the style loss the model is trained on)."""
    return float(sum(np.mean((gram(f) - g) ** 2) for f, g in zip(features(image_chw), target_grams)))
