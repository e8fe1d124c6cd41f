"""One training step, and the full-data objective: the textbook of backpropagation in two calls.

The objective is the mean loss plus L2 weight decay on the weights (never the biases):

    J(theta) = 1/n sum_i l(f(x_i; theta), y_i) + lam/2 sum_l ||W_l||^2

``TrainingStep`` is what first-order methods (SGD, momentum, Adam, ...) run on each mini-batch:

    gradient:  forward, loss, dJ/dz_L, backward       -> net.grads = dJ_batch/dtheta (no decay)
    update:    g += lam W (weights), clip ||g||,  theta <- optimizer(theta, g, lr)

The two halves are separate calls so that a caller can combine the gradients of several parts of
one batch between them (data-parallel training sums every rank's share before the update);
``step`` does both. ``Objective`` is what full-batch methods (L-BFGS, conjugate gradient, ...)
call: ``objective(theta) -> (J, dJ/dtheta)`` over a whole data set, evaluated in row chunks so
its buffers stay bounded.

Nothing here knows of processes, threads, files or terminals: a step is arithmetic.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .losses import Loss
from .network import INFERENCE_ROWS, MLP
from .optimizers import Optimizer


class BatchResult(NamedTuple):
    """What a step saw: the batch's mean loss before the update (no weight decay) and how many
    of its rows the network classified correctly before the update (0 for a loss with real-valued
    targets, which classifies nothing)."""

    loss: float
    correct: int


def check_labels(y: np.ndarray, n_classes: int) -> None:
    """Class indices must lie in 0..K-1: an index out of range would silently read another
    row's logit in the fused loss (it works on the flattened (B, K) array)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}; got values from {int(y.min())} to {int(y.max())}")


class TrainingStep:
    """A mini-batch step of a first-order optimizer on J(theta) (see the module docstring).

    Parameters
    ----------
    net : MLP whose ``params`` the optimizer updates in place.
    loss : the loss on the network's logits (owns the output nonlinearity).
    optimizer : a first-order optimizer over ``net.params``.
    weight_decay : lam >= 0 of the L2 term lam/2 ||W||^2.
    clip_norm : if set, g <- g * clip_norm / ||g|| whenever ||g|| > clip_norm (after decay).
    """

    def __init__(self, net: MLP, loss: Loss, optimizer: Optimizer, weight_decay: float = 0.0, clip_norm: float | None = None):
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.weight_decay, self.clip_norm = float(weight_decay), clip_norm

    def gradient(self, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator | None = None, share: float = 1.0,
                 ws: np.ndarray | None = None) -> BatchResult:
        """Set ``net.grads`` to ``share`` times the gradient of the mean loss over (xs (B, d), ys (B,)
        class indices or (B, m) real targets).

        ``share`` = B / B_total lets the parts of one batch of B_total rows be computed apart:
        the sum of their gradients is the whole batch's mean gradient. ``rng`` turns dropout on.
        ``ws`` (B,): per-row weights r_i, so the loss is 1/B sum_i r_i l_i (see ``losses``).
        """
        net = self.net
        logits = net.forward(xs, rng)
        delta = net.output_delta_buffer(len(ys))
        if ws is not None and not hasattr(self.loss, "row_factors"):  # it would ignore them silently
            raise ValueError(f"the {self.loss.name} loss does not take per-row weights")
        self.loss.row_weights = ws
        try:
            value = self.loss.forward_backward(logits, ys, delta)
        finally:
            self.loss.row_weights = None
        correct = 0
        if self.loss.classifies:  # regression and reconstruction count nothing
            classes = self.loss.last_classes  # the fused loss's argmax, when it computed one
            if classes is None:
                classes = self.loss.predict_classes(logits)
            correct = int(np.count_nonzero(classes == ys))
        if share != 1.0:
            delta *= delta.dtype.type(share)
        net.backward(delta)
        return BatchResult(value, correct)

    def update(self, lr: float) -> None:
        """Weight decay, clipping and one optimizer update from the gradient in ``net.grads``."""
        net = self.net
        net.add_l2_gradient(self.weight_decay)
        if self.clip_norm is not None:
            norm = math.sqrt(float(np.dot(net.grads, net.grads)))
            if norm > self.clip_norm:
                net.grads *= net.dtype.type(self.clip_norm / norm)
        self.optimizer.step(net.params, net.grads, lr)

    def step(self, xs: np.ndarray, ys: np.ndarray, lr: float, rng: np.random.Generator | None = None,
             ws: np.ndarray | None = None) -> BatchResult:
        """``gradient`` then ``update``: one step of the optimizer on the batch (xs, ys[, ws])."""
        result = self.gradient(xs, ys, rng, ws=ws)
        if math.isfinite(result.loss):  # a non-finite loss is the caller's to report; no update from it
            self.update(lr)
        return result


class Objective:
    """J(theta) and dJ/dtheta over a whole data set (x (n, d), y (n,) class indices, or (n, m)
    real targets for a regression loss), for full-batch methods.

    ``objective(theta)`` sets the network's parameters to ``theta`` (a flat vector of
    ``net.params``' size, any float dtype) and returns (J as a Python float, a new float64 copy
    of dJ/dtheta). Rows are processed in chunks of ``chunk``; chunk c contributes
    (n_c / n) dJ_c/dtheta, so the sum is the mean gradient. Dropout is off: the objective
    is a deterministic function of theta, which line searches need.
    """

    def __init__(self, net: MLP, loss: Loss, x: np.ndarray, y: np.ndarray, weight_decay: float = 0.0, chunk: int = INFERENCE_ROWS):
        if len(y) == 0:
            raise ValueError("the objective needs at least one row")
        if loss.classifies:
            check_labels(y, loss.n_classes)
        self.net, self.loss, self.x, self.y = net, loss, x, y
        self.weight_decay, self.chunk = float(weight_decay), int(chunk)
        # one chunk: the rows are the same in every call, so [X, 1] is made once here instead
        # of being copied into the network's input buffer per call (more chunks: the copy per
        # chunk stays, as the buffers are one chunk's size)
        self._augmented = net.augment(x) if len(y) <= self.chunk else None
        self.evaluations = 0  # calls so far: optimizers report function evaluations per iteration
        self._total = np.empty_like(net.grads)
        # the last call's mean loss without weight decay and correctly classified rows: a
        # full-batch epoch reports them when that call was at the accepted point (no extra pass)
        self.last_loss, self.last_correct = math.nan, 0

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        net, n = self.net, len(self.y)
        self.evaluations += 1
        net.params[...] = theta
        if self._augmented is not None:
            # one chunk: its weight n_c / n is 1 (multiplying by 1.0 changes no bit), and 0 + g
            # is what the sum over chunks starting from 0 gives (-0.0 becomes +0.0), without
            # the zeroed accumulator and the two copies
            logits = net.forward(self._augmented, augmented=True)
            delta = net.output_delta_buffer(n)
            value = 0.0 + self.loss.forward_backward(logits, self.y, delta)  # 0 + as in the sum over chunks
            correct = self._correct(logits, self.y)
            np.add(net.backward(delta), 0.0, out=net.grads)
        else:
            value, correct = 0.0, 0
            total = self._total
            total[...] = 0
            for start in range(0, n, self.chunk):
                stop = min(start + self.chunk, n)
                logits = net.forward(self.x[start:stop])
                delta = net.output_delta_buffer(stop - start)
                value += self.loss.forward_backward(logits, self.y[start:stop], delta) * ((stop - start) / n)
                correct += self._correct(logits, self.y[start:stop])
                delta *= delta.dtype.type((stop - start) / n)
                total += net.backward(delta)
            net.grads[...] = total
        self.last_loss, self.last_correct = value, correct
        value += net.l2_penalty(self.weight_decay)
        net.add_l2_gradient(self.weight_decay)
        return value, net.grads.astype(np.float64)

    def _correct(self, logits: np.ndarray, y: np.ndarray) -> int:
        """Rows of the chunk classified correctly (0 for a loss with real-valued targets)."""
        if not self.loss.classifies:
            return 0
        classes = self.loss.last_classes  # the fused loss's argmax, when it computed one
        if classes is None:
            classes = self.loss.predict_classes(logits)  # no loss writes into z
        return int(np.count_nonzero(classes == y))
