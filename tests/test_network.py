"""The MLP: a forward/backward pass worked by hand, dropout, flat parameter views, initialisers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnclf.engine.init import INITIALIZERS, resolve_init
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP


def s(v):
    return 1.0 / (1.0 + math.exp(-v))


def hand_net(activation="relu", dtype="float64"):
    """3-2-1 network; W stored (n_in, n_out) so Z = X W + b."""
    net = MLP([3, 2, 1], activation, dtype=dtype)
    net.weights[0][...] = [[1.0, -1.0], [0.5, 2.0], [1.0, 1.0]]
    net.biases[0][...] = [-2.0, 1.0]
    net.weights[1][...] = [[2.0], [-1.0]]
    net.biases[1][...] = [0.5]
    return net


X_HAND = np.array([[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]])
# row 0: z1 = (1 + 1 - 1 - 2, -1 + 4 - 1 + 1) = (-1, 3); row 1: z1 = b1 = (-2, 1)


def test_forward_by_hand_relu():
    # relu: a1 = (0, 3) -> z2 = 0 - 3 + 0.5 = -2.5;  a1 = (0, 1) -> z2 = -1 + 0.5 = -0.5
    out = hand_net("relu").forward(X_HAND)
    np.testing.assert_allclose(out, [[-2.5], [-0.5]], rtol=1e-15)


def test_forward_by_hand_sigmoid_and_identity():
    out = hand_net("sigmoid").forward(X_HAND)
    expect = [[2 * s(-1) - s(3) + 0.5], [2 * s(-2) - s(1) + 0.5]]
    np.testing.assert_allclose(out, expect, rtol=1e-14)
    # identity: z2 = 2 * (-1) - 3 + 0.5 = -4.5 and 2 * (-2) - 1 + 0.5 = -4.5
    np.testing.assert_allclose(hand_net("identity").forward(X_HAND), [[-4.5], [-4.5]], rtol=1e-15)


def test_forward_by_hand_float32():
    out = hand_net("relu", dtype="float32").forward(X_HAND.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-2.5], [-0.5]])


def test_backward_by_hand_relu():
    net = hand_net("relu")
    net.forward(X_HAND[:1])
    delta = net.output_delta_buffer(1)
    delta[...] = [[1.0]]
    net.backward(delta)
    # dW2 = a1^T delta = (0, 3)^T; db2 = 1
    np.testing.assert_array_equal(net.grad_weights[1], [[0.0], [3.0]])
    np.testing.assert_array_equal(net.grad_biases[1], [1.0])
    # delta1 = delta W2^T * relu'(z1) = (2, -1) * (0, 1) = (0, -1); dW1 = x^T delta1; db1 = delta1
    np.testing.assert_array_equal(net.grad_weights[0], [[0.0, -1.0], [0.0, -2.0], [0.0, 1.0]])
    np.testing.assert_array_equal(net.grad_biases[0], [0.0, -1.0])


def test_2_2_2_network_with_softmax_loss_by_hand():
    # identity hidden layer, z2 = (x W1 + b1) W2 + b2 with x = (1, 1): h = (1, 2), z2 = (0, ln 3)
    net = MLP([2, 2, 2], "identity", dtype="float64")
    net.weights[0][...] = [[1.0, 0.0], [0.0, 2.0]]
    net.biases[0][...] = [0.0, 0.0]
    net.weights[1][...] = [[0.0, 0.0], [0.0, math.log(3) / 2]]
    net.biases[1][...] = [0.0, 0.0]
    z = net.forward(np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(z, [[0.0, math.log(3)]], rtol=1e-15, atol=1e-15)
    loss = LOSSES.get("nll")(2)  # two softmax outputs
    # softmax(0, ln 3) = (1/4, 3/4): -log(3/4) for class 1
    assert loss.forward(z, np.array([1])) == pytest.approx(math.log(4 / 3), rel=1e-14)


def reference_forward(net, x, act):
    a = x
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        z = a @ w + b
        a = z if l == net.n_layers - 1 else act(z)
    return a


def test_buffers_reused_across_batch_sizes():
    rng = np.random.default_rng(0)
    net = MLP([4, 5, 3, 2], "tanh", dtype="float64")
    net.initialize("xavier_uniform", rng)
    for b in (5, 2, 7, 1, 7):
        x = rng.normal(size=(b, 4))
        np.testing.assert_allclose(net.forward(x), reference_forward(net, x, np.tanh), rtol=1e-13)


def test_logits_in_chunks_equal_one_pass():
    rng = np.random.default_rng(1)
    net = MLP([4, 6, 3], "gelu", dtype="float64")
    net.initialize("he_normal", rng)
    x = rng.normal(size=(10, 4))
    full = net.forward(x).copy()
    np.testing.assert_allclose(net.logits(x, chunk=3), full, rtol=1e-14)


def test_needs_at_least_two_sizes():
    with pytest.raises(ValueError):
        MLP([3])


# --- dropout ------------------------------------------------------------------------------------
def test_dropout_inactive_at_inference():
    rng = np.random.default_rng(2)
    a = MLP([4, 6, 6, 3], "relu", dropout=0.5, dtype="float64")
    a.initialize("he_normal", rng)
    b = MLP([4, 6, 6, 3], "relu", dropout=0.0, dtype="float64")
    b.params[...] = a.params
    x = rng.normal(size=(8, 4))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    np.testing.assert_array_equal(a.logits(x), b.forward(x))


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_training_masks_and_rescales(p):
    # identity hidden layer and W2 = I, b2 = 0: the logits ARE the dropped hidden activations
    rng = np.random.default_rng(3)
    net = MLP([3, 6, 6], "identity", dropout=p, dtype="float64")
    net.weights[0][...] = rng.normal(size=(3, 6))
    net.biases[0][...] = rng.normal(size=6)
    net.weights[1][...] = np.eye(6)
    net.biases[1][...] = 0
    x = rng.normal(size=(2000, 3))
    hidden = x @ net.weights[0] + net.biases[0]
    out = net.forward(x, rng=np.random.default_rng(10)).copy()
    dropped = out == 0
    np.testing.assert_allclose(out[~dropped], hidden[~dropped] / (1 - p), rtol=1e-13)
    keep_fraction = 1 - dropped.mean()
    assert abs(keep_fraction - (1 - p)) < 4 * math.sqrt(p * (1 - p) / out.size)
    # same generator state -> same mask; another seed -> another mask
    again = net.forward(x, rng=np.random.default_rng(10)).copy()
    np.testing.assert_array_equal(again, out)
    other = net.forward(x, rng=np.random.default_rng(11))
    assert not np.array_equal(other == 0, dropped)


def test_dropout_float32_path():
    net = MLP([3, 8, 8], "identity", dropout=0.25, dtype="float32")
    net.weights[0][...] = 1.0
    net.weights[1][...] = np.eye(8)
    x = np.ones((50, 3), np.float32)  # hidden = 3 everywhere
    out = net.forward(x, rng=np.random.default_rng(0))
    assert out.dtype == np.float32
    assert set(np.unique(out)) <= {np.float32(0.0), np.float32(3.0 / 0.75)}


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "gelu", "softplus"])
def test_dropout_backward_matches_finite_differences_with_fixed_mask(act):
    rng = np.random.default_rng(4)
    net = MLP([3, 5, 4, 3], act, dropout=0.4, dtype="float64")
    net.initialize("xavier_normal", rng)
    net.params[...] += rng.normal(0, 0.1, net.params.size)
    loss = LOSSES.get("cross_entropy")(3)
    x = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    seed = 123

    def j():
        return loss.forward(net.forward(x, rng=np.random.default_rng(seed)), y)

    no_dropout = net.forward(x).copy()
    z = net.forward(x, rng=np.random.default_rng(seed))
    assert not np.allclose(z, no_dropout)  # some units really are dropped
    loss.forward(z, y)
    net.backward(loss.backward(y, net.output_delta_buffer(len(y))))
    analytic = net.grads.copy()
    numeric = np.empty_like(analytic)
    h = 1e-6
    for i in range(net.params.size):
        old = net.params[i]
        net.params[i] = old + h
        plus = j()
        net.params[i] = old - h
        minus = j()
        net.params[i] = old
        numeric[i] = (plus - minus) / (2 * h)
    assert np.max(np.abs(analytic - numeric)) / np.max(np.abs(numeric)) < 1e-6
    # the mask matters: the gradient without dropout is different
    loss.forward(net.forward(x), y)
    net.backward(loss.backward(y, net.output_delta_buffer(len(y))))
    assert not np.allclose(net.grads, analytic)


# --- flat parameters ------------------------------------------------------------------------------
def test_flat_layout_and_views():
    net = MLP([3, 2, 1], "relu", dtype="float64")
    assert net.params.size == 3 * 2 + 2 + 2 * 1 + 1
    net.params[...] = np.arange(11)
    # W1 (3, 2) first, then b1, then W2 (2, 1), then b2
    np.testing.assert_array_equal(net.weights[0], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(net.biases[0], [6, 7])
    np.testing.assert_array_equal(net.weights[1], [[8], [9]])
    np.testing.assert_array_equal(net.biases[1], [10])
    net.params[7] = -1.0
    assert net.biases[0][1] == -1.0
    net.weights[1][...] = 0
    np.testing.assert_array_equal(net.params[8:10], [0, 0])
    for w, b, gw, gb in zip(net.weights, net.biases, net.grad_weights, net.grad_biases):
        assert np.shares_memory(w, net.params) and np.shares_memory(b, net.params)
        assert np.shares_memory(gw, net.grads) and np.shares_memory(gb, net.grads)
    net.grads[...] = np.arange(11)
    np.testing.assert_array_equal(net.grad_weights[0], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(net.grad_biases[1], [10])


def test_views_survive_initialize_and_optimizer_style_updates():
    net = MLP([4, 3, 2], "tanh")
    assert net.params.dtype == np.float32  # float32 by default
    params = net.params
    net.initialize("xavier_uniform", np.random.default_rng(0))
    assert net.params is params
    params -= 0.5  # in place, as an optimizer does
    np.testing.assert_array_equal(net.weights[0].ravel(), params[:12])
    np.testing.assert_array_equal(net.biases[0], params[12:15])


def test_weight_mask_marks_exactly_the_weights():
    net = MLP([3, 2, 1], "relu", dtype="float64")
    assert net.weight_mask().tolist() == [1] * 6 + [0] * 2 + [1] * 2 + [0]
    net = MLP([5, 4, 3, 2], "relu")
    net.params[...] = 0
    for w in net.weights:
        w[...] = 1
    np.testing.assert_array_equal(net.weight_mask(), net.params)
    assert net.weight_mask().sum() == 5 * 4 + 4 * 3 + 3 * 2


# --- initialisers ---------------------------------------------------------------------------------
FAN_IN, FAN_OUT = 300, 500
NORMAL_STD = {
    "xavier_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "he_normal": math.sqrt(2 / FAN_IN),
    "normal": 0.01,
}
UNIFORM_RANGE = {
    "xavier_uniform": math.sqrt(6 / (FAN_IN + FAN_OUT)),
    "he_uniform": math.sqrt(6 / FAN_IN),
    "uniform": 0.05,
}


@pytest.mark.parametrize("name", list(NORMAL_STD))
def test_normal_initialisers(name):
    w = INITIALIZERS.get(name)(FAN_IN, FAN_OUT, np.random.default_rng(0))
    sigma = NORMAL_STD[name]
    assert w.shape == (FAN_IN, FAN_OUT)
    assert abs(w.mean()) < 5 * sigma / math.sqrt(w.size)
    assert w.std() == pytest.approx(sigma, rel=0.015)
    # normal shape: 68.27% within one sigma (a uniform of the same std has 57.7%)
    assert np.mean(np.abs(w) < sigma) == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.01)


@pytest.mark.parametrize("name", list(UNIFORM_RANGE))
def test_uniform_initialisers(name):
    w = INITIALIZERS.get(name)(FAN_IN, FAN_OUT, np.random.default_rng(0))
    r = UNIFORM_RANGE[name]
    assert w.shape == (FAN_IN, FAN_OUT)
    assert np.max(np.abs(w)) <= r
    assert np.max(w) > 0.99 * r and np.min(w) < -0.99 * r
    assert abs(w.mean()) < 5 * r / math.sqrt(3 * w.size)
    assert w.std() == pytest.approx(r / math.sqrt(3), rel=0.015)


def test_auto_resolves_by_activation():
    for act in ("relu", "leaky_relu", "elu", "gelu", "softplus"):
        assert resolve_init("auto", act).startswith("he")
    for act in ("identity", "sigmoid", "tanh"):
        assert resolve_init("auto", act).startswith("xavier")
    assert resolve_init("he_uniform", "tanh") == "he_uniform"


@pytest.mark.parametrize("act,family", [("relu", "he"), ("gelu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier")])
def test_auto_initialisation_scale_through_the_network(act, family):
    fan_in, fan_out = 100, 900  # He std 0.141, Xavier std 0.045: far apart
    net = MLP([fan_in, fan_out], act, dtype="float64")
    net.initialize("auto", np.random.default_rng(5))
    w = net.weights[0]
    std = math.sqrt(2 / fan_in) if family == "he" else math.sqrt(2 / (fan_in + fan_out))
    assert w.std() == pytest.approx(std, rel=0.02)
    if family == "xavier":
        assert np.max(np.abs(w)) <= math.sqrt(6 / (fan_in + fan_out))


def test_same_seed_same_weights_and_zero_biases():
    def build(seed):
        net = MLP([6, 5, 4, 3], "relu")
        net.params[...] = 7.0  # initialize must overwrite everything
        net.initialize("auto", np.random.default_rng(seed))
        return net

    a, b, c = build(42), build(42), build(43)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    for bias in a.biases:
        np.testing.assert_array_equal(bias, 0)
    assert np.all(a.params[a.weight_mask() == 1] != 7.0)


def test_dropout_without_hidden_layers_drops_nothing():
    """Dropout acts on hidden units; with none (a single-layer perceptron) a training pass is the
    plain pass, and backward works (it used to look for dropout buffers that are never made)."""
    rng = np.random.default_rng(3)
    x, delta = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    with_dropout = MLP([4, 3], "relu", dropout=0.5, dtype="float64")
    plain = MLP([4, 3], "relu", dtype="float64")
    with_dropout.initialize("xavier_uniform", np.random.default_rng(0))
    plain.initialize("xavier_uniform", np.random.default_rng(0))
    np.testing.assert_array_equal(with_dropout.forward(x, rng=np.random.default_rng(1)), plain.forward(x))
    np.testing.assert_array_equal(with_dropout.backward(delta), plain.backward(delta))
    np.testing.assert_allclose(plain.grads[: 4 * 3].reshape(4, 3), x.T @ delta, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_an_augmented_input_gives_the_bits_of_the_copied_one(dtype, activation):
    """forward(augment(x), augmented=True) reads [x, 1] in place; logits and every gradient
    (the first layer's is [x, 1]^T delta_1) equal those of forward(x) bit for bit."""
    rng = np.random.default_rng(0)
    net = MLP([7, 5, 4, 3], activation, dtype=dtype)
    net.initialize("auto", rng)
    x = rng.standard_normal((11, 7))
    delta = rng.standard_normal((11, 3)).astype(dtype)
    logits = net.forward(x).copy()
    grads = net.backward(delta.copy()).copy()
    xa = net.augment(x)
    assert xa.dtype == net.dtype and xa.shape == (11, 8) and np.all(xa[:, 7] == 1)
    np.testing.assert_array_equal(xa[:, :7], x.astype(dtype))
    net.forward(rng.standard_normal((11, 7)))  # the network's own input buffer now holds other rows
    np.testing.assert_array_equal(net.forward(xa, augmented=True), logits)
    np.testing.assert_array_equal(net.backward(delta.copy()), grads)


def test_an_augmented_input_of_the_wrong_shape_or_dtype_is_refused():
    net = MLP([3, 2, 1], "relu", dtype="float64")
    for bad in (np.ones((4, 3)), np.ones((4, 4), dtype=np.float32), np.ones((4, 8))[:, ::2]):
        with pytest.raises(ValueError, match="augmented input"):
            net.forward(bad, augmented=True)
