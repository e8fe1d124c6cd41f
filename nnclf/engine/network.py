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


# Rows per forward pass when predicting or evaluating. The buffers sized for it stay with the
# network (training reuses them), so it is kept small: a quarter of the memory of 8,192 rows,
# at the same speed (benchmarks/RESULTS.md).
INFERENCE_ROWS = 2048


class MLP:
    def __init__(self, sizes: list[int], activation: str = "relu", dropout: float = 0.0, dtype="float32"):
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least an input and an output size")
        self.sizes = [int(s) for s in sizes]
        self.activation_name = activation
        self.activation: Activation = ACTIVATIONS.get(activation)()
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        total = parameter_count(self.sizes)
        self._bind(np.zeros(total, dtype=self.dtype), np.zeros(total, dtype=self.dtype))

    # Copies and pickles carry the sizes and the two flat vectors; the W_l / b_l views and the
    # buffers are remade over the copy's own vectors (copied views would still point into the
    # original's, and training the copy would silently change nothing of it).
    def __getstate__(self) -> dict:
        return {"sizes": self.sizes, "activation": self.activation_name, "dropout": self.dropout,
                "dtype": self.dtype.str, "params": self.params, "grads": self.grads}

    def __setstate__(self, state: dict) -> None:
        self.sizes, self.activation_name = list(state["sizes"]), state["activation"]
        self.activation = ACTIVATIONS.get(self.activation_name)()
        self.dropout, self.dtype = float(state["dropout"]), np.dtype(state["dtype"])
        self._bind(np.array(state["params"], dtype=self.dtype), np.array(state["grads"], dtype=self.dtype))

    def _bind(self, params: np.ndarray, grads: np.ndarray) -> None:
        """Make every W_l, b_l and gradient view over the flat ``params`` and ``grads``."""
        self._capacity = 0
        self._view_cache: dict[int, _BatchViews] = {}
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.params, self.grads = params, grads
        self.weights, self.biases, self._weight_spans = self._views(self.params, shapes)
        self.grad_weights, self.grad_biases, _ = self._views(self.grads, shapes)
        # b_l is stored right after W_l, so [W_l; b_l] is one (n_{l-1} + 1, n_l) matrix: with a
        # column of ones appended to each layer's input, Z_l = [A_{l-1}, 1] [W_l; b_l] is one
        # matrix product, and dJ/d[W_l; b_l] = [A_{l-1}, 1]^T delta_l fills both gradients at once.
        self._wb = [self.params[a : b + n_out].reshape(-1, n_out) for (a, b), (_, n_out) in zip(self._weight_spans, shapes)]
        self._gwb = [self.grads[a : b + n_out].reshape(-1, n_out) for (a, b), (_, n_out) in zip(self._weight_spans, shapes)]
        self._wt = [w.T for w in self.weights]  # W_l^T views for the backward pass
        self._flat_weights = [self.params[a:b] for a, b in self._weight_spans]  # W_l as (n_{l-1} n_l,) views

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

    def initialize(self, init: str, rng: np.random.Generator, full_batch: bool = False) -> None:
        """W_l from the named initialiser (``auto`` picks by activation and, with
        ``full_batch``, for the full-batch methods: see ``init.resolve_init``), b_l = 0."""
        initializer = INITIALIZERS.get(resolve_init(init, self.activation_name, full_batch))
        for w, b in zip(self.weights, self.biases):
            w[...] = initializer(w.shape[0], w.shape[1], rng)
            b[...] = 0

    # -- buffers ---------------------------------------------------------------------------
    def _reserve(self, batch: int) -> None:
        """Allocate per-layer buffers once for up to ``batch`` rows; smaller batches use views.

        Layer inputs live in "augmented" buffers with a trailing column of ones (see __init__);
        pre-activations Z_l and deltas are plain contiguous (B, n_l) buffers.
        """
        if batch <= self._capacity:
            return
        hidden = self.sizes[1:-1]
        dt = self.dtype

        def augmented(n):
            buf = np.empty((batch, n + 1), dt)
            buf[:, n] = 1
            return buf

        self._xa = augmented(self.sizes[0])
        self._z = [np.empty((batch, n), dt) for n in self.sizes[1:]]
        self._ha = [augmented(n) for n in hidden]  # [f(Z_l), 1]
        self._dropped = [augmented(n) for n in hidden] if self.dropout > 0 else []  # [f(Z_l) * mask, 1]
        self._masks = [np.empty((batch, n), dt) for n in hidden] if self.dropout > 0 else []
        self._delta = [np.empty((batch, n), dt) for n in self.sizes[1:]]
        self._capacity = batch
        self._view_cache = {}

    def _batch_views(self, batch: int) -> "_BatchViews":
        """The buffers cut to ``batch`` rows, made once per batch size (the hot loop reuses them)."""
        views = self._view_cache.get(batch) if self._capacity >= batch else None
        if views is None:
            self._reserve(batch)
            views = self._view_cache[batch] = _BatchViews(self, batch)
        return views

    # -- passes ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, rng: np.random.Generator | None = None, *, augmented: bool = False) -> np.ndarray:
        """Logits Z_L (B, n_L) for inputs x (B, n_0). With ``rng``, training mode: inverted
        dropout keeps each hidden unit with probability 1 - p and scales it by 1 / (1 - p).

        ``augmented``: x is already [X, 1] (B, n_0 + 1) in the network's dtype, C-ordered, as
        ``augment`` makes it; it is read in place (and by the next ``backward``) instead of
        being copied into the network's input buffer. A caller that passes the same rows
        many times (the full-batch objective) makes it once.

        The returned array is an internal buffer, overwritten by the next call.
        """
        v = self._batch_views(x.shape[0])
        # dropout acts on hidden units: a network without hidden layers has none to drop
        self._dropout_on = dropout_on = rng is not None and self.dropout > 0 and self.n_layers > 1
        if augmented:
            if x.shape[1] != self.sizes[0] + 1 or x.dtype != self.dtype or not x.flags.c_contiguous:
                raise ValueError(f"an augmented input must be C-ordered {self.dtype} of shape (B, {self.sizes[0] + 1}); got {x.dtype} {x.shape}")
            a, self._input_t = x, x.T
        else:
            np.copyto(v.x, x, casting="same_kind")
            a, self._input_t = v.inputs[0], v.inputs_t[0]
        activation = self.activation.forward
        last = self.n_layers - 1
        for l, wb in enumerate(self._wb):
            z = v.z[l]
            np.dot(a, wb, out=z)  # Z = [A, 1] [W; b]
            if l == last:
                return z
            activation(z, v.acts[l])
            a = v.inputs[l + 1]
            if dropout_on:
                keep = 1.0 - self.dropout
                mask = v.masks[l]
                rng.random(out=mask, dtype=self.dtype)
                np.less(mask, keep, out=mask, casting="unsafe")
                mask *= self.dtype.type(1.0 / keep)
                np.multiply(v.acts[l], mask, out=v.dropped_acts[l])
                a = v.dropped_inputs[l + 1]
        raise AssertionError("unreachable")

    def output_delta_buffer(self, batch: int) -> np.ndarray:
        """The (B, n_L) buffer a loss writes dJ/dZ_L into before ``backward``."""
        return self._batch_views(batch).deltas[-1]

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Backpropagate dJ/dZ_L (B, n_L) from the last ``forward``; fills ``grads``:

            dJ/dW_l = A_{l-1}^T delta_l,  dJ/db_l = sum_rows delta_l   (together: [A_{l-1}, 1]^T delta_l)
            delta_{l-1} = (delta_l W_l^T) * f'(Z_{l-1})   (times the dropout mask if any)
        """
        v = self._batch_views(delta.shape[0])
        if delta.dtype != self.dtype or not delta.flags.c_contiguous:
            delta = np.ascontiguousarray(delta, dtype=self.dtype)  # np.dot(out=) needs exact dtypes
        dropout_on = self._dropout_on
        inputs_t = v.dropped_inputs_t if dropout_on else v.inputs_t
        backward, keep_z = self.activation.backward, self.activation.needs_input
        for l in range(self.n_layers - 1, 0, -1):
            np.dot(inputs_t[l], delta, out=self._gwb[l])
            below = v.deltas[l - 1]
            np.dot(delta, self._wt[l], out=below)
            if dropout_on:
                below *= v.masks[l - 1]
            delta = backward(v.z[l - 1] if keep_z else None, v.acts[l - 1], below)
        np.dot(self._input_t, delta, out=self._gwb[0])  # the input is never dropped
        return self.grads

    def augment(self, x: np.ndarray) -> np.ndarray:
        """[x, 1] (B, n_0 + 1) in the network's dtype: an input for ``forward(..., augmented=True)``."""
        out = np.empty((x.shape[0], self.sizes[0] + 1), dtype=self.dtype)
        np.copyto(out[:, : self.sizes[0]], x, casting="same_kind")
        out[:, self.sizes[0]] = 1
        return out

    # -- weight decay ----------------------------------------------------------------------
    def l2_penalty(self, lam: float) -> float:
        """lam / 2 * sum_l ||W_l||^2 (weights only, never biases)."""
        if lam == 0:
            return 0.0
        return 0.5 * lam * float(sum(np.dot(w, w) for w in self._flat_weights))

    def add_l2_gradient(self, lam: float) -> None:
        """grads_W += lam * W, the gradient of ``l2_penalty``."""
        if lam == 0:
            return
        for g, w in zip(self.grad_weights, self.weights):
            g += self.dtype.type(lam) * w

    # -- inference -------------------------------------------------------------------------
    def logits(self, x: np.ndarray, chunk: int = INFERENCE_ROWS) -> np.ndarray:
        """Logits for any number of rows, in chunks so buffers stay bounded."""
        out = np.empty((x.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            stop = min(start + chunk, x.shape[0])
            out[start:stop] = self.forward(x[start:stop])
        return out


    def hidden_activations(self, x: np.ndarray, layer: int, chunk: int = INFERENCE_ROWS) -> np.ndarray:
        """A_{layer+1} = f(Z_{layer+1}) (n, n_{layer+1}), hidden layer ``layer`` (0-based over the
        hidden layers) for any number of rows, in chunks: an autoencoder's code."""
        if not 0 <= layer < self.n_layers - 1:
            raise ValueError(f"hidden layer {layer} does not exist (the network has {self.n_layers - 1})")
        out = np.empty((x.shape[0], self.sizes[layer + 1]), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            stop = min(start + chunk, x.shape[0])
            self.forward(x[start:stop])  # no dropout: rng is None
            out[start:stop] = self._batch_views(stop - start).acts[layer]
        return out


def parameter_count(sizes: list[int]) -> int:
    """sum_l (n_{l-1} n_l + n_l): the weights and biases of an MLP with layer widths ``sizes``."""
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


class _BatchViews:
    """Views of an MLP's buffers for one batch size B (inputs are the augmented [A, 1])."""

    def __init__(self, net: MLP, batch: int):
        hidden = net.sizes[1:-1]
        self.x = net._xa[:batch, : net.sizes[0]]
        self.inputs = [net._xa[:batch]] + [h[:batch] for h in net._ha]
        self.inputs_t = [a.T for a in self.inputs]
        self.acts = [h[:batch, :n] for h, n in zip(net._ha, hidden)]
        self.z = [z[:batch] for z in net._z]
        self.deltas = [d[:batch] for d in net._delta]
        self.masks = [m[:batch] for m in net._masks]
        if net._dropped:
            self.dropped_inputs = [self.inputs[0]] + [d[:batch] for d in net._dropped]
            self.dropped_inputs_t = [a.T for a in self.dropped_inputs]
            self.dropped_acts = [d[:batch, :n] for d, n in zip(net._dropped, hidden)]
