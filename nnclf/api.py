"""The Python face of the CLI: ``nnclf.train`` (= ``nnclf train``) and ``nnclf.load`` (a trained
model to predict, evaluate and encode with, as ``nnclf predict`` / ``nnclf evaluate --json`` /
``nnclf encode`` do), for every task: classification, regression, reconstruction.

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

    values = {key.replace("__", "."): _texts(value) for key, value in overrides.items()}
    config = _texts(config) if isinstance(config, dict) else Path(config)
    return train_run(config, (), runs_dir, name, list(callbacks), warn, None, values=values)


def load(run, checkpoint: str = "auto") -> "Model":
    """A trained model from a run folder, a checkpoint file, or a ``RunResult``.

    Parameters
    ----------
    run : str, Path or RunResult
        A run folder (``RUN/checkpoints/{checkpoint}.npz`` is read), a checkpoint ``.npz``
        (also one written by ``Classifier.save``, ``Regressor.save`` or ``Autoencoder.save``),
        or what ``nnclf.train`` returned.
    checkpoint : {"auto", "best", "last", "calibrated", "refit"}, default="auto"
        Which checkpoint of a run folder, as the CLI's ``--checkpoint`` (auto: refit.npz when
        training.refit made one, else best.npz).

    Returns
    -------
    Model
        Its ``predict`` / ``predict_proba`` / ``evaluate`` / ``encode`` give the CLI's numbers
        for the run's task.

    Examples
    --------
    >>> model = nnclf.load("runs/iris-2026-01-01-120000")           # doctest: +SKIP
    >>> model.predict(pandas.read_csv("data/iris.csv"))[:2]          # doctest: +SKIP
    array(['setosa', 'setosa'], dtype='<U10')
    """
    from .model import TrainedModel
    from .predict import CHECKPOINTS, checkpoint_path

    if not isinstance(checkpoint, str) or checkpoint not in CHECKPOINTS:  # (checkpoint_path's message names the CLI's --checkpoint)
        raise NnclfError(f"checkpoint: expected {', '.join(map(repr, CHECKPOINTS))}, got {checkpoint!r}")
    folder = getattr(run, "folder", run)
    if checkpoint != "auto" and Path(folder).is_file():
        # as the CLI's --checkpoint with a file: it chooses among a run folder's checkpoints, and
        # with a file it was silently ignored (load("best.npz", checkpoint="last") gave best)
        raise NnclfError(f"checkpoint={checkpoint!r}: {folder} is a checkpoint file, the model used as it is; "
                         "checkpoint chooses among a run folder's checkpoints (leave it out, or give the run folder)")
    path = checkpoint_path(folder, checkpoint)
    return Model(TrainedModel.load(path), path)


class Model:
    """A trained nnclf model: predictions and reports on DataFrames, as the CLI makes them.

    What ``predict`` returns follows the run's ``task``, as ``nnclf predict``'s columns do:
    class labels (classification), values in the targets' units (regression), or each row's
    reconstruction error (reconstruction). ``encode`` gives a reconstruction model's codes.

    Attributes
    ----------
    task : {"classification", "regression", "reconstruction"}
        What the model was trained for.
    classes_ : ndarray of shape (K,) or None
        The class labels, in the order of ``predict_proba``'s columns (classification only).
    target_names : list of str
        The target columns (regression; the label column for classification; [] for
        reconstruction).
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
        self.task = trained.task
        self.classes_ = np.array(trained.labels.values) if self.task == "classification" else None
        self.target_names = list(trained.target_names)

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
        if self.task == "classification":
            return f"nnclf.Model({str(self.path)!r}, classes={self.classes_.tolist()})"
        if self.task == "regression":
            return f"nnclf.Model({str(self.path)!r}, task='regression', targets={self.target_names})"
        return f"nnclf.Model({str(self.path)!r}, task='reconstruction', code_units={self._code_units})"

    @property
    def _code_units(self) -> int:
        return int(self._model.net.sizes[int(self._model.meta["code_layer"]) + 1])

    def _need(self, task: str, what: str) -> None:
        if self.task != task:
            raise NnclfError(f"{self.path}: {what} needs a model trained with task: {task}; this one is task: {self.task}")

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
        self._need("classification", "predict_proba")
        return self._predict(X, warn)[1]

    def _inputs(self, X, warn):
        frame = self._frame(X)
        return frame, self._model.features(frame, "X", warn or _warn)

    def _predict(self, X, warn):
        from .predict import _finite_predict

        frame, x = self._inputs(X, warn)
        return _finite_predict(self._model, x, frame, "X")

    def _outputs(self, X, warn):
        from .predict import _finite_outputs

        frame, x = self._inputs(X, warn)
        return x, _finite_outputs(self._model, x, frame, "X")

    def predict(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """What ``nnclf predict`` writes for each row, before its rounding to text:

        - classification: the label (n,), the ``prediction`` column;
        - regression: the values in the targets' units, float64, (n,) for one target (the
          ``prediction`` column) or (n, m) for several (``prediction_<target>``);
        - reconstruction: the reconstruction error 1/d sum_j (x_hat_j - x_j)^2 (n,), float64,
          the ``reconstruction_error`` column.
        """
        if self.task == "classification":
            classes, _ = self._predict(X, warn)
            return np.asarray(self._model.labels.decode(classes).tolist())
        x, out = self._outputs(X, warn)
        if self.task == "regression":
            return out[:, 0] if out.shape[1] == 1 else out
        return np.square(out - x, dtype=np.float64).mean(axis=1)

    def reconstruct(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """A reconstruction model's output x_hat (n, d), in the preprocessed space its
        inputs are compared in (the columns of ``features``)."""
        self._need("reconstruction", "reconstruct")
        return self._outputs(X, warn)[1]

    def features(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """The preprocessed rows (n, d) the network reads (imputed, one-hot encoded, scaled
        with the run's fitted state)."""
        return self._inputs(X, warn)[1]

    def evaluate(self, frame, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The report of ``nnclf evaluate --json`` on a labelled DataFrame (target column included)."""
        from .data.preprocess import refuse_repeated
        from .predict import evaluate_frame

        if not hasattr(frame, "columns"):  # (an array failed with "AttributeError: ... no attribute 'columns'")
            raise NnclfError(f"evaluate: expected a DataFrame with the feature columns and the target column, got {type(frame).__name__}")
        refuse_repeated(frame, [*self._model.preprocessor.features, *self.target_names], "DataFrame")
        return evaluate_frame(self._model, frame, "DataFrame", self.path, warn or _warn)

    def encode(self, X, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """The code layer's activations (n, k) of a reconstruction model: the numbers
        ``nnclf encode`` writes as ``code_0 .. code_{k-1}`` (before its rounding to text).

        Parameters
        ----------
        X : DataFrame, or array-like with the feature columns in ``feature_names_in_`` order.
        warn : callable, optional
            Receives warnings about the data (unseen categories, missing values) as lines.
        """
        from .predict import _refuse_overflow

        self._need("reconstruction", "encode")
        frame, x = self._inputs(X, warn)
        with np.errstate(over="ignore", invalid="ignore"):
            codes = self._model.encode(x)
        _refuse_overflow(codes, frame, "X")  # as predict's outputs: NaN codes were returned silently
        return codes


def _texts(value):
    """Paths (``data__train=Path("x.csv")``, a dict config's ``Path`` values) as the texts the
    config schema takes: a ``PosixPath`` was refused ("input should be a valid string")."""
    import os

    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_texts(v) for v in value)
    return value


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)
