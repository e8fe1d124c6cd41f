"""Fit-on-train preprocessing: column typing, imputation, one-hot encoding, scaling, labels.

All fitted state is plain data (``Preprocessor.state``: strings, numbers, lists), saved in
the checkpoint as JSON, so prediction never needs the training CSV.

Feature matrix layout: for each feature column in order, one float column if numeric
(imputed with the training median, then scaled), then one indicator column if that column
had missing values in training and ``missing_indicators`` is on; a categorical column gives
one column per training category (rare ones folded into ``other``), unknown values all zero.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import NnclfError
from .reading import quote_cell

MISSING = None  # the category of a missing cell in a categorical column (JSON null)
OTHER = "__other__"
Warn = Callable[[str], None]


def _no_warn(message: str) -> None:
    pass


class Preprocessor:
    def __init__(self, state: dict[str, Any]):
        self.state = state

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        frame,
        features: list[str],
        target: str,
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
        columns, kept, dropped = [], [], []
        for name in features:
            series = frame[name] if rows is None else frame[name].iloc[rows]
            if not series.notna().any():
                dropped.append(name)
                continue
            kept.append(name)
            if name in categorical or not _numeric_kind(series):
                kind_reason = "listed in data.categorical" if name in categorical else _categorical_reason(series)
                columns.append(_fit_categorical(series, name, kind_reason, max_categories, missing_indicators, warn))
            else:
                columns.append(_fit_numeric(series, name, source, scaling, missing_indicators))
        if dropped:
            listed = ", ".join(f"'{n}'" for n in dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
            warn(f"{source}: column{'s' if len(dropped) > 1 else ''} {listed} dropped: no values in the training rows")
        if not kept:
            raise NnclfError(f"{source}: every feature column is empty in the training rows; nothing to train on")
        state = {"target": target, "features": kept, "columns": columns}
        if dropped:
            state["dropped"] = [{"name": n, "reason": "no values in the training rows"} for n in dropped]
        return cls(state)

    # -- transforming ----------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        return self.state["features"]

    @property
    def n_outputs(self) -> int:
        return sum(_width(c) for c in self.state["columns"])

    def transform(self, frame, source: str, dtype="float32", warn: Warn = _no_warn, out=None, notes=None) -> np.ndarray:
        """Float matrix (n_rows, n_outputs) for ``frame`` (columns matched by name).

        Surprises (unseen categories, missing values training never had) are warned about once
        per column. To transform a file in chunks, pass one ``TransformNotes`` for all chunks and
        call its ``emit`` at the end, so each warning counts the whole file.
        """
        present = set(frame.columns)  # (a ChunkedTable builds its column list on each call)
        missing = [name for name in self.features if name not in present]
        if missing:
            listed = ", ".join(f"'{m}'" for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NnclfError(f"{source}: missing feature column{'s' if len(missing) > 1 else ''} {listed} (the model was trained with it)")
        n = len(frame)
        own_notes = notes is None
        if own_notes:
            notes = TransformNotes()
        if out is None:
            out = np.empty((n, self.n_outputs), dtype=dtype)
        done = self._transform_numbers_at_once(frame, out)
        j = 0
        for c in self.state["columns"]:
            if c["name"] in done:  # its missing cells are noted here, in column order
                if done[c["name"]] and c["missing_in_training"] == 0:
                    notes.add_missing(c, done[c["name"]])
                j += _width(c)
                continue
            series = frame[c["name"]]
            if c["kind"] == "numeric":
                j = _transform_numeric(c, series, out, j, source, notes)
            else:
                j = _transform_categorical(c, series, out, j, notes)
        if own_notes:
            notes.emit(warn, source)
        return out

    def _transform_numbers_at_once(self, frame, out: np.ndarray) -> dict[str, int]:
        """Transform every numeric column that pandas already read as numbers in one (n, m)
        float64 pass (the same arithmetic as ``_transform_numeric``, column by column);
        returns {name: missing cells} for them. A chunk with an infinite or too-large value is
        left to the column-by-column path, which names the first bad cell."""
        import pandas as pd

        layout = self._numeric_layout()
        if not layout or not hasattr(frame, "iloc"):  # a ChunkedTable (training data): column by column
            return {}
        dtypes = frame.dtypes
        as_numbers = lambda dtype: pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)  # noqa: E731
        picked = [(c, j) for c, j in layout if as_numbers(dtypes[c["name"]])]
        if len(picked) < 2:  # one column: the general path costs the same
            return {}
        names = [c["name"] for c, _ in picked]
        positions = [frame.columns.get_loc(name) for name in names]
        targets = [j for _, j in picked]
        fills = np.array([c["fill"] for c, _ in picked])
        centers = np.array([c["center"] for c, _ in picked])
        scales = np.array([c["scale"] for c, _ in picked])
        indicators = [(k, j + 1) for k, (c, j) in enumerate(picked) if c["indicator"]]
        missing = np.zeros(len(picked), dtype=np.int64)
        rows = max(1, (1 << 20) // len(picked))  # an 8 MB float64 block of rows at a time
        for lo in range(0, len(frame), rows):
            values = frame.iloc[lo : lo + rows, positions].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            nan = np.isnan(values)  # (an inf fails the range check below)
            if nan.any():
                np.copyto(values, fills, where=nan)
                missing += nan.sum(axis=0)
            with np.errstate(over="ignore"):
                values -= centers
                values /= scales
            largest = np.finfo(out.dtype).max  # inf after scaling, or beyond float32
            if values.size and not (-largest <= values.min() and values.max() <= largest):
                return {}
            out[lo : lo + rows, targets] = values
            for k, j in indicators:
                out[lo : lo + rows, j] = nan[:, k]
        return dict(zip(names, missing.tolist()))

    def _numeric_layout(self) -> list[tuple[dict, int]]:
        """(column state, first output column) of every numeric feature."""
        layout, j = [], 0
        for c in self.state["columns"]:
            if c["kind"] == "numeric":
                layout.append((c, j))
            j += _width(c)
        return layout


class TransformNotes:
    """Per-column tallies of surprising values seen while transforming, summed over chunks."""

    MAX_EXAMPLES_TRACKED = 1000  # distinct unseen values remembered per column (memory bound)

    def __init__(self):
        self.missing: dict[str, int] = {}  # column -> missing cells, for columns with none in training
        self.unseen: dict[str, tuple[int, dict]] = {}  # column -> (count, {value: count})
        self.capped: set[str] = set()
        self.columns: dict[str, dict] = {}

    def add_missing(self, c, n: int) -> None:
        self.columns[c["name"]] = c
        self.missing[c["name"]] = self.missing.get(c["name"], 0) + n

    def add_unseen(self, c, counts) -> None:
        self.columns[c["name"]] = c
        total, seen = self.unseen.get(c["name"], (0, {}))
        for value, count in counts.items():
            if value in seen:
                seen[value] += int(count)
            elif len(seen) < self.MAX_EXAMPLES_TRACKED:
                seen[value] = int(count)
            else:
                self.capped.add(c["name"])
        self.unseen[c["name"]] = (total + int(sum(counts.values())), seen)

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
            fix = f"imputed with the training median {c['fill']:g}" if c["kind"] == "numeric" else "encoded as unknown (all zeros)"
            warn(f"{source}: column '{name}': {n} missing value(s), none were missing in training; {fix}")


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
    return np.mean(~np.isnan(_parse_numbers(values))) >= 0.9


def _parse_numbers(series) -> np.ndarray:
    """Text cells as float64, NaN where a cell is missing or not a number. pandas leaves out what
    it cannot convert (pandas 2 gives up on '1e400'); Python's float() decides those few cells,
    so overflowing numbers read as inf on every pandas version."""
    import pandas as pd

    parsed = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    present = series.notna().to_numpy()
    retry = np.flatnonzero(np.isnan(parsed) & present)
    if len(retry) > max(10, 0.1 * present.sum()):  # a text column, not a few odd numbers
        return parsed
    for i in retry:
        try:
            parsed[i] = float(str(series.iloc[i]).strip())
        except ValueError:
            pass
    return parsed


def _holds_booleans(series) -> bool:
    """True/False with gaps: pandas reads it as an object column of bools and NaN."""
    import pandas as pd

    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "boolean"


def _categorical_reason(series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or _holds_booleans(series):
        return "boolean values"
    return "text values"


def file_line(rows, row: int) -> int:
    """File line of position ``row`` of a Series or DataFrame, which keeps the file's row numbers as its index."""
    return int(rows.index[row]) + 2  # + header line, 1-based


def _as_float(series, name: str, source: str) -> np.ndarray:
    """The column as float64 with NaN for missing; a non-numeric cell or inf is an error."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        values = _parse_numbers(series)  # a fresh, writable array: scaled in place later
        bad = np.isnan(values) & series.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise NnclfError(
                f"{source}, line {file_line(series, row)}: column '{name}': non-numeric value {quote_cell(series.iloc[row])} "
                f"in a numeric column (fix it, or list '{name}' in data.categorical)"
            )
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise NnclfError(
            f"{source}, line {file_line(series, row)}: column '{name}': infinite value {values[row]} "
            f"(nnclf does not guess a number for inf; fix or remove it)"
        )
    return values


def _fit_numeric(series, name, source, scaling, missing_indicators):
    values = _as_float(series, name, source)
    present = values[~np.isnan(values)]
    n_missing = int(values.size - present.size)  # (a column with no values was dropped before)
    fill = float(np.median(present))
    filled = np.where(np.isnan(values), fill, values)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        if scaling == "standard":
            center, scale = float(filled.mean()), float(filled.std())
            spread = float(np.abs(filled - center).max())
            if scale < 1e-150 and spread > 0:  # squares of values below ~1e-154 underflow: rescale first
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
    return {
        "name": name,
        "kind": "numeric",
        "reason": reason,
        "fill": fill,
        "center": center,
        "scale": scale,
        "missing_in_training": n_missing,
        "indicator": bool(missing_indicators and n_missing > 0),
    }


def _transform_numeric(c, series, out, j, source, notes):
    values = _as_float(series, c["name"], source)
    nan = np.isnan(values)
    if nan.any():
        if c["missing_in_training"] == 0:
            notes.add_missing(c, int(nan.sum()))
        values[nan] = c["fill"]
    with np.errstate(over="ignore"):  # an overflow is reported just below
        values -= c["center"]
        values /= c["scale"]
    too_large = ~(np.abs(values) <= np.finfo(out.dtype).max)  # inf after scaling, or beyond float32
    if too_large.any():
        row = int(np.flatnonzero(too_large)[0])
        raise NnclfError(
            f"{source}, line {file_line(series, row)}: column '{c['name']}': value {float(series.iloc[row]):g} is too large "
            f"for {out.dtype} numbers once scaled with the training statistics; fix or remove it"
        )
    out[:, j] = values
    j += 1
    if c["indicator"]:
        out[:, j] = nan
        j += 1
    return j


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
            if is_float.any():
                keys[is_float] = _float_keys(raw[is_float].astype(np.float64))
    keys[missing] = None
    return keys


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Text keys of floats: '3' for an integral value (exactly representable, |v| < 2^53), else
    Python's shortest repr ('2.5', '1e+20')."""
    integral = (np.mod(values, 1) == 0) & (np.abs(values) < 2.0**53)
    as_int = np.where(integral, values, 0).astype(np.int64).astype(str)
    return np.where(integral, as_int, values.astype(str)).astype(object)


def _fit_categorical(series, name, reason, max_categories, missing_indicators, warn):
    import pandas as pd

    keys = category_keys(series)
    present = pd.Series(keys[keys != None]).value_counts()  # noqa: E711 (element-wise)
    n_missing = int(len(keys) - present.sum())
    n_unique, n_rows = len(present), int(present.sum())
    if n_rows >= 20 and n_unique >= 0.9 * n_rows:
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
    return {
        "name": name,
        "kind": "categorical",
        "reason": detail,
        "categories": categories,
        "missing_in_training": n_missing,
        "indicator": False,
    }


def _transform_categorical(c, series, out, j, notes):
    import pandas as pd

    categories = c["categories"]
    named = [k for k in categories if k is not MISSING and k != OTHER]
    keys = category_keys(series)
    missing = np.array([k is None for k in keys], dtype=bool) if len(keys) else np.zeros(0, bool)
    codes = pd.Index(named, dtype=object).get_indexer(np.where(missing, "", keys).astype(object)).astype(np.int64)
    codes[missing] = -1
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
    return j + len(categories)


def _width(c) -> int:
    base = 1 if c["kind"] == "numeric" else len(c["categories"])
    return base + (1 if c.get("indicator") else 0)

