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


def calibration_errors(y_true: np.ndarray, proba: np.ndarray, bins: int = 15, y_pred: np.ndarray | None = None) -> tuple[float, float]:
    """Top-label expected and maximum calibration error (Guo et al. 2017) over ``bins``
    equal-width confidence bins B_b = ((b-1)/M, b/M]:

        conf_i = max_k p_ik,  acc(B) = mean [argmax_k p_ik = y_i],  conf(B) = mean conf_i
        ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,   MCE = max_{b: B_b non-empty} |acc(B_b) - conf(B_b)|

    proba (n, K), y_true (n,); rows with an unknown label (-1) are left out, as in ``log_loss``.
    ``y_pred`` (n,) replaces argmax_k p_ik when given (the model's own predictions).
    """
    known = y_true >= 0
    if not known.any():
        return float("nan"), float("nan")
    p = proba[known].astype(np.float64)
    confidence = p.max(axis=1)
    predicted = p.argmax(axis=1) if y_pred is None else y_pred[known]
    correct = (predicted == y_true[known]).astype(np.float64)
    # bin b (0-based) holds b/M < conf <= (b+1)/M; a confidence of exactly 0 joins the first bin
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))  # |B| * |acc - conf|
    filled = count > 0
    ece = float(gap.sum() / len(p))
    mce = float((gap[filled] / count[filled]).max())
    return ece, mce


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Brier score 1/n sum_i sum_k (p_ik - [y_i = k])^2 for K > 2 classes (in [0, 2]); for two
    classes the usual binary form 1/n sum_i (p_i1 - [y_i = 1])^2 (half the sum, in [0, 1]),
    as scikit-learn's ``brier_score_loss``. Rows with an unknown label (-1) are left out."""
    known = y_true >= 0
    if not known.any():
        return float("nan")
    p = proba[known].astype(np.float64)
    y = y_true[known]
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def classification_report(y_true: np.ndarray, proba: np.ndarray, labels: list, y_pred: np.ndarray | None = None) -> dict:
    """Everything ``nnclf evaluate`` prints, as JSON-ready data. ``y_pred`` defaults to the
    argmax of ``proba`` (the model gives its own, read off the logits)."""
    k = len(labels)
    y_pred = proba.argmax(axis=1) if y_pred is None else y_pred
    cm = confusion_matrix(y_true, y_pred, k)
    predicted = predicted_counts(y_pred, k)
    stats = per_class(cm, predicted)
    n = int(len(y_true))
    ece, mce = calibration_errors(y_true, proba, y_pred=y_pred)
    report = {
        "n": n,
        "accuracy": float(np.mean(y_pred == y_true)) if n else float("nan"),
        "macro_precision": macro_mean(stats["precision"], stats, predicted),
        "macro_recall": macro_mean(stats["recall"], stats, predicted),
        "macro_f1": macro_mean(stats["f1"], stats, predicted),
        "log_loss": log_loss(y_true, proba),
        "ece": ece,
        "mce": mce,
        "brier": brier_score(y_true, proba),
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
    else:
        aucs = one_vs_rest_auc(y_true, proba)
        for row, auc in zip(report["per_class"], aucs):
            row["roc_auc"] = auc
        defined = [a for a in aucs if np.isfinite(a)]
        report["roc_auc_ovr"] = float(np.mean(defined)) if defined else float("nan")
    return report


def one_vs_rest_auc(y_true: np.ndarray, proba: np.ndarray) -> list[float]:
    """ROC AUC of class k against the rest, scored by p_k, for each k (NaN for a class that is
    absent or is every row). Their mean over the defined classes is the macro one-vs-rest AUC
    (scikit-learn's ``roc_auc_score(multi_class='ovr', average='macro')``)."""
    out = []
    for k in range(proba.shape[1]):
        binary = np.where(y_true < 0, -1, (y_true == k).astype(np.int64))
        out.append(roc_auc(binary, proba[:, k]))
    return out
