"""The Python face of the CLI: ``nnclf.train`` (= ``nnclf train``) and ``nnclf.load`` (a trained
model to predict and evaluate with, as ``nnclf predict`` / ``nnclf evaluate --json`` do).

Both call the same library functions as the CLI (``nnclf.runs.train``, ``nnclf.model``,
``nnclf.predict``), so the numbers are the CLI's, bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import NnclfError

__all__ = ["Model", "load", "train"]


def train(config, *, runs_dir="runs", name=None, callbacks=(), warn: Callable[[str], None] | None = None, **overrides):
    """Train as ``nnclf train CONFIG --set KEY=VALUE ...`` does, and return the run.

    Parameters
    ----------
    config : str, Path or dict
        A YAML config file, or the same document as a mapping (relative data paths then
        resolve against the current folder).
    runs_dir : str or Path, default="runs"
        Folder in which the run folder is made.
    name : str, optional
        The run folder's name (default: CONFIG-STEM-DATE-TIME).
    callbacks : list, optional
        Objects with ``on_batch_end(trainer, epoch, batch, n_batches, loss)`` and/or
        ``on_epoch_end(trainer, record, improved)`` methods.
    warn : callable, optional
        Receives each data warning as one line (default: ``warnings.warn``).
    **overrides
        Config keys with ``__`` for the dots, e.g. ``optimizer__lr=0.01``,
        ``model__hidden=[32]``, ``training__epochs=5`` (values are Python values).

    Returns
    -------
    nnclf.runs.RunResult
        ``folder`` (the run folder: pass it to ``nnclf.load``), ``history`` (the metrics.csv
        rows), ``summary`` (summary.json) and ``interrupted``.
    """
    from .runs import train as train_run

    if warn is None:
        import warnings

        def warn(message: str) -> None:
            warnings.warn(message, stacklevel=3)

    values = {key.replace("__", "."): value for key, value in overrides.items()}
    config = config if isinstance(config, dict) else Path(config)
    return train_run(config, (), runs_dir, name, list(callbacks), warn, None, values=values)


def load(run, checkpoint: str = "auto") -> "Model":
    """A trained model from a run folder, a checkpoint file, or a ``RunResult``.

    Parameters
    ----------
    run : str, Path or RunResult
        A run folder (``RUN/checkpoints/{checkpoint}.npz`` is read), a checkpoint ``.npz``
        (also one written by ``Classifier.save``), or what ``nnclf.train`` returned.
    checkpoint : {"auto", "best", "last", "calibrated", "refit"}, default="auto"
        Which checkpoint of a run folder, as the CLI's ``--checkpoint`` (auto: refit.npz when
        training.refit made one, else best.npz).

    Returns
    -------
    Model
    """
    from .model import TrainedModel
    from .predict import checkpoint_path

    folder = getattr(run, "folder", run)
    path = checkpoint_path(folder, checkpoint)
    return Model(TrainedModel.load(path), path)


class Model:
    """A trained nnclf model: predictions and reports on DataFrames, as the CLI makes them.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
        The class labels, in the order of ``predict_proba``'s columns.
    config : dict
        The run's resolved config (``RUN/config.yaml``).
    schema : dict
        Column typing and fitted preprocessing (``RUN/schema.json``).
    feature_names_in_ : ndarray of str
        The feature columns the model reads.
    path : Path
        The checkpoint file.
    """

    def __init__(self, trained, path: Path):
        self._model = trained
        self.path = Path(path)
        values = trained.labels.values
        self.classes_ = np.array(values)

    @property
    def config(self) -> dict[str, Any]:
        return self._model.meta["config"]

    @property
    def schema(self) -> dict[str, Any]:
        return self._model.preprocessor.state

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.array(self._model.preprocessor.features, dtype=object)

    @property
    def n_features_in_(self) -> int:
        return len(self._model.preprocessor.features)

    def __repr__(self) -> str:
        return f"nnclf.Model({str(self.path)!r}, classes={self.classes_.tolist()})"

    def _frame(self, X):
        import pandas as pd

        if hasattr(X, "columns"):
            return X
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise NnclfError(f"expected a DataFrame with columns {self._model.preprocessor.features[:5]}... or an array of "
                             f"{self.n_features_in_} columns in that order, got shape {X.shape}")
        return pd.DataFrame(X, columns=self._model.preprocessor.features)

    def predict_proba(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """Class probabilities (n, K) for the rows of a DataFrame (columns by name; extra
        columns ignored), the numbers ``nnclf predict`` writes (before rounding).

        Parameters
        ----------
        X : DataFrame, or array-like with the feature columns in ``feature_names_in_`` order.
        warn : callable, optional
            Receives warnings about the data (unseen categories, missing values) as lines.
        """
        return self._predict(X, warn)[1]

    def _predict(self, X, warn):
        from .predict import _finite_predict

        frame = self._frame(X)
        return _finite_predict(self._model, self._model.features(frame, "X", warn or _warn), frame, "X")

    def predict(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """The label of each row (n,), as ``nnclf predict``'s ``prediction`` column."""
        classes, _ = self._predict(X, warn)
        return np.asarray(self._model.labels.decode(classes).tolist())

    def evaluate(self, frame, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The report of ``nnclf evaluate --json`` on a labelled DataFrame (target column included)."""
        from .predict import evaluate_frame

        return evaluate_frame(self._model, frame, "DataFrame", self.path, warn or _warn)

    def encode(self, frame):
        """Reconstruction codes: not available, this nnclf trains classifiers only."""
        raise NnclfError(f"{self.path}: encode needs a model trained with task: reconstruction; this one is a classifier")


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)
