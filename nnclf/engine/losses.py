"""Losses J(z, y) on the network's output z (logits), each with its output nonlinearity.

Shapes: z is (B, K_out) logits, y is (B,) integer class indices in [0, K). Every loss
works on the target distribution T = (1 - eps) onehot(y) + eps / K (eps = label smoothing,
0 by default), an optional per-class weight c_k and optional per-row weights r_i
(scikit-learn's ``sample_weight``, set in ``row_weights`` for one batch); the batch loss is

    J = 1/B * sum_i c_{y_i} r_i l_i        (weights default to 1)

(the caller scales r to mean 1 over the training set, so an epoch's J is the weighted mean)
and ``backward`` writes dJ/dz, the output-layer delta, already divided by B.

Matched pairs give the simple delta p - T: for softmax + cross-entropy the Jacobian of the
softmax cancels the 1/p of the log, and for sigmoid + binary cross-entropy p(1-p) cancels
likewise. That is why the loss owns the output nonlinearity instead of the network.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Registry
from .activations import sigmoid

LOSSES: Registry[type["Loss"]] = Registry("loss")


class Loss:
    name = ""
    classifies = True  # targets are class indices (regression losses: real-valued targets, False)
    # the argmax of the logits, when the last ``forward_backward`` computed it anyway (the fused
    # softmax path does); the training loop counts correct predictions with it. None otherwise.
    last_classes: np.ndarray | None = None
    # per-row weights r_i (B,) of the batch being processed, or None: set by the training step
    # around one ``forward_backward`` (an attribute, so every loss's forward/backward honours
    # it through ``_weighted_mean`` and ``_scale_rows`` without a change of signature)
    row_weights: np.ndarray | None = None

    def __init__(self, n_classes: int, label_smoothing: float = 0.0, class_weights: np.ndarray | None = None):
        self.n_classes = n_classes
        self.label_smoothing = float(label_smoothing)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float64)

    @property
    def n_outputs(self) -> int:
        """Width K_out of the output layer."""
        return self.n_classes

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        """Mean loss over the batch; keeps what ``backward`` needs (the probabilities)."""
        raise NotImplementedError

    def backward(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Write dJ/dz (B, K_out) into ``delta`` after a ``forward`` on the same batch."""
        raise NotImplementedError

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """Class probabilities (B, K) for logits z."""
        raise NotImplementedError

    def predict_classes(self, z: np.ndarray) -> np.ndarray:
        """Predicted class indices (B,) for logits z: argmax_k z_k, the argmax of the
        probabilities in exact arithmetic. Read off the logits because rounded probabilities
        can tie where the logits do not (two saturated sigmoid outputs are both 1.0), and
        dividing by a temperature would then change which tied class comes first."""
        return z.argmax(axis=1)

    def forward_backward(self, z: np.ndarray, y: np.ndarray, delta: np.ndarray) -> float:
        """``forward`` then ``backward`` in one call: returns the mean loss and writes dJ/dz
        into ``delta``. The training loop calls this; losses may override it with a fused pass."""
        self.last_classes = None
        value = self.forward(z, y)
        self.backward(y, delta)
        return value

    # -- shared pieces -------------------------------------------------------------------
    def targets(self, y: np.ndarray, dtype) -> np.ndarray:
        """T = (1 - eps) onehot(y) + eps / K, shape (B, K)."""
        eps, k = self.label_smoothing, self.n_classes
        t = np.full((len(y), k), eps / k, dtype=dtype)
        t[np.arange(len(y)), y] += 1.0 - eps
        return t

    def row_factors(self, y: np.ndarray) -> np.ndarray | None:
        """c_{y_i} r_i (B,) in float64, or None when every row weighs 1."""
        w = None if self.class_weights is None else self.class_weights[y]
        if self.row_weights is not None:
            r = np.asarray(self.row_weights, dtype=np.float64)
            w = r if w is None else w * r
        return w

    def _weighted_mean(self, per_sample: np.ndarray, y: np.ndarray) -> float:
        w = self.row_factors(y)
        if w is not None:
            return float(np.dot(per_sample.astype(np.float64), w) / len(y))
        return float(per_sample.mean(dtype=np.float64))

    def _scale_rows(self, delta: np.ndarray, y: np.ndarray) -> np.ndarray:
        """delta <- delta * c_{y_i} r_i / B."""
        w = self.row_factors(y)
        if w is not None:
            delta *= (w / len(y)).astype(delta.dtype)[:, None]
        else:
            delta *= delta.dtype.type(1.0 / len(y))
        return delta


def softmax(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """p_k = e^{z_k - max z} / sum_j e^{z_j - max z} (shifting by the max avoids overflow)."""
    out = np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log p_k = z_k - max z - log sum_j e^{z_j - max z}."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class _SoftmaxLoss(Loss):
    """Softmax output; cross-entropy -sum_k T_k log p_k per sample, delta = p - T."""

    _fused = None  # constants of the fused path for the last batch shape

    def forward(self, z, y):
        logp = log_softmax(z)
        self._p = np.exp(logp)
        if self.label_smoothing == 0.0:
            per_sample = -logp[np.arange(len(y)), y]
        else:
            per_sample = -(self.targets(y, z.dtype) * logp).sum(axis=1)
        return self._weighted_mean(per_sample, y)

    def backward(self, y, delta):
        np.copyto(delta, self._p)
        if self.label_smoothing == 0.0:
            delta[np.arange(len(y)), y] -= 1.0
        else:
            delta -= self.targets(y, delta.dtype)
        return self._scale_rows(delta, y)

    def predict_proba(self, z):
        return softmax(z)

    def forward_backward(self, z, y, delta):
        """Fused softmax cross-entropy for the common case (no smoothing, no class weights),
        with no (B, K) temporaries: delta holds s = z - max z, then e^s, then

            delta = e^s / (B sum_k e^s_k) - onehot(y) / B      (1/B folded into the normaliser)
            l_i = log sum_k e^{s_ik} - s_{i,y_i}

        the same numbers as ``forward`` + ``backward`` up to float rounding.
        """
        if self.label_smoothing != 0.0 or self.class_weights is not None or self.row_weights is not None or z.shape[1] != self.n_classes:
            return super().forward_backward(z, y, delta)
        batch, k = z.shape
        offsets, b_ones = self._fused_constants(batch, k, z.dtype)
        # the row max, read off the argmax (a max-reduction along short rows is slower, see
        # benchmarks/RESULTS.md); the argmax is kept for the training loop's accuracy count
        self.last_classes = classes = z.argmax(axis=1)
        top = z.take(np.add(offsets, classes))
        np.subtract(z, top[:, None], out=delta)  # s = z - max z
        flat = np.add(offsets, y)  # positions of (i, y_i) in the flattened (B, K) array
        picked = delta.take(flat)  # s_{i, y_i}
        np.exp(delta, out=delta)
        total = np.dot(delta, b_ones)  # B sum_k e^{s_ik}, (B,): the 1/B of the mean rides along
        delta /= total[:, None]
        flat_delta = delta.reshape(-1)
        flat_delta[flat] -= delta.dtype.type(1.0 / batch)
        # l_i = log(B sum_k e^s_ik) - log B - s_{i,y_i}
        per_sample = np.log(total)
        per_sample -= picked
        return float(np.add.reduce(per_sample, dtype=np.float64)) / batch - math.log(batch)

    def _fused_constants(self, batch, k, dtype):
        """Row offsets i * K and a vector of B's (B sum_k = dot with it), cached per shape."""
        cached = self._fused
        if cached is None or cached[0] != batch or cached[1] != k or cached[3].dtype != dtype:
            cached = self._fused = (batch, k, np.arange(batch) * k, np.full(k, batch, dtype=dtype))
        return cached[2], cached[3]


@LOSSES.register("cross_entropy", "ce", "bce")
class CrossEntropy(_SoftmaxLoss):
    """Cross-entropy with softmax for K > 2 classes, and with ONE sigmoid output unit and
    binary cross-entropy for K = 2 (the logistic-regression form):

        l = -[t log s(z) + (1 - t) log(1 - s(z))] = softplus(z) - t z,   dl/dz = s(z) - t

    where t = T_{i,1} is the target probability of the second class.
    """

    name = "cross_entropy"

    @property
    def n_outputs(self):
        return 1 if self.n_classes == 2 else self.n_classes

    def _binary_target(self, y, dtype):
        eps = self.label_smoothing
        return (y.astype(dtype) * (1.0 - eps) + eps / 2).reshape(-1, 1)

    def forward(self, z, y):
        if self.n_classes != 2:
            return super().forward(z, y)
        t = self._binary_target(y, z.dtype)
        # softplus(z) - t z, with softplus written so it never overflows
        per_sample = np.maximum(z, 0) - t * z + np.log1p(np.exp(-np.abs(z)))
        self._p = sigmoid(z)
        return self._weighted_mean(per_sample[:, 0], y)

    def backward(self, y, delta):
        if self.n_classes != 2:
            return super().backward(y, delta)
        np.subtract(self._p, self._binary_target(y, delta.dtype), out=delta)
        return self._scale_rows(delta, y)

    def predict_proba(self, z):
        if self.n_classes != 2:
            return softmax(z)
        p1 = sigmoid(z[:, 0])
        return np.stack([1.0 - p1, p1], axis=1)

    def predict_classes(self, z):
        if self.n_classes != 2:
            return super().predict_classes(z)
        return (z[:, 0] > 0).astype(np.int64)  # s(z) > 1/2


@LOSSES.register("nll")
class NegativeLogLikelihood(_SoftmaxLoss):
    """Negative log-likelihood of the true class under a log-softmax output,
    -log p_y (K outputs even for 2 classes). Same gradient as softmax cross-entropy: p - T.
    """

    name = "nll"


@LOSSES.register("kl_div", "kl")
class KLDivergence(_SoftmaxLoss):
    """KL(T || p) = sum_k T_k log(T_k / p_k) with softmax p and 0 log 0 = 0.

    It equals cross-entropy minus the entropy H(T), which does not depend on z, so dJ/dz = p - T;
    for one-hot targets (no smoothing) the value equals cross-entropy.
    """

    name = "kl_div"

    def forward(self, z, y):
        cross = super().forward(z, y)
        if self.label_smoothing == 0.0:
            return cross
        t = self.targets(y[:1], np.float64)[0]
        # every row's T is the same up to a permutation, so H(T) is one number
        entropy = -float(np.sum(t[t > 0] * np.log(t[t > 0])))
        w = self.row_factors(y)
        weights = 1.0 if w is None else float(w.mean())
        return cross - entropy * weights


@LOSSES.register("mse")
class MeanSquaredError(Loss):
    """Squared error on sigmoid outputs h = s(z) against one-hot targets:

        l = 1/2 ||h - T||^2,   dl/dz = (h - T) * h * (1 - h)

    (the lecture's perceptron units trained with squared error). Class scores h are
    normalised to sum 1 for ``predict_proba``.
    """

    name = "mse"

    def forward(self, z, y):
        self._h = sigmoid(z)
        diff = self._h - self.targets(y, z.dtype)
        return self._weighted_mean(0.5 * np.einsum("ij,ij->i", diff, diff), y)

    def backward(self, y, delta):
        h = self._h
        np.subtract(h, self.targets(y, delta.dtype), out=delta)
        delta *= h
        delta *= 1.0 - h
        return self._scale_rows(delta, y)

    def predict_proba(self, z):
        h = sigmoid(z)
        return h / h.sum(axis=1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) = sum_k p_k ln(p_k / q_k) for two discrete distributions (0 ln 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
