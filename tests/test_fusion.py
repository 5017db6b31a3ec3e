"""Face fusion maths on cases with known answers."""

import numpy as np
from optkit.reference_models.face.fusion import similarity_transform, tone_lut, warp


def test_similarity_transform_recovers_rotation_scale_translation():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (68, 2))
    ang, scale, t = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (scale * rot).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_warp_by_translation_shifts_pixels():
    img = np.zeros((8, 8, 1), np.float32)
    img[2, 3] = 1.0
    out = warp(img, np.array([[1.0, 0, 2], [0, 1.0, 1]]), (8, 8))
    assert out[3, 5, 0] == 1.0 and out.sum() == 1.0


def test_tone_lut_matches_histograms():
    src = np.repeat(np.arange(0, 100, dtype=np.uint8)[:, None], 3, 1)
    tgt = src + 100
    lut = tone_lut(src, tgt)
    np.testing.assert_allclose(lut[:, src[:, 0]].T, tgt, atol=1.0)
