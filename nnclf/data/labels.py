"""Class labels: encoded to 0..K-1 for training and decoded back to exactly what the file said.

The target column is read as text (``ReadOptions.target``), so a label is the cell's text as
written: ``True`` stays ``True``, ``001`` stays ``001``, ``NA`` is a class, and labels of 1e16
and more never collide (no float in between). Only when every label is an integer written
plainly (``0|-?[1-9][0-9]*``; not ``-0``, which as a number would be a second class 0) are the
labels integers, sorted as numbers (2 before 10), so ``loss.class_weights: {3: 2.0}`` and JSON
consumers see numbers.

Checkpoints of earlier versions stored booleans and floats as labels (``True``, ``2.5``); they
are still matched the way those versions read cells (``legacy``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import NnclfError
from .reading import quote_cell

_INTEGER = re.compile(r"0|-?[1-9][0-9]*")


class Labels:
    def __init__(self, values: list[Any]):
        self.values = list(values)  # output order; ints or strings (booleans/floats: legacy)
        self.legacy = any(isinstance(v, (bool, float)) for v in self.values)
        self.integers = not self.legacy and all(isinstance(v, int) for v in self.values)
        self._index = {self._key(v): i for i, v in enumerate(self.values)}

    @classmethod
    def fit(cls, series, source: str, target: str) -> "Labels":
        import pandas as pd

        present = series.dropna()
        if pd.api.types.is_integer_dtype(present.dtype):  # Parquet: typed integers
            values: list = sorted({int(v) for v in present.unique()})
        else:
            texts = sorted({_text(v) for v in present.unique()})
            if texts and all(_INTEGER.fullmatch(t) for t in texts):
                values = sorted(int(t) for t in texts)
            else:
                values = texts
        if len(values) < 2:
            only = f" (only {quote_cell(values[0])})" if values else ""
            raise NnclfError(f"{source}: target column '{target}' has {len(values)} class{only}; classification needs at least 2")
        return cls(values)

    def __len__(self) -> int:
        return len(self.values)

    def _key(self, value) -> str:
        if self.legacy:
            return _legacy_key(value)
        return str(value)

    def encode(self, series) -> np.ndarray:
        """Indices 0..K-1, or -1 for a label never seen in training (and for missing)."""
        import pandas as pd

        present = series.notna().to_numpy()
        out = np.full(len(series), -1, dtype=np.int64)
        if not present.any():
            return out
        cells = series[present]
        uniques = pd.unique(cells.to_numpy(dtype=object))
        table = {}
        for u in uniques:
            text = _text(u)
            key = _legacy_key(text) if self.legacy else self._integer_key(text) if self.integers else text
            table[u] = self._index.get(key, -1)
        out[present] = cells.map(table).to_numpy(dtype=np.int64)
        return out

    @staticmethod
    def _integer_key(text: str) -> str:
        """An integer label written as a number of another spelling (``3.0``, `` 3``) is that
        integer: the labels were numbers, so cells are matched as numbers."""
        if _INTEGER.fullmatch(text):
            return text
        try:
            number = float(text)
        except ValueError:
            return text
        if number.is_integer() and abs(number) < 2.0**53:
            return str(int(number))
        return text

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Label values for class indices (an object array keeps ints and strings)."""
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values
        return table[indices]

    def text(self, value) -> str:
        """A label as it is written in prediction files and column names."""
        if value is True or value is False:  # legacy checkpoints
            return "true" if value else "false"
        return str(value)


def _text(value) -> str:
    """A cell of the target as text; typed values (Parquet) in their usual spelling."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 2.0**53 else repr(value)
    return str(value)


def _legacy_key(value) -> str:
    """The key earlier versions matched labels by: booleans 'true'/'false', integral numbers
    '3', other numbers their shortest repr, text as is."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _text(value)
    text = str(value)
    if text in ("True", "TRUE", "true"):
        return "true"
    if text in ("False", "FALSE", "false"):
        return "false"
    try:
        return _text(float(text))
    except ValueError:
        return text
