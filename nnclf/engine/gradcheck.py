"""Numerical gradient checking: backprop against central finite differences.

    dJ/dx_i ~ (J(x + eps e_i) - J(x - eps e_i)) / (2 eps)

with J the batch loss plus lambda/2 * sum W^2, all in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import Loss
from .network import MLP


@dataclass
class TensorCheck:
    name: str  # "W1", "b1", ... (1-based like the lecture's layers)
    size: int
    max_abs_error: float
    relative_error: float  # max |analytic - numeric| / max(|analytic|, |numeric|) over the tensor


def objective(net: MLP, loss: Loss, x: np.ndarray, y: np.ndarray, weight_decay: float) -> float:
    """J = loss(net(x), y) + weight_decay / 2 * sum_l ||W_l||^2."""
    return loss.forward(net.forward(x), y) + net.l2_penalty(weight_decay)


def analytic_gradient(net: MLP, loss: Loss, x, y, weight_decay: float) -> np.ndarray:
    """dJ/dparams by backpropagation (a copy of the flat gradient)."""
    z = net.forward(x)
    loss.forward(z, y)
    delta = loss.backward(y, net.output_delta_buffer(len(y)))
    net.backward(delta)
    net.add_l2_gradient(weight_decay)
    return net.grads.copy()


def numeric_gradient(net: MLP, loss: Loss, x, y, weight_decay: float, eps: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(net.params)
    for i in range(net.params.size):
        saved = net.params[i]
        net.params[i] = saved + eps
        plus = objective(net, loss, x, y, weight_decay)
        net.params[i] = saved - eps
        minus = objective(net, loss, x, y, weight_decay)
        net.params[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(net: MLP, loss: Loss, x, y, weight_decay: float = 0.0, eps: float = 1e-6) -> list[TensorCheck]:
    """Compare backprop with finite differences per tensor, on a float64 copy of ``net``."""
    net64 = MLP(net.sizes, net.activation_name, dropout=0.0, dtype="float64")
    net64.params[...] = net.params
    x = np.asarray(x, dtype=np.float64)
    analytic = analytic_gradient(net64, loss, x, y, weight_decay)
    numeric = numeric_gradient(net64, loss, x, y, weight_decay, eps)
    shapes = list(zip(net.sizes[:-1], net.sizes[1:]))
    analytic_w, analytic_b, _ = MLP._views(analytic, shapes)
    numeric_w, numeric_b, _ = MLP._views(numeric, shapes)
    checks = []
    for l in range(net64.n_layers):
        for kind, a, n in (("W", analytic_w[l], numeric_w[l]), ("b", analytic_b[l], numeric_b[l])):
            diff = float(np.max(np.abs(a - n)))
            scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(n))))
            checks.append(TensorCheck(f"{kind}{l + 1}", a.size, diff, diff / scale if scale > 0 else diff))
    return checks


def _logits_at(net: MLP, x, theta) -> np.ndarray:
    net.params[...] = theta
    return net.forward(x).copy()


def numeric_hessian_vector(net: MLP, loss: Loss, x, y, weight_decay: float, v, eps: float = 1e-5) -> np.ndarray:
    """H v ~ (grad J(theta + eps v) - grad J(theta - eps v)) / (2 eps), on float64 ``net``."""
    theta = net.params.copy()
    net.params[...] = theta + eps * v
    plus = analytic_gradient(net, loss, x, y, weight_decay)
    net.params[...] = theta - eps * v
    minus = analytic_gradient(net, loss, x, y, weight_decay)
    net.params[...] = theta
    return (plus - minus) / (2 * eps)


def numeric_gauss_newton_vector(net: MLP, loss: Loss, x, y, weight_decay: float, v, eps: float = 1e-5) -> np.ndarray:
    """G v ~ J^T H_out (J v): J v by central differences of the logits along v, H_out u by central
    differences of the loss's gradient in the logits along u (squared error on sigmoid outputs:
    h'^2 u, its Gauss-Newton part), J^T by backprop; plus weight_decay v on the weights."""
    theta = net.params.copy()
    z = _logits_at(net, x, theta)
    jv = (_logits_at(net, x, theta + eps * v) - _logits_at(net, x, theta - eps * v)) / (2 * eps)
    from .losses import MeanSquaredError

    if isinstance(loss, MeanSquaredError):  # classification mse on sigmoid outputs (regression's mse is another class)
        from .activations import sigmoid

        h = sigmoid(z)
        rows = np.ones(len(y)) if getattr(loss, "class_weights", None) is None else loss.class_weights[y]
        u = (h * (1 - h)) ** 2 * jv * (rows / len(y))[:, None]
    else:
        def output_gradient(zz):
            delta = np.empty_like(zz)
            loss.forward_backward(zz.copy(), y, delta)
            return delta

        u = (output_gradient(z + eps * jv) - output_gradient(z - eps * jv)) / (2 * eps)
    net.params[...] = theta
    net.forward(x)
    product = net.backward(np.ascontiguousarray(u)).copy()
    return product + weight_decay * v * net.weight_mask()


def check_curvature(net: MLP, loss: Loss, x, y, weight_decay: float = 0.0, directions: int = 3, seed: int = 0) -> list[TensorCheck]:
    """H v (R-operator) and G v (Gauss-Newton) of engine/curvature.py against the differences
    above, along ``directions`` random unit directions, on a float64 copy of ``net``."""
    from .curvature import CurvatureProduct

    net64 = MLP(net.sizes, net.activation_name, dropout=0.0, dtype="float64")
    net64.params[...] = net.params
    theta = net64.params.copy()
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    checks = []
    for kind, numeric in (("hessian", numeric_hessian_vector), ("gauss_newton", numeric_gauss_newton_vector)):
        product = CurvatureProduct(net64, loss, x, y, weight_decay, kind)
        worst_abs = worst_rel = 0.0
        for _ in range(directions):
            v = rng.normal(size=theta.size)
            v /= np.linalg.norm(v)
            net64.params[...] = theta
            reference = numeric(net64, loss, x, y, weight_decay, v)
            value = product(theta, v)
            diff = float(np.max(np.abs(value - reference)))
            scale = max(float(np.max(np.abs(value))), float(np.max(np.abs(reference))))
            worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / scale if scale > 0 else diff)
        checks.append(TensorCheck("Hv" if kind == "hessian" else "Gv (Gauss-Newton)", directions, worst_abs, worst_rel))
    return checks
