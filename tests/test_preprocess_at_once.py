"""The all-numeric-columns-at-once transform gives the same matrix, the same warnings and the
same errors as transforming column by column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnclf.data.preprocess import Preprocessor
from nnclf.errors import NnclfError


def _frame(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame({
        "f": rng.normal(size=n) * 1e3,
        "i": rng.integers(-5, 5, n),
        "gappy": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "colour": rng.choice(["red", "blue", "green"], n),
        "tiny": rng.normal(size=n) * 1e-200,
        "nullable": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), dtype="Int64"),
        "label": rng.integers(0, 2, n),
    })


def _column_by_column(monkeypatch, pre, frame, **kw):
    with monkeypatch.context() as m:
        m.setattr(Preprocessor, "_transform_numbers_at_once", lambda self, frame, out: {})
        return _transform(pre, frame, **kw)


def _transform(pre, frame, dtype="float32"):
    warnings = []
    out = pre.transform(frame, "new.csv", dtype, warnings.append)
    return out, warnings


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("indicators", [False, True])
def test_same_matrix_and_warnings_as_column_by_column(monkeypatch, dtype, indicators):
    rng = np.random.default_rng(0)
    train = _frame(500, rng)
    train.loc[3, "f"] = np.nan  # so 'f' gets an indicator when asked
    features = [c for c in train.columns if c != "label"]
    pre = Preprocessor.fit(train, features, "label", "train.csv", missing_indicators=indicators)
    new = _frame(70_000, rng)  # more rows than one pass of the at-once path takes
    new.loc[::11, "i"] = np.nan  # 'i' had no missing values in training: a warning
    new.loc[5, "colour"] = "purple"
    fast, fast_warnings = _transform(pre, new, dtype)
    slow, slow_warnings = _column_by_column(monkeypatch, pre, new, dtype=dtype)
    assert fast.dtype == slow.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(fast, slow)
    assert fast_warnings == slow_warnings and any("'i'" in w for w in fast_warnings)
    # the at-once path did the work (it really ran, with the rows it was given)
    assert Preprocessor._transform_numbers_at_once(pre, new, np.empty_like(fast)).keys() >= {"f", "i", "gappy", "tiny"}


@pytest.mark.parametrize("bad, message", [
    (np.inf, "column 'i': infinite value inf"),
    (1e300, "column 'f': value 1e+300 is too large for float32"),
])
def test_bad_cells_give_the_column_by_column_error(monkeypatch, bad, message):
    rng = np.random.default_rng(1)
    train = _frame(200, rng)
    features = [c for c in train.columns if c != "label"]
    pre = Preprocessor.fit(train, features, "label", "train.csv")
    new = _frame(1000, rng).astype({"i": float})
    new.loc[600, "i" if bad == np.inf else "f"] = bad
    new.index = pd.RangeIndex(5000, 6000)  # a later chunk of a file: lines are file lines
    with pytest.raises(NnclfError) as fast:
        _transform(pre, new)
    with pytest.raises(NnclfError) as slow:
        _column_by_column(monkeypatch, pre, new)
    assert str(fast.value) == str(slow.value)
    assert str(fast.value).startswith(f"new.csv, line 5602: {message}")
