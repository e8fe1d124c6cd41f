"""First-order optimizers updating one flat parameter vector x in place from its gradient g.

Each optimizer's state is a dict of arrays lined up with x (plus the step count t), so it
saves straight into a checkpoint and a resumed run continues exactly. The learning rate is
passed to every ``step``: schedules live outside optimizers.

Hyperparameters are declared per class in ``hyper`` as name -> (default, rule); the config
schema reads them, so a typo in an optimizer key is an error, never silently ignored.
Rules: "unit" means 0 <= v < 1, "positive" v > 0, "nonneg" v >= 0.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..registry import Registry

OPTIMIZERS: Registry[type["Optimizer"]] = Registry("optimizer")


class Optimizer:
    name = ""
    hyper: dict[str, tuple[float, str]] = {}
    state_names: tuple[str, ...] = ()

    def __init__(self, n_params: int, dtype="float32", weight_mask: np.ndarray | None = None, **hyper: float):
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameters {sorted(unknown)}")
        for key, (default, _rule) in self.hyper.items():
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

    def part(self, part: slice) -> "Optimizer":
        """This optimizer over x[part] alone: a shallow copy whose arrays lined up with x (its
        state, scratch and weight mask) are views of this one's. Every update here is
        elementwise, so stepping the parts of x steps x (two processes share one vector so)."""
        other = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.shape == self._scratch.shape:
                setattr(other, name, value[part])
        return other

    def state(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64), **{n: getattr(self, n) for n in self.state_names}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for name in self.state_names:
            getattr(self, name)[...] = state[name]


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
    hyper = {"momentum": (0.9, "unit")}
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
    hyper = {"momentum": (0.9, "unit")}
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
    hyper = {"eps": (1e-8, "positive")}
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
    hyper = {"rho": (0.9, "unit"), "eps": (1e-8, "positive")}
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
        x <- x - lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)

    The moments are kept scaled, M = m / (1 - b1) and V = v / (1 - b2) (state ``m_scaled``,
    ``v_scaled``), so each update is one multiply and one add, M <- b1 M + g, V <- b2 V + g^2,
    and every other constant folds into two scalars:

        x <- x - lr_t M / (sqrt(V) + eps_t),   lr_t = lr (1 - b1) sqrt(1 - b2^t) / ((1 - b1^t) sqrt(1 - b2)),
                                               eps_t = eps sqrt(1 - b2^t) / sqrt(1 - b2)

    the same number up to rounding, in 10 passes over the parameters instead of 12.
    """

    name = "adam"
    hyper = {"beta1": (0.9, "unit"), "beta2": (0.999, "unit"), "eps": (1e-8, "positive")}
    state_names = ("m_scaled", "v_scaled")

    def __init__(self, n_params, dtype="float32", weight_mask=None, **hyper):
        super().__init__(n_params, dtype, weight_mask, **hyper)
        self._b1, self._b2 = self.dtype.type(self.beta1), self.dtype.type(self.beta2)  # made once: ~2 us a step

    def _step(self, x, g, lr):
        m, v, tmp, dt = self.m_scaled, self.v_scaled, self._scratch, self.dtype.type
        m *= self._b1
        m += g
        v *= self._b2
        np.multiply(g, g, out=tmp)
        v += tmp
        b1, b2, t = self.beta1, self.beta2, self.t
        root_c2, root_1_b2 = math.sqrt(1.0 - b2**t), math.sqrt(1.0 - b2)
        lr_t = lr * (1.0 - b1) * root_c2 / ((1.0 - b1**t) * root_1_b2)
        np.sqrt(v, out=tmp)
        tmp += dt(self.eps * root_c2 / root_1_b2)
        np.divide(m, tmp, out=tmp)
        tmp *= dt(-lr_t)
        x += tmp

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "m_scaled" not in state and "m" in state:  # a checkpoint from before the scaled moments
            state = {**state, "m_scaled": state["m"] / (1.0 - self.beta1), "v_scaled": state["v"] / (1.0 - self.beta2)}
        super().load_state(state)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), on weights only:

        x <- x - lr * weight_decay * x   (weights, not biases), then the Adam step.
    """

    name = "adamw"
    hyper = {**Adam.hyper, "weight_decay": (0.01, "nonneg")}

    def _step(self, x, g, lr):
        if self.weight_decay:
            np.multiply(x, self.dtype.type(-lr * self.weight_decay), out=self._scratch)
            if self.weight_mask is not None:
                self._scratch *= self.weight_mask
            x += self._scratch
        super()._step(x, g, lr)
