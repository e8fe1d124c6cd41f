"""Classification metrics from true and predicted class indices (pure NumPy).

Rows of the confusion matrix are true labels, columns predictions, both in label order.
A true index of -1 (a label never seen in training) counts as wrong and lands in no row;
its prediction c still counts as a false positive of c in precision (see ``predicted_counts``).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    known = y_true >= 0
    return np.bincount(y_true[known] * k + y_pred[known], minlength=k * k).reshape(k, k)


def predicted_counts(y_pred: np.ndarray, k: int) -> np.ndarray:
    """How often each class was predicted, over all rows (unknown true labels included)."""
    return np.bincount(y_pred, minlength=k)


def per_class(cm: np.ndarray, predicted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """precision_c = TP / (TP + FP), recall_c = TP / (TP + FN), f1 = 2PR / (P + R); 0 when undefined.

    ``predicted`` (from ``predicted_counts``) is TP + FP per class; by default the column sums
    of ``cm``, which miss predictions on rows whose true label is unknown.
    """
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0) if predicted is None else predicted
    actual = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def macro_mean(values: np.ndarray, stats: dict[str, np.ndarray], predicted: np.ndarray) -> float:
    """Mean over the classes that occur in the true labels or the predictions (as scikit-learn
    does without ``labels=``): a class absent from the evaluation data and never predicted
    says nothing about the model and must not drag the average to 0."""
    present = (stats["support"] > 0) | (predicted > 0)
    return float(values[present].mean()) if present.any() else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    predicted = predicted_counts(y_pred, k)
    stats = per_class(confusion_matrix(y_true, y_pred, k), predicted)
    return macro_mean(stats["f1"], stats, predicted)


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    """-1/n sum_i log p_{i, y_i} with p clipped to [eps, 1]; rows with unknown labels skipped."""
    known = y_true >= 0
    if not known.any():
        return float("nan")
    p = proba[np.flatnonzero(known), y_true[known]].astype(np.float64)
    return float(-np.mean(np.log(np.clip(p, eps, 1.0))))


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve for binary labels (1 = positive): the probability that a random
    positive scores above a random negative, ties counting one half (Mann-Whitney U)."""
    pos = y_true == 1
    n_pos, n_neg = int(pos.sum()), int((y_true == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    known = y_true >= 0
    s, p = score[known], pos[known]
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_report(y_true: np.ndarray, proba: np.ndarray, labels: list) -> dict:
    """Everything ``nnclf evaluate`` prints, as JSON-ready data."""
    k = len(labels)
    y_pred = proba.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    predicted = predicted_counts(y_pred, k)
    stats = per_class(cm, predicted)
    n = int(len(y_true))
    report = {
        "n": n,
        "accuracy": float(np.mean(y_pred == y_true)) if n else float("nan"),
        "macro_precision": macro_mean(stats["precision"], stats, predicted),
        "macro_recall": macro_mean(stats["recall"], stats, predicted),
        "macro_f1": macro_mean(stats["f1"], stats, predicted),
        "log_loss": log_loss(y_true, proba),
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
        "per_class": [
            {
                "label": label,
                "precision": float(stats["precision"][i]),
                "recall": float(stats["recall"][i]),
                "f1": float(stats["f1"][i]),
                "support": int(stats["support"][i]),
            }
            for i, label in enumerate(labels)
        ],
        "unknown_labels": int(np.sum(y_true < 0)),
    }
    if k == 2:
        report["roc_auc"] = roc_auc(y_true, proba[:, 1])
    return report
