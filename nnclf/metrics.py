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


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, bins: int = 15, y_pred: np.ndarray | None = None):
    """Per confidence bin b = ((b-1)/M, b/M]: (rows, accuracy, mean confidence), arrays (M,)
    (NaN accuracy and confidence in an empty bin); rows with an unknown label left out."""
    known = y_true >= 0
    p = proba[known].astype(np.float64)
    confidence = p.max(axis=1) if len(p) else np.zeros(0)
    predicted = p.argmax(axis=1) if y_pred is None else y_pred[known]
    correct = (predicted == y_true[known]).astype(np.float64)
    # bin b (0-based) holds b/M < conf <= (b+1)/M; a confidence of exactly 0 joins the first bin
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, correct, bins) / count
        mean_confidence = np.bincount(which, confidence, bins) / count
    return count, accuracy, mean_confidence


def calibration_errors(y_true: np.ndarray, proba: np.ndarray, bins: int = 15, y_pred: np.ndarray | None = None) -> tuple[float, float]:
    """Top-label expected and maximum calibration error (Guo et al. 2017) over ``bins``
    equal-width confidence bins B_b = ((b-1)/M, b/M]:

        conf_i = max_k p_ik,  acc(B) = mean [argmax_k p_ik = y_i],  conf(B) = mean conf_i
        ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,   MCE = max_{b: B_b non-empty} |acc(B_b) - conf(B_b)|

    proba (n, K), y_true (n,); rows with an unknown label (-1) are left out, as in ``log_loss``.
    ``y_pred`` (n,) replaces argmax_k p_ik when given (the model's own predictions).
    """
    if not (y_true >= 0).any():
        return float("nan"), float("nan")
    count, accuracy, confidence = reliability_bins(y_true, proba, bins, y_pred)
    filled = count > 0
    gap = np.abs(accuracy[filled] - confidence[filled])
    ece = float(np.sum(count[filled] * gap) / count.sum())
    mce = float(gap.max())
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


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to
    (1, 1), for binary labels (1 positive, 0 negative, -1 left out). The trapezoid area under
    it is ``roc_auc`` (ties give a diagonal step, the 1/2 of Mann-Whitney)."""
    tps, fps = _cumulative_counts(y_true, score)
    if not len(tps):
        return np.zeros(1), np.zeros(1)
    return np.r_[0.0, fps / max(fps[-1], 1.0)], np.r_[0.0, tps / max(tps[-1], 1.0)]


def precision_recall_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(precision, recall, average precision) for predicting positive when score >= t, at every
    distinct threshold t from the highest down. AP = sum_n (R_n - R_{n-1}) P_n (scikit-learn's
    definition: a step function, no interpolation)."""
    tps, fps = _cumulative_counts(y_true, score)
    if not len(tps) or tps[-1] == 0:
        return np.ones(1), np.zeros(1), float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[1.0, precision], np.r_[0.0, recall], ap


def _cumulative_counts(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when thresholding at each distinct score, highest first."""
    known = y_true >= 0
    y, s = y_true[known] == 1, score[known].astype(np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.zeros(0, np.int64)
    tps = np.cumsum(y)[last].astype(np.float64)
    return tps, (last + 1) - tps


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


# -- regression ----------------------------------------------------------------------------------
def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per target (columns of (n, m) arrays), as scikit-learn defines them:

        rmse_k = sqrt(1/n sum_i (y_ik - yhat_ik)^2),   mae_k = 1/n sum_i |y_ik - yhat_ik|,
        r2_k = 1 - sum_i (y_ik - yhat_ik)^2 / sum_i (y_ik - mean_i y_ik)^2   (NaN for a constant target)
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    residual = y_true - y_pred
    ss_res = np.square(residual).sum(axis=0)
    ss_tot = np.square(y_true - y_true.mean(axis=0)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return {"rmse": np.sqrt(ss_res / len(y_true)), "mae": np.abs(residual).mean(axis=0), "r2": r2}


def regression_means(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmse, mae and r2, each the mean over targets (scikit-learn's 'uniform_average')."""
    return {k: float(np.mean(v)) for k, v in regression_scores(y_true, y_pred).items()}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict:
    """n, the means over targets, ``per_target`` {name: {rmse, mae, r2}} and the quantiles of
    the residual y - yhat (all targets pooled) at 0, 5, 25, 50, 75, 95 and 100 %."""
    scores = regression_scores(y_true, y_pred)
    residual = (np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)).ravel()
    qs = (0, 5, 25, 50, 75, 95, 100)
    return {
        "n": int(len(y_true)),
        **{k: float(np.mean(v)) for k, v in scores.items()},
        "per_target": {name: {k: float(scores[k][j]) for k in scores} for j, name in enumerate(names)},
        "residual_quantiles": {f"q{q}": float(v) for q, v in zip(qs, np.percentile(residual, qs))},
    }
