"""Real-valued targets (regression) and inputs as targets (reconstruction): parsing, scaling,
plain shuffled splits, and the PCA baseline a reconstruction is measured against.

Regression targets y (n, m) are standardised with the training rows' statistics by default,
t = (y - mu) / sigma per target, so the loss sees targets of unit scale whatever their units;
``Targets.decode`` maps network outputs back, so every prediction and metric is in the target's
own units. The fitted state is plain data saved in the checkpoint.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import NnclfError, Warn
from .preprocess import TINY_STD, Preprocessor, file_line, float_cells


class Targets:
    """Names and scaling of the regression targets: state {"names", "scaling", "center", "scale"}."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.center = np.asarray(state["center"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)

    @classmethod
    def fit(cls, values: np.ndarray, names: list[str], scaling: str, weights: Optional[np.ndarray] = None,
            source: str = "y") -> "Targets":
        """mu and sigma per column of the training targets ``values`` (n, m); sigma = 1 for a
        constant target (it stays constant instead of dividing by zero) or ``scaling: none``.

        ``weights`` (n,) >= 0 (the estimators' sample_weight): the weighted mean and standard
        deviation mu = sum_i w_i y_i / sum_i w_i, sigma^2 = sum_i w_i (y_i - mu)^2 / sum_i w_i,
        so a row of weight 2 scales the targets as that row twice would.

        As for feature columns, a sigma below ``TINY_STD`` (squares of deviations under ~1e-154
        underflow to 0) is measured again on the deviations divided by the largest one: a target
        of 1e-200s is not constant. A mean or sigma that overflows (squares over ~1e154, which
        the metrics square too) is an NnclfError naming the target."""
        if scaling == "standard":
            def std(deviations):
                if weights is None:
                    return deviations.std(axis=0)
                return np.sqrt(np.average(np.square(deviations - np.average(deviations, axis=0, weights=weights)), axis=0, weights=weights))

            with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # an overflow is reported below
                center = values.mean(axis=0) if weights is None else np.average(values, axis=0, weights=weights)
                scale = std(values)
                spread = np.abs(values - center).max(axis=0)
                again = (scale < TINY_STD) & (spread > 0)
                if again.any():
                    unit = std((values[:, again] - center[again]) / spread[again])
                    scale = scale.copy()
                    scale[again] = spread[again] * unit
            for name, c, s in zip(names, center, scale):
                if not (np.isfinite(c) and np.isfinite(s)):
                    raise NnclfError(f"{source}: target '{name}': values too large to scale (mean or standard deviation overflows)")
            scale = np.where(scale > 0, scale, 1.0)
        else:
            center, scale = np.zeros(values.shape[1]), np.ones(values.shape[1])
        return cls({"names": list(names), "scaling": scaling, "center": center.tolist(), "scale": scale.tolist()})

    @property
    def names(self) -> list[str]:
        return self.state["names"]

    def encode(self, values: np.ndarray, dtype="float32", source: str = "y", frame=None) -> np.ndarray:
        """t = (y - mu) / sigma, (n, m); a t beyond ``dtype``'s range (a float32 run's
        ``scaling: none`` target of 1e39, a target far outside the training rows' spread) is
        an error naming the target (and its line, given the ``frame`` the rows were read
        into), not an inf the training would call a divergence."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = ((values - self.center) / self.scale).astype(dtype)
        bad = ~np.isfinite(out) & np.isfinite(values)  # (missing targets stay NaN)
        if bad.any():
            row, k = map(int, np.argwhere(bad)[0])
            where = source if frame is None else f"{source}, line {file_line(frame, row)}"
            raise NnclfError(f"{where}: target '{self.names[k]}': value {values[row, k]:.6g} is too large for "
                             f"{np.dtype(dtype).name} numbers once scaled with the training statistics")
        return out

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """y = t sigma + mu in float64, (n, m): network outputs in the targets' units."""
        return outputs.astype(np.float64) * self.scale + self.center


def target_values(frame, names: list[str], source: str) -> np.ndarray:
    """The target columns as float64 (n, m), NaN where a cell is missing; a cell that is not a
    number (or is infinite) is an error naming its line."""
    import pandas as pd

    out = np.empty((len(frame), len(names)), dtype=np.float64)
    for k, name in enumerate(names):
        series = frame[name]
        if pd.api.types.is_bool_dtype(series):
            raise NnclfError(f"{source}: target column '{name}' holds true/false values; task: regression needs numbers (use task: classification)")
        values = float_cells(series, source, f"target '{name}'", "; task: regression needs numbers", "infinite value; fix or remove the row")
        out[:, k] = values
    return out


def drop_missing_targets(frame, values: np.ndarray, names: list[str], source: str, warn: Warn):
    """(frame, values) without the rows where any target is missing, with a warning counting them."""
    missing = np.isnan(values).any(axis=1)
    if missing.any():
        which = f"'{names[0]}'" if len(names) == 1 else "target"
        warn(f"{source}: {int(missing.sum())} row(s) with a missing {which} value dropped")
        return frame[~missing], values[~missing], int(missing.sum())
    return frame, values, 0


def shuffled_holdout(positions: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) positions, both sorted: round(fraction * n) rows picked by a seeded
    shuffle (no classes to stratify by), at most n - 1 so a row is kept."""
    n = len(positions)
    n_held = min(int(np.floor(fraction * n + 0.5)), n - 1)
    order = rng.permutation(n)
    return np.sort(positions[order[n_held:]]), np.sort(positions[order[:n_held]])


def prepare_real(data, seed: int, dtype: str, warn: Warn, task: str, fold: Optional[tuple[int, int]] = None):
    """``prepare`` for task: regression (y = scaled targets (n, m)) and reconstruction (y = x);
    ``fold`` as there (plain folds: no classes to stratify by)."""
    from .dataset import Prepared, Split, select_features
    from .reading import fingerprint, read_table

    source = data.train
    frame = read_table(source, encoding=data.encoding, delimiter=data.delimiter)
    features = select_features(list(frame.columns), data, source)
    names = data.targets
    dropped = 0
    values = None
    if task == "regression":
        values = target_values(frame, names, source)
        frame, values, dropped = drop_missing_targets(frame, values, names, source, warn)
    if len(frame) < 2:
        what = "row(s) with target values" if task == "regression" else "row(s)"
        raise NnclfError(f"{source}: {len(frame)} {what}; training needs at least 2")
    if getattr(data, "split_seed", None) is not None:  # nnclf tune varies seed, not the split
        seed = data.split_seed
    rng = np.random.default_rng([seed, 0])  # the split's own stream, independent of the model's
    positions = np.arange(len(frame))

    def held_out(fraction, what):
        nonlocal positions
        kept, held = shuffled_holdout(positions, fraction, rng)
        if len(held) == 0:
            raise NnclfError(f"{source}: {len(positions)} rows are too few for data.{what}={fraction}: the split would be empty")
        positions = kept
        return held

    test_pos = held_out(data.test_split, "test_split") if data.test is None and data.test_split > 0 else None
    val_pos = held_out(data.val_split, "val_split") if data.val is None and data.val_split > 0 else None
    if fold is not None:
        from .folds import fold_positions

        positions, val_pos = fold_positions(positions, val_pos, frame.index.to_numpy(), None, fold, seed, source)
    target_key = None if not names else names[0] if len(names) == 1 else list(names)
    pre = Preprocessor.fit(
        frame, features, target_key, source, categorical=data.categorical, max_categories=data.max_categories,
        missing_indicators=data.missing_indicators, scaling=data.scaling, warn=warn, rows=positions,
    )
    x_all = pre.transform(frame, source, dtype, warn)
    rows_all = frame.index.to_numpy()
    targets = None
    if task == "regression":
        targets = Targets.fit(values[positions], names, data.target_scaling, source=source)
        y_all = targets.encode(values, dtype, source, frame)
    else:
        y_all = x_all

    def split_of(pos) -> Split:
        x = x_all[pos]
        if task == "regression":
            return Split(x, y_all[pos], rows_all[pos], source, values[pos])
        return Split(x, x, rows_all[pos], source)

    def separate(path) -> Optional[Split]:
        if path is None:
            return None
        other = read_table(path, encoding=data.encoding, delimiter=data.delimiter)
        missing = [n for n in names if n not in other.columns] if task == "regression" else []
        if missing:
            raise NnclfError(f"{path}: target column '{missing[0]}' not found")
        x = None
        if task == "regression":
            vals = target_values(other, names, path)
            other, vals, _ = drop_missing_targets(other, vals, names, path, warn)
            x = pre.transform(other, path, dtype, warn)
            return Split(x, targets.encode(vals, dtype, path, other), other.index.to_numpy(), path, vals)
        x = pre.transform(other, path, dtype, warn)
        return Split(x, x, other.index.to_numpy(), path)

    val = split_of(val_pos) if val_pos is not None else separate(data.val)
    test = split_of(test_pos) if test_pos is not None else separate(data.test)
    train = split_of(positions)
    files = {role: fingerprint(path) for role, path in (("train", data.train), ("val", data.val), ("test", data.test)) if path}
    return Prepared(pre, None, train, val, test, files, task=task, targets=targets)


# -- reconstruction ------------------------------------------------------------------------------
def code_layer(hidden: list[int], code: Optional[int]) -> int:
    """The index into ``hidden`` of the code layer: ``code`` or the first narrowest layer."""
    return int(np.argmin(hidden)) if code is None else int(code)


class PCABaseline:
    """PCA with k components fitted on training rows x (n, d): x_hat = mu + (x - mu) V_k^T V_k,
    with V_k (k, d) the top right-singular vectors of the centred rows. The best linear
    k-dimensional code in squared error: the baseline a k-unit autoencoder should beat."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        self.mean, self.components = np.asarray(mean, np.float64), np.asarray(components, np.float64)

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> "PCABaseline":
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:k])

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        centred = np.asarray(x, dtype=np.float64) - self.mean
        return centred @ self.components.T @ self.components + self.mean


def column_groups(pre: Preprocessor) -> list[tuple[str, int]]:
    """(original column name, number of input columns it became) in feature-matrix order."""
    return [(c.name, c.width) for c in pre.columns]


def per_feature_error(squared: np.ndarray, groups: list[tuple[str, int]]) -> dict[str, float]:
    """Mean over rows of the squared error of each input column, summed over the columns one
    original column became (a categorical's one-hot block, a missing-value indicator)."""
    per_column = squared.mean(axis=0)
    out, j = {}, 0
    for name, width in groups:
        out[name] = float(per_column[j : j + width].sum())
        j += width
    return out
