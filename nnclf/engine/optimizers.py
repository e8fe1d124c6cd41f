"""First-order optimizers updating one flat parameter vector x in place from its gradient g.

Each optimizer's state is a dict of arrays lined up with x (plus the step count t), so it
saves straight into a checkpoint and a resumed run continues exactly. The learning rate is
passed to every ``step``: schedules live outside optimizers.

Hyperparameters are declared per class in ``hyper`` as name -> default; an unknown keyword is
a TypeError. The config's keys and their valid ranges are declared in nnclf/hyperparams.py
(one model per optimizer, checked against these defaults by tests/test_hyperparams.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Registry

OPTIMIZERS: Registry[type["Optimizer"]] = Registry("optimizer")


def all_finite(a: np.ndarray) -> bool:
    """Whether every entry of a floating-point array is finite (checked once per epoch on the
    parameters and the optimizer state; the ndarray method, without ``np.all``'s Python layer).
    Not a sum of the entries, which would be cheaper but makes numpy warn of overflow exactly
    when something has diverged."""
    return bool(np.isfinite(a).all())


class Optimizer:
    name = ""
    hyper: dict[str, float] = {}
    state_names: tuple[str, ...] = ()

    def __init__(self, n_params: int, dtype="float32", weight_mask: np.ndarray | None = None, **hyper: float):
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameters {sorted(unknown)}")
        for key, default in self.hyper.items():
            setattr(self, key, float(hyper.get(key, default)))
        self.dtype = np.dtype(dtype)
        self.t = 0
        self.weight_mask = weight_mask
        self._scratch = np.zeros(n_params, dtype=self.dtype)
        for name in self.state_names:
            setattr(self, name, np.zeros(n_params, dtype=self.dtype))

    def step(self, x: np.ndarray, g: np.ndarray, lr: float) -> None:
        """One update of x (in place) from gradient g at learning rate lr."""
        self.t += 1
        self._step(x, g, lr)

    def _step(self, x, g, lr):
        raise NotImplementedError

    def _descend(self, x: np.ndarray, direction: np.ndarray, lr: float) -> None:
        """x <- x - lr * direction, without temporaries."""
        np.multiply(direction, self.dtype.type(-lr), out=self._scratch)
        x += self._scratch

    def state(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64), **{n: getattr(self, n) for n in self.state_names}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for name in self.state_names:
            getattr(self, name)[...] = state[name]

    def nonfinite_state(self) -> str | None:
        """The name of the first floating-point state array that holds a NaN or an infinity,
        or None. The trainer asks once per epoch, so no such state is ever checkpointed."""
        for name, value in self.state().items():
            if value.dtype.kind == "f" and not all_finite(value):
                return name
        return None


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """x <- x - lr g (on one mini-batch's gradient)."""

    name = "sgd"

    def _step(self, x, g, lr):
        self._descend(x, g, lr)


@OPTIMIZERS.register("gd")
class GradientDescent(SGD):
    """Plain gradient descent x <- x - lr g; with ``batch_size: full`` g is the full-data gradient."""

    name = "gd"


@OPTIMIZERS.register("momentum")
class Momentum(Optimizer):
    """v <- beta v + g,  x <- x - lr v   (heavy ball; beta = ``momentum``)."""

    name = "momentum"
    hyper = {"momentum": 0.9}
    state_names = ("velocity",)

    def _step(self, x, g, lr):
        v = self.velocity
        v *= self.dtype.type(self.momentum)
        v += g
        self._descend(x, v, lr)


@OPTIMIZERS.register("nesterov")
class Nesterov(Optimizer):
    """Nesterov accelerated gradient in the look-ahead-free form (Sutskever et al. 2013):

        v <- beta v + g,   x <- x - lr (g + beta v)
    """

    name = "nesterov"
    hyper = {"momentum": 0.9}
    state_names = ("velocity",)

    def _step(self, x, g, lr):
        v = self.velocity
        beta = self.dtype.type(self.momentum)
        v *= beta
        v += g
        np.multiply(v, beta, out=self._scratch)
        self._scratch += g
        self._scratch *= self.dtype.type(-lr)
        x += self._scratch


@OPTIMIZERS.register("adagrad")
class AdaGrad(Optimizer):
    """s <- s + g^2,   x <- x - lr g / (sqrt(s) + eps)."""

    name = "adagrad"
    hyper = {"eps": 1e-8}
    state_names = ("sum_squares",)

    def _step(self, x, g, lr):
        s, tmp = self.sum_squares, self._scratch
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.dtype.type(self.eps)
        np.divide(g, tmp, out=tmp)
        tmp *= self.dtype.type(-lr)
        x += tmp


@OPTIMIZERS.register("rmsprop")
class RMSProp(Optimizer):
    """s <- rho s + (1 - rho) g^2,   x <- x - lr g / (sqrt(s) + eps)."""

    name = "rmsprop"
    hyper = {"rho": 0.9, "eps": 1e-8}
    state_names = ("mean_square",)

    def _step(self, x, g, lr):
        s, tmp = self.mean_square, self._scratch
        s *= self.dtype.type(self.rho)
        np.multiply(g, g, out=tmp)
        tmp *= self.dtype.type(1.0 - self.rho)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.dtype.type(self.eps)
        np.divide(g, tmp, out=tmp)
        tmp *= self.dtype.type(-lr)
        x += tmp


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        x <- x - lr_t m / (sqrt(v) + eps_t),   lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),  eps_t = eps sqrt(1 - b2^t)

    which is the paper's x <- x - lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t) and
    v_hat = v / (1 - b2^t), the two corrections folded into scalars instead of two more passes.
    """

    name = "adam"
    hyper = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    state_names = ("m", "v")

    def _step(self, x, g, lr):
        m, v, tmp, dt = self.m, self.v, self._scratch, self.dtype.type
        b1, b2, t = self.beta1, self.beta2, self.t
        m *= dt(b1)
        np.multiply(g, dt(1.0 - b1), out=tmp)
        m += tmp
        v *= dt(b2)
        np.multiply(g, g, out=tmp)
        tmp *= dt(1.0 - b2)
        v += tmp
        root_c2 = math.sqrt(1.0 - b2**t)
        np.sqrt(v, out=tmp)
        tmp += dt(self.eps * root_c2)
        np.divide(m, tmp, out=tmp)
        tmp *= dt(-lr * root_c2 / (1.0 - b1**t))
        x += tmp

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "m" not in state and "m_scaled" in state:  # nnclf 0.1 kept M = m / (1 - b1), V = v / (1 - b2)
            state = {**state, "m": state["m_scaled"] * (1.0 - self.beta1), "v": state["v_scaled"] * (1.0 - self.beta2)}
        super().load_state(state)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), on weights only:

        x <- x - lr * weight_decay * x   (weights, not biases), then the Adam step.
    """

    name = "adamw"
    hyper = {**Adam.hyper, "weight_decay": 0.01}

    def _step(self, x, g, lr):
        if self.weight_decay:
            np.multiply(x, self.dtype.type(-lr * self.weight_decay), out=self._scratch)
            if self.weight_mask is not None:
                self._scratch *= self.weight_mask
            x += self._scratch
        super()._step(x, g, lr)


from . import fullbatch  # noqa: E402,F401  (registers lbfgs, cg, newton_cg; they subclass Optimizer)
