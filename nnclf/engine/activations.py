"""Element-wise activations a = f(z) and their derivatives.

Each class writes f(z) into a buffer (``forward``) and multiplies an incoming gradient
dJ/da by f'(z) in place (``backward``), turning it into dJ/dz. Where f' can be written
with the output a alone (sigmoid: a(1-a), tanh: 1-a^2), ``needs_input`` is False and the
network passes only a; ReLU reads its [z > 0] off z, which is faster to read (see ``ReLU``).
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Registry

ACTIVATIONS: Registry[type["Activation"]] = Registry("activation")


class Activation:
    name = ""
    needs_input = False  # True when backward reads z: f'(z) needs it, or (ReLU) z is faster to read than a

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write f(z) into ``out`` (which may be ``z`` itself) and return it."""
        raise NotImplementedError

    def backward(self, z: np.ndarray | None, a: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """grad <- grad * f'(z), in place; ``z`` is None unless ``needs_input``."""
        raise NotImplementedError


@ACTIVATIONS.register("identity", "linear")
class Identity(Activation):
    """f(z) = z, f'(z) = 1."""

    name = "identity"

    def forward(self, z, out):
        if out is not z:
            np.copyto(out, z)
        return out

    def backward(self, z, a, grad):
        return grad


@ACTIVATIONS.register("sigmoid", "logistic")
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z), f' = a (1 - a). Stable for large |z| (see ``sigmoid``)."""

    name = "sigmoid"

    def forward(self, z, out):
        return sigmoid(z, out=out)

    def backward(self, z, a, grad):
        grad *= a
        grad *= 1 - a
        return grad


@ACTIVATIONS.register("tanh")
class Tanh(Activation):
    """f(z) = tanh z, f' = 1 - a^2."""

    name = "tanh"

    def forward(self, z, out):
        return np.tanh(z, out=out)

    def backward(self, z, a, grad):
        grad *= 1 - a * a
        return grad


@ACTIVATIONS.register("relu")
class ReLU(Activation):
    """f(z) = max(0, z), f' = [z > 0] (0 at z = 0).

    f' is read off z, not a: [z > 0] = [a > 0] element for element (NaN included), but z is a
    contiguous buffer while a is a column-strided view of the layer's [A, 1] input buffer, whose
    strided reads make the comparison slower.
    """

    name = "relu"
    needs_input = True

    def __init__(self):
        self._zeros: dict = {}  # (shape, dtype) -> zeros, for the forward pass

    def forward(self, z, out):
        # max(z, 0) against an array of zeros of z's shape, not the scalar 0: the same numbers
        # (bit for bit, NaN and -0 included), but NumPy then runs its contiguous SIMD loop
        # instead of the slower scalar-broadcast one (benchmarks/RESULTS.md)
        key = (z.shape, z.dtype)
        zeros = self._zeros.get(key)
        if zeros is None:
            if len(self._zeros) >= 8:  # bounded: inference may see many chunk sizes
                self._zeros.clear()
            zeros = self._zeros[key] = np.zeros(z.shape, z.dtype)
        return np.maximum(z, zeros, out=out)

    def backward(self, z, a, grad):
        grad *= z > 0
        return grad


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(Activation):
    """f(z) = z for z > 0, slope * z otherwise (slope 0.01); f' = 1 or slope, read off sign(a)."""

    name = "leaky_relu"
    slope = 0.01

    def forward(self, z, out):
        return np.maximum(z, self.slope * z, out=out)

    def backward(self, z, a, grad):
        grad *= np.where(a > 0, 1.0, self.slope).astype(grad.dtype, copy=False)
        return grad


@ACTIVATIONS.register("elu")
class ELU(Activation):
    """f(z) = z for z > 0, alpha (e^z - 1) otherwise (alpha 1); f' = 1 or a + alpha."""

    name = "elu"
    alpha = 1.0

    def forward(self, z, out):
        negative = np.expm1(np.minimum(z, 0))
        negative *= self.alpha
        np.copyto(out, negative, where=z <= 0)
        np.copyto(out, z, where=z > 0)
        return out

    def backward(self, z, a, grad):
        grad *= np.where(a > 0, 1.0, a + self.alpha).astype(grad.dtype, copy=False)
        return grad


@ACTIVATIONS.register("softplus")
class Softplus(Activation):
    """f(z) = ln(1 + e^z), computed as max(z, 0) + ln(1 + e^-|z|) so it never overflows.

    f'(z) = sigmoid(z) = 1 - e^-a, so only the output is needed.
    """

    name = "softplus"

    def forward(self, z, out):
        tail = np.log1p(np.exp(-np.abs(z)))
        np.maximum(z, 0, out=out)
        out += tail
        return out

    def backward(self, z, a, grad):
        grad *= -np.expm1(-a)
        return grad


@ACTIVATIONS.register("gelu")
class GELU(Activation):
    """GELU in its tanh form (as in BERT/GPT-2 and PyTorch's approximate='tanh'):

    f(z) = z s(z), s(z) = (1 + tanh u) / 2, u = c (z + 0.044715 z^3), c = sqrt(2 / pi);
    f'(z) = s + z (1 - tanh^2 u) c (1 + 3 * 0.044715 z^2) / 2. It needs z, so the network keeps it.
    """

    name = "gelu"
    needs_input = True
    _c = math.sqrt(2.0 / math.pi)

    def forward(self, z, out):
        t = np.tanh(self._c * (z + 0.044715 * z**3))
        t += 1.0
        t *= 0.5
        return np.multiply(z, t, out=out)

    def backward(self, z, a, grad):
        t = np.tanh(self._c * (z + 0.044715 * z**3))
        du = self._c * (1.0 + 3 * 0.044715 * z * z)
        grad *= 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
        return grad


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + e^-z) without overflow: e^-|z| is never above 1.

    For z >= 0 it is 1 / (1 + e^-z); for z < 0 it is e^z / (1 + e^z); both use t = e^-|z|.
    """
    if out is None:
        out = np.empty_like(z)
    t = np.exp(-np.abs(z))
    positive = z >= 0
    np.divide(1.0, 1.0 + t, out=out)
    np.copyto(out, t * out, where=~positive)
    return out
