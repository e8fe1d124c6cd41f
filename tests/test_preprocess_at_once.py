"""The numeric transform: columns pandas read as numbers go through in blocks, together;
every column of a ChunkedTable (and a text column to parse) alone. Both groupings give the
matrix of a straightforward reference written here, the same warnings, and the same error for
the first bad cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnclf.data import preprocess
from nnclf.data.preprocess import CategoricalColumn, NumericColumn, Preprocessor
from nnclf.data.reading import ChunkedTable
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


def _reference(pre: Preprocessor, frame: pd.DataFrame, dtype) -> np.ndarray:
    """The layout of the module docstring, one column at a time, with pandas' own fillna."""
    blocks = []
    for c in pre.columns:
        if isinstance(c, NumericColumn):
            x = frame[c.name].astype("float64").to_numpy(na_value=np.nan)
            blocks.append(((np.where(np.isnan(x), c.fill, x) - c.center) / c.scale)[:, None])
            if c.indicator:
                blocks.append(np.isnan(x)[:, None].astype(np.float64))
        else:
            keys = frame[c.name].astype(str).to_numpy()
            blocks.append(np.stack([keys == k for k in c.categories], axis=1).astype(np.float64))
    return np.hstack(blocks).astype(dtype)


def _transform(pre, frame, dtype="float32"):
    warnings = []
    out = pre.transform(frame, "new.csv", dtype, warnings.append)
    return out, warnings


def _chunked(frame: pd.DataFrame, pieces: int = 3) -> ChunkedTable:
    """The frame as a ChunkedTable of consecutive pieces (no ``iloc``: every column alone)."""
    edges = np.linspace(0, len(frame), pieces + 1).astype(int)
    return ChunkedTable([frame.iloc[lo:hi] for lo, hi in zip(edges[:-1], edges[1:])])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("indicators", [False, True])
def test_blocks_and_single_columns_give_the_reference_matrix_and_the_same_warnings(dtype, indicators, monkeypatch):
    monkeypatch.setattr(preprocess, "BLOCK_CELLS", 5_000)  # several blocks of rows, and a short last one
    rng = np.random.default_rng(0)
    train = _frame(500, rng)
    train.loc[3, "f"] = np.nan  # so 'f' gets an indicator when asked
    features = [c for c in train.columns if c != "label"]
    pre = Preprocessor.fit(train, features, "label", "train.csv", missing_indicators=indicators)
    assert any(isinstance(c, NumericColumn) and c.indicator for c in pre.columns) == indicators
    new = _frame(7_001, rng)
    new.loc[::11, "i"] = np.nan  # 'i' had no missing values in training: a warning
    new.loc[5, "colour"] = "purple"
    blocked, blocked_warnings = _transform(pre, new, dtype)
    alone, alone_warnings = _transform(pre, _chunked(new), dtype)
    assert blocked.dtype == alone.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(blocked, alone)
    np.testing.assert_array_equal(blocked, _reference(pre, new, dtype))
    assert blocked_warnings == alone_warnings
    assert [w.split(": ")[1] for w in blocked_warnings] == ["column 'colour'", "column 'i'"]
    assert "637 missing value(s)" in blocked_warnings[1]


def test_a_text_column_of_numbers_beside_the_block(monkeypatch):
    """A column read as text (parsed alone) and columns read as numbers (in a block) fill their
    own places of one matrix."""
    rng = np.random.default_rng(2)
    train = _frame(300, rng)
    pre = Preprocessor.fit(train, ["f", "i", "gappy"], "label", "train.csv")
    new = _frame(50, rng)
    text = new.astype({"i": str})
    assert not pd.api.types.is_numeric_dtype(text["i"])
    np.testing.assert_array_equal(_transform(pre, text)[0], _reference(pre, new, "float32"))


@pytest.mark.parametrize("bad, column, message", [
    (np.inf, "i", "column 'i': infinite value inf"),
    (-np.inf, "i", "column 'i': infinite value -inf"),
    (1e300, "f", "column 'f': value 1e+300 is too large for float32"),
])
def test_a_bad_cell_is_named_the_same_way_whichever_the_grouping(bad, column, message):
    rng = np.random.default_rng(1)
    train = _frame(200, rng)
    features = [c for c in train.columns if c != "label"]
    pre = Preprocessor.fit(train, features, "label", "train.csv")
    new = _frame(1000, rng).astype({"i": float})
    new.loc[600, column] = bad
    new.loc[700, column] = bad  # a later one: the first is named
    new.index = pd.RangeIndex(5000, 6000)  # a later chunk of a file: lines are file lines
    with pytest.raises(NnclfError) as blocked:
        _transform(pre, new)
    with pytest.raises(NnclfError) as alone:
        _transform(pre, _chunked(new))
    assert str(blocked.value) == str(alone.value)
    assert str(blocked.value).startswith(f"new.csv, line 5602: {message}")


def test_the_first_bad_column_in_feature_order_is_named():
    """A bad cell in a block column and one in an earlier text column: the earlier column is
    named, though the block is transformed first; with the bad column first, it is."""
    train = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) * 2, "c": np.arange(30.0) * 3, "label": [0, 1] * 15})
    pre = Preprocessor.fit(train, ["a", "b", "c"], "label", "train.csv")
    new = train.astype({"a": object})
    new.loc[20, "a"] = "oops"  # a text column: parsed alone
    new.loc[10, "c"] = 1e300  # in the block with 'b'
    with pytest.raises(NnclfError, match=r"^new.csv, line 22: column 'a': non-numeric value 'oops'"):
        _transform(pre, new)
    new = train.astype({"c": object})
    new.loc[20, "c"] = "oops"
    new.loc[10, "a"] = 1e300
    with pytest.raises(NnclfError, match=r"^new.csv, line 12: column 'a': value 1e\+300 is too large for float32"):
        _transform(pre, new)


def test_state_round_trips_through_json_and_rejects_damage():
    rng = np.random.default_rng(3)
    train = _frame(100, rng)
    train["empty"] = np.nan
    features = [c for c in train.columns if c != "label"]
    pre = Preprocessor.fit(train, features, "label", "train.csv", missing_indicators=True, max_categories=2)
    state = pre.to_json()
    assert state == Preprocessor.from_json(state).to_json() == pre.state
    assert state["dropped"] == [{"name": "empty", "reason": "no values in the training rows"}]
    colour = next(c for c in pre.columns if c.name == "colour")
    assert isinstance(colour, CategoricalColumn) and colour.categories[-1] == "__other__" and colour.width == 2
    assert list(state["columns"][0]) == ["name", "kind", "reason", "fill", "center", "scale", "missing_in_training", "indicator"]
    again = Preprocessor.from_json(state)
    np.testing.assert_array_equal(again.transform(train, "t.csv"), pre.transform(train, "t.csv"))

    def damaged(change):
        copy = pre.to_json()
        change(copy)
        return copy

    for change, error, text in [
        (lambda s: s["columns"][0].update(scale=0.0), TypeError, "columns[0].scale should be positive"),
        (lambda s: s["columns"][0].update(fill=True), TypeError, "columns[0].fill should be a finite number"),
        (lambda s: s["columns"][0].update(indicator=1), TypeError, "columns[0].indicator should be true or false"),
        (lambda s: s["columns"][0].update(missing_in_training=-1), TypeError, "columns[0].missing_in_training should be a count"),
        (lambda s: s["columns"][3].update(indicator=True), TypeError, "columns[3].indicator should be false for a categorical"),
        (lambda s: s["columns"][3].update(categories={}), TypeError, "columns[3].categories should be a list of texts (and null)"),
        (lambda s: s["columns"].__setitem__(1, 7), TypeError, "columns[1] should be an object"),
        (lambda s: s["columns"][1].update(kind=["numeric"]), NnclfError, "unknown column kind ['numeric']"),
        (lambda s: s["columns"][1].pop("scale"), KeyError, "'scale'"),
        (lambda s: s.update(features=s["features"][::-1]), TypeError, "'columns' should name the 'features', in order"),
        (lambda s: s.update(dropped=[{"name": 3}]), TypeError, "dropped[0] should be an object with a 'name' and a 'reason'"),
    ]:
        with pytest.raises(error) as caught:
            Preprocessor.from_json(damaged(change))
        assert text in str(caught.value)
