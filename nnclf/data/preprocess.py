"""Fit-on-train preprocessing: column typing, imputation, one-hot encoding, scaling.

The fitted state is one small frozen record per feature column (``NumericColumn``,
``CategoricalColumn``) plus the columns dropped while fitting (``DroppedColumn``). It is saved
in the checkpoint as plain JSON (``Preprocessor.to_json``) and read back, every type checked,
by ``Preprocessor.from_json``, so prediction never needs the training CSV.

Feature matrix layout: for each feature column in order, one float column if numeric
(imputed with the training median, then scaled), then one indicator column if that column
had missing values in training and ``missing_indicators`` is on; a categorical column gives
one column per training category (rare ones folded into ``other``), unknown values all zero.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Union

import numpy as np

from ..errors import NnclfError, Warn
from .reading import quote_cell

MISSING = None  # the category of a missing cell in a categorical column (JSON null)
OTHER = "__other__"

# -- thresholds ----------------------------------------------------------------------------------
# Numeric columns are transformed in row blocks of about this many float64 cells (8 MB): large
# enough that numpy's per-call cost vanishes, small enough that the float64 copy of a block stays
# far below the float32 matrix it is written into.
BLOCK_CELLS = 1 << 20
# A standard deviation below this may have lost its digits: squares of values below ~1e-154
# underflow to 0 in float64, so such a column is first divided by its largest deviation.
TINY_STD = 1e-150
# A text column whose cells are at least this share numbers is numeric, so its few stray
# strings are reported as errors instead of turning the column into thousands of categories.
NUMERIC_SHARE = 0.9
# pandas' to_numeric leaves out the cells it cannot convert (pandas 2 gives up on '1e400');
# Python's float() retries them unless there are more than this many, or this share of the
# present cells: then the column holds text, and a Python call per cell would be slow for nothing.
RETRY_CELLS, RETRY_SHARE = 10, 0.1
# A categorical column with at least this many rows, nearly all distinct (this share), looks
# like an identifier: one-hot encoding it cannot generalise, so fitting warns.
IDENTIFIER_MIN_ROWS, IDENTIFIER_SHARE = 20, 0.9
# float64 holds every integer below 2^53 exactly; only those floats are keyed as integers ('3').
EXACT_INTEGERS = 2.0**53


def _no_warn(message: str) -> None:
    pass


# -- the fitted state of one column ----------------------------------------------------------------
def _need(ok: bool, what: str) -> None:
    """A damaged state is a TypeError with a one-line message (``nnclf.model`` names the file)."""
    if not ok:
        raise TypeError(f"preprocessor: {what}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_SCALAR = (str, int, float, bool, type(None))


def _entries(d: dict, keys: tuple[str, ...]) -> None:
    """A KeyError naming the first of ``keys`` that ``d`` lacks."""
    for key in keys:
        if key not in d:
            raise KeyError(key)


@dataclass(frozen=True)
class NumericColumn:
    """x' = (x - center) / scale, a missing x replaced by ``fill`` (the training median) first;
    with ``indicator``, a second output column holds 1 where x was missing."""

    name: str
    fill: float
    center: float
    scale: float  # > 0
    missing_in_training: int
    indicator: bool
    reason: str = ""  # why the column is numeric, as `nnclf train` shows it

    kind: ClassVar[str] = "numeric"
    REQUIRED: ClassVar[tuple] = ("name", "fill", "center", "scale", "missing_in_training", "indicator")

    @property
    def width(self) -> int:
        """Output columns: the value, and the indicator if any."""
        return 1 + self.indicator

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "reason": self.reason, "fill": self.fill, "center": self.center,
                "scale": self.scale, "missing_in_training": self.missing_in_training, "indicator": self.indicator}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "NumericColumn":
        _entries(d, cls.REQUIRED)
        for key in ("fill", "center", "scale"):
            _need(_is_number(d[key]), f"{where}.{key} should be a finite number")
        _need(d["scale"] > 0, f"{where}.scale should be positive")
        _need(_is_count(d["missing_in_training"]), f"{where}.missing_in_training should be a count (a whole number >= 0)")
        _need(isinstance(d["indicator"], bool), f"{where}.indicator should be true or false")
        reason = d.get("reason", "")
        _need(isinstance(reason, str), f"{where}.reason should be a string")
        return cls(d["name"], d["fill"], d["center"], d["scale"], d["missing_in_training"], d["indicator"], reason)


@dataclass(frozen=True)
class CategoricalColumn:
    """One output column per entry of ``categories`` (sorted training values, then ``OTHER`` if
    rare ones were folded, then ``MISSING`` if training had missing cells): 1 in the column of
    the cell's category, all zeros for a value never seen."""

    name: str
    categories: tuple  # text keys (``category_keys``), OTHER, MISSING (None)
    missing_in_training: int
    indicator: bool = False  # (never set: a missing cell is its own category instead)
    reason: str = ""

    kind: ClassVar[str] = "categorical"
    REQUIRED: ClassVar[tuple] = ("name", "categories", "missing_in_training")

    @property
    def width(self) -> int:
        return len(self.categories)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "reason": self.reason, "categories": list(self.categories),
                "missing_in_training": self.missing_in_training, "indicator": self.indicator}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "CategoricalColumn":
        _entries(d, cls.REQUIRED)
        categories = d["categories"]
        # fitted categories are the cells' text keys (category_keys) and null for MISSING; a number
        # here would reach the text matching of transform (other_spellings) as a TypeError
        _need(isinstance(categories, list) and all(v is MISSING or isinstance(v, str) for v in categories),
              f"{where}.categories should be a list of texts (and null)")
        _need(_is_count(d["missing_in_training"]), f"{where}.missing_in_training should be a count (a whole number >= 0)")
        # transform writes no indicator column for a categorical column (a missing cell is a category)
        _need(d.get("indicator", False) is False, f"{where}.indicator should be false for a categorical column")
        reason = d.get("reason", "")
        _need(isinstance(reason, str), f"{where}.reason should be a string")
        return cls(d["name"], tuple(categories), d["missing_in_training"], False, reason)


Column = Union[NumericColumn, CategoricalColumn]
COLUMN_KINDS: dict[str, type] = {c.kind: c for c in (NumericColumn, CategoricalColumn)}


@dataclass(frozen=True)
class DroppedColumn:
    """A feature column left out while fitting, and why (no values in the training rows)."""

    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason}

    @classmethod
    def from_json(cls, d, where: str) -> "DroppedColumn":
        _need(isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("reason"), str),
              f"{where} should be an object with a 'name' and a 'reason'")
        return cls(d["name"], d["reason"])


# -- the fitted state of a table -------------------------------------------------------------------
class Preprocessor:
    """The fitted columns of a table, in feature order; ``transform`` maps a frame to the float
    matrix (n_rows, n_outputs) the network reads."""

    def __init__(self, target, columns, dropped=()):
        # classification: the target's name; regression: a name or a list of them; reconstruction: None
        self.target = target
        self.columns: tuple = tuple(columns)
        self.dropped: tuple = tuple(dropped)
        self._names = tuple(c.name for c in self.columns)
        self._layout, j = [], 0  # (column, its first output column)
        for c in self.columns:
            self._layout.append((c, j))
            j += c.width
        self.n_outputs = j

    # -- the JSON form saved with the model ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """{"target", "features", "columns": [column objects], "dropped" (when any)}: the
        checkpoint's ``preprocessor`` entry."""
        state = {"target": list(self.target) if isinstance(self.target, (list, tuple)) else self.target,
                 "features": self.features, "columns": [c.to_json() for c in self.columns]}
        if self.dropped:
            state["dropped"] = [d.to_json() for d in self.dropped]
        return state

    @property
    def state(self) -> dict[str, Any]:
        """The JSON form (``to_json``), a fresh copy."""
        return self.to_json()

    @classmethod
    def from_json(cls, state) -> "Preprocessor":
        """The state ``to_json`` wrote, every entry ``transform`` reads checked, so a damaged
        checkpoint fails here in one line, not mid-predict: a missing entry is a KeyError naming
        it, a wrong type or value a TypeError, an unknown column kind an NnclfError."""
        if not isinstance(state, dict):
            raise TypeError(f"'preprocessor' is a {type(state).__name__}, not a mapping")
        _entries(state, ("target", "features", "columns"))
        target, features, entries = state["target"], state["features"], state["columns"]
        _need(target is None or isinstance(target, str) or (isinstance(target, list) and all(isinstance(t, str) for t in target)),
              "'target' should be a column name or a list of them")
        _need(isinstance(features, list) and all(isinstance(f, str) for f in features), "'features' should be a list of names")
        _need(isinstance(entries, list), "'columns' should be a list")
        columns = []
        for i, c in enumerate(entries):
            where = f"columns[{i}]"
            _need(isinstance(c, dict), f"{where} should be an object")
            _entries(c, ("kind",))
            kind = COLUMN_KINDS.get(c["kind"]) if isinstance(c["kind"], str) else None
            if kind is None:
                raise NnclfError(f"unknown column kind {c['kind']!r}")
            _need(isinstance(c.get("name"), str), f"{where}.name should be a string")
            columns.append(kind.from_json(c, where))
        _need([c.name for c in columns] == features, "'columns' should name the 'features', in order")
        dropped = state.get("dropped", [])
        _need(isinstance(dropped, list), "'dropped' should be a list")
        return cls(target, columns, [DroppedColumn.from_json(d, f"dropped[{i}]") for i, d in enumerate(dropped)])

    @classmethod
    def as_given(cls, names: list[str], target) -> "Preprocessor":
        """Numeric columns used as they are (no fill needed, centre 0, scale 1): the state of a
        model fitted on an array, which has no table to type."""
        return cls(target, [NumericColumn(n, 0.0, 0.0, 1.0, 0, False, "numbers (an array: used as given)") for n in names])

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        frame,
        features: list[str],
        target,
        source: str,
        categorical: list[str] = (),
        max_categories: int | None = None,
        missing_indicators: bool = False,
        scaling: str = "standard",
        warn: Warn = _no_warn,
        rows: np.ndarray | None = None,
    ) -> "Preprocessor":
        """Type and fit every feature column on the training rows: ``frame``, or its rows at
        positions ``rows`` (taken one column at a time, so the frame is never copied whole)."""
        refuse_repeated(frame, features, source)
        columns, dropped = [], []
        for name in features:
            series = frame[name] if rows is None else frame[name].iloc[rows]
            if not series.notna().any():
                dropped.append(DroppedColumn(name, "no values in the training rows"))
                continue
            if name in categorical or not _numeric_kind(series):
                kind_reason = "listed in data.categorical" if name in categorical else _categorical_reason(series)
                columns.append(_fit_categorical(series, name, kind_reason, max_categories, warn))
            else:
                columns.append(_fit_numeric(series, name, source, scaling, missing_indicators))
        if dropped:
            listed = ", ".join(f"'{d.name}'" for d in dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
            warn(f"{source}: column{'s' if len(dropped) > 1 else ''} {listed} dropped: no values in the training rows")
        if not columns:
            raise NnclfError(f"{source}: every feature column is empty in the training rows; nothing to train on")
        return cls(target, columns, dropped)

    # -- transforming ----------------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        return list(self._names)

    def transform(self, frame, source: str, dtype="float32", warn: Warn = _no_warn, out=None, notes=None) -> np.ndarray:
        """Float matrix (n_rows, n_outputs) for ``frame`` (columns matched by name).

        Surprises (unseen categories, missing values training never had) are warned about once
        per column. To transform a file in chunks, pass one ``TransformNotes`` for all chunks and
        call its ``emit`` at the end, so each warning counts the whole file.
        """
        present = set(frame.columns)  # (a ChunkedTable builds its column list on each call)
        refuse_repeated(frame, self._names, source)
        missing = [name for name in self._names if name not in present]
        if missing:
            listed = ", ".join(f"'{m}'" for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NnclfError(f"{source}: missing feature column{'s' if len(missing) > 1 else ''} {listed} (the model was trained with {'them' if len(missing) > 1 else 'it'})")
        own_notes = notes is None
        if own_notes:
            notes = TransformNotes()
        if out is None:
            out = np.empty((len(frame), self.n_outputs), dtype=dtype)
        gaps = self._transform_numeric(frame, out, source)
        for c, j in self._layout:  # in column order, so the warnings are too
            if isinstance(c, NumericColumn):
                if gaps[c.name] and c.missing_in_training == 0:
                    notes.add_missing(c, gaps[c.name])
            else:
                _transform_categorical(c, frame[c.name], out, j, notes)
        if own_notes:
            notes.emit(warn, source)
        return out

    def _transform_numeric(self, frame, out: np.ndarray, source: str) -> dict[str, int]:
        """Every numeric column into its place in ``out`` (``_scale``, in float64, then cast to
        out's dtype), its indicator column where it has one; returns {name: missing cells}.

        Columns pandas read as numbers are taken together, ``BLOCK_CELLS`` at a time, in one
        (rows, m) pass; a column of text to parse (and every column of a ChunkedTable, which
        has no ``iloc``) is taken alone. A cell that is not a number, infinite, or too large
        for out's dtype once scaled is an error naming the first bad cell of the first bad
        column in feature order, however the columns were grouped."""
        import pandas as pd

        numeric = [(c, j) for c, j in self._layout if isinstance(c, NumericColumn)]
        gaps: dict[str, int] = {}
        together = []
        if numeric and hasattr(frame, "iloc"):
            dtypes = frame.dtypes
            together = [(c, j) for c, j in numeric if _plain_numbers(dtypes[c.name])]
        if together:
            positions = [frame.columns.get_loc(c.name) for c, _ in together]
            fills, centers, scales, targets, flags = _block_of([c for c, _ in together], [j for _, j in together])
            counts = np.zeros(len(together), dtype=np.int64)
            rows = max(1, BLOCK_CELLS // len(together))
            for lo in range(0, len(frame), rows):
                values = frame.iloc[lo : lo + rows, positions].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
                nan = _scale(values, fills, centers, scales)
                if not _fits(values, out.dtype):
                    self._raise_first_bad(frame, numeric, source, out.dtype)
                out[lo : lo + rows, targets] = values
                for k, j in flags:
                    out[lo : lo + rows, j] = nan[:, k]
                counts += nan.sum(axis=0)
            gaps.update(zip((c.name for c, _ in together), counts.tolist()))
        for c, j in numeric:
            if c.name in gaps:
                continue
            values = _as_float(frame[c.name], c.name, source)
            nan = _scale(values, c.fill, c.center, c.scale)
            if not _fits(values, out.dtype):
                raise _too_large(c, frame[c.name], values, out.dtype, source)
            out[:, j] = values
            if c.indicator:
                out[:, j + 1] = nan
            gaps[c.name] = int(nan.sum())
        return gaps

    @staticmethod
    def _raise_first_bad(frame, numeric: list, source: str, dtype) -> None:
        """The error for the first bad cell of the first bad numeric column, column by column."""
        for c, _ in numeric:
            series = frame[c.name]
            values = _as_float(series, c.name, source)  # (a non-numeric or infinite cell raises here)
            _scale(values, c.fill, c.center, c.scale)
            if not _fits(values, dtype):
                raise _too_large(c, series, values, dtype, source)
        raise NnclfError(f"{source}: a numeric value is too large for {dtype} numbers once scaled; fix or remove it")


def refuse_repeated(frame, features, source: str) -> None:
    """A feature (or target) column that appears twice in a DataFrame (a CSV's header never has one: the
    reader renames repeats) is an error naming it: frame[name] is then a frame, not a column,
    and pandas failed with "TypeError: arg must be a list, tuple, 1-d array, or Series"."""
    columns = list(frame.columns)
    if len(set(columns)) == len(columns):
        return
    from collections import Counter

    counts = Counter(columns)
    repeated = list(dict.fromkeys(name for name in features if counts.get(name, 0) > 1))
    if repeated:
        listed = ", ".join(f"'{name}'" for name in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        raise NnclfError(f"{source}: column{'s' if len(repeated) > 1 else ''} {listed} appear{'' if len(repeated) > 1 else 's'} "
                         "more than once; give each column once")


def _block_of(columns: list, first: list[int]):
    """(fills, centers, scales) as (m,) float64, the output columns, and (k, output column) of
    the indicators, for the numeric ``columns`` written from output columns ``first``."""
    fills = np.array([c.fill for c in columns], dtype=np.float64)
    centers = np.array([c.center for c in columns], dtype=np.float64)
    scales = np.array([c.scale for c in columns], dtype=np.float64)
    flags = [(k, j + 1) for k, (c, j) in enumerate(zip(columns, first)) if c.indicator]
    return fills, centers, scales, list(first), flags


def _scale(values: np.ndarray, fills, centers, scales) -> np.ndarray:
    """In place, per column of ``values`` (n,) or (n, m): a missing x becomes its fill, then
    x' = (x - center) / scale. Returns the (n,) or (n, m) mask of the missing cells."""
    nan = np.isnan(values)
    if nan.any():
        np.copyto(values, fills, where=nan)
    with np.errstate(over="ignore"):  # an overflow fails ``_fits``
        values -= centers
        values /= scales
    return nan


def _fits(values: np.ndarray, dtype) -> bool:
    """Whether every scaled value is a finite number of ``dtype`` (an inf cell stays inf)."""
    largest = np.finfo(dtype).max
    return not values.size or bool(-largest <= values.min() and values.max() <= largest)


def _too_large(c: NumericColumn, series, scaled: np.ndarray, dtype, source: str) -> NnclfError:
    row = int(np.flatnonzero(~(np.abs(scaled) <= np.finfo(dtype).max))[0])
    return NnclfError(
        f"{source}, line {file_line(series, row)}: column '{c.name}': value {float(series.iloc[row]):g} is too large "
        f"for {np.dtype(dtype)} numbers once scaled with the training statistics; fix or remove it"
    )


class TransformNotes:
    """Per-column tallies of surprising values seen while transforming, summed over chunks."""

    MAX_EXAMPLES_TRACKED = 1000  # distinct unseen values remembered per column (memory bound)

    def __init__(self):
        self.missing: dict[str, int] = {}  # column -> missing cells, for columns with none in training
        self.unseen: dict[str, tuple[int, dict]] = {}  # column -> (count, {value: count})
        self.capped: set[str] = set()
        self.columns: dict[str, Column] = {}

    def add_missing(self, c: Column, n: int) -> None:
        self.columns[c.name] = c
        self.missing[c.name] = self.missing.get(c.name, 0) + n

    def add_unseen(self, c: Column, counts) -> None:
        self.columns[c.name] = c
        total, seen = self.unseen.get(c.name, (0, {}))
        for value, count in counts.items():
            if value in seen:
                seen[value] += int(count)
            elif len(seen) < self.MAX_EXAMPLES_TRACKED:
                seen[value] = int(count)
            else:
                self.capped.add(c.name)
        self.unseen[c.name] = (total + int(sum(counts.values())), seen)

    def emit(self, warn: Warn, source: str) -> None:
        for name, (total, seen) in self.unseen.items():
            ranked = sorted(seen, key=lambda v: -seen[v])  # stable: ties keep first-seen order
            examples = ", ".join(quote_cell(k) for k in ranked[:3])
            distinct = f"{len(seen)}{'+' if name in self.capped else ''}"
            warn(
                f"{source}: column '{name}': {total} value(s) never seen in training "
                f"({distinct} distinct, e.g. {examples}); encoded as unknown (all zeros)"
            )
        for name, n in self.missing.items():
            c = self.columns[name]
            fix = f"imputed with the training median {c.fill:g}" if isinstance(c, NumericColumn) else "encoded as unknown (all zeros)"
            warn(f"{source}: column '{name}': {n} missing value(s), none were missing in training; {fix}")


# -- numbers in cells ------------------------------------------------------------------------------
def file_line(rows, row: int) -> int:
    """File line of position ``row`` of a Series or DataFrame, which keeps the file's row numbers as its index."""
    return int(rows.index[row]) + 2  # + header line, 1-based


def parse_numbers(series) -> np.ndarray:
    """Text cells as float64 (a fresh, writable array), NaN where a cell is missing or not a
    number. pandas leaves out what it cannot convert (pandas 2 gives up on '1e400'); Python's
    float() decides those few cells, so overflowing numbers read as inf on every pandas version."""
    import pandas as pd

    try:
        numbers = pd.to_numeric(series, errors="coerce")
    except OverflowError:  # a Python int beyond float64 (10**400) raises even with errors="coerce"
        numbers = None
    if numbers is not None and pd.api.types.is_complex_dtype(numbers):
        # a DataFrame's complex numbers: the float64 cast kept the real part silently; one with
        # an imaginary part is not a number here (3+0j is 3)
        values = numbers.to_numpy(dtype=np.complex128, na_value=np.nan, copy=True)
        return np.where(values.imag == 0, values.real, np.nan)
    present = series.notna().to_numpy()
    if numbers is None:
        parsed, retry = np.full(len(series), np.nan), np.flatnonzero(present)  # every cell to float() below
    else:
        parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        retry = np.flatnonzero(np.isnan(parsed) & present)
        if len(retry) > max(RETRY_CELLS, RETRY_SHARE * present.sum()):  # a text column, not a few odd numbers
            return parsed
    for i in retry:
        cell = series.iloc[i]
        try:
            parsed[i] = float(str(cell).strip())  # (10**400 reads as inf, an error of its own)
        except (ValueError, OverflowError):
            if isinstance(cell, int) and not isinstance(cell, bool):  # too long for str(): far beyond float64 too
                parsed[i] = math.inf if cell > 0 else -math.inf
    return parsed


def _plain_numbers(dtype) -> bool:
    """Numbers or booleans cast to float64 as they are; not complex ones, whose cast keeps the
    real part silently (``parse_numbers`` refuses a complex number with an imaginary part)."""
    import pandas as pd

    return (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)) or pd.api.types.is_bool_dtype(dtype)


def float_cells(series, source: str, what: str, not_a_number: str, infinite: str) -> np.ndarray:
    """The column as float64 (a fresh, writable array), NaN where a cell is missing; numbers,
    booleans (1/0) and text that parses as numbers are accepted. A cell that is not a number,
    or is infinite, is an error naming its file line:
    "{source}, line L: {what}: non-numeric value 'x'{not_a_number}" or
    "{source}, line L: {what}: " + ``infinite`` (formatted with {value}, the inf or -inf)."""
    import pandas as pd

    if _plain_numbers(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:  # (complex numbers too: each is reported as not a number)
        values = parse_numbers(series)
        bad = np.isnan(values) & series.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise NnclfError(f"{source}, line {file_line(series, row)}: {what}: non-numeric value {quote_cell(series.iloc[row])}{not_a_number}")
    infinite_at = np.isinf(values)
    if infinite_at.any():
        row = int(np.flatnonzero(infinite_at)[0])
        raise NnclfError(f"{source}, line {file_line(series, row)}: {what}: {infinite.format(value=values[row])}")
    return values


def _as_float(series, name: str, source: str) -> np.ndarray:
    """A numeric feature column as float64 with NaN for missing; a non-numeric cell or inf is an error."""
    return float_cells(series, source, f"column '{name}'", f" in a numeric column (fix it, or list '{name}' in data.categorical)",
                       "infinite value {value} (nnclf does not guess a number for inf; fix or remove it)")


# -- numeric columns ---------------------------------------------------------------------------
def _numeric_kind(series) -> bool:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or _holds_booleans(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    # mostly numbers with a few stray strings count as numeric (so the stray is reported)
    values = series.dropna()
    if len(values) == 0:
        return True
    return np.mean(~np.isnan(parse_numbers(values))) >= NUMERIC_SHARE


def _holds_booleans(series) -> bool:
    """True/False with gaps: pandas reads it as an object column of bools and NaN."""
    import pandas as pd

    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "boolean"


def _categorical_reason(series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or _holds_booleans(series):
        return "boolean values"
    return "text values"


def _fit_numeric(series, name, source, scaling, missing_indicators) -> NumericColumn:
    values = _as_float(series, name, source)
    present = values[~np.isnan(values)]
    n_missing = int(values.size - present.size)  # (a column with no values was dropped before)
    fill = float(np.median(present))
    filled = np.where(np.isnan(values), fill, values)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        if scaling == "standard":
            center, scale = float(filled.mean()), float(filled.std())
            spread = float(np.abs(filled - center).max())
            if scale < TINY_STD and spread > 0:
                scale = spread * float(((filled - center) / spread).std())
        elif scaling == "minmax":
            center, scale = float(filled.min()), float(filled.max() - filled.min())
        else:
            center, scale = 0.0, 1.0
    if scale == 0:
        scale = 1.0  # a constant column stays constant (0) instead of dividing by zero
    if not (math.isfinite(center) and math.isfinite(scale)):  # an overflowed std is not "constant"
        raise NnclfError(f"{source}: column '{name}': values too large to scale (mean or range overflows)")
    reason = "numbers" if n_missing == 0 else f"numbers, {n_missing} missing imputed with the median"
    return NumericColumn(name, fill, center, scale, n_missing, bool(missing_indicators and n_missing > 0), reason)


# -- categorical columns -----------------------------------------------------------------------
def category_keys(series):
    """The column as text keys (object array, None where missing): strings stay as they are,
    integers and integral floats become '3', booleans 'true'/'false'."""
    import pandas as pd

    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series):
        keys = np.where(series.fillna(False).to_numpy(dtype=bool), "true", "false").astype(object)
    elif pd.api.types.is_float_dtype(series):
        keys = _float_keys(series.to_numpy(dtype=np.float64, na_value=0.0))
    else:
        # copy: for pandas' string dtype to_numpy can return the column's own buffer, and
        # the None written below must not land in the caller's DataFrame
        keys = series.astype(str).to_numpy(dtype=object, copy=True)
        if series.dtype == object:
            # an object column can mix Python values: bools (True/False with blanks), and floats
            # where a chunk of the file read as numbers was joined to one that held text; they
            # get the keys their own dtypes give, so 3.0 is '3' whichever chunk it came from
            raw = series.to_numpy(dtype=object)
            kinds = np.fromiter((1 if isinstance(v, (bool, np.bool_)) else 2 if isinstance(v, (float, np.floating)) else 0 for v in raw),
                                dtype=np.int8, count=len(raw))
            is_bool, is_float = kinds == 1, kinds == 2
            if is_bool.any():
                keys[is_bool] = np.where(raw[is_bool].astype(bool), "true", "false")
                # booleans beside text: one chunk of the file was read as booleans, another as
                # text; the spellings pandas reads as booleans are those booleans in every chunk
                # (else one cell 'True' would be two categories, 'true' and 'True')
                text = np.flatnonzero(~is_bool & ~is_float & ~missing)
                keys[text] = [_BOOLEAN_TEXT.get(k, k) for k in keys[text]]
            if is_float.any():
                keys[is_float] = _float_keys(raw[is_float].astype(np.float64))
    keys[missing] = None
    return keys


# the cell texts pandas' CSV parser reads as booleans (in a column of nothing else)
_BOOLEAN_TEXT = {"True": "true", "TRUE": "true", "true": "true", "False": "false", "FALSE": "false", "false": "false"}


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Text keys of floats: '3' for an integral value (exactly representable, |v| < 2^53), else
    Python's shortest repr ('2.5', '1e+20')."""
    integral = (np.mod(values, 1) == 0) & (np.abs(values) < EXACT_INTEGERS)
    as_int = np.where(integral, values, 0).astype(np.int64).astype(str)
    return np.where(integral, as_int, values.astype(str)).astype(object)


def _fit_categorical(series, name, reason, max_categories, warn) -> CategoricalColumn:
    import pandas as pd

    keys = category_keys(series)
    present = pd.Series(keys[keys != None]).value_counts()  # noqa: E711 (element-wise)
    n_missing = int(len(keys) - present.sum())
    n_unique, n_rows = len(present), int(present.sum())
    if n_rows >= IDENTIFIER_MIN_ROWS and n_unique >= IDENTIFIER_SHARE * n_rows:
        warn(
            f"column '{name}' looks like an identifier ({n_unique} distinct values in {n_rows} rows); "
            f"one-hot encoding it will not generalise; consider data.ignore: [{name}]"
        )
    # keep the most frequent (ties by name) so the vocabulary is deterministic
    ranked = [k for k, _ in sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))]
    folded = 0
    if max_categories is not None and len(ranked) > max_categories:
        folded = len(ranked) - (max_categories - 1)
        ranked = ranked[: max_categories - 1]
    categories = sorted(ranked) + ([OTHER] if folded else []) + ([MISSING] if n_missing else [])
    detail = f"{reason}, {n_unique} categories"
    if folded:
        detail += f", {folded} rarest folded into '{OTHER}'"
    if n_missing:
        detail += f", {n_missing} missing kept as their own category"
    return CategoricalColumn(name, tuple(categories), n_missing, False, detail)


def other_spellings(named: list[str]) -> list[list[str]]:
    """Other texts of the same values, each list aligned with ``named``: what a cell's key is
    where pandas' reading of its chunk differs from training's. A boolean column's 'true' is
    'True' or 'TRUE' when another cell of the chunk is text (pandas parses True, TRUE and true
    alike, but only a column of nothing else as booleans); an integer category '2007' is '2007.0'
    (the column read as floats with gaps, then joined to text). A spelling that is a category of
    its own stays that category. The ONNX graph matches the same."""
    def respelled(change: Callable[[str], str], applies: Callable[[str], bool]) -> list[str]:
        return [change(k) if applies(k) and change(k) not in named else k for k in named]

    spellings = []
    if {"true", "false"} & set(named):
        booleans = lambda k: k in ("true", "false")  # noqa: E731
        spellings += [respelled(str.capitalize, booleans), respelled(str.upper, booleans)]
    if any(re.fullmatch(r"-?\d+", k) for k in named):
        spellings.append(respelled(lambda k: f"{k}.0", lambda k: re.fullmatch(r"-?\d+", k) is not None))
    return [texts for texts in spellings if texts != named]


def _transform_categorical(c: CategoricalColumn, series, out, j, notes) -> None:
    import pandas as pd

    categories = c.categories
    named = [k for k in categories if k is not MISSING and k != OTHER]
    keys = category_keys(series)
    missing = np.array([k is None for k in keys], dtype=bool) if len(keys) else np.zeros(0, bool)
    codes = pd.Index(named, dtype=object).get_indexer(np.where(missing, "", keys).astype(object)).astype(np.int64)
    codes[missing] = -1
    unknown = (codes < 0) & ~missing
    if unknown.any():
        # another spelling of a category is that category, whatever else its chunk holds: a row's
        # encoding must not depend on its neighbours ('True' among 'maybe's was a value never seen)
        spelled = {}
        for texts in other_spellings(named):
            for i, text in enumerate(texts):
                if text != named[i]:
                    spelled.setdefault(text, i)
        if spelled:
            where = np.flatnonzero(unknown)
            found = np.fromiter((spelled.get(k, -1) for k in keys[where]), dtype=np.int64, count=len(where))
            codes[where] = np.where(found >= 0, found, codes[where])
            unknown = (codes < 0) & ~missing
    if OTHER in categories:
        codes[unknown] = categories.index(OTHER)
    elif unknown.any():
        notes.add_unseen(c, pd.Series(keys[unknown]).value_counts(sort=True).to_dict())
    if missing.any():
        if categories and categories[-1] is MISSING:
            codes[missing] = len(categories) - 1
        else:
            notes.add_missing(c, int(missing.sum()))
    block = out[:, j : j + len(categories)]
    block[...] = 0
    rows = np.flatnonzero(codes >= 0)
    block[rows, codes[rows]] = 1
