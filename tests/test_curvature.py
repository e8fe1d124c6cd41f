"""Curvature-vector products (engine/curvature.py) against finite differences, float64.

Hessian: H v = (grad J(theta + eps v) - grad J(theta - eps v)) / (2 eps), the gradient being the
Objective's backprop. Gauss-Newton: G v = J_z^T H_out (J_z v), with J_z v the central difference
of the logits along v, H_out u the central difference of the loss's own output gradient along u
(the exact output Hessian of the matched losses; for squared error on sigmoid outputs the
Gauss-Newton split at h = s(z) keeps h'^2 only), and J_z^T by the network's backward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnclf.engine.activations import ACTIVATIONS, sigmoid
from nnclf.engine.curvature import ACTIVATION_DERIVATIVES, OUTPUT_CURVATURE, CurvatureProduct
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP
from nnclf.engine.step import Objective

EPS = 1e-5
CASES = [(k, smooth, weights) for k in (2, 3) for smooth, weights in ((0.0, False), (0.1, True))]


def _problem(activation, loss_name, k, smoothing, weighted, seed=0, hidden=(5, 3)):
    rng = np.random.default_rng(seed)
    loss = LOSSES.get(loss_name)(k, smoothing, np.array([1.0, 2.0, 0.5][:k]) if weighted else None)
    net = MLP([4, *hidden, loss.n_outputs], activation, dtype="float64")
    net.initialize("auto", rng)
    x = rng.normal(size=(9, 4))
    y = rng.integers(0, k, 9)
    y[:k] = np.arange(k)
    theta = net.params + 0.3 * rng.normal(size=net.params.size)
    v = rng.normal(size=theta.size)
    return net, loss, x, y, theta, v


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_every_activation_and_loss_has_curvature():
    assert set(ACTIVATIONS.names()) <= set(ACTIVATION_DERIVATIVES)
    assert {LOSSES.get(name) for name in LOSSES.names()} <= set(OUTPUT_CURVATURE)


@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS.names()) - {"linear", "logistic"}))
@pytest.mark.parametrize("loss_name", ["cross_entropy", "nll", "kl_div", "mse"])
@pytest.mark.parametrize("k,smoothing,weighted", CASES)
def test_hessian_vector_product_matches_differences_of_the_gradient(activation, loss_name, k, smoothing, weighted):
    net, loss, x, y, theta, v = _problem(activation, loss_name, k, smoothing, weighted)
    objective = Objective(net, loss, x, y, weight_decay=0.3, chunk=4)
    numeric = (objective(theta + EPS * v)[1] - objective(theta - EPS * v)[1]) / (2 * EPS)
    product = CurvatureProduct(net, loss, x, y, 0.3, "hessian", chunk=4)(theta, v)
    assert _relative(product, numeric) < 1e-6


def _gauss_newton_reference(net, loss, x, y, theta, v, weight_decay):
    def logits(t):
        net.params[...] = t
        return net.forward(x).copy()

    z = logits(theta)
    jv = (logits(theta + EPS * v) - logits(theta - EPS * v)) / (2 * EPS)
    n = len(y)
    rows = np.ones(n) if loss.class_weights is None else loss.class_weights[y]
    if loss.name == "mse":
        h = sigmoid(z)
        u = (h * (1 - h)) ** 2 * jv * (rows / n)[:, None]
    else:
        def output_gradient(zz):  # the loss's delta on the whole batch: w_i (p - T) / n
            delta = np.empty_like(zz)
            loss.forward_backward(zz.copy(), y, delta)
            return delta

        u = (output_gradient(z + EPS * jv) - output_gradient(z - EPS * jv)) / (2 * EPS)
    net.params[...] = theta
    net.forward(x)
    product = net.backward(u).copy()
    return product + weight_decay * v * net.weight_mask()


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "gelu", "elu", "softplus"])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "nll", "kl_div", "mse"])
@pytest.mark.parametrize("k,smoothing,weighted", CASES)
def test_gauss_newton_vector_product_matches_the_differenced_jacobian(activation, loss_name, k, smoothing, weighted):
    net, loss, x, y, theta, v = _problem(activation, loss_name, k, smoothing, weighted, seed=1)
    reference = _gauss_newton_reference(net, loss, x, y, theta, v, 0.2)
    product = CurvatureProduct(net, loss, x, y, 0.2, "gauss_newton", chunk=4)(theta, v)
    assert _relative(product, reference) < 1e-6


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_gauss_newton_matrix_is_positive_semidefinite_and_equals_the_hessian_without_hidden_layers(loss_name):
    net, loss, x, y, theta, _ = _problem("tanh", loss_name, 3, 0.0, False, hidden=(6,))
    product = CurvatureProduct(net, loss, x, y, 0.0, "gauss_newton")
    g = np.stack([product(theta, e) for e in np.eye(theta.size)])
    assert np.allclose(g, g.T, atol=1e-12)
    assert np.linalg.eigvalsh((g + g.T) / 2).min() > -1e-10
    if loss_name == "cross_entropy":  # linear model + matched loss: no network curvature to drop
        net0, loss0, x0, y0, theta0, v0 = _problem("tanh", loss_name, 3, 0.0, False, hidden=())
        gn = CurvatureProduct(net0, loss0, x0, y0, 0.1, "gauss_newton")(theta0, v0)
        hv = CurvatureProduct(net0, loss0, x0, y0, 0.1, "hessian")(theta0, v0)
        assert np.allclose(gn, hv, rtol=1e-12, atol=1e-14)


def test_a_loss_without_curvature_is_named():
    class Huber(LOSSES.get("mse").__mro__[1]):  # a Loss that is not MeanSquaredError
        name = "huber_test"

    net, loss, x, y, theta, v = _problem("tanh", "mse", 3, 0.0, False)
    with pytest.raises(ValueError, match="loss 'huber_test' has no gauss-newton curvature product"):
        CurvatureProduct(net, Huber(3), x, y, 0.0, "gauss_newton")


# -- real-valued targets (engine/regression.py): identity output -------------------------------
@pytest.mark.parametrize("name", ["mse", "huber"])
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_regression_losses_curvature_matches_differences(name, kind):
    from nnclf.engine.regression import REGRESSION_LOSSES

    rng = np.random.default_rng(3)
    loss = REGRESSION_LOSSES.get(name)(2, **({"delta": 0.5} if name == "huber" else {}))
    net = MLP([4, 5, 2], "tanh", dtype="float64")
    net.initialize("auto", rng)
    x, y = rng.normal(size=(11, 4)), rng.normal(size=(11, 2)) * 2
    theta, v = net.params + 0.3 * rng.normal(size=net.params.size), rng.normal(size=net.params.size)
    product = CurvatureProduct(net, loss, x, y, 0.1, kind, chunk=4)(theta, v)
    if kind == "hessian":
        objective = Objective(net, loss, x, y, 0.1)
        reference = (objective(theta + EPS * v)[1] - objective(theta - EPS * v)[1]) / (2 * EPS)
    else:  # J^T H_out J v with H_out u by differences of the loss's own delta along J v
        def logits(t):
            net.params[...] = t
            return net.forward(x).copy()

        z = logits(theta)
        jv = (logits(theta + EPS * v) - logits(theta - EPS * v)) / (2 * EPS)

        def delta_at(zz):
            d = np.empty_like(zz)
            loss.forward_backward(zz.copy(), y, d)
            return d

        u = (delta_at(z + EPS * jv) - delta_at(z - EPS * jv)) / (2 * EPS)
        net.params[...] = theta
        net.forward(x)
        reference = net.backward(u).copy() + 0.1 * v * net.weight_mask()
    assert _relative(product, reference) < 1e-6


def test_absolute_error_has_no_curvature_product():
    from nnclf.engine.regression import REGRESSION_LOSSES

    net = MLP([3, 2], "tanh", dtype="float64")
    with pytest.raises(ValueError, match="loss 'mae' has no gauss-newton curvature product"):
        CurvatureProduct(net, REGRESSION_LOSSES.get("mae")(2), np.zeros((2, 3)), np.zeros((2, 2)), 0.0, "gauss_newton")
