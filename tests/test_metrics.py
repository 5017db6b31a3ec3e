"""Task metrics against cases computed by hand."""

import numpy as np
import pytest
from optkit.reference_models import metrics as M


def test_miou_hand_case():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    # class 0: tp 1, union 2 → 0.5; class 1: tp 2, union 3 → 2/3
    value, per_class = M.miou(M.confusion(pred, target, 3))
    assert per_class[0] == pytest.approx(0.5) and per_class[1] == pytest.approx(2 / 3)
    assert np.isnan(per_class[2])  # absent class does not count
    assert value == pytest.approx((0.5 + 2 / 3) / 2)


def test_box_iou_hand_case():
    assert M.box_iou([0, 0, 2, 2], [1, 1, 3, 3])[0, 0] == pytest.approx(1 / 7)
    assert M.box_iou([0, 0, 1, 1], [2, 2, 3, 3])[0, 0] == 0


def test_detection_ap_hand_case():
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    # three detections: hit (0.9), false positive (0.8), hit (0.7) → precision 1, 1/2, 2/3 at recall .5, .5, 1
    det = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 30, 30]]), np.array([0.9, 0.8, 0.7]),
            np.array([0, 0, 0]))]
    ap, per_class = M.detection_ap(det, gt, classes=1)
    # envelope: p=1 on [0, .5], p=2/3 on (.5, 1] → 0.5 + 0.5 * 2/3
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a duplicate detection of a matched box is a false positive
    det_dup = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), np.array([0, 0]))]
    assert M.detection_ap(det_dup, gt, 1)[0] == pytest.approx(0.5)
    # the wrong class never matches
    det_wrong = [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([1]))]
    assert M.detection_ap(det_wrong, gt, 2)[0] == 0.0


def test_pck_and_oks():
    gt = np.array([[[0, 0, 2], [10, 0, 2], [5, 5, 0]]], np.float64)
    pred = np.array([[[1, 0], [10, 3], [100, 100]]], np.float64)
    # scale 10, alpha .2 → threshold 2: first within (1), second not (3); third invisible
    assert M.pck(pred, gt, np.array([10.0])) == pytest.approx(0.5)
    sig = np.array([0.1, 0.1, 0.1])
    perfect = M.oks(gt[0, :, :2], gt[0], area=100.0, sigmas=sig)
    assert perfect == pytest.approx(1.0)
    # d^2 = 1 for a visible keypoint: e = 1 / (2 * 100 * 0.04) = 0.125
    one = M.oks(np.array([[1, 0], [10, 0], [0, 0]]), gt[0], area=100.0, sigmas=sig)
    assert one == pytest.approx((np.exp(-0.125) + 1) / 2)


def test_oks_ap_perfect_and_missing():
    gt = [np.array([[[0, 0, 2], [10, 0, 2]]], np.float64)]
    sig = np.array([0.1, 0.1])
    assert M.oks_ap([(gt[0], np.array([1.0]))], gt, [[100.0]], sig) == pytest.approx(1.0)
    assert M.oks_ap([(np.zeros((0, 2, 3)), np.zeros(0))], gt, [[100.0]], sig) == 0.0


def test_nme_hand_case():
    gt = np.array([[[0, 0], [10, 0]]], np.float64)
    pred = np.array([[[3, 4], [10, 0]]], np.float64)
    assert M.nme(pred, gt, np.array([10.0])) == pytest.approx((5 + 0) / 2 / 10)


def test_psnr_and_ssim():
    a = np.zeros((8, 8))
    b = np.full((8, 8), 0.1)
    assert M.psnr(a, b) == pytest.approx(20.0)
    assert M.psnr(a, a) == float("inf")
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16))
    assert M.ssim(x, x) == pytest.approx(1.0)
    assert M.ssim(x, 1 - x) < 0
    assert 0 < M.ssim(x, np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)) < 1
