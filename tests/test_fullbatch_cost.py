"""The full-batch loop's cheaper bookkeeping gives the same numbers as the plain arithmetic.

- Objective on one chunk (no accumulator, no 1.0 scaling, the fused loss's argmax reused) equals,
  bit for bit, the textbook sequence forward / loss / backward / 0 + g / weight decay written out
  here, and its correct count equals an argmax computed apart; several chunks agree to rounding.
- L-BFGS keeps s^T y and y^T y beside its rows: the direction equals the dense BFGS inverse
  after load_state (the products are rebuilt from the rows), and a finiteness check finds a
  non-finite row that came in through load_state, and x / g / f as before; a row written by
  ``_remember`` is never non-finite (its pair test refuses such a pair), so it is not rescanned.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.step import Objective


def _problem(k=3, n=57, d=5, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, k, size=n)
    loss = LOSSES.get("cross_entropy")(k)
    net = MLP([d, 7, loss.n_outputs], "relu", dtype=dtype)
    net.initialize("xavier_uniform", rng)
    return net, loss, x, y


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_chunk_objective_is_the_plain_sequence_bit_for_bit(k, dtype):
    net, loss, x, y = _problem(k=k, dtype=dtype)
    lam = 0.05
    theta = net.params.astype(np.float64) + 0.01
    value, grad = Objective(net, loss, x, y, lam)(theta)

    ref = MLP(net.sizes, "relu", dtype=dtype)
    ref.params[...] = theta
    logits = ref.forward(x)
    classes = logits.argmax(axis=1) if logits.shape[1] > 1 else (logits[:, 0] > 0).astype(int)
    delta = ref.output_delta_buffer(len(y))
    mean = loss.forward_backward(logits, y, delta)
    total = np.zeros_like(ref.grads)
    total += ref.backward(delta)  # the accumulator the multi-chunk path starts from 0
    ref.grads[...] = total
    expected_value = mean + ref.l2_penalty(lam)
    ref.add_l2_gradient(lam)
    assert value == expected_value
    assert grad.dtype == np.float64
    assert grad.tobytes() == ref.grads.astype(np.float64).tobytes()


def test_the_correct_count_and_loss_of_the_last_call_are_at_that_point():
    net, loss, x, y = _problem(k=4)
    objective = Objective(net, loss, x, y, 0.0)
    theta = net.params.copy()
    objective(theta)
    logits = net.logits(x)
    assert objective.last_correct == int(np.sum(logits.argmax(axis=1) == y))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert objective.last_loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-12)


def test_chunked_and_single_chunk_objectives_agree():
    net, loss, x, y = _problem(k=3, n=101)
    theta = net.params.copy() + 0.02
    one = Objective(net, loss, x, y, 0.01)(theta)
    many = Objective(net, loss, x, y, 0.01, chunk=16)(theta)
    assert one[0] == pytest.approx(many[0], rel=1e-13)
    np.testing.assert_allclose(one[1], many[1], rtol=1e-11, atol=1e-15)


def _dense_inverse(pairs, n):
    """BFGS inverse-Hessian approximation from H0 = gamma I (gamma from the newest pair)."""
    s, y = pairs[-1]
    h = np.eye(n) * (s @ y) / (y @ y)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def test_lbfgs_direction_after_load_state_uses_products_of_the_loaded_rows():
    n, m = 6, 3
    rng = np.random.default_rng(1)
    a = rng.normal(size=(n, n))
    hess = a @ a.T + n * np.eye(n)
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=m)
    pairs = []
    for _ in range(5):  # the ring wraps
        s = rng.normal(size=n)
        pairs.append((s, hess @ s))
        opt._remember(*pairs[-1])
    fresh = OPTIMIZERS.get("lbfgs")(n, "float64", history=m)
    fresh.load_state({k: np.array(v, copy=True) for k, v in opt.state().items()})
    g = rng.normal(size=n)
    expected = -_dense_inverse(pairs[-m:], n) @ g
    np.testing.assert_allclose(fresh.direction(g), expected, rtol=1e-10)
    assert fresh.direction(g).tobytes() == opt.direction(g).tobytes()


def test_lbfgs_finiteness_check_finds_a_loaded_nonfinite_row_and_x():
    n, m = 4, 3
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=m)
    assert opt.nonfinite_state() is None
    state = {k: np.array(v, copy=True) for k, v in opt.state().items()}
    state["y"][2, 1] = np.nan
    state["pairs"] = np.array(3)
    opt.load_state(state)
    assert opt.nonfinite_state() == "y"
    state["y"][2, 1] = 0.0
    state["x"][0] = np.inf
    opt.load_state(state)
    assert opt.nonfinite_state() == "x"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e200])
@pytest.mark.parametrize("where", ["s", "y"])
def test_a_pair_with_a_nonfinite_or_overflowing_entry_is_never_stored(bad, where):
    # nonfinite_state does not rescan rows written by _remember: its pair test must refuse them
    n = 4
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=2)
    opt._remember(np.ones(n), 2 * np.ones(n))
    before = (opt.s.copy(), opt.y.copy(), int(opt.pairs), int(opt.head))
    s_new, y_new = np.full(n, 0.5), np.full(n, 0.7)
    (s_new if where == "s" else y_new)[2] = bad
    opt._remember(s_new, y_new)
    assert (opt.s.tobytes(), opt.y.tobytes(), int(opt.pairs), int(opt.head)) == tuple(
        b.tobytes() if isinstance(b, np.ndarray) else b for b in before)
    assert np.isfinite(opt.s).all() and np.isfinite(opt.y).all() and opt.nonfinite_state() is None


def test_a_loaded_row_replaced_by_a_new_pair_is_not_reported():
    n = 4
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=2)
    state = {k: np.array(v, copy=True) for k, v in opt.state().items()}
    state["s"][0, 1] = np.nan  # row 0 holds a NaN when loaded ...
    state["pairs"] = np.array(2)
    opt.load_state(state)
    opt._remember(np.ones(n), 2 * np.ones(n))  # ... and the full ring's oldest row, 0, takes the new pair
    assert int(opt.head) == 1 and np.isfinite(opt.s).all()
    assert opt.nonfinite_state() is None


def test_the_gradient_check_follows_the_current_gradient():
    opt = OPTIMIZERS.get("lbfgs")(3, "float64")
    opt.g = np.array([1.0, -4.0, 2.0])
    assert opt.largest_gradient_entry() == 4.0 and opt.nonfinite_state() is None
    opt.g = np.array([1.0, np.nan, 2.0])  # a new array (as every accepted point brings)
    assert np.isnan(opt.largest_gradient_entry()) and opt.nonfinite_state() == "g"
    opt.g = np.array([1.0, -np.inf, 2.0])
    assert opt.nonfinite_state() == "g"
    opt.g = np.zeros(3)
    opt.f[1] = np.inf
    assert opt.nonfinite_state() == "f"
