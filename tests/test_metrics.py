"""Classification metrics on small hand-made cases; AUC against a brute-force pairwise count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnclf.metrics import classification_report, confusion_matrix, log_loss, macro_f1, per_class, roc_auc

# 3 classes, 8 rows
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0])
# rows: true 0 -> pred (0, 1, 0); true 1 -> (1, 2); true 2 -> (2, 2, 0)
CM = [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
# precision by column: c0 2/3, c1 1/2, c2 2/3; recall by row: 2/3, 1/2, 2/3
PRECISION = [2 / 3, 1 / 2, 2 / 3]
RECALL = [2 / 3, 1 / 2, 2 / 3]
F1 = [2 / 3, 1 / 2, 2 / 3]  # P = R -> F1 = P


def test_confusion_matrix_hand():
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == CM


def test_confusion_matrix_has_all_classes_even_if_absent():
    cm = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 4)
    assert cm.shape == (4, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_per_class_hand():
    stats = per_class(np.array(CM))
    np.testing.assert_allclose(stats["precision"], PRECISION, rtol=1e-15)
    np.testing.assert_allclose(stats["recall"], RECALL, rtol=1e-15)
    np.testing.assert_allclose(stats["f1"], F1, rtol=1e-15)
    assert stats["support"].tolist() == [3, 2, 3]


def test_per_class_unequal_precision_recall():
    # class 0: TP 1, FP 3, FN 0 -> P 1/4, R 1, F1 = 2 (1/4) / (5/4) = 2/5
    cm = np.array([[1, 0], [3, 1]])
    stats = per_class(cm)
    np.testing.assert_allclose(stats["precision"], [1 / 4, 1], rtol=1e-15)
    np.testing.assert_allclose(stats["recall"], [1, 1 / 4], rtol=1e-15)
    np.testing.assert_allclose(stats["f1"], [2 / 5, 2 / 5], rtol=1e-15)


def test_per_class_undefined_is_zero():
    # class 2 never predicted and never true: all zero, no NaN
    cm = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0]])
    stats = per_class(cm)
    assert stats["precision"][2] == 0 and stats["recall"][2] == 0 and stats["f1"][2] == 0
    assert np.all(np.isfinite(stats["f1"]))


def test_macro_f1_hand():
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(np.mean(F1), rel=1e-15)
    assert macro_f1(Y_TRUE, Y_TRUE, 3) == 1.0


def test_log_loss_hand():
    proba = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    y = np.array([0, 1, 2])
    assert log_loss(y, proba) == pytest.approx(-(math.log(0.5) + math.log(0.8) + math.log(0.6)) / 3, rel=1e-14)


def test_log_loss_clips_zero_probability():
    proba = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert log_loss(np.array([1, 0]), proba) == pytest.approx((-math.log(1e-15) - math.log(0.5)) / 2, rel=1e-14)


def test_log_loss_skips_unknown_rows():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.25, 0.75]])
    assert log_loss(np.array([0, -1, 1]), proba) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2, rel=1e-14)
    assert math.isnan(log_loss(np.array([-1, -1]), proba[:2]))


def brute_auc(y, s):
    pos = [si for yi, si in zip(y, s) if yi == 1]
    neg = [si for yi, si in zip(y, s) if yi == 0]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def test_roc_auc_hand():
    # pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.4 > 0.3), (0.4 < 0.5) -> 3/4
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.3, 0.4, 0.5])) == pytest.approx(0.75, rel=1e-15)
    assert roc_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert roc_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 40
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.integers(0, 6, n) / 5.0  # few distinct scores: many ties
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s), rel=1e-13)


def test_roc_auc_single_class_is_nan():
    assert math.isnan(roc_auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))


def test_roc_auc_ignores_unknown_labels():
    y = np.array([1, 0, -1, 1, 0, -1])
    s = np.array([0.9, 0.2, 0.5, 0.3, 0.4, 0.1])
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s), rel=1e-14)
    assert brute_auc(y, s) == pytest.approx(0.75)


def test_unknown_true_labels_lie_in_no_row():
    y_true = np.array([0, -1, 1, -1])
    y_pred = np.array([0, 0, 1, 1])
    assert confusion_matrix(y_true, y_pred, 2).tolist() == [[1, 0], [0, 1]]


def test_report_counts_unknown_labels_as_wrong():
    labels = ["a", "b"]
    y = np.array([0, 0, 1, 1, -1, -1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.7, 0.3], [0.6, 0.4]])
    # predictions 0, 1, 1, 1, 0, 0: correct on rows 0, 2, 3 of 6 (unknown rows are wrong)
    report = classification_report(y, proba, labels)
    assert report["n"] == 6
    assert report["unknown_labels"] == 2
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["confusion_matrix"] == [[1, 1], [0, 2]]
    # class a was predicted 3 times (rows 0, 4, 5) and right once: the unknown rows predicted
    # as 'a' are wrong predictions of 'a', so precision(a) = 1/3, not 1/1
    pa, pb = report["per_class"][0], report["per_class"][1]
    assert pa["precision"] == pytest.approx(1 / 3)
    assert pb["precision"] == pytest.approx(2 / 3)
    # recall is over rows whose true class is known: a 1/2, b 2/2
    assert pa["recall"] == pytest.approx(1 / 2)
    assert pb["recall"] == pytest.approx(1.0)
    f1_a = 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)
    f1_b = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert pa["f1"] == pytest.approx(f1_a)
    assert report["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert report["macro_precision"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert report["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)) / 4)
    # AUC on the known rows only: pos scores (0.7, 0.6) vs neg (0.1, 0.8) -> 2 of 4 pairs
    assert report["roc_auc"] == pytest.approx(0.5)
    assert macro_f1(y, proba.argmax(axis=1), 2) == pytest.approx((f1_a + f1_b) / 2)


def test_report_hand_multiclass():
    proba = np.eye(3)[Y_PRED] * 0.7 + 0.1  # rows sum to 1, argmax = Y_PRED
    report = classification_report(Y_TRUE, proba, ["x", "y", "z"])
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert report["confusion_matrix"] == CM
    assert [r["support"] for r in report["per_class"]] == [3, 2, 3]
    assert report["macro_f1"] == pytest.approx(np.mean(F1))
    assert "roc_auc" not in report
    # log loss: p = 0.8 on the 5 correct rows, 0.1 on the 3 wrong ones
    assert report["log_loss"] == pytest.approx(-(5 * math.log(0.8) + 3 * math.log(0.1)) / 8)


def test_macro_averages_skip_classes_absent_from_data_and_predictions():
    # three training classes; the evaluation data holds only class 0, predicted as 0, 0, 1
    y_true = np.array([0, 0, 0])
    proba = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    report = classification_report(y_true, proba, ["a", "b", "c"])
    # class a: P = 2/2, R = 2/3; class b: P = 0/1, R undefined -> 0; class c: absent, never predicted
    f1_a = 2 * 1 * (2 / 3) / (1 + 2 / 3)
    assert report["macro_recall"] == pytest.approx((2 / 3 + 0) / 2)
    assert report["macro_precision"] == pytest.approx((1 + 0) / 2)
    assert report["macro_f1"] == pytest.approx(f1_a / 2)
    assert macro_f1(y_true, proba.argmax(axis=1), 3) == pytest.approx(f1_a / 2)


@pytest.mark.parametrize("seed", range(3))
def test_one_vs_rest_auc_is_each_class_against_the_rest(seed):
    """Per class: brute-force AUC of p_k with class k positive; the report's macro mean over
    the classes present (a class absent from y has no AUC and is left out of the mean)."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(4), size=60).round(2)  # rounding makes ties
    y = rng.integers(0, 3, 60)  # class 3 never occurs
    y[:3] = -1  # unknown labels are left out
    report = classification_report(y, proba, ["a", "b", "c", "d"])
    known = y >= 0
    want = [brute_auc((y[known] == k).astype(int), proba[known, k]) for k in range(3)]
    got = [row["roc_auc"] for row in report["per_class"]]
    assert got[:3] == pytest.approx(want, rel=1e-13) and math.isnan(got[3])
    assert report["roc_auc_ovr"] == pytest.approx(np.mean(want), rel=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_roc_curve_by_brute_force_thresholds_and_its_area_is_the_auc(seed):
    from nnclf.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 50)
    y[:2] = [0, 1]
    s = rng.integers(0, 8, 50) / 7.0  # ties
    fpr, tpr = roc_curve(y, s)
    thresholds = np.unique(s)[::-1]
    want_tpr = [np.mean(s[y == 1] >= t) for t in thresholds]
    want_fpr = [np.mean(s[y == 0] >= t) for t in thresholds]
    np.testing.assert_allclose(tpr, [0.0, *want_tpr], rtol=1e-15)
    np.testing.assert_allclose(fpr, [0.0, *want_fpr], rtol=1e-15)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(roc_auc(y, s), rel=1e-12)
    precision, recall, ap = precision_recall_curve(y, s)
    tp = np.array([np.sum((s >= t) & (y == 1)) for t in thresholds])
    np.testing.assert_allclose(precision[1:], tp / np.array([np.sum(s >= t) for t in thresholds]), rtol=1e-15)
    np.testing.assert_allclose(recall[1:], tp / np.sum(y == 1), rtol=1e-15)
    assert ap == pytest.approx(np.sum(np.diff(np.r_[0, recall[1:]]) * precision[1:]), rel=1e-15)


def test_average_precision_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos): P@1 = 1, P@3 = 2/3; recall steps 1/2 each
    from nnclf.metrics import precision_recall_curve

    _, _, ap = precision_recall_curve(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7]))
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, rel=1e-15)
