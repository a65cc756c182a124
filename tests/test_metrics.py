"""Metrics against values computed by hand."""
import numpy as np
import pytest

from minunet import metrics


def test_overlap_scores_by_hand():
    target = np.zeros((1, 4, 4), int)
    target[0, 0, :4] = 1                      # 4 true pixels
    pred = np.zeros((1, 4, 4), int)
    pred[0, 0, 2:4] = 1
    pred[0, 1, 0:4] = 1                       # 6 predicted, 2 of them right
    s = metrics.per_image(pred, target)
    assert s["dice"][0, 0] == pytest.approx(2 * 2 / (6 + 4))
    assert s["iou"][0, 0] == pytest.approx(2 / 8)
    assert s["precision"][0, 0] == pytest.approx(2 / 6)
    assert s["recall"][0, 0] == pytest.approx(2 / 4)
    assert s["pixel_accuracy"][0] == pytest.approx((16 - 2 - 4) / 16)


def test_hausdorff95_by_hand():
    a = np.zeros((20, 20), bool)
    a[5, 5] = True
    b = np.zeros((20, 20), bool)
    b[5, 8] = True                            # single pixels 3 apart
    assert metrics.hd95(a, b) == pytest.approx(3.0)
    # 3x3 squares, the second 4 columns to the right: the boundary is all but the centre pixel
    a = np.zeros((12, 16), bool)
    a[2:5, 2:5] = True
    b = np.zeros((12, 16), bool)
    b[2:5, 6:9] = True
    pa = [p for p in np.argwhere(a) if tuple(p) != (3, 3)]
    pb = [p for p in np.argwhere(b) if tuple(p) != (3, 7)]
    d = [min(np.hypot(*(p - q)) for q in pb) for p in pa] + [min(np.hypot(*(q - p)) for p in pa) for q in pb]
    assert sorted(set(np.round(d, 6))) == [2.0, 3.0, 4.0]          # 4 px from the far columns
    assert metrics.hd95(a, b) == pytest.approx(np.percentile(d, 95))
    assert metrics.hd95(a, b) == pytest.approx(4.0)
    assert metrics.hd95(a, a) == 0.0


def test_empty_masks_are_documented_values():
    empty = np.zeros((1, 5, 5), int)
    full = np.zeros((1, 5, 5), int)
    full[0, 2, 2] = 1
    both = metrics.per_image(empty, empty)
    assert both["dice"][0, 0] == 1 and both["precision"][0, 0] == 1 and both["recall"][0, 0] == 1 and both["hd95"][0, 0] == 0
    missed = metrics.per_image(empty, full)
    assert missed["dice"][0, 0] == 0 and missed["recall"][0, 0] == 0 and missed["precision"][0, 0] == 0
    assert np.isnan(missed["hd95"][0, 0])
    s = metrics.summarize(np.concatenate([empty, empty]), np.concatenate([full, empty]))
    assert s["dice"] == 0.5 and s["hd95"] == 0.0 and s["hd95_undefined"] == 1


def test_multiclass_summary_has_per_class_means():
    target = np.array([[[0, 1, 2, 2]]])
    pred = np.array([[[0, 1, 1, 2]]])
    s = metrics.summarize(pred, target, n_classes=3, hausdorff=False)
    assert s["dice_per_class"] == pytest.approx([2 * 1 / 3, 2 * 1 / 3])
    assert s["dice"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="must both be"):
        metrics.per_image(pred, target[0])
