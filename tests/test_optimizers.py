"""Optimizer updates against the textbook formulas, written out here step by step."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from nnclf.engine.optimizers import OPTIMIZERS

X0 = np.array([1.5, -0.5, 0.25, 2.0])
GRADS = [
    np.array([0.4, -1.2, 0.05, 3.0]),
    np.array([-0.2, -0.8, 0.5, 1.0]),
    np.array([0.3, 0.1, -0.4, -2.0]),
]
LRS = [0.1, 0.05, 0.08]  # a different learning rate at each step, as a schedule would pass


def run(name, steps=3, dtype="float64", weight_mask=None, **hyper):
    x = X0.astype(dtype)
    opt = OPTIMIZERS.get(name)(x.size, dtype=dtype, weight_mask=weight_mask, **hyper)
    history = []
    for g, lr in zip(GRADS[:steps], LRS):
        opt.step(x, g.astype(dtype), lr)
        history.append(x.copy())
    return history, opt


# --- textbook references (plain Python floats, element by element) ---------------------------
def ref_sgd():
    x, out = list(X0), []
    for g, lr in zip(GRADS, LRS):
        x = [xi - lr * gi for xi, gi in zip(x, g)]
        out.append(x)
    return out


def ref_momentum(beta):
    x, v, out = list(X0), [0.0] * 4, []
    for g, lr in zip(GRADS, LRS):
        v = [beta * vi + gi for vi, gi in zip(v, g)]
        x = [xi - lr * vi for xi, vi in zip(x, v)]
        out.append(x)
    return out


def ref_nesterov(beta):
    # class docstring: v <- beta v + g,  x <- x - lr (g + beta v)
    x, v, out = list(X0), [0.0] * 4, []
    for g, lr in zip(GRADS, LRS):
        v = [beta * vi + gi for vi, gi in zip(v, g)]
        x = [xi - lr * (gi + beta * vi) for xi, gi, vi in zip(x, g, v)]
        out.append(x)
    return out


def ref_adagrad(eps):
    x, s, out = list(X0), [0.0] * 4, []
    for g, lr in zip(GRADS, LRS):
        s = [si + gi * gi for si, gi in zip(s, g)]
        x = [xi - lr * gi / (math.sqrt(si) + eps) for xi, gi, si in zip(x, g, s)]
        out.append(x)
    return out


def ref_rmsprop(rho, eps):
    x, s, out = list(X0), [0.0] * 4, []
    for g, lr in zip(GRADS, LRS):
        s = [rho * si + (1 - rho) * gi * gi for si, gi in zip(s, g)]
        x = [xi - lr * gi / (math.sqrt(si) + eps) for xi, gi, si in zip(x, g, s)]
        out.append(x)
    return out


def ref_adam(b1, b2, eps, wd=0.0, mask=None):
    x, m, v, out = list(X0), [0.0] * 4, [0.0] * 4, []
    mask = [1.0] * 4 if mask is None else list(mask)
    for t, (g, lr) in enumerate(zip(GRADS, LRS), start=1):
        x = [xi - lr * wd * mi * xi for xi, mi in zip(x, mask)]  # decoupled decay (AdamW)
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        m_hat = [mi / (1 - b1**t) for mi in m]
        v_hat = [vi / (1 - b2**t) for vi in v]
        x = [xi - lr * mh / (math.sqrt(vh) + eps) for xi, mh, vh in zip(x, m_hat, v_hat)]
        out.append(x)
    return out


CASES = {
    "sgd": ({}, ref_sgd),
    "gd": ({}, ref_sgd),
    "momentum": ({"momentum": 0.8}, lambda: ref_momentum(0.8)),
    "nesterov": ({"momentum": 0.7}, lambda: ref_nesterov(0.7)),
    "adagrad": ({"eps": 1e-3}, lambda: ref_adagrad(1e-3)),
    "rmsprop": ({"rho": 0.85, "eps": 1e-3}, lambda: ref_rmsprop(0.85, 1e-3)),
    "adam": ({"beta1": 0.8, "beta2": 0.95, "eps": 1e-3}, lambda: ref_adam(0.8, 0.95, 1e-3)),
    "adamw": ({"beta1": 0.8, "beta2": 0.95, "eps": 1e-3, "weight_decay": 0.0}, lambda: ref_adam(0.8, 0.95, 1e-3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_first_steps_match_textbook(name):
    hyper, ref = CASES[name]
    got, opt = run(name, **hyper)
    for step, (x, expect) in enumerate(zip(got, ref()), start=1):
        np.testing.assert_allclose(x, expect, rtol=1e-12, atol=1e-15, err_msg=f"{name} step {step}")
    assert opt.t == 3


@pytest.mark.parametrize("name", ["adam", "adagrad", "rmsprop", "momentum", "nesterov"])
def test_default_hyperparameters_match_textbook(name):
    defaults = {
        "adam": lambda: ref_adam(0.9, 0.999, 1e-8),
        "adagrad": lambda: ref_adagrad(1e-8),
        "rmsprop": lambda: ref_rmsprop(0.9, 1e-8),
        "momentum": lambda: ref_momentum(0.9),
        "nesterov": lambda: ref_nesterov(0.9),
    }
    got, _ = run(name)
    np.testing.assert_allclose(got, defaults[name](), rtol=1e-12, atol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # with bias correction, step 1 is -lr * g / (|g| + eps) ~ -lr * sign(g): a classic check
    got, _ = run("adam", steps=1, eps=1e-12)
    np.testing.assert_allclose(got[0], X0 - LRS[0] * np.sign(GRADS[0]), rtol=1e-10)


@pytest.mark.parametrize("name", ["gd", "sgd"])
def test_lecture_gradient_descent_on_theta_squared(name):
    # J = theta^2, dJ/dtheta = 2 theta; theta = 2.5, alpha = 0.1: 2.5 - 0.1 * 5 = 2.0, then 1.6
    theta = np.array([2.5])
    opt = OPTIMIZERS.get(name)(1, dtype="float64")
    opt.step(theta, 2 * theta, 0.1)
    assert theta[0] == pytest.approx(2.0, abs=1e-15)
    opt.step(theta, 2 * theta, 0.1)
    assert theta[0] == pytest.approx(1.6, abs=1e-15)


def test_adamw_decays_weights_only():
    mask = np.array([1.0, 0.0, 1.0, 0.0])  # entries 1 and 3 play biases
    hyper = {"beta1": 0.8, "beta2": 0.95, "eps": 1e-3, "weight_decay": 0.3}
    got, _ = run("adamw", weight_mask=mask, **hyper)
    expect = ref_adam(0.8, 0.95, 1e-3, wd=0.3, mask=mask)
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-15)
    # biases evolve exactly as under plain Adam; weights do not
    plain, _ = run("adam", beta1=0.8, beta2=0.95, eps=1e-3)
    np.testing.assert_allclose(got[-1][[1, 3]], plain[-1][[1, 3]], rtol=1e-14)
    assert np.all(np.abs(got[-1][[0, 2]] - plain[-1][[0, 2]]) > 1e-3)


def test_adamw_with_network_weight_mask():
    from nnclf.engine.network import MLP

    net = MLP([2, 3, 2], "tanh", dtype="float64")
    net.params[...] = 1.0
    opt = OPTIMIZERS.get("adamw")(net.params.size, dtype="float64", weight_mask=net.weight_mask(), weight_decay=0.5)
    opt.step(net.params, np.zeros_like(net.params), 0.1)  # zero gradient: only the decay acts
    for w, b in zip(net.weights, net.biases):
        np.testing.assert_allclose(w, 1.0 - 0.1 * 0.5, rtol=1e-15)
        np.testing.assert_array_equal(b, 1.0)


def roundtrip(state):
    """Through an .npz file, as a checkpoint stores it."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", list(CASES))
def test_state_roundtrip_continues_identically(name):
    hyper, _ = CASES[name]
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=4) for _ in range(6)]
    x = X0.copy()
    a = OPTIMIZERS.get(name)(4, dtype="float64", **hyper)
    for g in grads[:3]:
        a.step(x, g, 0.05)
    saved = roundtrip(a.state())
    assert int(saved["t"]) == 3
    b = OPTIMIZERS.get(name)(4, dtype="float64", **hyper)
    b.load_state(saved)
    xa, xb = x.copy(), x.copy()
    for g in grads[3:]:
        a.step(xa, g, 0.05)
        b.step(xb, g, 0.05)
    np.testing.assert_array_equal(xa, xb)
    # a fresh optimizer (no restored state) would diverge, so the state matters
    if a.state_names:
        c = OPTIMIZERS.get(name)(4, dtype="float64", **hyper)
        xc = x.copy()
        for g in grads[3:]:
            c.step(xc, g, 0.05)
        assert not np.allclose(xc, xa)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_path(name):
    hyper, ref = CASES[name]
    got, opt = run(name, dtype="float32", **hyper)
    assert all(x.dtype == np.float32 for x in got)
    assert all(arr.dtype == np.float32 for key, arr in opt.state().items() if key != "t")
    np.testing.assert_allclose(got, ref(), rtol=2e-6, atol=1e-6)


def test_float32_adamw_with_mask():
    mask = np.array([1, 0, 1, 0], dtype=np.float32)
    got, _ = run("adamw", dtype="float32", weight_mask=mask, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.3)
    assert got[-1].dtype == np.float32
    np.testing.assert_allclose(got, ref_adam(0.8, 0.95, 1e-3, wd=0.3, mask=mask), rtol=2e-6, atol=1e-6)


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(TypeError, match="momentun"):
        OPTIMIZERS.get("momentum")(3, momentun=0.9)
    with pytest.raises(TypeError):
        OPTIMIZERS.get("sgd")(3, momentum=0.9)


def test_registry_has_every_optimizer():
    assert {"sgd", "gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"} <= set(OPTIMIZERS.names())


def test_adam_keeps_textbook_moments_and_loads_scaled_ones():
    # state m and v are the paper's moments; nnclf 0.1 saved m_scaled = m / (1 - b1), v_scaled = v / (1 - b2)
    b1, b2 = 0.8, 0.95
    _, opt = run("adam", steps=2, beta1=b1, beta2=b2, eps=1e-3)
    m = v = np.zeros(4)
    for g in GRADS[:2]:
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    np.testing.assert_allclose(opt.state()["m"], m, rtol=1e-12)
    np.testing.assert_allclose(opt.state()["v"], v, rtol=1e-12)
    # a checkpoint written with the scaled moments resumes on the same path
    x = np.array(ref_adam(b1, b2, 1e-3)[1])
    resumed = OPTIMIZERS.get("adam")(4, dtype="float64", beta1=b1, beta2=b2, eps=1e-3)
    resumed.load_state({"t": np.array(2), "m_scaled": m / (1 - b1), "v_scaled": v / (1 - b2)})
    resumed.step(x, GRADS[2], LRS[2])
    np.testing.assert_allclose(x, ref_adam(b1, b2, 1e-3)[2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_finite_agrees_with_the_entrywise_test(dtype):
    """all_finite: True for finite entries, however large (their sum would overflow), False for
    one NaN or infinity anywhere, and no numpy warning either way."""
    import warnings

    from nnclf.engine.optimizers import all_finite

    rng = np.random.default_rng(1)
    big = np.finfo(dtype).max
    cases = [rng.standard_normal(50).astype(dtype), np.zeros(0, dtype), np.array(2.5, dtype),
             np.full(10, big, dtype), np.array([big, -big, big], dtype)]
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 17, 49):
            v = rng.standard_normal(50).astype(dtype)
            v[where] = bad
            cases.append(v)
    v = rng.standard_normal(50).astype(dtype)
    v[[3, 9]] = [np.inf, -np.inf]  # the sum is NaN
    cases.append(v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for case in cases:
            assert all_finite(case) == bool(np.all(np.isfinite(case))), case
