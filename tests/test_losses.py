"""Losses against formulas written out independently here, and dJ/dz against finite differences.

Reference softmax is the naive e^z / sum e^z (no max shift), valid for the moderate logits used;
targets are built with explicit Python loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnclf.engine.losses import LOSSES, kl_divergence, log_softmax, softmax

RNG = np.random.default_rng(2024)


# --- independent references ------------------------------------------------------------------
def ref_targets(y, k, eps):
    t = np.zeros((len(y), k))
    for i, c in enumerate(y):
        for j in range(k):
            t[i, j] = eps / k + (1.0 - eps if j == c else 0.0)
    return t


def ref_softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ref_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def weighted_mean(per_sample, y, weights):
    w = np.ones(len(y)) if weights is None else np.array([weights[c] for c in y], dtype=float)
    return float(np.sum(w * per_sample) / len(y))


def ref_loss(name, k, z, y, eps, weights):
    t = ref_targets(y, k, eps)
    if name == "cross_entropy" and k == 2:
        s = ref_sigmoid(z[:, 0])
        tt = t[:, 1]
        per = -(tt * np.log(s) + (1 - tt) * np.log(1 - s))
    elif name in ("cross_entropy", "nll"):
        per = -(t * np.log(ref_softmax(z))).sum(axis=1)
    elif name == "kl_div":
        p = ref_softmax(z)
        per = np.array([sum(ti * math.log(ti / pi) for ti, pi in zip(trow, prow) if ti > 0) for trow, prow in zip(t, p)])
    elif name == "mse":
        per = 0.5 * ((ref_sigmoid(z) - t) ** 2).sum(axis=1)
    else:
        raise AssertionError(name)
    return weighted_mean(per, y, weights)


def make_loss(name, k, eps, weights):
    return LOSSES.get(name)(k, label_smoothing=eps, class_weights=None if weights is None else np.array(weights))


CASES = [("cross_entropy", 3), ("cross_entropy", 2), ("nll", 3), ("nll", 2), ("mse", 3), ("mse", 2), ("kl_div", 3), ("kl_div", 2)]
SMOOTHING = [0.0, 0.1]
WEIGHTS = {2: [None, [0.5, 2.0]], 3: [None, [0.5, 2.0, 1.25]]}
ALL = [(n, k, e, w) for n, k in CASES for e in SMOOTHING for w in WEIGHTS[k]]
IDS = [f"{n}-K{k}-eps{e}-{'w' if w else 'nw'}" for n, k, e, w in ALL]


def batch(k, n_out, b=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(b, n_out))
    y = np.arange(b) % k  # every class present
    rng.shuffle(y)
    return z, y


# --- values ------------------------------------------------------------------------------------
def test_output_widths():
    assert make_loss("cross_entropy", 2, 0, None).n_outputs == 1
    assert make_loss("cross_entropy", 3, 0, None).n_outputs == 3
    assert make_loss("nll", 2, 0, None).n_outputs == 2
    assert make_loss("mse", 2, 0, None).n_outputs == 2
    assert make_loss("kl_div", 4, 0, None).n_outputs == 4


@pytest.mark.parametrize("name,k,eps,weights", ALL, ids=IDS)
def test_value_matches_independent_formula(name, k, eps, weights):
    loss = make_loss(name, k, eps, weights)
    z, y = batch(k, loss.n_outputs)
    assert loss.forward(z, y) == pytest.approx(ref_loss(name, k, z, y, eps, weights), rel=1e-12)


@pytest.mark.parametrize("name,k,eps,weights", ALL, ids=IDS)
def test_backward_matches_finite_differences(name, k, eps, weights):
    loss = make_loss(name, k, eps, weights)
    z, y = batch(k, loss.n_outputs, seed=1)
    loss.forward(z, y)
    delta = np.full_like(z, np.nan)
    out = loss.backward(y, delta)
    assert out is delta
    h = 1e-6
    numeric = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (ref_loss(name, k, zp, y, eps, weights) - ref_loss(name, k, zm, y, eps, weights)) / (2 * h)
    np.testing.assert_allclose(delta, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_hand_example():
    # z = (0, ln 2, ln 5): p = (1, 2, 5) / 8; y = 2 -> -ln(5/8); y = 0 -> ln 8
    z = np.array([[0.0, math.log(2), math.log(5)], [0.0, math.log(2), math.log(5)]])
    loss = make_loss("cross_entropy", 3, 0, None)
    assert loss.forward(z, np.array([2, 0])) == pytest.approx((math.log(8 / 5) + math.log(8)) / 2, rel=1e-14)
    np.testing.assert_allclose(loss.predict_proba(z), [[1 / 8, 2 / 8, 5 / 8]] * 2, rtol=1e-14)


def test_binary_cross_entropy_hand_example():
    # s(0) = 1/2 -> ln 2 whatever the label; s(ln 3) = 3/4 -> y=1: -ln(3/4), y=0: -ln(1/4)
    loss = make_loss("cross_entropy", 2, 0, None)
    z = np.array([[0.0], [math.log(3)], [math.log(3)]])
    expect = (math.log(2) + math.log(4 / 3) + math.log(4)) / 3
    assert loss.forward(z, np.array([0, 1, 0])) == pytest.approx(expect, rel=1e-14)
    np.testing.assert_allclose(loss.predict_proba(z), [[0.5, 0.5], [0.25, 0.75], [0.25, 0.75]], rtol=1e-14)


def test_binary_cross_entropy_with_smoothing_hand_example():
    # eps = 0.2: t = 0.9 for y = 1; at s = 3/4: -(0.9 ln 0.75 + 0.1 ln 0.25)
    loss = make_loss("cross_entropy", 2, 0.2, None)
    val = loss.forward(np.array([[math.log(3)]]), np.array([1]))
    assert val == pytest.approx(-(0.9 * math.log(0.75) + 0.1 * math.log(0.25)), rel=1e-14)


def test_mse_hand_example():
    # z = 0 -> h = 1/2 everywhere; K=3: 1/2 (1/4 + 1/4 + 1/4) = 3/8
    loss = make_loss("mse", 3, 0, None)
    assert loss.forward(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == pytest.approx(3 / 8, rel=1e-15)
    np.testing.assert_allclose(loss.predict_proba(np.zeros((1, 3))), [[1 / 3] * 3], rtol=1e-15)


def test_class_weights_hand_example():
    # CE per sample at z = 0 with K = 3 is ln 3; weights (1, 4, 1), labels (0, 1) -> (1 + 4) ln 3 / 2
    loss = make_loss("nll", 3, 0, [1.0, 4.0, 1.0])
    assert loss.forward(np.zeros((2, 3)), np.array([0, 1])) == pytest.approx(2.5 * math.log(3), rel=1e-14)


def test_kl_equals_cross_entropy_minus_target_entropy():
    z, y = batch(3, 3, seed=5)
    for eps in (0.0, 0.3):
        ce = make_loss("cross_entropy", 3, eps, None).forward(z, y)
        kl = make_loss("kl_div", 3, eps, None).forward(z, y)
        t = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
        h = -sum(v * math.log(v) for v in t if v > 0)
        assert kl == pytest.approx(ce - h, rel=1e-12)


def test_targets_rows():
    loss = make_loss("cross_entropy", 4, 0.2, None)
    t = loss.targets(np.array([3, 0]), np.float64)
    np.testing.assert_allclose(t, [[0.05, 0.05, 0.05, 0.85], [0.85, 0.05, 0.05, 0.05]], rtol=1e-14)


# --- softmax + CE specifics ----------------------------------------------------------------------
def test_softmax_ce_delta_is_p_minus_onehot_over_b():
    b, k = 5, 3
    z, y = batch(k, k, b=b, seed=9)
    loss = make_loss("cross_entropy", k, 0, None)
    loss.forward(z, y)
    delta = loss.backward(y, np.empty_like(z))
    onehot = np.eye(k)[y]
    np.testing.assert_allclose(delta, (ref_softmax(z) - onehot) / b, rtol=1e-13, atol=1e-16)
    # at z = 0 every p is 1/3: delta = (1/3 - onehot) / 4, no other factor
    loss.forward(np.zeros((4, 3)), np.array([0, 1, 2, 2]))
    delta = loss.backward(np.array([0, 1, 2, 2]), np.empty((4, 3)))
    np.testing.assert_allclose(delta, (1 / 3 - np.eye(3)[[0, 1, 2, 2]]) / 4, rtol=1e-15, atol=1e-17)


def test_binary_delta_is_sigmoid_minus_target_over_b():
    z = np.array([[-1.0], [0.5], [2.0]])
    y = np.array([1, 0, 1])
    loss = make_loss("cross_entropy", 2, 0, None)
    loss.forward(z, y)
    delta = loss.backward(y, np.empty_like(z))
    np.testing.assert_allclose(delta[:, 0], (ref_sigmoid(z[:, 0]) - y) / 3, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_stable_for_huge_logits(dtype):
    z = np.array([[1e4, 1e4 - 1.0, 0.0], [-1e4, 0.0, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(z.copy())
        lp = log_softmax(z)
    e = math.exp(-1.0)
    np.testing.assert_allclose(p, [[1 / (1 + e), e / (1 + e), 0.0], [0.0, 0.0, 1.0]], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(lp[0, :2], [-math.log1p(e), -1 - math.log1p(e)], rtol=1e-6)
    assert lp[0, 2] == pytest.approx(-1e4 - math.log1p(e), rel=1e-6)


@pytest.mark.parametrize("name,k", CASES)
def test_losses_finite_for_huge_logits(name, k):
    loss = make_loss(name, k, 0.1, None)
    z = np.array([[1e4, -1e4, 0.0][: loss.n_outputs], [-1e4, 1e4, 5.0][: loss.n_outputs]])
    y = np.array([1, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        val = loss.forward(z, y)
        delta = loss.backward(y, np.empty_like(z))
        proba = loss.predict_proba(z)
    assert math.isfinite(val) and np.all(np.isfinite(delta)) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_huge_logit_cross_entropy_value():
    # -log softmax_y for z = (1e4, 0, -1e4): y = 1 costs 1e4 (+ log(1 + tiny)), y = 0 costs ~e^-1e4 = 0
    loss = make_loss("cross_entropy", 3, 0, None)
    z = np.array([[1e4, 0.0, -1e4]])
    assert loss.forward(z, np.array([1])) == pytest.approx(1e4, rel=1e-15)
    assert loss.forward(z, np.array([0])) == 0.0
    bce = make_loss("cross_entropy", 2, 0, None)
    assert bce.forward(np.array([[1e4]]), np.array([0])) == pytest.approx(1e4, rel=1e-15)
    assert bce.forward(np.array([[-1e4]]), np.array([0])) == 0.0


@pytest.mark.parametrize("name,k", CASES)
def test_float32_value_close_to_float64(name, k):
    loss = make_loss(name, k, 0.1, None)
    z, y = batch(k, loss.n_outputs, seed=3)
    v64 = loss.forward(z, y)
    v32 = loss.forward(z.astype(np.float32), y)
    d32 = loss.backward(y, np.empty(z.shape, np.float32))
    assert d32.dtype == np.float32
    assert v32 == pytest.approx(v64, rel=1e-5)


# --- the lecture's KL example -------------------------------------------------------------------
def test_lecture_kl_example():
    p = np.array([9 / 25, 12 / 25, 4 / 25])
    q = np.full(3, 1 / 3)
    assert round(kl_divergence(p, q), 7) == 0.0852996
    assert round(kl_divergence(q, p), 6) == 0.097455
    # and against the sum written out
    assert kl_divergence(p, q) == pytest.approx(sum(a * math.log(a / b) for a, b in zip(p, q)), rel=1e-14)


def test_kl_zero_terms_and_identity():
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)
    assert kl_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
