"""Weight initialisers: W of shape (fan_in, fan_out) drawn from a seeded numpy Generator.

Biases always start at zero.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Registry

INITIALIZERS: Registry = Registry("init")

RELU_FAMILY = {"relu", "leaky_relu", "elu", "gelu", "softplus"}


def resolve_init(name: str, activation: str) -> str:
    """``auto`` is He for the ReLU family and Xavier (Glorot) otherwise."""
    if name != "auto":
        return name
    return "he_normal" if activation in RELU_FAMILY else "xavier_uniform"


@INITIALIZERS.register("xavier_uniform", "glorot_uniform", "xavier", "glorot")
def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """U(-r, r) with r = sqrt(6 / (fan_in + fan_out)), so Var W = 2 / (fan_in + fan_out)."""
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, size=(fan_in, fan_out))


@INITIALIZERS.register("xavier_normal", "glorot_normal")
def xavier_normal(fan_in, fan_out, rng):
    """N(0, 2 / (fan_in + fan_out))."""
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


@INITIALIZERS.register("he_normal", "he", "kaiming_normal")
def he_normal(fan_in, fan_out, rng):
    """N(0, 2 / fan_in): keeps the variance of ReLU activations constant across layers."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


@INITIALIZERS.register("he_uniform", "kaiming_uniform")
def he_uniform(fan_in, fan_out, rng):
    """U(-r, r) with r = sqrt(6 / fan_in)."""
    r = math.sqrt(6.0 / fan_in)
    return rng.uniform(-r, r, size=(fan_in, fan_out))


@INITIALIZERS.register("normal")
def small_normal(fan_in, fan_out, rng):
    """N(0, 0.01^2): the classic small random start."""
    return rng.normal(0.0, 0.01, size=(fan_in, fan_out))


@INITIALIZERS.register("uniform")
def small_uniform(fan_in, fan_out, rng):
    """U(-0.05, 0.05)."""
    return rng.uniform(-0.05, 0.05, size=(fan_in, fan_out))
