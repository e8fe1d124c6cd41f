"""The regression losses (mse, mae, huber) and the identity output: values against formulas
worked by hand, gradients against central finite differences, and backprop through a network."""

from __future__ import annotations

import numpy as np
import pytest

from nnclf.engine.gradcheck import check_gradients
from nnclf.engine.network import MLP
from nnclf.engine.regression import REGRESSION_LOSSES, AbsoluteError, Huber, SquaredError


def numeric_dz(loss, z, y, eps=1e-6):
    grad = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        plus, minus = z.copy(), z.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (loss.forward(plus, y) - loss.forward(minus, y)) / (2 * eps)
    return grad


def analytic_dz(loss, z, y):
    loss.forward(z, y)
    return loss.backward(y, np.empty_like(z)).copy()


# z - y residuals: rows (0.5, -2) and (3, 0.25); B = 2
Z = np.array([[1.5, -1.0], [3.0, 0.75]])
Y = np.array([[1.0, 1.0], [0.0, 0.5]])


def test_mse_by_hand():
    loss = SquaredError(2)
    # 1/B sum 1/2 r^2 = 1/2 * 1/2 (0.25 + 4 + 9 + 0.0625)
    assert loss.forward(Z, Y) == pytest.approx(0.25 * 13.3125)
    np.testing.assert_allclose(analytic_dz(loss, Z, Y), np.array([[0.5, -2.0], [3.0, 0.25]]) / 2)


def test_mae_by_hand():
    loss = AbsoluteError(2)
    assert loss.forward(Z, Y) == pytest.approx((0.5 + 2 + 3 + 0.25) / 2)
    np.testing.assert_allclose(analytic_dz(loss, Z, Y), np.array([[1.0, -1.0], [1.0, 1.0]]) / 2)


def test_huber_by_hand_both_regions():
    loss = Huber(2, delta=1.0)
    # |r| <= 1: 1/2 r^2 (0.125, 0.03125); |r| > 1: 1 * (|r| - 1/2) (1.5, 2.5)
    assert loss.forward(Z, Y) == pytest.approx((0.125 + 1.5 + 2.5 + 0.03125) / 2)
    np.testing.assert_allclose(analytic_dz(loss, Z, Y), np.array([[0.5, -1.0], [1.0, 0.25]]) / 2)
    wide = Huber(2, delta=5.0)  # every residual inside delta: the same as mse
    assert wide.forward(Z, Y) == pytest.approx(SquaredError(2).forward(Z, Y))


@pytest.mark.parametrize("name", REGRESSION_LOSSES.names())
def test_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    loss = REGRESSION_LOSSES.get(name)(3, **({"delta": 0.7} if name == "huber" else {}))
    np.testing.assert_allclose(analytic_dz(loss, z, y), numeric_dz(loss, z, y), rtol=1e-6, atol=1e-9)


def test_huber_is_continuous_at_delta():
    loss = Huber(1, delta=0.5)
    y = np.zeros((1, 1))
    inside, outside = loss.forward(np.array([[0.5 - 1e-9]]), y), loss.forward(np.array([[0.5 + 1e-9]]), y)
    assert inside == pytest.approx(outside, abs=1e-8) and inside == pytest.approx(0.125)


def test_identity_output_predicts_z():
    z = np.array([[1.0, -2.0]])
    assert SquaredError(2).predict(z) is z


@pytest.mark.parametrize("name", REGRESSION_LOSSES.names())
def test_backprop_through_network_matches_finite_differences(name):
    """A 4-5-2 tanh network with an identity output, weight decay on: every tensor."""
    rng = np.random.default_rng(0)
    net = MLP([4, 5, 2], "tanh", dtype="float64")
    net.initialize("xavier_uniform", rng)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    loss = REGRESSION_LOSSES.get(name)(2)
    for check in check_gradients(net, loss, x, y, weight_decay=0.01):
        assert check.relative_error < 1e-6, (name, check)


def test_reconstruction_backprop_matches_finite_differences():
    """An autoencoder 6-4-2-4-6 maps x to itself: the target is the input."""
    rng = np.random.default_rng(1)
    net = MLP([6, 4, 2, 4, 6], "tanh", dtype="float64")
    net.initialize("xavier_uniform", rng)
    x = rng.normal(size=(5, 6))
    for check in check_gradients(net, SquaredError(6), x, x):
        assert check.relative_error < 1e-6, check


def test_mse_worked_network_by_hand():
    """A 1-1 linear network z = w x + b: J = 1/B sum 1/2 (w x + b - y)^2,
    dJ/dw = 1/B sum (z - y) x, dJ/db = 1/B sum (z - y)."""
    net = MLP([1, 1], "relu", dtype="float64")  # no hidden layer: the activation is never applied
    net.params[...] = [2.0, 0.5]  # w, b
    x, y = np.array([[1.0], [3.0]]), np.array([[2.0], [5.0]])
    loss = SquaredError(1)
    z = net.forward(x)
    np.testing.assert_allclose(z, [[2.5], [6.5]])
    assert loss.forward(z, y) == pytest.approx((0.25 + 2.25) / 4)
    net.backward(loss.backward(y, net.output_delta_buffer(2)))
    np.testing.assert_allclose(net.grads, [(0.5 * 1 + 1.5 * 3) / 2, (0.5 + 1.5) / 2])


def test_unknown_hyperparameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter 'delta'"):
        SquaredError(1, delta=2.0)
