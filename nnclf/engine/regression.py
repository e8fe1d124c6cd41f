"""Losses for real-valued outputs: regression and reconstruction, with an identity output.

Shapes: z is (B, m) network outputs (no output nonlinearity: h = z), y is (B, m) float
targets (for reconstruction, the input rows themselves). The batch loss is the mean over
rows of a per-row sum over outputs,

    J = 1/B sum_i sum_k l(z_ik - y_ik)

and ``backward`` writes dJ/dz = l'(z - y) / B, the output-layer delta. With an identity output
the delta is the loss's derivative itself (no Jacobian of an output function to multiply by).

    mse:    l(r) = 1/2 r^2                               l'(r) = r            (the lecture's 1/2 ||h - y||^2)
    mae:    l(r) = |r|                                   l'(r) = sign(r)      (0 at r = 0, a subgradient)
    huber:  l(r) = 1/2 r^2 if |r| <= d else d (|r| - d/2)  l'(r) = clip(r, -d, d)

Optional per-row weights r_i (scikit-learn's ``sample_weight``, set in ``row_weights`` for one
batch by the training step, as for the classification losses) make it

    J = 1/B sum_i r_i sum_k l(z_ik - y_ik),    dJ/dz_ik = r_i l'(z_ik - y_ik) / B

(the caller scales r to mean 1 over the training set, so an epoch's J is the weighted mean);
without weights the unweighted code path runs unchanged, so the CLI's bits do not move.

These live apart from ``losses.LOSSES`` because ``mse`` there is the classification loss on
sigmoid outputs against one-hot targets: a config's ``loss.name`` is looked up in the registry
of its task.
"""

from __future__ import annotations

import numpy as np

from ..registry import Registry

REGRESSION_LOSSES: Registry[type["RegressionLoss"]] = Registry("regression loss")


class RegressionLoss:
    """Base: identity output, per-element loss ``l(r)`` and derivative on residuals r = z - y."""

    name = ""
    classifies = False  # the training loop counts no correct classes for it
    hyper: dict[str, float] = {}  # the config keys of loss.* this loss reads, with defaults
    last_classes = None
    # per-row weights r_i (B,) of the batch being processed, or None (see the module docstring)
    row_weights: np.ndarray | None = None

    def __init__(self, n_outputs: int, **hyper: float):
        self._n_outputs = int(n_outputs)
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter {sorted(unknown)[0]!r}")
        for key, default in self.hyper.items():
            setattr(self, key, float(hyper.get(key, default)))

    @property
    def n_outputs(self) -> int:
        """Width m of the output layer: the number of targets (or of input columns)."""
        return self._n_outputs

    # per-element loss and derivative of the residual r (arrays of any shape)
    def elementwise(self, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def derivative(self, r: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def row_factors(self, y: np.ndarray) -> np.ndarray | None:
        """r_i (B,) in float64, or None when every row weighs 1."""
        return None if self.row_weights is None else np.asarray(self.row_weights, dtype=np.float64)

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        """J = 1/B sum_i r_i sum_k l(z_ik - y_ik) (r_i = 1 without weights); keeps the residuals
        for ``backward``."""
        self._r = np.subtract(z, y, dtype=z.dtype)
        per_element = self.elementwise(self._r)
        w = self.row_factors(y)
        if w is not None:
            return float(np.dot(per_element.sum(axis=1, dtype=np.float64), w)) / len(z)
        return float(per_element.sum(dtype=np.float64)) / len(z)

    def backward(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """delta = r_i l'(z - y) / B, shape (B, m), after ``forward`` on the same batch."""
        self.derivative(self._r, delta)
        w = self.row_factors(y)
        if w is not None:
            delta *= (w / len(delta)).astype(delta.dtype)[:, None]
        else:
            delta *= delta.dtype.type(1.0 / len(delta))
        return delta

    def forward_backward(self, z: np.ndarray, y: np.ndarray, delta: np.ndarray) -> float:
        value = self.forward(z, y)
        self.backward(y, delta)
        return value

    def predict(self, z: np.ndarray) -> np.ndarray:
        """The prediction h = z (identity output)."""
        return z


@REGRESSION_LOSSES.register("mse")
class SquaredError(RegressionLoss):
    """l(r) = 1/2 r^2, so J = 1/B sum_i 1/2 ||h_i - y_i||^2 and dJ/dz = (h - y) / B."""

    name = "mse"

    def elementwise(self, r):
        return 0.5 * np.square(r, dtype=np.float64)

    def derivative(self, r, out):
        np.copyto(out, r)
        return out


@REGRESSION_LOSSES.register("mae")
class AbsoluteError(RegressionLoss):
    """l(r) = |r|, dl/dr = sign(r) (0 at r = 0: a subgradient, the kink is not differentiable)."""

    name = "mae"

    def elementwise(self, r):
        return np.abs(r, dtype=np.float64)

    def derivative(self, r, out):
        np.sign(r, out=out)
        return out


@REGRESSION_LOSSES.register("huber")
class Huber(RegressionLoss):
    """Quadratic within ``delta`` of the target, linear beyond (continuous value and slope):

        l(r) = 1/2 r^2 for |r| <= delta,   delta (|r| - delta / 2) otherwise;   l'(r) = clip(r, -delta, delta)
    """

    name = "huber"
    hyper = {"delta": 1.0}

    def elementwise(self, r):
        a = np.abs(r, dtype=np.float64)
        d = self.delta
        return np.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d))

    def derivative(self, r, out):
        np.clip(r, -self.delta, self.delta, out=out)
        return out
