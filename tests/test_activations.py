"""Activations against formulas written out here, and derivatives against finite differences.

References are deliberately naive (direct textbook formulas on moderate z) so they share no
code or tricks with the engine's overflow-safe versions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnclf.engine.activations import ACTIVATIONS, sigmoid
from nnclf.errors import NnclfError

GELU_C = math.sqrt(2.0 / math.pi)

# name -> direct formula for f(z), valid for moderate z (|z| < ~30)
REFERENCE = {
    "identity": lambda z: z.copy(),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": lambda z: (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z)),
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1.0),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "gelu": lambda z: 0.5 * z * (1.0 + np.tanh(GELU_C * (z + 0.044715 * z**3))),
}
NAMES = list(REFERENCE)
KINKED = {"relu", "leaky_relu", "elu"}  # f or f' not smooth at z = 0


def moderate_z():
    rng = np.random.default_rng(1234)
    z = np.concatenate([np.linspace(-6, 6, 49), rng.normal(0, 3, 60)]).reshape(-1, 1) * np.ones((1, 3))
    z[:, 1] *= 0.5
    z[:, 2] -= 0.25
    return z


def run_forward(name, z, in_place=False):
    act = ACTIVATIONS.get(name)()
    if in_place:
        buf = z.copy()
        out = act.forward(buf, buf)
        assert out is buf
        return out
    out = np.full_like(z, np.nan)
    ret = act.forward(z, out)
    assert ret is out
    return out


def run_backward(name, z, upstream):
    """dJ/dz = upstream * f'(z) through the engine; z is passed only if the class says it needs it."""
    act = ACTIVATIONS.get(name)()
    a = act.forward(z, np.empty_like(z))
    grad = upstream.copy()
    out = act.backward(z.copy() if act.needs_input else None, a, grad)
    return out


def test_every_required_activation_is_registered():
    assert set(NAMES) <= set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_direct_formula(name):
    z = moderate_z()
    np.testing.assert_allclose(run_forward(name, z), REFERENCE[name](z), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_forward_in_place_matches_formula(name):
    # the network writes f(z) over z's own buffer for activations that do not need z later
    z = moderate_z()
    np.testing.assert_allclose(run_forward(name, z, in_place=True), REFERENCE[name](z), rtol=1e-12, atol=1e-14)


def test_hand_values():
    z = np.array([-2.0, -1.0, 0.0, 1.0])
    e = math.e
    np.testing.assert_allclose(run_forward("sigmoid", z), [1 / (1 + e**2), 1 / (1 + e), 0.5, e / (1 + e)], rtol=1e-15)
    np.testing.assert_allclose(run_forward("relu", z), [0, 0, 0, 1], rtol=0)
    np.testing.assert_allclose(run_forward("leaky_relu", z), [-0.02, -0.01, 0, 1], rtol=1e-15)
    np.testing.assert_allclose(run_forward("elu", z), [e**-2 - 1, e**-1 - 1, 0, 1], rtol=1e-15)
    np.testing.assert_allclose(run_forward("softplus", z), [math.log(1 + e**-2), math.log(1 + 1 / e), math.log(2), math.log(1 + e)], rtol=1e-15)
    assert run_forward("gelu", z)[2] == 0.0
    # GELU tanh form is within 1e-3 of the exact z * Phi(z)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
    np.testing.assert_allclose(run_forward("gelu", z), exact, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_central_differences(name):
    z = moderate_z()
    if name in KINKED:
        z = z[np.all(np.abs(z) > 1e-3, axis=1)]
    upstream = np.random.default_rng(7).normal(size=z.shape)
    h = 1e-6
    ref = REFERENCE[name]
    numeric = (ref(z + h) - ref(z - h)) / (2 * h)
    np.testing.assert_allclose(run_backward(name, z, upstream), upstream * numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences_of_engine_forward(name):
    # the same check with the engine's own forward (catches a forward/backward mismatch)
    z = moderate_z()
    if name in KINKED:
        z = z[np.all(np.abs(z) > 1e-3, axis=1)]
    upstream = np.ones_like(z)
    h = 1e-6
    numeric = (run_forward(name, z + h) - run_forward(name, z - h)) / (2 * h)
    np.testing.assert_allclose(run_backward(name, z, upstream), numeric, rtol=1e-6, atol=1e-8)


def test_kink_derivatives_at_zero_side_values():
    z = np.array([-3.0, -0.5, 0.5, 3.0])
    ones = np.ones_like(z)
    np.testing.assert_array_equal(run_backward("relu", z, ones), [0, 0, 1, 1])
    np.testing.assert_allclose(run_backward("leaky_relu", z, ones), [0.01, 0.01, 1, 1], rtol=1e-15)
    np.testing.assert_allclose(run_backward("elu", z, ones), [math.exp(-3), math.exp(-0.5), 1, 1], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_finite(name, dtype):
    z = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = run_forward(name, z)
        g = run_backward(name, z, np.ones_like(z))
    assert a.dtype == dtype and g.dtype == dtype
    assert np.all(np.isfinite(a)), a
    assert np.all(np.isfinite(g)), g


def test_extreme_values():
    z = np.array([-1000.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert list(run_forward("sigmoid", z)) == [0.0, 1.0]
        assert list(sigmoid(z)) == [0.0, 1.0]
        assert list(run_forward("softplus", z)) == [0.0, 1000.0]
        assert list(run_forward("tanh", z)) == [-1.0, 1.0]
        assert list(run_forward("elu", z)) == [-1.0, 1000.0]
        assert list(run_forward("gelu", z)) == [0.0, 1000.0]
        # derivatives saturate to the right limits
        np.testing.assert_array_equal(run_backward("sigmoid", z, np.ones(2)), [0.0, 0.0])
        np.testing.assert_array_equal(run_backward("softplus", z, np.ones(2)), [0.0, 1.0])
        np.testing.assert_array_equal(run_backward("gelu", z, np.ones(2)), [0.0, 1.0])


def test_sigmoid_helper_matches_formula_both_signs():
    z = np.linspace(-30, 30, 121)
    np.testing.assert_allclose(sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-14)
    # symmetric: s(-z) = 1 - s(z)
    np.testing.assert_allclose(sigmoid(-z), 1.0 - sigmoid(z), atol=1e-15)


def test_aliases_and_unknown_name():
    assert ACTIVATIONS.get("linear") is ACTIVATIONS.get("identity")
    assert ACTIVATIONS.get("logistic") is ACTIVATIONS.get("sigmoid")
    with pytest.raises(NnclfError, match="did you mean 'relu'"):
        ACTIVATIONS.get("rleu")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_derivative_read_off_z_is_the_mask_of_its_output_bit_for_bit(dtype):
    """ReLU's backward reads [z > 0] off z; the textbook mask is [a > 0] with a = max(z, 0). They
    must agree on every entry, NaN, infinities and both zeros included, down to the sign of the
    zeros they produce (g * 0 keeps g's sign)."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((64, 33)).astype(dtype)
    z.flat[rng.choice(z.size, 40, replace=False)] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], 40)
    grad = rng.standard_normal(z.shape).astype(dtype)
    grad.flat[:20] = -grad.flat[:20] ** 2  # negative upstream values: their products with 0 are -0.0
    act = ACTIVATIONS.get("relu")()
    a = np.empty_like(z)
    act.forward(z, a)
    got = act.backward(z, a, grad.copy())
    textbook = grad * (a > 0)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.view(np.uint8), textbook.view(np.uint8))
