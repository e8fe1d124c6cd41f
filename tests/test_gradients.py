"""Backpropagation through the whole network against central finite differences (float64).

Grid: every activation x every loss x weight decay {0, 0.1} x depth 0..3 hidden layers.
For the kinked activations (relu family) the data are drawn so no pre-activation sits within
1e-3 of the kink, where the derivative is undefined and finite differences straddle it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnclf.engine import activations as acts
from nnclf.engine.gradcheck import analytic_gradient, check_gradients, objective
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu"]
LOSS_CASES = [("cross_entropy", 3), ("cross_entropy", 2), ("nll", 3), ("mse", 3), ("kl_div", 3)]
GELU_C = math.sqrt(2.0 / math.pi)

# plain formulas, independent of the engine (for the kink margin and the fully independent check)
REF_ACT = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "gelu": lambda z: 0.5 * z * (1 + np.tanh(GELU_C * (z + 0.044715 * z**3))),
}


def hidden_preactivations(weights, biases, act, x):
    a, zs = x, []
    for w, b in zip(weights[:-1], biases[:-1]):
        z = a @ w + b
        zs.append(z)
        a = REF_ACT[act](z)
    return zs


def make_problem(act, loss_name, k, depth, seed, smoothing=0.1, weights=(0.7, 1.6, 1.1), batch=5, n_in=3, width=4):
    """A tiny float64 net, data and loss with no hidden pre-activation near 0.

    Draws whose gradient is nearly zero on a whole tensor (e.g. a one-unit bias with
    |dJ/db| ~ 1e-5) are also skipped: there the per-tensor relative error measures the
    finite differences' round-off (~1e-10 absolute), not backprop.
    """
    loss = LOSSES.get(loss_name)(k, label_smoothing=smoothing, class_weights=None if weights is None else np.array(weights[:k]))
    sizes = [n_in] + [width] * depth + [loss.n_outputs]
    for attempt in range(200):
        rng = np.random.default_rng(1000 * seed + attempt)
        net = MLP(sizes, act, dtype="float64")
        net.initialize("xavier_normal", rng)
        net.params[...] += rng.normal(0, 0.2, net.params.size)  # nonzero biases too
        x = rng.normal(size=(batch, n_in))
        y = np.arange(batch) % k
        zs = hidden_preactivations(net.weights, net.biases, act, x)
        if not all(np.min(np.abs(z)) > 1e-3 for z in zs):
            continue
        grads = analytic_gradient(net, loss, x, y, 0.0)
        tensors = MLP._views(grads, list(zip(sizes[:-1], sizes[1:])))
        if all(np.max(np.abs(t)) > 1e-3 for group in tensors[:2] for t in group):
            return net, loss, x, y
    raise AssertionError("could not draw a kink-free problem")


GRID = [
    (a, ln, k, wd, d, v)
    for a in ACTIVATIONS
    for ln, k in LOSS_CASES
    for wd in (0.0, 0.1)
    for d in range(4)
    for v in ("plain", "smooth+weights")
]


@pytest.mark.parametrize("act,loss_name,k,wd,depth,variant", GRID, ids=[f"{a}-{l}{k}-wd{w}-d{d}-{v}" for a, l, k, w, d, v in GRID])
def test_backprop_matches_central_differences(act, loss_name, k, wd, depth, variant):
    seed = GRID.index((act, loss_name, k, wd, depth, variant))
    extras = {"smoothing": 0.0, "weights": None} if variant == "plain" else {}
    net, loss, x, y = make_problem(act, loss_name, k, depth, seed, **extras)
    checks = check_gradients(net, loss, x, y, weight_decay=wd)
    assert [c.name for c in checks] == [f"{kind}{l}" for l in range(1, depth + 2) for kind in "Wb"]
    sizes = net.sizes
    assert [c.size for c in checks] == [s for i, o in zip(sizes[:-1], sizes[1:]) for s in (i * o, o)]
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error < 1e-6, worst


# --- a fully independent reference: forward and loss written here, differentiated numerically ---
def ref_objective(params_w, params_b, act, loss_name, k, x, y, eps, cw, wd):
    a = x
    for l, (w, b) in enumerate(zip(params_w, params_b)):
        z = a @ w + b
        a = z if l == len(params_w) - 1 else REF_ACT[act](z)
    t = np.full((len(y), k), eps / k)
    t[np.arange(len(y)), y] += 1 - eps
    if loss_name == "cross_entropy" and k == 2:
        s = 1 / (1 + np.exp(-a[:, 0]))
        per = -(t[:, 1] * np.log(s) + t[:, 0] * np.log(1 - s))
    elif loss_name == "mse":
        per = 0.5 * ((1 / (1 + np.exp(-a)) - t) ** 2).sum(axis=1)
    else:
        p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
        per = -(t * np.log(p)).sum(axis=1)
        if loss_name == "kl_div":
            per += (t * np.log(t)).sum(axis=1)
    w = np.ones(len(y)) if cw is None else np.asarray(cw)[y]
    return float(np.mean(w * per)) + wd / 2 * sum(float(np.sum(m * m)) for m in params_w)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("loss_name,k", LOSS_CASES)
def test_backprop_matches_independent_reference(act, loss_name, k):
    net, loss, x, y = make_problem(act, loss_name, k, depth=2, seed=77)
    wd = 0.1
    analytic = analytic_gradient(net, loss, x, y, wd)
    ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    args = (act, loss_name, k, x, y, 0.1, loss.class_weights, wd)
    h = 1e-6
    numeric = []
    for l in range(len(ws)):
        for arr in (ws[l], bs[l]):
            g = np.empty_like(arr)
            for idx in np.ndindex(*arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                plus = ref_objective(ws, bs, *args)
                arr[idx] = old - h
                minus = ref_objective(ws, bs, *args)
                arr[idx] = old
                g[idx] = (plus - minus) / (2 * h)
            numeric.append(g.ravel())
    numeric = np.concatenate(numeric)  # same W1, b1, W2, b2, ... order as the flat vector
    scale = np.max(np.abs(numeric))
    assert np.max(np.abs(analytic - numeric)) / scale < 1e-6
    # and the engine's objective agrees with the reference value
    assert objective(net, loss, x, y, wd) == pytest.approx(ref_objective(ws, bs, *args), rel=1e-12)


def test_gradcheck_accepts_float32_network():
    net, loss, x, y = make_problem("tanh", "cross_entropy", 3, depth=2, seed=5)
    net32 = MLP(net.sizes, "tanh", dtype="float32")
    net32.params[...] = net.params
    checks = check_gradients(net32, loss, x.astype(np.float32), y, weight_decay=0.1)
    assert max(c.relative_error for c in checks) < 1e-6


def test_gradcheck_detects_a_wrong_derivative(monkeypatch):
    net, loss, x, y = make_problem("tanh", "cross_entropy", 3, depth=1, seed=3)

    def wrong(self, z, a, grad):  # f' = 1 - a instead of 1 - a^2
        grad *= 1 - a
        return grad

    monkeypatch.setattr(acts.Tanh, "backward", wrong)
    checks = check_gradients(net, loss, x, y)
    assert {c.name: c.relative_error > 1e-2 for c in checks} == {"W1": True, "b1": True, "W2": False, "b2": False}


def test_gradcheck_detects_a_wrong_loss_delta(monkeypatch):
    net, loss, x, y = make_problem("sigmoid", "mse", 3, depth=1, seed=4, smoothing=0.0, weights=None)
    cls = type(loss)
    original = cls.backward

    def missing_factor(self, y, delta):  # forget the 1/B
        return original(self, y, delta) * len(y)

    monkeypatch.setattr(cls, "backward", missing_factor)
    assert all(c.relative_error > 0.5 for c in check_gradients(net, loss, x, y))


# --- weight decay -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_weight_decay_value_and_gradient_touch_weights_only(depth):
    net, loss, x, y = make_problem("tanh", "cross_entropy", 3, depth=depth, seed=11)
    lam = 0.1
    sum_w2 = sum(float(np.sum(w**2)) for w in net.weights)
    sum_b2 = sum(float(np.sum(b**2)) for b in net.biases)
    assert sum_b2 > 0  # biases are nonzero, so including them would show
    j0 = objective(net, loss, x, y, 0.0)
    j1 = objective(net, loss, x, y, lam)
    assert j1 - j0 == pytest.approx(lam / 2 * sum_w2, rel=1e-10)
    assert net.l2_penalty(lam) == pytest.approx(lam / 2 * sum_w2, rel=1e-14)
    assert net.l2_penalty(0.0) == 0.0

    g0 = analytic_gradient(net, loss, x, y, 0.0)
    g1 = analytic_gradient(net, loss, x, y, lam)
    mask = net.weight_mask().astype(bool)
    np.testing.assert_array_equal(g1[~mask], g0[~mask])  # bias gradients untouched
    np.testing.assert_allclose(g1[mask] - g0[mask], lam * net.params[mask], rtol=1e-10, atol=1e-15)
