"""Cross-validated trial scores (``tune.cv: K``): the folds of the training pool and their runs.

The *pool* is every row that is not a test row: the ordinary run's training rows T and its
validation rows V (``data.val_split`` of the pool, stratified for classification). The folds
partition the pool:

    fold 0      = V, the config's own validation split, so fold 0's run is exactly the
                  ordinary run (the trial's run folder, which ``nnclf train best.yaml`` repeats)
    folds 1..K-1 = T dealt into K-1 parts: for classification each class's rows, shuffled,
                  are dealt in turn (one running count over the classes), so every fold holds
                  n_c / (K - 1) rows of class c to within one and the folds' sizes differ by at
                  most one; for regression and reconstruction a plain shuffle dealt the same way

With ``data.val_split`` = 1/K (required, ``space._parse_cv``) the K folds are equal to within
rounding. The dealing draws from its own stream of ``data.split_seed`` and K, not from the
trial, so every trial is scored on the same folds.

Fold k >= 1 trains on pool \\ fold k and is scored on fold k. Its arrays are cut from the
prepared arrays of the ordinary run (``nnclf.tune.prepared``: no CSV is read again), i.e. the
features are scaled, imputed and one-hot encoded (and regression targets standardised) with
the statistics of T, which contains fold k: those unsupervised statistics see fold k's
features (the labels, and every metric, are untouched; regression metrics are in target units).
Fold k trains from its own seed (a word of SeedSequence([trial seed, k])) with the trial's
every other setting, early stopping on its own validation rows; its value is the metric at
its monitored best epoch, as fold 0's is.
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import numpy as np

from ..errors import NnclfError

FOLD_STREAM = 0xC5  # tags the dealing's random stream (apart from the split's and the models')


def fold_seed(trial_seed: int, fold: int) -> int:
    """Fold ``fold``'s seed (fold 0 keeps the trial's own)."""
    if fold == 0:
        return int(trial_seed)
    return int(np.random.SeedSequence([int(trial_seed), int(fold)]).generate_state(1)[0])


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


def check_folds(prepared, k: int, source: str = "tune.cv") -> None:
    """Every fold must hold validation rows, and for classification every class must have a
    row in every fold (K rows of it in the pool at least)."""
    n = len(prepared.train) + len(prepared.val)
    if n < k:
        raise NnclfError(f"{source}: {k} folds need at least {k} rows in the training pool, it has {n}")
    if prepared.labels is not None:
        y = np.concatenate([prepared.train.y, prepared.val.y])
        counts = np.bincount(y, minlength=len(prepared.labels))
        present = counts[counts > 0]
        smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        if present.min() < k:
            raise NnclfError(f"{source}: {k} folds need at least {k} rows of every class in the training pool; "
                             f"class {prepared.labels.values[smallest]!r} has {int(counts[smallest])}; use fewer folds")


def _cut(split, positions):
    from ..data.dataset import Split

    values = split.values[positions] if split.values is not None else None
    return Split(split.x[positions], split.y[positions], split.rows[positions], split.source, values)


def _join(a, b):
    """The rows of two splits in one, in data-row order (as the ordinary split keeps them)."""
    from ..data.dataset import Split

    rows = np.concatenate([a.rows, b.rows])
    order = np.argsort(rows, kind="stable")
    values = np.concatenate([a.values, b.values])[order] if a.values is not None else None
    return Split(np.concatenate([a.x, b.x])[order], np.concatenate([a.y, b.y])[order], rows[order], a.source, values)


def fold_data(prepared, fold: int, k: int, split_seed: int):
    """A shallow copy of ``prepared`` whose train/val splits are fold ``fold``'s (fold 0: the
    prepared splits themselves). The test split is the same object, never read by a fold."""
    if fold == 0:
        return prepared
    pool = _join(prepared.train, prepared.val)
    is_val = np.isin(pool.rows, prepared.val.rows)
    labels = pool.y if prepared.labels is not None else None
    folds = pool_folds(pool.rows, is_val, labels, k, split_seed)
    out = copy.copy(prepared)
    out.train = _cut(pool, np.flatnonzero(folds != fold))
    out.val = _cut(pool, np.flatnonzero(folds == fold))
    return out


def train_fold(cfg, prepared, metric: str, stop=None) -> dict:
    """Train ``cfg`` (the fold's seed already in it) on ``prepared``'s fold in memory (no run
    folder) and return {"value", "best_epoch", "epochs", "interrupted"}; ``value`` is
    ``metric`` at the monitored best epoch (the last epoch when nothing was monitored).
    Raises TrainingDiverged as a run does."""
    from ..runs import StopWatcher, _make_trainer
    from ..threads import training_threads

    trainer = _make_trainer(cfg, prepared, [])

    trainer.callbacks = [StopWatcher(stop)]
    n = len(prepared.train)
    threads = training_threads(cfg.training.threads, trainer, n, len(prepared.val))
    trainer.speed = threads
    with threads, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        trainer.fit(prepared.train.x, prepared.train.y, prepared.val.x, prepared.val.y)
    record = trainer.history[trainer.best_epoch - 1] if trainer.best_epoch else (trainer.history[-1] if trainer.history else {})
    value = record.get(metric)
    return {"value": float(value) if value is not None and math.isfinite(value) else None,
            "best_epoch": trainer.best_epoch or trainer.epoch, "epochs": trainer.epoch, "interrupted": bool(trainer.interrupted)}


def cv_epochs(best_epochs: list[int]) -> int:
    """The final model's epoch count: the folds' mean best epoch, rounded (half up), >= 1."""
    return max(1, int(math.floor(sum(best_epochs) / len(best_epochs) + 0.5)))
