"""Curvature-vector products of the full-data objective: exact Hessian (R-operator) and Gauss-Newton.

For J(theta) = 1/n sum_i w_i l(z_i(theta), y_i) + lam/2 sum_l ||W_l||^2 (the ``Objective`` of
engine/step.py) and a direction v of theta's shape (P,):

    Hessian:       H v = R{dJ/dtheta}                  (Pearlmutter 1994, "Fast exact multiplication
                                                        by the Hessian"; one forward and one backward
                                                        pass of the R-operator, R{.} = d/dr (.)(theta + r v) at r = 0)
    Gauss-Newton:  G v = J_z^T (H_out J_z v) + lam v_W  (Schraudolph 2002; drops the second derivatives
                                                        of the network, keeps the loss's)

where J_z is the Jacobian of the logits (n, K) with respect to theta and H_out the Hessian of the
loss with respect to the quantity it is convex in. For the matched losses that is the logits:
softmax + cross-entropy (also nll, kl_div) has H_out = diag(p) - p p^T, sigmoid + binary
cross-entropy s(1 - s); both are PSD, so G is PSD, and for these losses G is also the Fisher
information matrix (Martens 2014): the natural-gradient connection. Squared error on sigmoid
outputs is convex in h = s(z), not in z, so its Gauss-Newton matrix uses the split at h:
H_out = diag(h'^2), h' = h (1 - h) (the exact Hessian adds (h - T) h'').

The R-forward pass, layer by layer (A_0 = x, R{A_0} = 0; V_W, V_b are v's blocks):

    R{Z_l} = R{A_{l-1}} W_l + A_{l-1} V_W_l + V_b_l,          R{A_l} = f'(Z_l) * R{Z_l}

and the R-backward pass, from R{delta_L} = H_out R{Z_L} (rows weighted w_i / n):

    R{dJ/dW_l} = R{A_{l-1}}^T delta_l + A_{l-1}^T R{delta_l},  R{dJ/db_l} = sum_rows R{delta_l}
    R{delta_{l-1}} = (R{delta_l} W_l^T + delta_l V_W_l^T) * f'(Z_{l-1}) + (delta_l W_l^T) * f''(Z_{l-1}) * R{Z_{l-1}}

Gauss-Newton keeps only the terms in R{delta}: R{dJ/dW_l} = A_{l-1}^T R{delta_l} and
R{delta_{l-1}} = (R{delta_l} W_l^T) * f'(Z_{l-1}). Weight decay adds lam v on the weights (both).

Everything is computed in float64 (a Krylov solver loses orthogonality quickly in float32)
over row chunks, so the buffers stay bounded (chunk x widest layer). Losses added later supply
their output curvature either through this module's ``OUTPUT_CURVATURE`` table or by methods
``output_hessian_vector(z, y, u)`` / ``output_gauss_newton_vector(z, y, u)`` on the loss
(each: (B, K) -> (B, K), per row, unweighted); ``curvature_for`` names what is missing.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .activations import sigmoid
from .losses import CrossEntropy, KLDivergence, Loss, MeanSquaredError, NegativeLogLikelihood, softmax
from .network import INFERENCE_ROWS, MLP
from .regression import Huber, SquaredError

KINDS = ("gauss_newton", "hessian")


# -- activations: f'(z) and f''(z), in float64 ------------------------------------------------
def _gelu_derivatives(z):
    c, k = math.sqrt(2.0 / math.pi), 0.044715
    t = np.tanh(c * (z + k * z**3))
    du, ddu = c * (1.0 + 3 * k * z * z), 6 * c * k * z
    s1 = 0.5 * (1.0 - t * t) * du  # s'(z), s = (1 + tanh u) / 2
    s2 = 0.5 * (-2.0 * t * (1.0 - t * t) * du * du + (1.0 - t * t) * ddu)
    return 0.5 * (1.0 + t) + z * s1, 2.0 * s1 + z * s2


def _sigmoid_derivatives(z):
    s = sigmoid(z)
    d = s * (1.0 - s)
    return d, d * (1.0 - 2.0 * s)


def _tanh_derivatives(z):
    t = np.tanh(z)
    d = 1.0 - t * t
    return d, -2.0 * t * d


def _elu_derivatives(z, alpha=1.0):
    e = alpha * np.exp(np.minimum(z, 0))
    positive = z > 0
    return np.where(positive, 1.0, e), np.where(positive, 0.0, e)


# name -> z -> (f'(z), f''(z)); the kinks of relu and leaky_relu get f'' = 0 (true almost everywhere)
ACTIVATION_DERIVATIVES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "identity": lambda z: (np.ones_like(z), np.zeros_like(z)),
    "sigmoid": _sigmoid_derivatives,
    "tanh": _tanh_derivatives,
    "relu": lambda z: ((z > 0).astype(z.dtype), np.zeros_like(z)),
    "leaky_relu": lambda z: (np.where(z > 0, 1.0, 0.01), np.zeros_like(z)),
    "elu": _elu_derivatives,
    "softplus": lambda z: (sigmoid(z), _sigmoid_derivatives(z)[0]),
    "gelu": _gelu_derivatives,
}
ACTIVATION_DERIVATIVES["linear"] = ACTIVATION_DERIVATIVES["identity"]
ACTIVATION_DERIVATIVES["logistic"] = ACTIVATION_DERIVATIVES["sigmoid"]


# -- losses: H_out u per row (unweighted), exact and Gauss-Newton --------------------------------
def _softmax_hessian(loss: Loss, z, y, u):
    """diag(p) u - p (p . u), times sum_k T_k = 1; the binary (one sigmoid output) case is s(1 - s) u."""
    if z.shape[1] == 1:
        s = sigmoid(z)
        return s * (1.0 - s) * u
    p = softmax(z)
    return p * (u - np.einsum("ij,ij->i", p, u)[:, None])


def _mse_hessian(loss: Loss, z, y, u):
    """d^2/dz^2 of 1/2 (h - T)^2 with h = s(z): h'^2 + (h - T) h'', h' = h (1 - h), h'' = h' (1 - 2h)."""
    h = sigmoid(z)
    d = h * (1.0 - h)
    return (d * d + (h - loss.targets(y, z.dtype)) * d * (1.0 - 2.0 * h)) * u


def _mse_gauss_newton(loss: Loss, z, y, u):
    h = sigmoid(z)
    d = h * (1.0 - h)
    return d * d * u


# loss class -> {kind: (loss, z (B, K), y (B,), u (B, K)) -> (B, K)}. Keyed by class, not by
# config name: a name can mean different losses in different tasks (mse of regression has an
# identity output, this mse a sigmoid one). Subclasses inherit their parent's entry.
_SOFTMAX = {"hessian": _softmax_hessian, "gauss_newton": _softmax_hessian}  # matched: G = H at the output
OUTPUT_CURVATURE = {
    CrossEntropy: _SOFTMAX,
    NegativeLogLikelihood: _SOFTMAX,
    KLDivergence: _SOFTMAX,
    MeanSquaredError: {"hessian": _mse_hessian, "gauss_newton": _mse_gauss_newton},
}


# Real-valued targets (engine/regression.py): identity output, J = 1/B sum l(z - y), so H_out is
# diagonal with l''(r): 1 for squared error, [|r| <= delta] for Huber (both PSD, so G = H at the
# output). Absolute error has l'' = 0 almost everywhere: no curvature to use, so it has no entry.
def _identity_squared(loss, z, y, u):
    return u


def _identity_huber(loss, z, y, u):
    return u * (np.abs(z - y) <= loss.delta)


OUTPUT_CURVATURE[SquaredError] = {"hessian": _identity_squared, "gauss_newton": _identity_squared}
OUTPUT_CURVATURE[Huber] = {"hessian": _identity_huber, "gauss_newton": _identity_huber}


def curvature_for(loss: Loss, kind: str):
    """The output-curvature function of ``loss`` for ``kind`` ('hessian' or 'gauss_newton')."""
    if kind not in KINDS:
        raise ValueError(f"unknown curvature {kind!r}; valid: {', '.join(KINDS)}")
    method = getattr(loss, "output_hessian_vector" if kind == "hessian" else "output_gauss_newton_vector", None)
    if method is not None:
        return lambda _loss, z, y, u: method(z, y, u)
    for cls in type(loss).__mro__:
        if cls in OUTPUT_CURVATURE:
            return OUTPUT_CURVATURE[cls][kind]
    supported = ", ".join(sorted({c.name for c in OUTPUT_CURVATURE}))
    raise ValueError(f"loss '{loss.name}' has no {kind.replace('_', '-')} curvature product; supported: {supported}")


class CurvatureProduct:
    """theta (P,), v (P,) -> H v or G v (float64, P) of the objective over (x (n, d), y (n,)).

    ``kind``: 'hessian' (exact, by the R-operator) or 'gauss_newton' (PSD for the matched
    losses); see the module docstring for the passes. ``products`` counts calls (each costs
    about two gradient evaluations).
    """

    def __init__(self, net: MLP, loss: Loss, x: np.ndarray, y: np.ndarray, weight_decay: float = 0.0,
                 kind: str = "gauss_newton", chunk: int = INFERENCE_ROWS):
        if net.activation_name not in ACTIVATION_DERIVATIVES:
            raise ValueError(f"activation '{net.activation_name}' has no second derivative for curvature products")
        self.output = curvature_for(loss, kind)
        self.net, self.loss, self.x, self.y = net, loss, x, y
        self.weight_decay, self.kind, self.chunk = float(weight_decay), kind, int(chunk)
        self.derivatives = ACTIVATION_DERIVATIVES[net.activation_name]
        self.shapes = list(zip(net.sizes[:-1], net.sizes[1:]))
        self.mask = net.weight_mask().astype(bool)
        self.products = 0

    def __call__(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        self.products += 1
        theta = np.asarray(theta, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        out = np.zeros_like(theta)
        weights, biases, _ = MLP._views(theta, self.shapes)
        vw, vb, _ = MLP._views(v, self.shapes)
        gw, gb, _ = MLP._views(out, self.shapes)
        n = len(self.y)
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            self._chunk(self.x[start:stop], self.y[start:stop], n, weights, biases, vw, vb, gw, gb)
        if self.weight_decay:
            out[self.mask] += self.weight_decay * v[self.mask]
        return out

    def _chunk(self, x, y, n, weights, biases, vw, vb, gw, gb):
        exact = self.kind == "hessian"
        act = self.net.activation.forward
        a = [np.asarray(x, dtype=np.float64)]
        ra: list = [None]  # R{A_0} = 0
        zs, rzs, d1, d2 = [], [], [], []
        last = len(weights) - 1
        for l, (w, b) in enumerate(zip(weights, biases)):
            z = a[-1] @ w + b
            rz = a[-1] @ vw[l] + vb[l]
            if ra[-1] is not None:
                rz += ra[-1] @ w
            zs.append(z)
            rzs.append(rz)
            if l == last:
                break
            first, second = self.derivatives(z)
            d1.append(first)
            d2.append(second)
            a.append(act(z, np.empty_like(z)))
            ra.append(first * rz)
        z_out, rz_out = zs[-1], rzs[-1]
        class_weights = getattr(self.loss, "class_weights", None)
        rows = (np.ones(len(y)) if class_weights is None else class_weights[y]) / n
        rdelta = self.output(self.loss, z_out, y, rz_out) * rows[:, None]
        delta = None
        if exact:  # dJ/dZ_L for this chunk's share of the mean: the loss's delta (1/B) times B / n
            delta = np.empty_like(z_out)
            self.loss.forward_backward(z_out.copy(), y, delta)
            delta *= len(y) / n
        for l in range(last, -1, -1):
            gw[l] += a[l].T @ rdelta
            gb[l] += rdelta.sum(axis=0)
            if exact and ra[l] is not None:
                gw[l] += ra[l].T @ delta
            if l == 0:
                break
            back = rdelta @ weights[l].T
            if exact:
                back += delta @ vw[l].T
                upstream = delta @ weights[l].T
                back *= d1[l - 1]
                back += upstream * d2[l - 1] * rzs[l - 1]
                delta = upstream * d1[l - 1]
            else:
                back *= d1[l - 1]
            rdelta = back
