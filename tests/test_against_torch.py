"""The engine's loss and gradient against PyTorch's autograd, in float64, for every activation and
loss (classification with label smoothing and class weights; regression), with weight decay.

PyTorch is not a dependency: this module is skipped where it is not installed (CI does not
install it; `pip install torch` beside the test extra runs it). Each torch side is written from
the docstring formulas of the nnclf class it checks, with torch's own functions where they mean
the same thing, so a disagreement is a bug on one side, not a convention.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from nnclf.engine.activations import ACTIVATIONS  # noqa: E402
from nnclf.engine.losses import LOSSES  # noqa: E402
from nnclf.engine.network import MLP  # noqa: E402
from nnclf.engine.regression import REGRESSION_LOSSES  # noqa: E402
from nnclf.engine.step import Objective  # noqa: E402

SIZES_IN, HIDDEN, ROWS, DECAY = 6, [7, 5], 33, 0.03

TORCH_ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
    "elu": lambda z: F.elu(z, 1.0),
    "softplus": F.softplus,
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
}


def test_every_registered_activation_is_compared():
    assert set(TORCH_ACTIVATIONS) == {ACTIVATIONS.get(name).name for name in ACTIVATIONS.names()}


def network(activation: str, n_out: int, seed: int) -> MLP:
    net = MLP([SIZES_IN, *HIDDEN, n_out], activation, dtype="float64")
    net.initialize("auto", np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[...] = rng.normal(0, 0.3, b.shape)  # non-zero biases, so their gradients are checked too
    return net


def torch_objective(net: MLP, x: np.ndarray, activation: str, loss_of_logits) -> tuple[float, np.ndarray]:
    """J = loss(z) + DECAY / 2 sum ||W||^2 by torch autograd; the gradient flattened in nnclf's
    layout (each layer's W (in, out) row by row, then its b)."""
    Ws = [torch.tensor(w.copy(), requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b.copy(), requires_grad=True) for b in net.biases]
    a = torch.tensor(x)
    f = TORCH_ACTIVATIONS[activation]
    for layer, (W, b) in enumerate(zip(Ws, bs)):
        a = a @ W + b
        if layer < len(Ws) - 1:
            a = f(a)
    J = loss_of_logits(a) + DECAY / 2 * sum((W**2).sum() for W in Ws)
    J.backward()
    grad = np.concatenate([np.concatenate([W.grad.numpy().ravel(), b.grad.numpy()]) for W, b in zip(Ws, bs)])
    return float(J.detach()), grad


def classification_case(name: str, k: int, smoothing: float, class_weights):
    """(nnclf loss, torch loss of the logits z (B, K_out)) for labels y."""
    loss = LOSSES.get(name)(k, label_smoothing=smoothing, class_weights=None if class_weights is None else np.array(class_weights))
    cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float64)

    def weighted_mean(per_row, y):
        return (per_row * cw[y]).mean() if cw is not None else per_row.mean()

    def of(y):
        yt = torch.tensor(y)
        T = torch.full((len(y), k), smoothing / k, dtype=torch.float64)
        T[torch.arange(len(y)), yt] += 1 - smoothing
        if name == "cross_entropy" and k == 2:  # one sigmoid unit, binary cross-entropy
            t = T[:, 1:]
            return lambda z: weighted_mean(F.binary_cross_entropy_with_logits(z, t, reduction="none")[:, 0], yt)
        if name in ("cross_entropy", "nll"):
            return lambda z: weighted_mean(-(T * F.log_softmax(z, dim=1)).sum(dim=1), yt)
        if name == "kl_div":
            return lambda z: weighted_mean(F.kl_div(F.log_softmax(z, dim=1), T, reduction="none").sum(dim=1), yt)
        if name == "mse":  # sigmoid units against T
            return lambda z: weighted_mean(0.5 * ((torch.sigmoid(z) - T) ** 2).sum(dim=1), yt)
        raise AssertionError(name)

    return loss, of


CLASSIFICATION = [
    ("cross_entropy", 3, 0.0, None),
    ("cross_entropy", 3, 0.1, [1.0, 2.0, 0.5]),
    ("cross_entropy", 2, 0.0, None),
    ("cross_entropy", 2, 0.2, [0.3, 1.7]),
    ("nll", 4, 0.0, None),
    ("nll", 4, 0.05, [1.0, 1.0, 3.0, 0.5]),
    ("kl_div", 3, 0.0, None),
    ("kl_div", 3, 0.15, [2.0, 1.0, 1.0]),
    ("mse", 3, 0.0, None),
    ("mse", 2, 0.1, [1.0, 0.25]),
]


def test_every_classification_loss_is_compared():
    assert {case[0] for case in CLASSIFICATION} == {LOSSES.get(name).name for name in LOSSES.names()}


@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("name,k,smoothing,class_weights", CLASSIFICATION)
def test_classification_loss_and_gradient_equal_torch(activation, name, k, smoothing, class_weights):
    loss, torch_loss_for = classification_case(name, k, smoothing, class_weights)
    net = network(activation, loss.n_outputs, seed=k)
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1.5, size=(ROWS, SIZES_IN))
    y = rng.integers(0, k, ROWS)
    J, grad = Objective(net, loss, x, y, weight_decay=DECAY)(net.params.copy())
    J_torch, grad_torch = torch_objective(net, x, activation, torch_loss_for(y))
    assert J == pytest.approx(J_torch, rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(grad, grad_torch, rtol=1e-11, atol=1e-14)


TORCH_REGRESSION = {
    "mse": lambda z, t: 0.5 * ((z - t) ** 2).sum(dim=1).mean(),
    "mae": lambda z, t: (z - t).abs().sum(dim=1).mean(),
    "huber": lambda z, t: F.huber_loss(z, t, reduction="none", delta=0.7).sum(dim=1).mean(),
}


def test_every_regression_loss_is_compared():
    assert set(TORCH_REGRESSION) == {REGRESSION_LOSSES.get(name).name for name in REGRESSION_LOSSES.names()}


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "softplus"])
@pytest.mark.parametrize("name", sorted(TORCH_REGRESSION))
def test_regression_loss_and_gradient_equal_torch(activation, name):
    loss = REGRESSION_LOSSES.get(name)(2, **({"delta": 0.7} if name == "huber" else {}))
    net = network(activation, 2, seed=3)
    rng = np.random.default_rng(12)
    x = rng.normal(0, 1.5, size=(ROWS, SIZES_IN))
    t = rng.normal(0, 2.0, size=(ROWS, 2))
    J, grad = Objective(net, loss, x, t, weight_decay=DECAY)(net.params.copy())
    J_torch, grad_torch = torch_objective(net, x, activation, lambda z: TORCH_REGRESSION[name](z, torch.tensor(t)))
    assert J == pytest.approx(J_torch, rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(grad, grad_torch, rtol=1e-11, atol=1e-14)


# nnclf optimizer name -> (its hyperparameters, a torch.optim constructor with the same meaning)
TORCH_OPTIMIZERS = {
    "sgd": ({}, lambda groups, lr: torch.optim.SGD(groups, lr=lr)),
    "gd": ({}, lambda groups, lr: torch.optim.SGD(groups, lr=lr)),
    "momentum": ({"momentum": 0.8}, lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.8)),
    "nesterov": ({"momentum": 0.8}, lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.8, nesterov=True)),
    "adagrad": ({"eps": 1e-7}, lambda groups, lr: torch.optim.Adagrad(groups, lr=lr, eps=1e-7)),
    "rmsprop": ({"rho": 0.85, "eps": 1e-7}, lambda groups, lr: torch.optim.RMSprop(groups, lr=lr, alpha=0.85, eps=1e-7)),
    "adam": ({"beta1": 0.85, "beta2": 0.99, "eps": 1e-7},
             lambda groups, lr: torch.optim.Adam(groups, lr=lr, betas=(0.85, 0.99), eps=1e-7)),
    "adamw": ({"beta1": 0.85, "beta2": 0.99, "eps": 1e-7, "weight_decay": 0.1},
              lambda groups, lr: torch.optim.AdamW(groups, lr=lr, betas=(0.85, 0.99), eps=1e-7)),
}


def test_every_first_order_optimizer_is_compared():
    from nnclf.engine.optimizers import OPTIMIZERS

    full_batch = {"lbfgs", "cg", "newton_cg"}  # their own tests check them against scipy and theory
    assert set(TORCH_OPTIMIZERS) == {OPTIMIZERS.get(n).name for n in OPTIMIZERS.names()} - full_batch


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_optimizer_trajectory_equals_torch_optim(name):
    """25 steps on the ill-conditioned quadratic f(x) = 1/2 x^T A x - b^T x with a changing
    learning rate; AdamW's decoupled decay on the 'weights' (mask 1) and not the 'biases'."""
    from nnclf.engine.optimizers import OPTIMIZERS

    hyper, make_torch = TORCH_OPTIMIZERS[name]
    rng = np.random.default_rng(4)
    n = 9
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    A = Q @ np.diag(np.geomspace(0.05, 20, n)) @ Q.T
    b = rng.normal(size=n)
    mask = (np.arange(n) % 3 != 2).astype(np.float64)  # every third entry a "bias"
    x = rng.normal(size=n)
    ours = OPTIMIZERS.get(name)(n, "float64", weight_mask=mask, **hyper)
    weights, biases = torch.tensor(x[mask == 1], requires_grad=True), torch.tensor(x[mask == 0], requires_grad=True)
    decay = hyper.get("weight_decay", 0.0)
    theirs = make_torch([{"params": [weights], "weight_decay": decay}, {"params": [biases], "weight_decay": 0.0}], 0.05)
    At, bt = torch.tensor(A), torch.tensor(b)
    for t in range(25):
        lr = 0.05 * (1 + 0.5 * np.cos(t))
        ours.step(x, A @ x - b, lr)
        for group in theirs.param_groups:
            group["lr"] = lr
        theirs.zero_grad()
        full = torch.zeros(n, dtype=torch.float64)
        full[torch.tensor(mask == 1)] = weights
        full[torch.tensor(mask == 0)] = biases
        (0.5 * full @ At @ full - bt @ full).backward()
        theirs.step()
        expected = np.empty(n)
        expected[mask == 1], expected[mask == 0] = weights.detach().numpy(), biases.detach().numpy()
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}")
