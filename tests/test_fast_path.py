"""The fast training path (flat parameters, augmented [A, 1] buffers, fused softmax
cross-entropy, flat Adam) against a straightforward reference written here: plain NumPy,
one-hot targets, a fresh array for every intermediate, Adam in its textbook form."""

from __future__ import annotations

import numpy as np
import pytest

from nnclf.engine.losses import CrossEntropy, NegativeLogLikelihood
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import Adam
from nnclf.engine.schedules import SCHEDULES
from nnclf.trainer import Trainer


def reference_training(weights, biases, x, y, n_classes, batch, lr, steps_epochs=1, b1=0.9, b2=0.999, eps=1e-8):
    """Mini-batch Adam on a ReLU MLP with softmax cross-entropy, in float64, no buffers.

    Returns the final weights, biases and the per-batch losses (before each step)."""
    W = [w.astype(np.float64).copy() for w in weights]
    b = [v.astype(np.float64).copy() for v in biases]
    mW = [np.zeros_like(w) for w in W]
    vW = [np.zeros_like(w) for w in W]
    mb = [np.zeros_like(v) for v in b]
    vb = [np.zeros_like(v) for v in b]
    x = x.astype(np.float64)
    t, losses = 0, []
    for _ in range(steps_epochs):
        for lo in range(0, len(y), batch):
            xb, yb = x[lo : lo + batch], y[lo : lo + batch]
            onehot = np.eye(n_classes)[yb]
            # forward
            acts, zs = [xb], []
            for l in range(len(W)):
                z = acts[-1] @ W[l] + b[l]
                zs.append(z)
                if l < len(W) - 1:
                    acts.append(np.maximum(z, 0.0))
            logits = zs[-1]
            shifted = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            losses.append(float(-np.mean(np.sum(onehot * np.log(p), axis=1))))
            # backward
            delta = (p - onehot) / len(yb)
            gW, gb = [None] * len(W), [None] * len(W)
            for l in range(len(W) - 1, -1, -1):
                gW[l] = acts[l].T @ delta
                gb[l] = delta.sum(axis=0)
                if l > 0:
                    delta = (delta @ W[l].T) * (zs[l - 1] > 0)
            # Adam, textbook form
            t += 1
            for params, grads, ms, vs in ((W, gW, mW, vW), (b, gb, mb, vb)):
                for l in range(len(params)):
                    ms[l] = b1 * ms[l] + (1 - b1) * grads[l]
                    vs[l] = b2 * vs[l] + (1 - b2) * grads[l] ** 2
                    m_hat = ms[l] / (1 - b1**t)
                    v_hat = vs[l] / (1 - b2**t)
                    params[l] = params[l] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return W, b, losses


class BatchLosses:
    def __init__(self):
        self.losses = []

    def on_batch_end(self, trainer, epoch, batch, n_batches, loss):
        self.losses.append(loss)


def fast_training(sizes, x, y, batch, lr, dtype, epochs=1, seed=0):
    net = MLP(sizes, "relu", dtype=dtype)
    net.initialize("auto", np.random.default_rng(seed))
    # non-zero biases so the bias path is exercised from the first step
    for b in net.biases:
        b[...] = np.random.default_rng(seed + 1).normal(0, 0.1, b.shape)
    start_w = [w.copy() for w in net.weights]
    start_b = [b.copy() for b in net.biases]
    recorder = BatchLosses()
    trainer = Trainer(
        net,
        CrossEntropy(sizes[-1]),
        Adam(net.params.size, dtype),
        SCHEDULES.get("constant")(lr, epochs),
        epochs=epochs,
        batch_size=batch,
        rng=np.random.default_rng(seed),
        shuffle=False,
        monitor="train_loss",
        callbacks=[recorder],
    )
    trainer.fit(x, y)
    return net, start_w, start_b, recorder.losses


def data(n=50, d=6, k=4, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    return x, y


def matches_reference_float64(x, y, batch, sizes=(6, 9, 7, 4)):
    net, w0, b0, losses = fast_training(list(sizes), x, y, batch, lr=0.01, dtype="float64", epochs=2)
    W, b, ref_losses = reference_training(w0, b0, x, y, sizes[-1], batch, lr=0.01, steps_epochs=2)
    for l in range(len(W)):
        np.testing.assert_allclose(net.weights[l], W[l], rtol=0, atol=1e-12)
        np.testing.assert_allclose(net.biases[l], b[l], rtol=0, atol=1e-12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12, atol=1e-12)


def matches_float64_reference_float32(x, y, batch, sizes=(6, 9, 7, 4)):
    x = x.astype(np.float32)
    net, w0, b0, losses = fast_training(list(sizes), x, y, batch, lr=1e-3, dtype="float32", epochs=2)
    W, b, ref_losses = reference_training(w0, b0, x, y, sizes[-1], batch, lr=1e-3, steps_epochs=2)
    # float32 rounding: eps32 ~ 1.2e-7 relative on values of order 1 (and Adam steps of 1e-3)
    worst = max(float(np.max(np.abs(got - ref))) for got, ref in zip([*net.weights, *net.biases], [*W, *b]))
    assert worst < 2e-6
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)


@pytest.mark.parametrize("batch", [16, 50, 7])
def test_fast_path_float64_matches_reference(batch):
    matches_reference_float64(*data(), batch)


@pytest.mark.parametrize("batch", [16, 50])
def test_fast_path_float32_matches_float64_reference(batch):
    matches_float64_reference_float32(*data(), batch)


@pytest.mark.parametrize("batch", [300, 257])
def test_large_batches_match_the_reference(batch):
    # every batch is one pass on every platform, whatever its size
    x, y = data(n=600)
    matches_reference_float64(x, y, batch)
    matches_float64_reference_float32(x, y, batch)


@pytest.mark.parametrize("loss_cls", [CrossEntropy, NegativeLogLikelihood])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_softmax_loss_equals_forward_then_backward(loss_cls, dtype):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(33, 5)) * 4).astype(dtype)
    z[0] = [1e4, -1e4, 0, 3, 1e4]  # huge logits and a tie at the max stay finite
    y = rng.integers(0, 5, 33)
    loss = loss_cls(5)
    expected = loss.forward(z, y)
    d_ref = np.empty_like(z)
    loss.backward(y, d_ref)
    d_fast = np.full_like(z, np.nan)
    got = loss.forward_backward(z.copy(), y, d_fast)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert got == pytest.approx(expected, rel=tol, abs=tol)
    np.testing.assert_allclose(d_fast, d_ref, rtol=0, atol=tol)


def test_fused_path_falls_back_for_smoothing_and_weights():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    for loss in (CrossEntropy(3, label_smoothing=0.1), CrossEntropy(3, class_weights=np.array([1.0, 2.0, 0.5])), CrossEntropy(2)):
        zz = z[:, :1] if loss.n_outputs == 1 else z
        yy = y % 2 if loss.n_classes == 2 else y
        expected = loss.forward(zz, yy)
        d_ref = np.empty_like(zz)
        loss.backward(yy, d_ref)
        d = np.empty_like(zz)
        assert loss.forward_backward(zz, yy, d) == pytest.approx(expected, rel=1e-6)
        np.testing.assert_allclose(d, d_ref, rtol=1e-6, atol=1e-8)


def test_float64_input_to_float32_network_and_varying_batch_sizes():
    """Buffers are reused across batch sizes; inputs of another dtype are cast, as before."""
    net = MLP([3, 4, 2], dtype="float32")
    net.initialize("auto", np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(10, 3))
    full = net.forward(x).copy()
    part = net.forward(x[:3]).copy()
    again = net.logits(x, chunk=4)
    ref = np.maximum(x @ net.weights[0] + net.biases[0], 0) @ net.weights[1] + net.biases[1]
    np.testing.assert_allclose(full, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(part, ref[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, ref, rtol=1e-5, atol=1e-6)
