"""Cross-validation folds of the training pool (``nnclf tune``'s ``tune.cv: K``).

The *pool* is every row that is not a test row: the ordinary split's training rows T and its
validation rows V. The folds partition the pool:

    fold 0      = V, the config's own validation split
    folds 1..K-1 = T dealt into K-1 parts: for classification each class's rows, shuffled,
                  are dealt in turn (one running count over the classes), so every fold holds
                  n_c / (K - 1) rows of class c to within one and the folds' sizes differ by at
                  most one; for regression and reconstruction a plain shuffle dealt the same way

The dealing draws from its own stream of the split seed and K (never from a model's seed),
and it depends on the data-row numbers only, not on the order the rows come in, so every
trial of a study, and every caller that asks for a fold, deals the same folds.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

FOLD_STREAM = 0xC5  # tags the dealing's random stream (apart from the split's and the models')


def pool_folds(rows: np.ndarray, is_val: np.ndarray, labels: Optional[np.ndarray], k: int, split_seed: int) -> np.ndarray:
    """The fold (0..k-1) of every pool row.

    rows (n,): data-row numbers of the pool, any order; is_val (n,) bool: the config's
    validation rows (fold 0); labels (n,) class indices, or None (plain folds). Returns (n,)
    int64 aligned with ``rows``."""
    n = len(rows)
    folds = np.zeros(n, dtype=np.int64)
    rest = np.flatnonzero(~is_val)
    rest = rest[np.argsort(rows[rest], kind="stable")]  # a canonical order: the data-row numbers
    rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), FOLD_STREAM, int(k)]))
    if labels is None:
        order = rest[rng.permutation(len(rest))]
    else:
        parts = []
        for c in np.unique(labels[rest]):
            members = rest[labels[rest] == c]
            parts.append(members[rng.permutation(len(members))])
        order = np.concatenate(parts) if parts else rest
    folds[order] = 1 + np.arange(len(order)) % (k - 1)
    return folds


def fold_positions(train: np.ndarray, val: Optional[np.ndarray], rows: np.ndarray, labels: Optional[np.ndarray],
                   fold: tuple[int, int], split_seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, validation positions) of fold ``fold = (f, K)``, both in data-row
    order, from the ordinary split's positions ``train`` and ``val`` into ``rows`` (the
    data-row numbers) and ``labels`` (class indices, or None for real-valued targets).
    Fold 0 is the ordinary split itself."""
    from ..errors import NnclfError

    f, k = int(fold[0]), int(fold[1])
    if val is None or len(val) == 0:
        raise NnclfError(f"{source}: cross-validation folds need the validation rows of data.val_split")
    if not 0 <= f < k:
        raise ValueError(f"fold {f} of {k} does not exist")
    if f == 0:
        return train, val
    pool = np.sort(np.concatenate([train, val]))
    pool = pool[np.argsort(rows[pool], kind="stable")]  # data-row order, as the ordinary splits keep their rows
    folds = pool_folds(rows[pool], np.isin(pool, val), labels[pool] if labels is not None else None, k, split_seed)
    return pool[folds != f], pool[folds == f]
