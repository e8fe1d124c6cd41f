"""Class labels: encoded to 0..K-1 for training and decoded back to their original values.

Labels keep their type: integer labels stay integers (never 1.0), strings stay strings,
booleans stay booleans. They are matched by a text key, so '3', 3 and 3.0 are one label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NnclfError
from .preprocess import category_keys


class Labels:
    def __init__(self, values: list[Any]):
        self.values = list(values)  # sorted, JSON-safe: ints, floats, strings or booleans
        self._index = {key: i for i, key in enumerate(_keys_of(self.values))}

    @classmethod
    def fit(cls, series, source: str, target: str) -> "Labels":
        import pandas as pd

        present = series.dropna()
        if pd.api.types.is_bool_dtype(present) or (
            len(present) and all(isinstance(v, (bool, np.bool_)) for v in present)  # True/False with blanks
        ):
            values = sorted({bool(v) for v in present})
        elif pd.api.types.is_integer_dtype(present):
            values = sorted({int(v) for v in present})
        elif pd.api.types.is_float_dtype(present):
            floats = present.to_numpy(dtype=np.float64)
            integral = bool(np.all(np.mod(floats, 1) == 0))
            values = sorted({int(v) if integral else float(v) for v in floats})
        else:
            values = sorted({str(v) for v in present})
        if len(values) < 2:
            only = f" (only {values[0]!r})" if values else ""
            raise NnclfError(f"{source}: target column '{target}' has {len(values)} class{only}; classification needs at least 2")
        return cls(values)

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, series) -> np.ndarray:
        """Indices 0..K-1, or -1 for a label never seen in training (and for missing)."""
        keys = category_keys(series)
        return np.array([self._index.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Original label values for class indices (an object array keeps ints and strings)."""
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values
        return table[indices]


def _keys_of(values: list[Any]) -> list[str]:
    import pandas as pd

    return list(category_keys(pd.Series(values)))
