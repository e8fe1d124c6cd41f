"""The engine's training step and full-data objective against straightforward references written
here (plain NumPy, a fresh array for every intermediate), and the MLP's copy semantics."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from nnclf.engine.losses import CrossEntropy
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.schedules import SCHEDULES
from nnclf.engine.step import Objective, TrainingStep
from nnclf.errors import NnclfError
from nnclf.trainer import Trainer

SIZES = [5, 7, 3]


def make_net(seed=0, dtype="float64"):
    net = MLP(SIZES, "tanh", dtype=dtype)
    net.initialize("auto", np.random.default_rng(seed))
    for b in net.biases:
        b[...] = np.random.default_rng(seed + 1).normal(0, 0.1, b.shape)
    return net


def data(n=40, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    return x, y


def reference_gradient(W, b, x, y, lam):
    """Loss (with decay) and gradients of a tanh MLP with softmax cross-entropy, by hand."""
    acts, zs = [x], []
    for l in range(len(W)):
        z = acts[-1] @ W[l] + b[l]
        zs.append(z)
        if l < len(W) - 1:
            acts.append(np.tanh(z))
    s = zs[-1] - zs[-1].max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    onehot = np.eye(p.shape[1])[y]
    value = -np.mean(np.log(p[np.arange(len(y)), y])) + lam / 2 * sum((w**2).sum() for w in W)
    delta = (p - onehot) / len(y)
    gW, gb = [None] * len(W), [None] * len(W)
    for l in range(len(W) - 1, -1, -1):
        gW[l] = acts[l].T @ delta + lam * W[l]
        gb[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ W[l].T) * (1 - acts[l] ** 2)
    return value, gW, gb


def flatten(W, b):
    return np.concatenate([np.concatenate([w.ravel(), v]) for w, v in zip(W, b)])


class ReferenceOptimizer:
    """Each update rule from its textbook formula, on a flat float64 vector."""

    def __init__(self, name, n, hyper):
        self.name, self.h, self.t = name, hyper, 0
        self.a, self.c = np.zeros(n), np.zeros(n)

    def step(self, x, g, lr, mask):
        h, self.t = self.h, self.t + 1
        if self.name in ("sgd", "gd"):
            return x - lr * g
        if self.name == "momentum":
            self.a = h["momentum"] * self.a + g
            return x - lr * self.a
        if self.name == "nesterov":
            self.a = h["momentum"] * self.a + g
            return x - lr * (g + h["momentum"] * self.a)
        if self.name == "adagrad":
            self.a = self.a + g * g
            return x - lr * g / (np.sqrt(self.a) + h["eps"])
        if self.name == "rmsprop":
            self.a = h["rho"] * self.a + (1 - h["rho"]) * g * g
            return x - lr * g / (np.sqrt(self.a) + h["eps"])
        if self.name in ("adam", "adamw"):
            if self.name == "adamw":
                x = x - lr * h["weight_decay"] * x * mask
            self.a = h["beta1"] * self.a + (1 - h["beta1"]) * g
            self.c = h["beta2"] * self.c + (1 - h["beta2"]) * g * g
            m_hat, v_hat = self.a / (1 - h["beta1"] ** self.t), self.c / (1 - h["beta2"] ** self.t)
            return x - lr * m_hat / (np.sqrt(v_hat) + h["eps"])
        raise AssertionError(f"no reference for {self.name}")


HYPER = {
    "sgd": {}, "gd": {}, "momentum": {"momentum": 0.8}, "nesterov": {"momentum": 0.7},
    "adagrad": {"eps": 1e-6}, "rmsprop": {"rho": 0.85, "eps": 1e-6},
    "adam": {"beta1": 0.85, "beta2": 0.99, "eps": 1e-6},
    "adamw": {"beta1": 0.85, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05},
}


def test_every_registered_optimizer_has_a_reference_here():
    assert set(OPTIMIZERS.names()) <= set(HYPER) | {"lbfgs", "cg", "newton_cg"}


@pytest.mark.parametrize("clip_norm", [None, 0.05])
@pytest.mark.parametrize("lam", [0.0, 0.03])
@pytest.mark.parametrize("name", sorted(HYPER))
def test_step_matches_the_reference_for_every_optimizer(name, lam, clip_norm):
    net = make_net()
    opt = OPTIMIZERS.get(name)(net.params.size, net.dtype, net.weight_mask(), **HYPER[name])
    step = TrainingStep(net, CrossEntropy(SIZES[-1]), opt, weight_decay=lam, clip_norm=clip_norm)
    ref = ReferenceOptimizer(name, net.params.size, HYPER[name])
    W, b = [w.copy() for w in net.weights], [v.copy() for v in net.biases]
    theta, mask = flatten(W, b), net.weight_mask()
    x, y = data()
    clipped = 0
    for i, lo in enumerate(range(0, 40, 10)):
        xs, ys = x[lo : lo + 10], y[lo : lo + 10]
        value, gW, gb = reference_gradient(W, b, xs, ys, lam)
        g = flatten(gW, gb)
        if clip_norm is not None and np.linalg.norm(g) > clip_norm:
            g, clipped = g * clip_norm / np.linalg.norm(g), clipped + 1
        theta = ref.step(theta, g, 0.05 + 0.01 * i, mask)
        result = step.step(xs, ys, 0.05 + 0.01 * i)
        assert result.loss == pytest.approx(value - lam / 2 * sum((w**2).sum() for w in W), rel=1e-12)
        np.testing.assert_allclose(net.params, theta, rtol=1e-11, atol=1e-13)
        # unflatten the reference parameters for the next batch
        offset = 0
        for l, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            W[l] = theta[offset : offset + n_in * n_out].reshape(n_in, n_out)
            offset += n_in * n_out
            b[l] = theta[offset : offset + n_out]
            offset += n_out
    if clip_norm is not None:
        assert clipped > 0, "the clipping branch was never taken"


def test_gradient_share_splits_a_batch_into_parts_that_sum_to_it():
    net = make_net()
    step = TrainingStep(net, CrossEntropy(SIZES[-1]), OPTIMIZERS.get("sgd")(net.params.size, net.dtype))
    x, y = data(n=30)
    whole = step.gradient(x, y)
    full = net.grads.copy()
    first = step.gradient(x[:12], y[:12], share=12 / 30)
    part = net.grads.copy()
    second = step.gradient(x[12:], y[12:], share=18 / 30)
    np.testing.assert_allclose(part + net.grads, full, rtol=1e-12, atol=1e-15)
    assert first.correct + second.correct == whole.correct


def test_objective_equals_the_reference_and_central_differences():
    net = make_net()
    x, y = data(n=37)
    lam = 0.02
    objective = Objective(net, CrossEntropy(SIZES[-1]), x, y, weight_decay=lam, chunk=8)  # 5 chunks, the last short
    theta = net.params.copy()
    value, grad = objective(theta)
    ref_value, gW, gb = reference_gradient(net.weights, net.biases, x, y, lam)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, flatten(gW, gb), rtol=1e-10, atol=1e-13)
    h = 1e-6
    for i in np.random.default_rng(0).choice(theta.size, 12, replace=False):
        e = np.zeros_like(theta)
        e[i] = h
        numeric = (objective(theta + e)[0] - objective(theta - e)[0]) / (2 * h)
        assert numeric == pytest.approx(grad[i], rel=1e-5, abs=1e-9)
    assert objective.evaluations == 1 + 24


def test_objective_is_a_pure_function_of_theta():
    net = make_net()
    x, y = data()
    objective = Objective(net, CrossEntropy(SIZES[-1]), x, y)
    theta = net.params.copy()
    first = objective(theta)
    objective(theta * 0.5)
    again = objective(theta)
    assert first[0] == again[0] and np.array_equal(first[1], again[1])


def test_a_copied_or_pickled_network_trains_on_its_own_parameters():
    net = make_net()
    before = net.params.copy()
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(np.shares_memory(w, other.params) for w in other.weights)
        opt = OPTIMIZERS.get("sgd")(other.params.size, other.dtype)
        step = TrainingStep(other, CrossEntropy(SIZES[-1]), opt)
        step.step(*data(), lr=0.5)
        assert not np.array_equal(other.params, before), "training the copy changed nothing"
        np.testing.assert_array_equal(net.params, before)  # the original is untouched
        # the copy's views follow its own vector
        np.testing.assert_array_equal(other.weights[0].ravel(), other.params[: SIZES[0] * SIZES[1]])


def test_labels_outside_the_classes_are_an_error_not_another_rows_logit():
    net = make_net()
    x, y = data()
    y[3] = SIZES[-1]  # one past the last class
    with pytest.raises(ValueError, match=r"class indices must lie in 0\.\.2; got values from 0 to 3"):
        Objective(net, CrossEntropy(SIZES[-1]), x, y)
    trainer = Trainer(net, CrossEntropy(SIZES[-1]), OPTIMIZERS.get("sgd")(net.params.size, net.dtype),
                      SCHEDULES.get("constant")(0.1, 1), epochs=1, batch_size=8, rng=np.random.default_rng(0),
                      monitor="train_loss")
    with pytest.raises(NnclfError, match="training labels: class indices must lie in 0..2"):
        trainer.fit(x, y)
    y[3] = -1
    with pytest.raises(NnclfError, match="got values from -1 to 2"):
        trainer.fit(x, y)
