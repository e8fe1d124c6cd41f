"""Hostile input to the Python API (estimators, nnclf.train, nnclf.load, Model): each case is a
one-line error naming what is wrong, or the right answer; never a silent wrong result."""

from __future__ import annotations

import numpy as np
import pytest

import nnclf

from conftest import DATA

IRIS = DATA / "iris.csv"


def _data(n: int = 40, d: int = 3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


def _classifier(**params):
    return nnclf.Classifier(**{"hidden": (4,), "epochs": 2, "random_state": 0, **params})


# -- configs and parameters --------------------------------------------------------------------
def test_a_python_set_is_refused_like_a_yaml_set(tmp_path):
    # hidden={4, 8} became the layers [8, 4] (pydantic takes a set as a list in hash order)
    X, y = _data()
    unordered = r"a set has no order .*; give a list like \[a, b\]"
    with pytest.raises(nnclf.NnclfError, match=r"^Classifier: model\.hidden: " + unordered):
        _classifier(hidden={4, 8}).fit(X, y)
    with pytest.raises(nnclf.NnclfError, match=r"^Classifier: data\.categorical: " + unordered):
        _classifier(categorical={"x0"}).fit(X, y)
    with pytest.raises(nnclf.NnclfError, match=r"^--set model\.hidden: " + unordered):
        nnclf.train(DATA.parent / "configs" / "iris.yaml", runs_dir=tmp_path / "runs", model__hidden={4, 8})
    config = {"data": {"train": str(IRIS), "target": "species", "features": frozenset({"sepal_length", "petal_length"})}}
    with pytest.raises(nnclf.NnclfError, match=r"^config: data\.features: " + unordered):
        nnclf.train(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
