"""``model.init: auto`` per optimizer: Glorot-uniform for lbfgs, cg and newton_cg whatever the
activation (the training-side evidence is benchmarks/init_bench.py, RESULTS.md); the mini-batch
optimizers keep He-normal for the ReLU family. Checked on the weights the CLI's trainer builder
(``runs._make_trainer``) starts from: the Glorot-uniform bound and variance 2 / (fan_in + fan_out)
against He-normal's 2 / fan_in (iris: 4 inputs, 2000 units, so 2 / 4 against 2 / 2004: far apart)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nnclf.config import load_config
from nnclf.data.dataset import prepare
from nnclf.engine.init import RELU_FAMILY, resolve_init
from nnclf.runs import _make_trainer

DATA = Path(__file__).resolve().parent.parent / "data"
FULL_BATCH = ("lbfgs", "cg", "newton_cg")


@pytest.mark.parametrize("activation", sorted(RELU_FAMILY | {"tanh", "sigmoid", "identity"}))
def test_auto_is_glorot_uniform_for_full_batch_methods_and_unchanged_otherwise(activation):
    assert resolve_init("auto", activation, full_batch=True) == "xavier_uniform"
    expected = "he_normal" if activation in RELU_FAMILY else "xavier_uniform"
    assert resolve_init("auto", activation) == expected
    assert resolve_init("auto", activation, full_batch=False) == expected
    assert resolve_init("he_normal", activation, full_batch=True) == "he_normal"  # a named scheme is kept


def _first_layer(optimizer: str, init: str = "auto", activation: str = "relu") -> np.ndarray:
    cfg = load_config({"data": {"train": str(DATA / "iris.csv"), "target": "species"},
                       "model": {"hidden": [2000], "activation": activation, "init": init},
                       "optimizer": {"name": optimizer}, "seed": 3})
    prepared = prepare(cfg.data, cfg.seed, cfg.training.dtype, lambda m: None, cfg.task)
    trainer = _make_trainer(cfg, prepared, [])
    w = trainer.net.weights[0]
    assert w.shape == (4, 2000)
    return np.asarray(w, dtype=np.float64)


@pytest.mark.parametrize("optimizer", FULL_BATCH)
def test_full_batch_runs_start_from_glorot_uniform(optimizer):
    w = _first_layer(optimizer)
    fan_in, fan_out = w.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.max(np.abs(w)) <= bound * (1 + 1e-6)
    assert np.max(np.abs(w)) > 0.98 * bound  # uniform: the bound is reached, not a normal's tail
    assert w.var() == pytest.approx(2.0 / (fan_in + fan_out), rel=0.06)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_mini_batch_runs_keep_he_normal_for_relu(optimizer):
    w = _first_layer(optimizer)
    fan_in, fan_out = w.shape
    assert w.var() == pytest.approx(2.0 / fan_in, rel=0.06)
    assert np.max(np.abs(w)) > 2 * math.sqrt(6.0 / (fan_in + fan_out))


def test_a_named_init_wins_over_the_full_batch_rule():
    w = _first_layer("lbfgs", init="he_normal")
    assert w.var() == pytest.approx(2.0 / w.shape[0], rel=0.06)
