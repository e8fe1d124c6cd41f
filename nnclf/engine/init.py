"""Weight initialisers: W of shape (fan_in, fan_out) drawn from a seeded numpy Generator.

Biases always start at zero.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Registry

INITIALIZERS: Registry = Registry("init")

RELU_FAMILY = {"relu", "leaky_relu", "elu", "gelu", "softplus"}


def resolve_init(name: str, activation: str, full_batch: bool = False) -> str:
    """``auto``: for the full-batch methods (lbfgs, cg, newton_cg; ``full_batch=True``)
    Glorot-uniform, whatever the activation; for every other optimizer He-normal for the ReLU
    family and Glorot-uniform otherwise.

    Why the full-batch methods differ: He's variance 2 / fan_in keeps the activations' scale
    through deep ReLU stacks, which is what SGD needs; a quasi-Newton or Newton method starts
    further from the optimum with it (larger initial outputs) and spends evaluations undoing
    that. On the training objective alone (benchmarks/init_bench.py: 16 problems, 10 seeds;
    the numbers are in benchmarks/RESULTS.md, "Full-batch methods, third pass") Glorot's
    variance 2 / (fan_in + fan_out) reached a fixed objective in fewer L-BFGS evaluations on
    most seeds and ended within 1% of He's final objective or below it, iris being the one
    exception (for cg and newton_cg too); normal or uniform made no difference, the variance
    did. Mini-batch defaults are unchanged.
    """
    if name != "auto":
        return name
    if full_batch:
        return "xavier_uniform"
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
