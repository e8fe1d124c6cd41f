"""A multilayer perceptron with all parameters in one flat vector.

Layer l maps a batch of rows A_{l-1} (B, n_{l-1}) to Z_l = A_{l-1} W_l + b_l (B, n_l) and
A_l = f(Z_l). This is the lecture's z = W a + b written for a batch of row vectors, so W_l is
stored as (n_{l-1}, n_l), the transpose of the lecture's matrix. The last layer has no
activation: it returns logits, and the loss owns the output nonlinearity.

Every W_l and b_l is a view into one contiguous vector ``params`` (and likewise into
``grads``), so an optimizer updates all of them with a handful of in-place calls, and a
checkpoint is one array.
"""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, Activation
from .init import INITIALIZERS, resolve_init


class MLP:
    def __init__(self, sizes: list[int], activation: str = "relu", dropout: float = 0.0, dtype="float32"):
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least an input and an output size")
        self.sizes = [int(s) for s in sizes]
        self.activation_name = activation
        self.activation: Activation = ACTIVATIONS.get(activation)()
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        total = sum(i * o + o for i, o in shapes)
        self.params = np.zeros(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.weights, self.biases, self._weight_spans = self._views(self.params, shapes)
        self.grad_weights, self.grad_biases, _ = self._views(self.grads, shapes)
        self._capacity = 0

    @staticmethod
    def _views(flat, shapes):
        weights, biases, spans, offset = [], [], [], 0
        for n_in, n_out in shapes:
            weights.append(flat[offset : offset + n_in * n_out].reshape(n_in, n_out))
            spans.append((offset, offset + n_in * n_out))
            offset += n_in * n_out
            biases.append(flat[offset : offset + n_out])
            offset += n_out
        return weights, biases, spans

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def weight_mask(self) -> np.ndarray:
        """1 where ``params`` holds a weight, 0 where it holds a bias (weight decay skips biases)."""
        mask = np.zeros_like(self.params)
        for start, stop in self._weight_spans:
            mask[start:stop] = 1
        return mask

    def initialize(self, init: str, rng: np.random.Generator) -> None:
        """W_l from the named initialiser (``auto`` picks by activation), b_l = 0."""
        initializer = INITIALIZERS.get(resolve_init(init, self.activation_name))
        for w, b in zip(self.weights, self.biases):
            w[...] = initializer(w.shape[0], w.shape[1], rng)
            b[...] = 0

    # -- buffers ---------------------------------------------------------------------------
    def _reserve(self, batch: int) -> None:
        """Allocate per-layer buffers once for up to ``batch`` rows; smaller batches use views."""
        if batch <= self._capacity:
            return
        hidden = self.sizes[1:-1]
        keep_z = self.activation.needs_input
        self._z = [np.empty((batch, n), self.dtype) for n in self.sizes[1:]]
        self._a = [np.empty((batch, n), self.dtype) if keep_z else self._z[i] for i, n in enumerate(hidden)]
        self._dropped = [np.empty((batch, n), self.dtype) for n in hidden] if self.dropout > 0 else []
        self._masks = [np.empty((batch, n), self.dtype) for n in hidden] if self.dropout > 0 else []
        self._delta = [np.empty((batch, n), self.dtype) for n in self.sizes[1:]]
        self._capacity = batch

    # -- passes ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Logits Z_L (B, n_L) for inputs x (B, n_0). With ``rng``, training mode: inverted
        dropout keeps each hidden unit with probability 1 - p and scales it by 1 / (1 - p).

        The returned array is an internal buffer, overwritten by the next call.
        """
        batch = x.shape[0]
        self._reserve(batch)
        self._x = x
        self._dropout_on = rng is not None and self.dropout > 0
        a = x
        last = self.n_layers - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = self._z[l][:batch]
            np.matmul(a, w, out=z)
            z += b
            if l == last:
                return z
            a = self.activation.forward(z, self._a[l][:batch])
            if self._dropout_on:
                keep = 1.0 - self.dropout
                mask = self._masks[l][:batch]
                rng.random(out=mask, dtype=self.dtype)
                np.less(mask, keep, out=mask, casting="unsafe")
                mask *= self.dtype.type(1.0 / keep)
                a = np.multiply(a, mask, out=self._dropped[l][:batch])
        raise AssertionError("unreachable")

    def output_delta_buffer(self, batch: int) -> np.ndarray:
        """The (B, n_L) buffer a loss writes dJ/dZ_L into before ``backward``."""
        return self._delta[-1][:batch]

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Backpropagate dJ/dZ_L (B, n_L) from the last ``forward``; fills ``grads``:

            dJ/dW_l = A_{l-1}^T delta_l,  dJ/db_l = sum_rows delta_l,
            delta_{l-1} = (delta_l W_l^T) * f'(Z_{l-1})   (times the dropout mask if any)
        """
        batch = delta.shape[0]
        for l in range(self.n_layers - 1, -1, -1):
            a_prev = self._x if l == 0 else self._layer_input(l, batch)
            np.matmul(a_prev.T, delta, out=self.grad_weights[l])
            np.sum(delta, axis=0, out=self.grad_biases[l])
            if l == 0:
                break
            below = self._delta[l - 1][:batch]
            np.matmul(delta, self.weights[l].T, out=below)
            if self._dropout_on:
                below *= self._masks[l - 1][:batch]
            z = self._z[l - 1][:batch] if self.activation.needs_input else None
            delta = self.activation.backward(z, self._a[l - 1][:batch], below)
        return self.grads

    def _layer_input(self, l: int, batch: int) -> np.ndarray:
        return (self._dropped if self._dropout_on else self._a)[l - 1][:batch]

    # -- weight decay ----------------------------------------------------------------------
    def l2_penalty(self, lam: float) -> float:
        """lam / 2 * sum_l ||W_l||^2 (weights only, never biases)."""
        if lam == 0:
            return 0.0
        return 0.5 * lam * float(sum(np.dot(w.ravel(), w.ravel()) for w in self.weights))

    def add_l2_gradient(self, lam: float) -> None:
        """grads_W += lam * W, the gradient of ``l2_penalty``."""
        if lam == 0:
            return
        for g, w in zip(self.grad_weights, self.weights):
            g += self.dtype.type(lam) * w

    # -- inference -------------------------------------------------------------------------
    def logits(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Logits for any number of rows, in chunks so buffers stay bounded."""
        out = np.empty((x.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            stop = min(start + chunk, x.shape[0])
            out[start:stop] = self.forward(x[start:stop])
        return out
