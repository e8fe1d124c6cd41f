"""Cross-validated trial scores (``tune.cv: K``): the folds of the training pool and their runs.

The folds themselves (fold 0 = the config's validation split, folds 1..K-1 the rest of the pool
dealt into K-1 parts, stratified for classification) are the data layer's:
``nnclf.data.folds``. With ``data.val_split`` = 1/K (required, ``space._parse_cv``) the K folds
are equal to within rounding; every trial is scored on the same folds.

Fold k >= 1 trains on pool \\ fold k and is scored on fold k. Its data is prepared as for any
split (``nnclf.data.dataset.prepare(..., fold=(k, K))``, through the worker's prepared-data
memo, so the CSV is read once per fold and study, not per trial): the preprocessing (imputation,
one-hot categories, feature scaling, regression targets' scaling) is fitted on the fold's
training rows alone, so no statistic of a fold's validation rows reaches its training, as in
scikit-learn's ``cross_val_score`` over a pipeline. With ``data.cache: mmap`` (data that is not
held in memory) a fold's arrays are instead cut from the trial's memory-mapped arrays
(``fold_data``): there its features are scaled with the statistics of fold 0's training rows,
which contain fold k's rows (their features only; never labels, targets or test rows).
Fold k trains from its own seed (a word of SeedSequence([trial seed, k])) with the trial's
every other setting, early stopping on its own validation rows; its value is the metric at
its monitored best epoch, as fold 0's is.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..data.folds import pool_folds
from ..errors import NnclfError


def fold_seed(trial_seed: int, fold: int) -> int:
    """Fold ``fold``'s seed (fold 0 keeps the trial's own)."""
    if fold == 0:
        return int(trial_seed)
    return int(np.random.SeedSequence([int(trial_seed), int(fold)]).generate_state(1)[0])


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
    """A shallow copy of ``prepared`` whose train/val splits are fold ``fold``'s, cut from its
    arrays (fold 0: the prepared splits themselves): the memory-mapped cache's folds, whose
    features keep ``prepared``'s preprocessing (the module docstring). The test split is the
    same object, never read by a fold."""
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


def prepare_fold(cfg, prepared, fold: int, k: int, split_seed: int):
    """Fold ``fold``'s data for trial config ``cfg`` (``data.split_seed`` fixed by the study):
    prepared from the data files with the fold's own preprocessing, through this process's
    memo; with ``data.cache: mmap`` cut from the trial's ``prepared`` arrays instead (the module
    docstring)."""
    from .. import runs
    from .prepared import process_memo

    if fold == 0:
        return prepared
    if runs._cache_mode(cfg, lambda m: None) == "mmap":
        return fold_data(prepared, fold, k, split_seed)
    # (the trial's run gave the data's warnings once; a fold's would repeat them)
    return process_memo().prepare(cfg.data, cfg.seed, cfg.training.dtype, lambda m: None, cfg.task, fold=(fold, k))


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
