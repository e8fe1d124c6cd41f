"""Per-row weights in the losses (sample_weight): J = 1/B sum_i c_{y_i} r_i l_i, checked against
each row's own unweighted loss and delta computed alone (B = 1)."""

import numpy as np
import pytest

from nnclf.engine.losses import LOSSES


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "kl_div", "mse"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("class_weights", [None, [0.5, 2.0, 1.5]])
def test_row_weights_scale_each_rows_loss_and_delta(name, k, smoothing, class_weights):
    rng = np.random.default_rng(0)
    cw = None if class_weights is None else np.array(class_weights[:k])
    loss = LOSSES.get(name)(k, smoothing, cw)
    b = 7
    z = rng.normal(size=(b, loss.n_outputs))
    y = rng.integers(0, k, size=b)
    r = rng.uniform(0.0, 3.0, size=b)
    # reference: each row alone, unweighted by rows (its class weight still applies)
    singles, deltas = [], []
    for i in range(b):
        d = np.empty((1, loss.n_outputs))
        singles.append(loss.forward_backward(z[i : i + 1], y[i : i + 1], d))
        deltas.append(d[0])
    loss.row_weights = r
    delta = np.empty_like(z)
    value = loss.forward_backward(z, y, delta)
    loss.row_weights = None
    np.testing.assert_allclose(value, np.mean(r * np.array(singles)), rtol=1e-12)
    np.testing.assert_allclose(delta, r[:, None] * np.array(deltas) / b, rtol=1e-12, atol=1e-15)


def test_the_step_sets_and_clears_the_row_weights():
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import OPTIMIZERS
    from nnclf.engine.step import TrainingStep

    rng = np.random.default_rng(1)
    net = MLP([3, 4, 3], "tanh", 0.0, "float64")
    net.initialize("auto", rng)
    loss = LOSSES.get("cross_entropy")(3)
    step = TrainingStep(net, loss, OPTIMIZERS.get("sgd")(net.params.size, "float64"))
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    twice = step.gradient(x, y, ws=np.full(5, 2.0))
    g2 = net.grads.copy()
    once = step.gradient(x, y)
    assert loss.row_weights is None
    np.testing.assert_allclose(g2, 2 * net.grads, rtol=1e-12)
    assert twice.loss == pytest.approx(2 * once.loss, rel=1e-12)


def test_full_batch_methods_refuse_sample_weights():
    import nnclf

    X = np.random.default_rng(0).normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(nnclf.NnclfError, match="lbfgs does not take sample weights"):
        nnclf.Classifier(hidden=(3,), optimizer="lbfgs", batch_size=None, epochs=2).fit(X, y, sample_weight=np.arange(20.0))
    nnclf.Classifier(hidden=(3,), optimizer="lbfgs", batch_size=None, epochs=2).fit(X, y)  # unweighted: fine
    # equal weights are the unweighted mean exactly (scaled to mean 1 they are all 1): accepted, the same bits
    a = nnclf.Classifier(hidden=(3,), optimizer="lbfgs", batch_size=None, epochs=2, random_state=0).fit(X, y, sample_weight=np.full(20, 3.0))
    b = nnclf.Classifier(hidden=(3,), optimizer="lbfgs", batch_size=None, epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.net_.params, b.net_.params)


def _hand_loss_and_derivative(name, r, delta=1.0):
    """l(r) and l'(r) of the regression losses written out independently of nnclf's code."""
    if name == "mse":
        return 0.5 * r**2, r
    if name == "mae":
        return np.abs(r), np.sign(r)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)), np.clip(r, -delta, delta)


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
@pytest.mark.parametrize("m", [1, 3])
def test_regression_losses_take_row_weights_by_the_hand_formula(name, m):
    """J = 1/B sum_i r_i sum_k l(z_ik - y_ik), dJ/dz_ik = r_i l'(z_ik - y_ik) / B."""
    from nnclf.engine.regression import REGRESSION_LOSSES

    rng = np.random.default_rng(1)
    b = 9
    loss = REGRESSION_LOSSES.get(name)(m, **({"delta": 0.7} if name == "huber" else {}))
    z, y = rng.normal(size=(b, m)) * 2, rng.normal(size=(b, m))
    r = rng.uniform(0.0, 3.0, size=b)
    elementwise, derivative = _hand_loss_and_derivative(name, z - y, 0.7)
    loss.row_weights = r
    delta = np.empty_like(z)
    value = loss.forward_backward(z, y, delta)
    loss.row_weights = None
    np.testing.assert_allclose(value, np.sum(r * elementwise.sum(axis=1)) / b, rtol=1e-12)
    np.testing.assert_allclose(delta, r[:, None] * derivative / b, rtol=1e-12, atol=1e-15)
    # unit weights are the unweighted loss; no weights after the call leaves them off
    loss.row_weights = np.ones(b)
    ones = loss.forward_backward(z, y, delta.copy())
    loss.row_weights = None
    plain = loss.forward_backward(z, y, delta)
    np.testing.assert_allclose(ones, plain, rtol=1e-12)
    np.testing.assert_allclose(plain, elementwise.sum() / b, rtol=1e-12)


def test_a_regression_step_with_weights_equals_repeated_rows():
    """A row of weight 2 in a full batch is that row twice (weights scaled to mean 1): the same
    gradient, to rounding."""
    from nnclf.engine.network import MLP
    from nnclf.engine.regression import REGRESSION_LOSSES
    from nnclf.engine.step import TrainingStep
    from nnclf.engine.optimizers import OPTIMIZERS

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    w = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])
    reps = np.repeat(np.arange(6), w.astype(int))
    grads = []
    for xs, ys, ws in ((x, y, w * len(w) / w.sum()), (x[reps], y[reps], None)):
        net = MLP([3, 4, 2], "tanh", 0.0, "float64")
        net.initialize("auto", np.random.default_rng(0))
        loss = REGRESSION_LOSSES.get("huber")(2, delta=0.5)
        step = TrainingStep(net, loss, OPTIMIZERS.get("sgd")(net.params.size, np.float64))
        step.gradient(xs, ys, ws=ws)
        grads.append(net.grads.copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-14)
