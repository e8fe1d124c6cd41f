"""From the config's data section to float arrays: read, check columns, split, preprocess."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import NnclfError, Warn
from ..registry import did_you_mean
from .folds import fold_positions
from .labels import Labels
from .preprocess import Preprocessor, TransformNotes
from .reading import ChunkedTable, ReadOptions, quote_cell, read_chunks, read_table_hashed
from ..seeds import split_rng


@dataclass
class Split:
    x: np.ndarray  # (n, d) float features
    y: np.ndarray  # (n,) int class indices; (n, m) scaled targets (regression); x itself (reconstruction)
    rows: np.ndarray  # (n,) 0-based data-row numbers in the source file
    source: str
    values: Optional[np.ndarray] = None  # regression: the targets (n, m) as read, float64, unscaled

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Prepared:
    preprocessor: Preprocessor
    labels: Optional[Labels]  # classification; None for the real-valued tasks
    train: Split
    val: Optional[Split]
    test: Optional[Split]
    files: dict[str, dict] = field(default_factory=dict)  # role -> fingerprint (path, bytes, sha256)
    task: str = "classification"
    targets: Any = None  # regression: the fitted ``nnclf.data.targets.Targets``
    pca: Any = None  # reconstruction: the linear baseline ``nnclf.data.targets.PCABaseline``


def stratified_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (kept, held out), both sorted.

    round(fraction * n) rows are held out in all, shared among the classes in proportion to
    their sizes (largest remainder, so many small classes still give a non-empty split), at
    most n_c - 1 of class c so every class keeps a row.
    """
    classes, counts = np.unique(y, return_counts=True)
    exact = fraction * counts
    n_held = np.floor(exact).astype(np.int64)
    short = int(np.floor(fraction * len(y) + 0.5)) - int(n_held.sum())
    if short > 0:  # the rows lost to rounding down go to the largest remainders (ties: label order)
        n_held[np.argsort(-(exact - n_held), kind="stable")[:short]] += 1
    n_held = np.minimum(n_held, counts - 1)
    kept, held = [], []
    for c, n_c in zip(classes, n_held):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[:n_c])
        kept.append(idx[n_c:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def select_features(columns: list[str], data, source: str) -> list[str]:
    """``data.features`` or every column but the target(s) and ``data.ignore``; names checked."""
    targets = data.targets
    for target in targets:
        if target not in columns:
            raise NnclfError(f"{source}: target column '{target}' not found{did_you_mean(target, columns)}{_delimiter_hint(columns)}; columns: {_list(columns)}")
    for key in ("features", "ignore", "categorical"):
        for name in getattr(data, key) or []:
            if name not in columns:
                raise NnclfError(f"{source}: data.{key}: column '{name}' not found{did_you_mean(name, columns)}; columns: {_list(columns)}")
    if data.features is not None:
        features = [c for c in data.features if c not in data.ignore]
    else:
        features = [c for c in columns if c not in targets and c not in data.ignore]
    for target in targets:
        if target in features:
            raise NnclfError(f"{source}: data.features: the target column '{target}' cannot also be a feature")
    if not features:
        raise NnclfError(f"{source}: no feature columns left after removing the target and data.ignore")
    return features


def _delimiter_hint(columns: list[str]) -> str:
    if len(columns) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if sep in columns[0]:
                return f" (the header looks separated by {name}: set data.delimiter: '{sep}')"
    return ""


def _list(columns: list[str]) -> str:
    return ", ".join(columns[:12]) + (f", ... ({len(columns)} in all)" if len(columns) > 12 else "")


def _drop_missing_labels(frame, target: str, source: str, warn: Warn, na_values=()) -> Any:
    """``frame`` (a DataFrame or a ChunkedTable) without the rows whose label is missing (an
    empty cell). A label that ``data.na_values`` lists is a class, and said so once."""
    column = frame[target]
    missing = column.isna().to_numpy()
    if missing.any():
        warn(f"{source}: {int(missing.sum())} row(s) with a missing '{target}' label dropped")
        frame = frame.rows(~missing) if hasattr(frame, "rows") else frame[~missing]
    tokens = sorted(set(na_values) - {""})
    if tokens:
        listed = column[~missing].isin(tokens)
        if listed.any():
            counts = column[~missing][listed.to_numpy()].value_counts()
            shown = ", ".join(f"{quote_cell(v)} ({n})" for v, n in counts.head(3).items())
            warn(
                f"{source}: target '{target}': {int(listed.sum())} label(s) {shown} are in data.na_values, "
                f"which applies to feature columns only; kept as classes (an empty cell is a missing label)"
            )
    return frame


MANY_CLASSES = 50  # more distinct integer labels than this (or than half the rows) look like a quantity


def check_class_target(series, source: str, target: str, warn: Warn) -> None:
    """A numeric target with fractions is a quantity, not a class: an error suggesting
    ``task: regression``; integers with very many distinct values get a warning saying so."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return
    if not pd.api.types.is_numeric_dtype(series):  # the target is read as text: is every label a number?
        numbers = pd.to_numeric(series, errors="coerce")
        if bool((numbers.isna() & series.notna()).any()):
            return
        series = numbers
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(values)
    fractional = present & (np.mod(np.where(present, values, 0.0), 1) != 0)
    if fractional.any():
        from .preprocess import file_line

        row = int(np.flatnonzero(fractional)[0])
        raise NnclfError(
            f"{source}, line {file_line(series, row)}: target '{target}' has the non-integer value {float(values[row])!r}; "
            f"a class label cannot be a fraction: to predict a number set task: regression"
        )
    n, distinct = int(present.sum()), len(np.unique(values[present]))
    if distinct > MANY_CLASSES or distinct > n / 2:
        warn(
            f"{source}: target '{target}' has {distinct} distinct integer values in {n} rows, many for classes; "
            f"if it is a quantity, set task: regression"
        )


def prepare(data, seed: int, dtype: str = "float32", warn: Warn = lambda m: None, task: str = "classification",
            cache=None, fold: Optional[tuple[int, int]] = None) -> Prepared:
    """Read the training (and optional val/test) CSVs, split, fit on train, transform all.

    ``fold = (f, K)``: fold f of the K cross-validation folds of the training pool
    (``nnclf.data.folds``) instead of the ordinary split: its validation rows are fold f and its
    training rows the rest of the pool, and the preprocessing (and regression targets' scaling)
    is fitted on those training rows alone, as for any split. The test split is the ordinary
    one. Fold 0 is the ordinary split. Not with ``cache``.

    Regression and reconstruction have real-valued targets and plain shuffled splits: see
    ``nnclf.data.targets.prepare_real``.

    ``cache``: a ``cache.DiskCache``: its entry's memory-mapped arrays when it exists, else the
    file is parsed into it (spilled chunks, the same fitting, chunk-by-chunk transform) and the
    splits are memory-mapped from it; the numbers are the same as in memory (classification)."""
    if task != "classification":
        if cache is not None:
            raise NnclfError(f"data.cache: mmap is implemented for task: classification only so far; set data.cache: memory for task: {task}")
        from .targets import prepare_real

        return prepare_real(data, seed, dtype, warn, task, fold)
    if cache is not None:
        if fold is not None:
            raise ValueError("cross-validation folds are not prepared from the memory-mapped cache")
        hit = cache.load(warn)
        if hit is not None:
            return hit
        try:
            return _prepare(data, seed, dtype, cache.recording(warn), cache)
        finally:
            cache.abandon()  # (a no-op once the entry is in place)
    return _prepare(data, seed, dtype, warn, None, fold)


def _prepare(data, seed: int, dtype: str, warn: Warn, cache, fold: Optional[tuple[int, int]] = None) -> Prepared:
    source = data.train
    # the training file stays in the chunks it was read in (ChunkedTable, or SpillTable on disk
    # for the cache): fitting and transforming take one joined column at a time, so the parsed
    # data is held once (or not at all)
    options = ReadOptions.of(data)
    if cache is None:
        frame = read_chunks(source, options=options)
        files = {"train": frame.fingerprint}
    else:
        frame = cache.read_train(data, options)
        files = {"train": cache.files["train"]}
    features = select_features(list(frame.columns), data, source)
    frame = _drop_missing_labels(frame, data.target, source, warn, options.na_values)
    if len(frame) < 2:
        raise NnclfError(f"{source}: {len(frame)} labelled row(s); training needs at least 2")
    check_class_target(frame[data.target], source, data.target, warn)
    labels = Labels.fit(frame[data.target], source, data.target)
    y_all = labels.encode(frame[data.target])
    if getattr(data, "split_seed", None) is not None:  # nnclf tune varies seed, not the split
        seed = data.split_seed
    rng = split_rng(seed)

    def held_out(fraction, what):
        nonlocal frame_positions
        kept, held = stratified_holdout(y_all[frame_positions], fraction, rng)
        if fraction > 0 and len(held) == 0:
            raise NnclfError(f"{source}: {len(frame_positions)} rows are too few for data.{what}={fraction}: the split would be empty")
        taken = frame_positions[held]
        frame_positions = frame_positions[kept]
        return taken

    frame_positions = np.arange(len(frame))
    test_pos = held_out(data.test_split, "test_split") if data.test is None and data.test_split > 0 else None
    val_pos = held_out(data.val_split, "val_split") if data.val is None and data.val_split > 0 else None
    if fold is not None:
        frame_positions, val_pos = fold_positions(frame_positions, val_pos, frame.index.to_numpy(), y_all, fold, seed, source)
    if len(np.unique(y_all[frame_positions])) < 2:
        raise NnclfError(f"{source}: the training split holds a single class; use more data or smaller splits")
    pre = Preprocessor.fit(
        frame,
        features,
        data.target,
        source,
        categorical=data.categorical,
        max_categories=data.max_categories,
        missing_indicators=data.missing_indicators,
        scaling=data.scaling,
        warn=warn,
        rows=frame_positions,
    )
    if cache is not None:
        positions = {"train": frame_positions, **{role: pos for role, pos in (("val", val_pos), ("test", test_pos)) if pos is not None}}
        return cache.build(pre, labels, frame, y_all, positions, {}, warn)
    # Transform the file once and cut the splits from the float matrix: copying the DataFrame
    # per split would hold several float64 copies of the data at the peak.
    rows_all = frame.index.to_numpy()
    x_all = _transform_releasing(pre, frame, source, dtype, warn)
    del frame

    def split_of(positions) -> Split:
        return Split(x_all[positions], y_all[positions], rows_all[positions], source)

    val = split_of(val_pos) if val_pos is not None else _separate(data.val, "val", options, pre, labels, dtype, warn, files)
    test = split_of(test_pos) if test_pos is not None else _separate(data.test, "test", options, pre, labels, dtype, warn, files)
    # the held-out rows are copied out; the training rows are moved up inside x_all itself
    train = Split(_keep_rows(x_all, frame_positions), y_all[frame_positions], rows_all[frame_positions], source)
    x_all = None
    release_freed_memory()
    return Prepared(pre, labels, train, val, test, files)


def _transform_releasing(pre: Preprocessor, frame, source: str, dtype, warn: Warn) -> np.ndarray:
    """``pre.transform(frame)``; a ChunkedTable is transformed chunk by chunk, each parsed chunk
    dropped and its memory handed back once its rows are in the float matrix, so the parsed
    table and the matrix are not both held whole (the peak it saves: benchmarks/RESULTS.md,
    "Training memory"; the numbers are the same: ``tests/test_prepare_memory.py``)."""
    if not isinstance(frame, ChunkedTable) or len(frame.chunks) == 1:
        return pre.transform(frame, source, dtype, warn)
    out = np.empty((len(frame), pre.n_outputs), dtype=dtype)
    notes, start = TransformNotes(), 0
    for i in range(len(frame.chunks)):
        chunk, frame.chunks[i] = frame.chunks[i], None
        pre.transform(chunk, source, dtype, warn, out=out[start : start + len(chunk)], notes=notes)
        start += len(chunk)
        del chunk
        release_freed_memory()
    notes.emit(warn, source)
    return out


def _keep_rows(x: np.ndarray, positions: np.ndarray, block: int = 8192) -> np.ndarray:
    """``x[positions]`` for sorted, distinct ``positions``, made inside ``x`` itself: row p_i
    moves up to row i (p_i >= i, so a block is read before any later block's rows are
    overwritten), then ``x`` shrinks to the kept rows. ``x`` must own its data and have no
    other views; it is consumed."""
    for lo in range(0, len(positions), block):
        chunk = positions[lo : lo + block]
        if chunk[0] != lo or chunk[-1] != lo + len(chunk) - 1:  # rows already in place need no copy
            x[lo : lo + len(chunk)] = x[chunk]
    x.resize((len(positions),) + x.shape[1:], refcheck=False)  # gives the dropped rows back
    return x


def release_freed_memory() -> None:
    """Ask glibc to hand memory freed inside its heap back to the system (``malloc_trim``):
    the parser's buffers and the parsed chunks, once freed, otherwise stay in the process for
    the whole training. A no-op where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _separate(path: Optional[str], role: str, options: ReadOptions, pre: Preprocessor, labels: Labels, dtype, warn,
              files: dict) -> Optional[Split]:
    """A validation or test CSV given by path, encoded with the training state; its
    fingerprint goes into ``files[role]``."""
    if path is None:
        return None
    frame, files[role] = read_table_hashed(path, options=options)
    target = options.target
    if target not in frame.columns:
        raise NnclfError(f"{path}: target column '{target}' not found{did_you_mean(target, list(frame.columns))}")
    frame = _drop_missing_labels(frame, target, path, warn, options.na_values)
    y = labels.encode(frame[target])
    unknown = y < 0
    if unknown.any():
        raise NnclfError(f"{path}: {int(unknown.sum())} row(s) have labels never seen in training, e.g. {quote_cell(frame[target][unknown].iloc[0])}")
    return Split(pre.transform(frame, path, dtype, warn), y, frame.index.to_numpy(), path)
