"""scikit-learn compatible estimators over nnclf's engine: ``Classifier``, ``Regressor``, ``Autoencoder``.

They are a thin face over the same pieces as the CLI: the constructor's parameters are mapped
onto the config schema (``nnclf.config.Config``, so a wrong key or value gives the same one-line,
did-you-mean error), and ``fit`` builds the network, loss, optimizer, schedule and early stopping
with ``nnclf.build`` and trains with ``nnclf.trainer.Trainer``, exactly as ``nnclf train`` does.

scikit-learn is optional. Without it the estimators work on their own (``get_params`` /
``set_params`` are duck-typed, as scikit-learn's ``clone`` expects); with it installed, inputs are
checked by scikit-learn's own ``validate_data`` (so messages and warnings are those of every
scikit-learn estimator) and ``__sklearn_tags__`` describes them to pipelines and searches.

Inputs:

- a NumPy array (or anything array-like) is used as given, by scikit-learn's convention: no
  scaling, no imputation; put a ``StandardScaler`` in a pipeline in front;
- a pandas DataFrame goes through nnclf's own preprocessing (``nnclf.data.preprocess``: median
  imputation, one-hot encoding of text columns, ``scaling``), fitted on the rows given to
  ``fit``, unless ``preprocess=False``.
"""

from __future__ import annotations

import copy
import inspect
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NnclfError
from .threads import on_one_thread

# batch_size="auto": this many rows per mini-batch for the first-order optimizers (the config's
# training.batch_size default); every row for the full-batch methods
AUTO_BATCH = 64

__all__ = ["Autoencoder", "Classifier", "NotFittedError", "Regressor"]


class NotFittedError(NnclfError, ValueError, AttributeError):
    """The estimator is used before ``fit`` (a ValueError and an AttributeError, like
    scikit-learn's own ``NotFittedError``)."""


_NOT_FITTED = []


def _not_fitted_type() -> type:
    """``NotFittedError``, also a subclass of scikit-learn's when that is installed (its checks
    and ``except NotFittedError`` clauses in user code expect exactly that class)."""
    if not _NOT_FITTED:
        try:
            from sklearn.exceptions import NotFittedError as SkNotFitted
        except ImportError:
            _NOT_FITTED.append(NotFittedError)
        else:
            _NOT_FITTED.append(type("NotFittedError", (NotFittedError, SkNotFitted), {"__module__": __name__}))
    return _NOT_FITTED[0]


def _sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


class _Base:
    """get_params / set_params / repr the scikit-learn way, without depending on it: the
    parameters are the keyword arguments of ``__init__``, stored under their own names."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator, by name (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "_Base":
        """Set parameters by name; an unknown name is an error naming the closest valid one."""
        from .registry import did_you_mean

        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__}: unknown parameter {name!r}{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name)
            same = value is default
            if not same:
                try:
                    same = bool(value == default) and type(value) is type(default)
                except Exception:  # arrays and the like: shown
                    same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise _not_fitted_type()(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator."
            )


# parameter -> (config section, key): the rest of the config schema is reached through
# ``optimizer`` / ``schedule`` / ``early_stopping`` given as mappings of their section's keys
_CONFIG_KEYS = {
    "hidden": ("model", "hidden"),
    "activation": ("model", "activation"),
    "init": ("model", "init"),
    "dropout": ("model", "dropout"),
    "loss": ("loss", "name"),
    "weight_decay": ("loss", "weight_decay"),
    "label_smoothing": ("loss", "label_smoothing"),
    "class_weight": ("loss", "class_weights"),
    "lr": ("optimizer", "lr"),
    "warmup_epochs": ("schedule", "warmup_epochs"),
    "epochs": ("training", "epochs"),
    "batch_size": ("training", "batch_size"),
    "shuffle": ("training", "shuffle"),
    "dtype": ("training", "dtype"),
    "clip_norm": ("training", "clip_norm"),
    "threads": ("training", "threads"),
    "categorical": ("data", "categorical"),
    "max_categories": ("data", "max_categories"),
    "missing_indicators": ("data", "missing_indicators"),
    "scaling": ("data", "scaling"),
    "validation_fraction": ("data", "val_split"),
    "target_scaling": ("data", "target_scaling"),
    "delta": ("loss", "delta"),
    "code_layer": ("model", "code_layer"),
}


def _plain(value):
    """Tuples and NumPy scalars as the YAML-like values the schema takes."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {(k.item() if isinstance(k, np.generic) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _section(value, name: str) -> dict:
    """``optimizer="adam"`` or ``optimizer={"name": "momentum", "momentum": 0.95}``."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        return dict(_plain(value))
    raise NnclfError(f"{name}: expected a name or a mapping of the config's {name} keys, got {value!r}")


def _seed(random_state) -> int:
    """scikit-learn's random_state: an int seeds; None draws a fresh seed; a RandomState draws from it."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise NnclfError(f"random_state: must be >= 0, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63 - 1))
    raise NnclfError(f"random_state: expected None, an integer or a numpy RandomState, got {random_state!r}")


class _Network(_Base):
    """What every nnclf estimator shares: the parameters, the config they make, fitting."""

    _task = "classification"
    _source = "estimator"
    _supervised = True  # fit needs y
    _score_metric = "val_accuracy"  # the metrics.csv column validation_scores_ reads (higher is better)

    def _config(self, target=None):
        """The validated ``Config`` these parameters describe (errors name the parameter's key)."""
        from .config import validate

        data: dict[str, Any] = {"train": f"({type(self).__name__}.fit)", "test_split": 0.0}
        if target is not None:
            data["target"] = target
        raw: dict[str, Any] = {"seed": _seed(self.random_state), "task": self._task, "data": data}
        params = set(self._get_param_names())
        for param, (section, key) in _CONFIG_KEYS.items():
            if param not in params:
                continue
            value = getattr(self, param)
            if param == "delta" and self.loss != "huber" and value == 1.0:
                continue  # the schema refuses loss.delta for any loss but huber; 1.0 is its default
            if param == "validation_fraction" and value is None:
                value = 0.1 if self.early_stopping not in (None, False) else 0.0
            if param == "class_weight" and value is not None and not isinstance(value, (str, dict)):
                raise NnclfError(f"class_weight: expected None, 'balanced' or a mapping of class to weight, got {value!r}")
            if param == "class_weight" and isinstance(value, dict):
                value = self._class_weight_keys(_plain(value))
            if param == "batch_size" and value is None:
                value = "full"
            if param == "batch_size" and isinstance(value, str) and value == "auto":
                from .engine.fullbatch import FULL_BATCH

                value = "full" if _section(self.optimizer, "optimizer").get("name") in FULL_BATCH else AUTO_BATCH
            raw.setdefault(section, {})[key] = _plain(value)
        raw["optimizer"] = {**_section(self.optimizer, "optimizer"), **raw["optimizer"]}
        if self.schedule is not None:
            raw["schedule"] = {**_section(self.schedule, "schedule"), **raw.get("schedule", {})}
        if self.early_stopping not in (None, False):
            raw["training"]["early_stopping"] = {} if self.early_stopping is True else _section(self.early_stopping, "early_stopping")
        return validate(raw, type(self).__name__)

    def _check_options(self) -> None:
        """The parameters the estimator reads itself (the schema checks the rest): read as
        truth values, warm_start="no" continued the last fit and verbose="no" printed; and
        preprocess="yes" was accepted silently whenever X was an array."""
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise NnclfError(f"warm_start: expected True or False, got {self.warm_start!r}")
        if not isinstance(self.verbose, (bool, np.bool_, int, np.integer)):  # (verbose=1, scikit-learn's habit, prints)
            raise NnclfError(f"verbose: expected True or False, got {self.verbose!r}")
        if not (self.preprocess is True or self.preprocess is False or (isinstance(self.preprocess, str) and self.preprocess == "auto")):
            raise NnclfError(f"preprocess: expected True, False or 'auto', got {self.preprocess!r}")

    # -- input handling ------------------------------------------------------------------
    def _uses_preprocessing(self, X) -> bool:
        """``preprocess``: True, every DataFrame; "auto", a DataFrame with a column that is not
        numbers (text, categories, dates); False, none. Decided by dtypes, never by values, so
        every fold of one DataFrame is treated alike."""
        if self.preprocess is False or not _is_frame(X):
            return False
        if self.preprocess is True:
            return True
        if self.preprocess != "auto":
            raise NnclfError(f"preprocess: expected True, False or 'auto', got {self.preprocess!r}")
        import pandas as pd

        return not all(pd.api.types.is_numeric_dtype(t) for t in X.dtypes)

    _y_checks: dict[str, Any] = {"y_numeric": False}  # validate_data's options for y

    def _validate_X(self, X, reset: bool, y=None, fitting: bool = False):
        """(features as float array or DataFrame, y or None); scikit-learn's checks when installed.
        ``fitting`` with a supervised estimator: y is required (None is scikit-learn's error)."""
        frame = self._uses_preprocessing(X) if reset else getattr(self, "preprocessor_", None) is not None
        with_y = fitting and self._supervised
        if with_y and y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        if _sklearn_available():
            from sklearn.utils.validation import validate_data

            if frame:
                X_checked = X
                if with_y:
                    y = self._check_frame_y(y, len(X))
                validate_data(self, X, skip_check_array=True, reset=reset)
            else:
                dtype = self._input_dtype(fitting)
                if not with_y:
                    X_checked = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], order="C")
                else:
                    X_checked, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32], order="C", **self._y_checks)
                with np.errstate(over="ignore"):  # (an overflow is the error just below)
                    cast = np.ascontiguousarray(X_checked, dtype=dtype)
                # scikit-learn checked the float64 values; a finite one beyond float32's range
                # becomes inf here (fit diverged, predict gave NaN probabilities and a label)
                if cast.dtype != X_checked.dtype and not np.isfinite(cast).all():
                    largest = float(np.max(np.abs(X_checked)))
                    raise ValueError(
                        f"Input X contains a value too large for dtype('{dtype}'), the estimator's dtype "
                        f"(largest |x| {largest:.3g}); scale X, or use dtype='float64'"
                    )
                X_checked = cast
            return X_checked, y
        return _minimal_validate(self, X, y if with_y else None, reset, frame, self._y_checks.get("multi_output", False),
                                 self._input_dtype(fitting))

    def _input_dtype(self, fitting: bool) -> str:
        """The float type arrays are cast to: the fitted network's when predicting (a later
        set_params(dtype=...) without a refit refused 1e300 for a float64 model), else ``dtype``."""
        if not fitting and self.__sklearn_is_fitted__():
            return str(self.net_.dtype)
        return self.dtype if self.dtype in ("float32", "float64") else "float32"

    def _check_frame_y(self, y, n: int):
        """y beside a preprocessed DataFrame (scikit-learn installed): one column of labels."""
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        y = column_or_1d(np.asarray(y), warn=True)
        check_consistent_length(y, np.empty((n, 0)))
        return y

    def _features(self, X, dtype=None, warn=lambda m: None) -> np.ndarray:
        """The float matrix the network reads: preprocessed DataFrame rows, or the array itself."""
        if getattr(self, "preprocessor_", None) is None:
            return X
        import pandas as pd

        if not _is_frame(X):  # an array after fitting on a DataFrame: columns in the fitted order
            X = pd.DataFrame(np.asarray(X), columns=self.preprocessor_.features)
        return self.preprocessor_.transform(X, "X", dtype or self.net_.dtype, warn)

    # -- fitting --------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, classes=None, incremental: bool = False):
        from .build import class_weight_vector
        from .threads import training_threads

        self._check_options()
        first = not (incremental or self.warm_start) or not self.__sklearn_is_fitted__()
        given = y
        X, y = self._validate_X(X, reset=first, y=y, fitting=True)
        target = self._target_names(given, y) if first else self.config_.data.target
        y_idx = self._encode_targets(y, classes if first else None, first, len(X))  # (classes_ first: _class_weight_keys)
        cfg = self._config(target)
        w = self._row_weights(sample_weight, len(X))
        if first:
            self._fit_preprocessing(X, cfg)
        x = self._features(X, cfg.training.dtype)
        x_val = y_val = None
        if not incremental and cfg.data.val_split > 0:
            x, y_idx, w, x_val, y_val = self._split_validation(x, y_idx, w, cfg)
        y_idx, y_val = self._training_targets(x, y_idx, x_val, y_val, first, cfg)
        if first:
            trainer = self._new_trainer(cfg, x, y_idx, x_val is not None)
            if incremental:
                trainer.epochs = 1
        else:
            trainer = self._continue_trainer(cfg, x, y_idx, x_val is not None, incremental)
        if self.verbose:
            trainer.callbacks.append(_Printer(self._score_metric))
        threads = training_threads(cfg.training.threads, trainer, len(y_idx), 0 if x_val is None else len(x_val))
        trainer.speed = threads
        try:
            with threads, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                trainer.fit(x, y_idx, x_val, y_val, w)
        finally:
            trainer.speed = None  # BLAS handles do not pickle; the estimator must
            trainer.callbacks = []
        use_best = x_val is not None and trainer.best_params is not None and cfg.training.early_stopping is not None
        if use_best:
            trainer.net.params[...] = trainer.best_params
        self.config_ = cfg
        self.trainer_ = trainer
        self.net_ = trainer.net
        self.loss_ = trainer.loss
        self.history_ = list(trainer.history)
        self.n_iter_ = trainer.epoch
        self.loss_curve_ = [r["train_loss"] for r in trainer.history]
        self.validation_scores_ = [self._validation_score(r) for r in trainer.history] if x_val is not None else None
        self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else None
        self.stopped_early_ = trainer.stopped_early
        return self

    def _row_weights(self, sample_weight, n: int):
        """sample_weight scaled to mean 1, so a batch's loss 1/B sum r_i l_i averages to the
        weighted mean sum w_i l_i / sum w_i over the training set."""
        if sample_weight is None:
            return None
        if isinstance(sample_weight, (int, float, np.number)) and not isinstance(sample_weight, bool):
            if not math.isfinite(float(sample_weight)) or float(sample_weight) <= 0:
                raise ValueError(f"sample_weight: one weight for every row must be finite and positive, got {sample_weight}")
            return None  # equal weights: the unweighted mean, bit for bit
        if _sklearn_available():
            from sklearn.utils.validation import _check_sample_weight

            w = _check_sample_weight(sample_weight, np.empty((n, 0)), dtype=np.float64)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.ndim == 0:
                w = np.full(n, float(w))
            if w.shape != (n,):
                raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},)!")
        if not np.all(np.isfinite(w)) or (w < 0).any():
            raise ValueError("sample_weight: weights must be finite and non-negative")
        with np.errstate(over="ignore"):  # an overflowing sum is handled below
            total = float(w.sum())
        if total <= 0:
            raise ValueError("sample_weight: the weights sum to zero; at least one row must weigh something")
        if np.all(w == w[0]):
            return None  # equal weights: the unweighted mean, bit for bit (scaled they are all 1)
        if not (math.isfinite(total) and math.isfinite(n / total)):
            # weights near float64's ends: the sum of two 1e308 overflows (every row then weighed
            # n / inf = 0 and the loss was 0: nothing trained), n / (a sum of subnormals) is inf.
            # Divided by the largest first, the sum lies in [1, n]
            w = w / w.max()
            total = float(w.sum())
        return w * (n / total)

    def _fit_preprocessing(self, X, cfg) -> None:
        self.preprocessor_ = None
        if self._uses_preprocessing(X):
            from .data.preprocess import Preprocessor

            d = cfg.data
            self.preprocessor_ = Preprocessor.fit(X, list(X.columns), cfg.data.target, "X", d.categorical, d.max_categories,
                                                  d.missing_indicators, d.scaling)

    def _split_validation(self, x, y, w, cfg):
        kept, held = self._holdout(y, len(x), cfg)
        if len(held) == 0:
            raise ValueError(f"validation_fraction={cfg.data.val_split}: {len(x)} rows are too few for a validation split")
        y_kept = None if y is None else y[kept]
        y_held = None if y is None else y[held]
        if w is not None and not w[kept].sum() > 0:  # (0 / 0 weighed every training row NaN)
            raise ValueError(f"sample_weight: every row left for training after the validation split (validation_fraction="
                             f"{cfg.data.val_split}) has weight 0; give more rows a weight, or hold out fewer")
        return x[kept], y_kept, (None if w is None else w[kept] * (len(kept) / w[kept].sum())), x[held], y_held

    def _holdout(self, y, n: int, cfg):
        """(kept, held) row positions of the validation split: stratified by class, as the CLI's."""
        from .data.dataset import stratified_holdout
        from .seeds import split_rng

        return stratified_holdout(y, cfg.data.val_split, split_rng(cfg.seed))  # the CLI's split stream

    def _training_targets(self, x, y, x_val, y_val, first: bool, cfg):
        """(y, y_val) as the trainer reads them (classification: the class indices as they are)."""
        return y, y_val

    def _validation_score(self, record: dict) -> float:
        return record[self._score_metric]

    def _target_names(self, given, y):
        """data.target of the config: a Series' name, as the CLI's column name, else "target"
        (``given`` is y as passed to fit, ``y`` as validated)."""
        name = getattr(given, "name", None)
        return str(name) if name else self._unclaimed(["target"])[0]

    def _unclaimed(self, names: list[str]) -> list[str]:
        """Default target names, each with the first suffix _1, _2, ... that no feature column
        has: a DataFrame with a column 'target' fitted on an array y saved a checkpoint whose
        label column was that feature, so ``nnclf evaluate`` scored the feature as the labels."""
        taken = {str(c) for c in getattr(self, "feature_names_in_", [])}
        out = []
        for name in names:
            free, k = name, 0
            while free in taken:
                k += 1
                free = f"{name}_{k}"
            taken.add(free)
            out.append(free)
        return out

    def _new_trainer(self, cfg, x, y, has_val: bool):
        from types import SimpleNamespace

        from .runs import _check_monitor, _make_trainer

        prepared = SimpleNamespace(labels=self._labels(), targets=getattr(self, "targets_", None),
                                   train=SimpleNamespace(x=x, y=y), val=_Rows(1) if has_val else None)
        # as nnclf train: schedule='reduce_on_plateau' without validation rows never lowered the lr
        _check_monitor(cfg, prepared, "set validation_fraction > 0")
        return _make_trainer(cfg, prepared, [])

    def _continue_trainer(self, cfg, x, y, has_val: bool, incremental: bool):
        """partial_fit: the same trainer, one more epoch; warm_start: a new trainer for this
        call's settings that starts from the fitted weights, optimizer state and RNG."""
        old = self.trainer_
        if incremental:
            old.epochs = old.epoch + 1
            return old
        trainer = self._new_trainer(cfg, x, y, has_val)
        if trainer.net.sizes != old.net.sizes:
            raise ValueError(f"warm_start: the network {old.net.sizes} cannot continue as {trainer.net.sizes}; set warm_start=False")
        trainer.net.params[...] = old.net.params
        if trainer.optimizer.name == old.optimizer.name:
            trainer.optimizer.load_state(old.optimizer.state())
        trainer.rng.bit_generator.state = old.rng.bit_generator.state
        trainer.history = list(old.history)
        trainer.epoch = old.epoch
        trainer.epochs = old.epoch + cfg.training.epochs
        return trainer

    # -- saving -----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted model as an nnclf checkpoint (``.npz`` + JSON, no pickle).

        ``nnclf predict CHECKPOINT data.csv`` and ``nnclf.load(path)`` use it: a model fitted on
        a DataFrame keeps its preprocessing; one fitted on an array expects a CSV with columns
        named like ``feature_names_in_`` (``x0``, ``x1``, ... when the array had no names),
        used unscaled.

        Parameters
        ----------
        path : str or Path
            The file to write (atomically).

        Returns
        -------
        Path
            ``path``.
        """
        from datetime import datetime, timezone

        from .checkpoint import save_checkpoint

        self._check_fitted()
        path = Path(path)
        labels = self._label_values()
        odd = [v for v in labels if not isinstance(v, (str, int, float, bool))]
        if odd:  # (json.dumps raised "TypeError: not JSON serialisable: date" from the checkpoint writer)
            raise NnclfError(f"{path}: cannot save class labels of type {type(odd[0]).__name__} (e.g. {odd[0]!r}): a checkpoint's "
                             "labels are texts, numbers or booleans; fit on labels converted to strings (nothing was written)")
        trainer = self.trainer_
        state = trainer.state_dict()
        arrays = {f"optimizer.{k}": v for k, v in state["optimizer"].items()}
        net = self.net_
        loss = {"name": self.config_.loss.name, **({"delta": self.config_.loss.delta} if self.config_.loss.name == "huber" else {})}
        meta = {
            "config_name": type(self).__name__,
            "network": {"sizes": net.sizes, "activation": net.activation_name, "dropout": net.dropout, "dtype": str(net.dtype)},
            "loss": loss,
            "task": self.config_.task,
            "labels": labels,
            **self._task_meta(),
            "preprocessor": self._preprocessor_state(),
            "data_files": {},
            "config": self.config_.to_dict(),
            "trainer": state["progress"],
            "schedule": state["schedule"],
            "optimizer": {"name": trainer.optimizer.name, "state": list(trainer.optimizer.state_names)},
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        save_checkpoint(path, net.params, meta, arrays)
        return path

    def _task_meta(self) -> dict:
        """The checkpoint entries of this task (regression's targets, reconstruction's code layer)."""
        return {}

    def _label_values(self) -> list:
        return []

    def _labels(self):
        return None

    def _preprocessor_state(self) -> dict:
        if self.preprocessor_ is not None:
            return self.preprocessor_.state
        from .data.preprocess import Preprocessor

        names = [str(n) for n in getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)])]
        return Preprocessor.as_given(names, self.config_.data.target).to_json()


class _Rows:
    """Stands in for a validation split in ``runs._make_trainer`` (it only asks its length)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class _Printer:
    """verbose=True: one line per epoch on stdout (the only output an estimator makes)."""

    def __init__(self, metric: str = "val_accuracy"):
        self.metric = metric

    def on_epoch_end(self, trainer, record, improved):
        extra = f", validation {self.metric[4:]} = {record[self.metric]:.6f}" if self.metric in record else ""
        print(f"Iteration {record['epoch']}, loss = {record['train_loss']:.8f}{extra}", flush=True)


def _is_frame(X) -> bool:
    return type(X).__module__.startswith("pandas") and hasattr(X, "columns")


def _same_classes(classes, fitted: np.ndarray) -> bool:
    try:
        given = np.unique(np.asarray(classes))
    except TypeError:  # labels of types that do not compare
        return False
    return given.shape == fitted.shape and bool(np.all(given == fitted))


def _refuse_overflow(values: np.ndarray, what: str = "output") -> np.ndarray:
    """``values`` (n, ...) when every row is finite; else a ValueError naming the first row whose
    network output overflowed (features far outside the training range), as ``nnclf predict``
    and ``nnclf.Model`` refuse it: NaN probabilities with the label ``classes_[0]``, or NaN
    predictions, were returned silently."""
    bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))  # (n,): also for no rows
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"X, row {row}: the model's {what} for this row overflows to NaN or infinity "
            f"(feature values far outside the training range?); scale X, or fix or remove the row"
        )
    return values


def _minimal_validate(est, X, y, reset: bool, frame: bool, multi_output: bool = False, dtype: str = "float32"):
    """Input checks when scikit-learn is not installed: 2-D, finite, consistent width and (for
    a DataFrame) column names, as scikit-learn's ``validate_data`` checks them."""
    name = type(est).__name__
    if frame:
        n_features = X.shape[1]
        names = np.asarray([str(c) for c in X.columns], dtype=object)
    else:
        if hasattr(X, "toarray") and type(X).__module__.startswith("scipy.sparse"):  # (np.asarray: a 0-d object array)
            raise TypeError("Sparse data was passed for X, but dense data is required. Use '.toarray()' to convert to a dense numpy array.")
        # a DataFrame used as given keeps its string column names: predicting on its columns in
        # another order used them by position, silently
        columns = list(X.columns) if _is_frame(X) else []
        names = np.asarray(columns, dtype=object) if columns and all(isinstance(c, str) for c in columns) else None
        if names is not None and len(set(columns)) != len(columns):
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            raise ValueError(f"{name}: column names must be unique; repeated: {', '.join(map(repr, repeated[:5]))}")
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {X.shape}; reshape your data")
        if X.dtype.kind == "c":
            raise ValueError(f"{name}: complex data not supported")
        given = X
        with np.errstate(over="ignore"):  # (an overflow is the error just below)
            X = np.ascontiguousarray(X, dtype=dtype)
        if not np.all(np.isfinite(X)):
            if np.all(np.isfinite(np.asarray(given, dtype=np.float64))):  # finite, beyond float32 (1e300 is not "infinity")
                largest = float(np.max(np.abs(np.asarray(given, dtype=np.float64))))
                raise ValueError(f"Input X contains a value too large for dtype('{dtype}'), the estimator's dtype "
                                 f"(largest |x| {largest:.3g}); scale X, or use dtype='float64'")
            raise ValueError(f"{name}: input X contains NaN or infinity")
        n_features = X.shape[1]
    if len(X) == 0:
        raise ValueError(f"{name}: found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required")
    if n_features == 0:  # (the initialiser divided by zero)
        raise ValueError(f"{name}: found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required")
    if reset:
        est.n_features_in_ = n_features
        if names is not None:
            est.feature_names_in_ = names
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif n_features != est.n_features_in_:
        raise ValueError(f"X has {n_features} features, but {name} is expecting {est.n_features_in_} features as input.")
    elif names is not None and getattr(est, "feature_names_in_", None) is not None and not np.array_equal(names, est.feature_names_in_):
        raise ValueError(f"{name}: the feature names should match those that were passed during fit "
                         f"({est.feature_names_in_.tolist()[:5]}, in that order), got {names.tolist()[:5]}")
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):  # (a classifier took NaN for a class)
            raise ValueError(f"{name}: input y contains NaN or infinity")
        if y.ndim == 2 and y.shape[1] == 1 and not multi_output:
            y = y[:, 0]
        if multi_output and y.ndim == 2 and len(y) == len(X):
            return X, y
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"{name}: y must be 1-D with one value per row of X; got shape {y.shape} for {len(X)} rows")
    return X, y


class Classifier(_Network):
    """A multilayer-perceptron classifier trained by nnclf's engine, usable wherever a
    scikit-learn classifier is (pipelines, ``cross_val_score``, ``GridSearchCV``).

    The network is ``n_features -> hidden[0] -> ... -> hidden[-1] -> K`` with softmax
    cross-entropy (one sigmoid output for two classes); the objective is

        J(theta) = sum_i c_{y_i} w_i l_i / sum_i w_i + weight_decay / 2 * sum_l ||W_l||^2

    (``w`` = ``sample_weight``, ``c`` = ``class_weight``), minimised by ``optimizer`` in
    mini-batches of ``batch_size`` rows for ``epochs`` epochs.

    Parameters mirror the config keys of ``nnclf train`` (README, "Config reference") and are
    validated by the same schema when ``fit`` is called; ``__init__`` only stores them.

    Parameters
    ----------
    hidden : tuple of int, default=(100,)
        Widths of the hidden layers (``model.hidden``).
    activation : str, default="relu"
        Hidden-layer activation (``model.activation``: relu, tanh, sigmoid, ...).
    optimizer : str or dict, default="adam"
        ``optimizer.name``, or a mapping of the optimizer section's keys, e.g.
        ``{"name": "momentum", "momentum": 0.9}`` (unknown keys are a did-you-mean error).
    lr : float, default=0.001
        Learning rate (``optimizer.lr``).
    batch_size : int, None or "auto", default="auto"
        Rows per mini-batch (``training.batch_size``); None is full-batch (all rows); "auto"
        is 64 for the first-order optimizers and full-batch for lbfgs, cg and newton_cg
        (which need every row per step), so ``optimizer="lbfgs"`` needs nothing else.
    epochs : int, default=100
        Passes over the training rows (``training.epochs``).
    weight_decay : float, default=0.0
        L2 penalty lambda on the weights, not the biases (``loss.weight_decay``).
    early_stopping : bool or dict or None, default=None
        Stop when the validation loss stops improving: True for the defaults (patience 10 on
        val_loss), or a mapping of ``training.early_stopping`` keys. The weights of the best
        epoch are kept. A ``validation_fraction`` of the rows is held out for it.
    validation_fraction : float or None, default=None
        Rows held out (stratified) to compute ``validation_scores_``; None is 0.1 with early
        stopping and 0 otherwise (``data.val_split``).
    dtype : {"float32", "float64"}, default="float32"
        Floating type of the weights and the arithmetic (``training.dtype``).
    random_state : int, RandomState or None, default=None
        Seed of initialisation, shuffling and dropout (``seed``); None draws a fresh one.
    schedule : str or dict or None, default=None
        Learning-rate schedule (``schedule``): a name or a mapping of its keys; None is constant.
    warmup_epochs : int, default=0
        Linear warm-up epochs of the schedule (``schedule.warmup_epochs``).
    init : str, default="auto"
        Weight initialiser (``model.init``).
    dropout : float, default=0.0
        Dropout rate on hidden activations while training (``model.dropout``).
    loss : str, default="cross_entropy"
        ``loss.name``: cross_entropy, nll, kl_div, mse.
    label_smoothing : float, default=0.0
        ``loss.label_smoothing``.
    class_weight : "balanced" or dict or None, default=None
        Per-class loss weights (``loss.class_weights``): "balanced" is n / (K n_c).
    clip_norm : float or None, default=None
        Gradient norm clipping (``training.clip_norm``).
    shuffle : bool, default=True
        Shuffle rows every epoch (``training.shuffle``).
    threads : "auto" or int, default="auto"
        BLAS threads inside ``fit`` (restored afterwards), ``training.threads``.
    preprocess : {"auto", True, False}, default="auto"
        Which pandas DataFrames go through nnclf's preprocessing (median imputation, one-hot
        encoding, ``scaling``), fitted in ``fit``: "auto", those with a column that is not
        numbers (text, categories); True, every DataFrame; False, none. Arrays and all-number
        DataFrames under "auto" are used as given (scikit-learn's convention: scale them in a
        pipeline).
    categorical, max_categories, missing_indicators, scaling :
        The ``data`` keys of that preprocessing (DataFrames only).
    warm_start : bool, default=False
        A second ``fit`` continues from the fitted weights and optimizer state for ``epochs``
        more epochs instead of starting over.
    verbose : bool, default=False
        Print one line per epoch; otherwise nothing is printed.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
        The class labels, sorted.
    n_features_in_ : int
        Number of input columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` had string column names.
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        Training loss (weighted mean) after each epoch.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch, when rows were held out.
    history_ : list of dict
        The per-epoch records of ``metrics.csv`` (lr, losses, accuracies, seconds).
    config_ : nnclf.config.Config
        The validated config the parameters made.
    net_ : nnclf.engine.network.MLP
        The trained network.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> import nnclf
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = nnclf.Classifier(hidden=(32,), epochs=50, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).tolist()
    [0, 0]
    """

    _estimator_type = "classifier"

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        optimizer="adam",
        lr=0.001,
        batch_size="auto",
        epochs=100,
        weight_decay=0.0,
        early_stopping=None,
        validation_fraction=None,
        dtype="float32",
        random_state=None,
        schedule=None,
        warmup_epochs=0,
        init="auto",
        dropout=0.0,
        loss="cross_entropy",
        label_smoothing=0.0,
        class_weight=None,
        clip_norm=None,
        shuffle=True,
        threads="auto",
        preprocess="auto",
        categorical=(),
        max_categories=None,
        missing_indicators=False,
        scaling="standard",
        warm_start=False,
        verbose=False,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.random_state = random_state
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.init = init
        self.dropout = dropout
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.threads = threads
        self.preprocess = preprocess
        self.categorical = categorical
        self.max_categories = max_categories
        self.missing_indicators = missing_indicators
        self.scaling = scaling
        self.warm_start = warm_start
        self.verbose = verbose

    # -- labels ------------------------------------------------------------------------------
    def _encode_targets(self, y, classes, first: bool, n: int) -> np.ndarray:
        try:
            if _sklearn_available():
                from sklearn.utils.multiclass import check_classification_targets

                check_classification_targets(y)
            y = np.asarray(y)
            if not _sklearn_available() and y.dtype.kind == "f" and not np.all(y == np.round(y)):
                # as check_classification_targets: 40 distinct floats were 40 classes
                raise ValueError(f"{type(self).__name__}: unknown label type: continuous (y holds floats that are not "
                                 "whole numbers); a classifier expects discrete classes, use nnclf.Regressor for real values")
            if first:
                found = np.unique(y) if classes is None else np.unique(np.asarray(classes))
                if len(found) < 2:
                    raise ValueError(f"{type(self).__name__}: y has {len(found)} class; classification needs at least 2 classes")
                self.classes_ = found
            idx = np.searchsorted(self.classes_, y)
        except TypeError:  # sorting them: "'<' not supported between instances of 'int' and 'str'"
            given = [y, [] if classes is None else classes, [] if first else self.classes_]
            kinds = sorted({type(v).__name__ for values in given for v in np.asarray(values, dtype=object).ravel().tolist()})
            raise ValueError(f"{type(self).__name__}: y mixes labels of types that do not compare ({', '.join(kinds)}); "
                             "give labels of one type, e.g. all strings") from None
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            raise ValueError(f"y holds labels not in classes_ {self.classes_.tolist()}: {np.unique(y[bad])[:5].tolist()}")
        return idx.astype(np.int64)

    def _labels(self):
        from .data.labels import Labels

        return Labels(self._label_values())

    def _class_weight_keys(self, weights: dict) -> dict:
        """``class_weight`` keyed by the classes themselves (scikit-learn's convention), with a
        boolean or float class's key in the spelling ``build.class_weight_vector`` matches
        ('true', '1.0'): the schema's int-or-str keys turned True and 1.0 into the label 1,
        which a classifier of booleans or floats does not have, so {True: 2.0} was refused
        ("label 1 is not a class; classes: False, True"). Other keys are left as given."""
        classes = getattr(self, "classes_", None)
        if classes is None:
            return weights
        values = [v.item() if isinstance(v, np.generic) else v for v in classes.tolist()]

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        out = {}
        for key, weight in weights.items():
            same = [c for c in values if type(c) is type(key) and c == key]
            same = same or [c for c in values if number(key) and number(c) and c == key]
            if same and isinstance(same[0], (bool, float)):
                key = str(same[0]).lower() if isinstance(same[0], bool) else str(same[0])
            out[key] = weight
        return out

    def _label_values(self) -> list:
        return [v.item() if isinstance(v, np.generic) else v for v in self.classes_.tolist()]

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Training rows: an array is used as given; a DataFrame is preprocessed (see the
            class docstring).
        y : array-like of shape (n_samples,)
            Class labels (any sortable values: ints, strings, booleans).
        sample_weight : array-like of shape (n_samples,), optional
            Row weights w_i >= 0: the loss becomes the weighted mean sum w_i l_i / sum w_i.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing the weights and optimizer state of earlier calls.

        Parameters
        ----------
        X, y, sample_weight : as in ``fit``.
        classes : array-like of shape (K,), optional
            Every class label; required on the first call if (X, y) may miss some.

        Returns
        -------
        self
        """
        if not self.__sklearn_is_fitted__():
            if self.early_stopping not in (None, False):
                raise ValueError("partial_fit does not hold out validation rows: set early_stopping=None")
            if isinstance(self.class_weight, str) and self.class_weight == "balanced":
                # as scikit-learn's SGDClassifier: the first call's rows alone would set the
                # weights for good (a class missing from them weighed 0: never learned, loss 0)
                raise ValueError("class_weight='balanced' is not supported for partial_fit: it would weigh the classes by the "
                                 "first call's rows only; give a mapping of class to weight computed on all the labels")
        elif classes is not None and not _same_classes(classes, self.classes_):
            # the network has one output per class of the first call: other classes were ignored silently
            raise ValueError(f"classes={np.asarray(classes, dtype=object).tolist()} is not the same as on the first call to partial_fit, "
                             f"was: {self.classes_.tolist()}")
        return self._fit(X, y, sample_weight, classes=classes, incremental=True)

    # -- predicting --------------------------------------------------------------------------
    def _logits(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(logits z, class probabilities) of the rows of X; a row whose probabilities are not
        finite is refused, the rule of ``nnclf predict`` (so one sigmoid unit's +-inf logit, a
        probability of 1 or 0, is an answer; a softmax over an infinite logit is not)."""
        self._check_fitted()
        X, _ = self._validate_X(X, reset=False)
        with np.errstate(over="ignore", invalid="ignore"):
            z = on_one_thread(self.net_.logits, self._features(X))
            return z, _refuse_overflow(self.loss_.predict_proba(z))

    def decision_function(self, X) -> np.ndarray:
        """Logits: (n_samples,) for two classes (the positive class's score), else (n_samples, K)."""
        z, _ = self._logits(X)
        if z.shape[1] == 1:
            return z[:, 0].copy()
        if len(self.classes_) == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, K), columns in ``classes_`` order."""
        return self._logits(X)[1]

    def predict_log_proba(self, X) -> np.ndarray:
        """log of ``predict_proba`` (n_samples, K)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (n_samples,), as values of ``classes_``."""
        z, _ = self._logits(X)  # first: it checks the estimator is fitted
        return self.classes_[self.loss_.predict_classes(z)]  # the CLI's rule

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of ``predict(X)`` against y (weighted by ``sample_weight``)."""
        hits = (self.predict(X) == np.asarray(y)).astype(np.float64)
        return float(np.average(hits, weights=sample_weight))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(),
        )


_SHARED_PARAMETERS = """
    hidden : tuple of int
        Widths of the hidden layers (``model.hidden``).
    activation : str, default="relu"
        Hidden-layer activation (``model.activation``: relu, tanh, sigmoid, ...).
    optimizer : str or dict, default="adam"
        ``optimizer.name``, or a mapping of the optimizer section's keys, e.g.
        ``{"name": "momentum", "momentum": 0.9}`` (unknown keys are a did-you-mean error).
    lr : float, default=0.001
        Learning rate (``optimizer.lr``).
    batch_size : int, None or "auto", default="auto"
        Rows per mini-batch (``training.batch_size``); None is full-batch (all rows); "auto"
        is 64 for the first-order optimizers and full-batch for lbfgs, cg and newton_cg
        (which need every row per step), so ``optimizer="lbfgs"`` needs nothing else.
    epochs : int, default=100
        Passes over the training rows (``training.epochs``).
    weight_decay : float, default=0.0
        L2 penalty lambda on the weights, not the biases (``loss.weight_decay``).
    early_stopping : bool or dict or None, default=None
        Stop when the validation loss stops improving: True for the defaults (patience 10 on
        val_loss), or a mapping of ``training.early_stopping`` keys. The weights of the best
        epoch are kept. A ``validation_fraction`` of the rows is held out for it.
    validation_fraction : float or None, default=None
        Rows held out (a seeded shuffle, as the CLI's ``data.val_split``) to compute
        ``validation_scores_``; None is 0.1 with early stopping and 0 otherwise.
    dtype : {"float32", "float64"}, default="float32"
        Floating type of the weights and the arithmetic (``training.dtype``).
    random_state : int, RandomState or None, default=None
        Seed of initialisation, shuffling and dropout (``seed``); None draws a fresh one.
    schedule : str or dict or None, default=None
        Learning-rate schedule (``schedule``): a name or a mapping of its keys; None is constant.
    warmup_epochs : int, default=0
        Linear warm-up epochs of the schedule (``schedule.warmup_epochs``).
    init : str, default="auto"
        Weight initialiser (``model.init``).
    dropout : float, default=0.0
        Dropout rate on hidden activations while training (``model.dropout``).
    loss : {"mse", "mae", "huber"}, default="mse"
        ``loss.name``, per element of the residual r = h - y: 1/2 r^2, |r|, or Huber's
        1/2 r^2 for |r| <= delta and delta (|r| - delta/2) beyond.
    delta : float, default=1.0
        Huber's threshold (``loss.delta``; huber only).
    clip_norm : float or None, default=None
        Gradient norm clipping (``training.clip_norm``).
    shuffle : bool, default=True
        Shuffle rows every epoch (``training.shuffle``).
    threads : "auto" or int, default="auto"
        BLAS threads inside ``fit`` (restored afterwards), ``training.threads``.
    preprocess : {"auto", True, False}, default="auto"
        Which pandas DataFrames go through nnclf's preprocessing (median imputation, one-hot
        encoding, ``scaling``), fitted in ``fit``: "auto", those with a column that is not
        numbers; True, every DataFrame; False, none. Arrays and all-number DataFrames under
        "auto" are used as given (scikit-learn's convention: scale them in a pipeline).
    categorical, max_categories, missing_indicators, scaling :
        The ``data`` keys of that preprocessing (DataFrames only).
    warm_start : bool, default=False
        A second ``fit`` continues from the fitted weights and optimizer state for ``epochs``
        more epochs instead of starting over.
    verbose : bool, default=False
        Print one line per epoch; otherwise nothing is printed.
"""

_SHARED_ATTRIBUTES = """
    n_features_in_ : int
        Number of input columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` had string column names.
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        Training loss (weighted mean over rows, summed over outputs) after each epoch.
    history_ : list of dict
        The per-epoch records of ``metrics.csv`` (lr, losses, validation metrics, seconds).
    config_ : nnclf.config.Config
        The validated config the parameters made.
    net_ : nnclf.engine.network.MLP
        The trained network.
"""


def _holdout_shuffled(n: int, cfg):
    """The regression / reconstruction validation split: ``prepare_real``'s seeded shuffle."""
    from .data.targets import shuffled_holdout
    from .seeds import split_rng

    return shuffled_holdout(np.arange(n), cfg.data.val_split, split_rng(cfg.seed))


class _RealValued(_Network):
    """What Regressor and Autoencoder share: identity outputs, the regression losses, a
    shuffled validation split."""

    def _holdout(self, y, n: int, cfg):
        return _holdout_shuffled(n, cfg)

    def _outputs(self, X) -> np.ndarray:
        """(features x, network outputs h (n, m)) for the rows of X."""
        self._check_fitted()
        X, _ = self._validate_X(X, reset=False)
        x = self._features(X)
        with np.errstate(over="ignore", invalid="ignore"):
            return x, _refuse_overflow(on_one_thread(self.net_.logits, x))


class Regressor(_RealValued):
    __doc__ = """A multilayer-perceptron regressor trained by nnclf's engine (one or several
    real-valued targets), usable wherever a scikit-learn regressor is.

    The network is ``n_features -> hidden[0] -> ... -> hidden[-1] -> m`` with an identity
    output, trained on standardised targets t = (y - mu) / sigma (``target_scaling``, as the
    CLI's ``data.target_scaling``; mu and sigma from the training rows, weighted by
    ``sample_weight``); predictions are mapped back, y_hat = sigma h + mu. The objective is

        J(theta) = sum_i w_i sum_k l(h_ik - t_ik) / sum_i w_i + weight_decay / 2 * sum_l ||W_l||^2

    with l from ``loss``. Parameters mirror the config keys of ``nnclf train`` with
    ``task: regression`` and are validated by the same schema when ``fit`` is called;
    ``__init__`` only stores them.

    Parameters
    ----------""" + _SHARED_PARAMETERS + """    target_scaling : {"standard", "none"}, default="standard"
        Standardise each target with the training rows' mean and standard deviation
        (``data.target_scaling``); "none" trains on y as given.

    Attributes
    ----------""" + _SHARED_ATTRIBUTES + """    n_outputs_ : int
        Number of targets m.
    targets_ : nnclf.data.targets.Targets
        The fitted target scaling (names, center mu, scale sigma).
    validation_scores_ : list of float or None
        Validation R^2 (mean over targets) after each epoch, when rows were held out.

    Examples
    --------
    >>> import numpy as np, nnclf
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> y = X @ [1.0, -2.0, 0.5]
    >>> reg = nnclf.Regressor(hidden=(32,), epochs=200, lr=0.01, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.95
    True
    """

    _estimator_type = "regressor"
    _task = "regression"
    _score_metric = "val_r2"
    _y_checks = {"y_numeric": True, "multi_output": True}

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        optimizer="adam",
        lr=0.001,
        batch_size="auto",
        epochs=100,
        weight_decay=0.0,
        early_stopping=None,
        validation_fraction=None,
        dtype="float32",
        random_state=None,
        schedule=None,
        warmup_epochs=0,
        init="auto",
        dropout=0.0,
        loss="mse",
        delta=1.0,
        target_scaling="standard",
        clip_norm=None,
        shuffle=True,
        threads="auto",
        preprocess="auto",
        categorical=(),
        max_categories=None,
        missing_indicators=False,
        scaling="standard",
        warm_start=False,
        verbose=False,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.random_state = random_state
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.init = init
        self.dropout = dropout
        self.loss = loss
        self.delta = delta
        self.target_scaling = target_scaling
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.threads = threads
        self.preprocess = preprocess
        self.categorical = categorical
        self.max_categories = max_categories
        self.missing_indicators = missing_indicators
        self.scaling = scaling
        self.warm_start = warm_start
        self.verbose = verbose

    # -- targets -----------------------------------------------------------------------------
    def _target_names(self, given, y):
        """data.target: a DataFrame's columns, a Series' name, else "target" / target_0.. ."""
        if _is_frame(given):
            return [str(c) for c in given.columns]
        name = getattr(given, "name", None)
        if isinstance(name, str) and name:
            return name
        if y.ndim == 2:
            return self._unclaimed(["target"] if y.shape[1] == 1 else [f"target_{j}" for j in range(y.shape[1])])
        return self._unclaimed(["target"])[0]

    def _check_frame_y(self, y, n: int):
        from sklearn.utils.validation import check_array, check_consistent_length

        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        check_consistent_length(y, np.empty((n, 0)))
        return y

    def _encode_targets(self, y, classes, first: bool, n: int) -> np.ndarray:
        """The targets as float64 (n, m) in their own units (scaled in ``_training_targets``)."""
        if hasattr(y, "toarray") and type(y).__module__.startswith("scipy.sparse"):  # (np.asarray made a 0-d object array)
            raise TypeError("Sparse data was passed for y, but dense data is required. Use '.toarray()' to convert to a dense numpy array.")
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{type(self).__name__}: y must be numbers (real-valued targets): {e}") from None
        if y.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: y must be 1-D or 2-D (n_samples, n_targets), got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{type(self).__name__}: y contains NaN or infinity")
        # C order, as the CLI's target_values: the means over rows then sum in the same order
        values = np.ascontiguousarray(y.reshape(len(y), -1))
        if first:
            self.n_outputs_ = values.shape[1]
            self._y_2d = y.ndim == 2
        elif values.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {values.shape[1]} targets, but {type(self).__name__} was fitted with {self.n_outputs_}")
        return values

    def _training_targets(self, x, y, x_val, y_val, first: bool, cfg):
        from .data.targets import Targets

        if first:
            names = cfg.data.targets
            self.targets_ = Targets.fit(y, names, cfg.data.target_scaling, self._fit_weights)
        dtype = cfg.training.dtype
        return self.targets_.encode(y, dtype), (None if y_val is None else self.targets_.encode(y_val, dtype))

    def _row_weights(self, sample_weight, n: int):
        w = super()._row_weights(sample_weight, n)
        self._fit_weights = w  # the target scaling's weights (before the validation split: see _split_validation)
        return w

    def _split_validation(self, x, y, w, cfg):
        out = super()._split_validation(x, y, w, cfg)
        self._fit_weights = out[2]
        return out

    def _task_meta(self) -> dict:
        return {"targets": self.targets_.state}

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Training rows: an array is used as given; a DataFrame is preprocessed (see the
            class docstring).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Real-valued targets, finite.
        sample_weight : array-like of shape (n_samples,), optional
            Row weights w_i >= 0: the loss becomes the weighted mean sum w_i l_i / sum w_i.

        Returns
        -------
        self
        """
        try:
            return self._fit(X, y, sample_weight)
        finally:
            self._fit_weights = None

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the weights, optimizer state and target scaling
        of earlier calls (the first call fits the scaling on its rows).

        Parameters
        ----------
        X, y, sample_weight : as in ``fit``.

        Returns
        -------
        self
        """
        if not self.__sklearn_is_fitted__() and self.early_stopping not in (None, False):
            raise ValueError("partial_fit does not hold out validation rows: set early_stopping=None")
        try:
            return self._fit(X, y, sample_weight, incremental=True)
        finally:
            self._fit_weights = None

    # -- predicting --------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Predictions in the targets' units (float64): (n_samples,) when ``fit`` had a 1-D y,
        else (n_samples, n_targets)."""
        _, h = self._outputs(X)
        with np.errstate(over="ignore", invalid="ignore"):
            y = _refuse_overflow(self.targets_.decode(h), "prediction")  # sigma h + mu can overflow too
        return y if self._y_2d else y[:, 0]

    def score(self, X, y, sample_weight=None) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` (mean over targets, weighted by
        ``sample_weight``): 1 - sum_i w_i (y_i - y_hat_i)^2 / sum_i w_i (y_i - ybar_w)^2."""
        pred = self.predict(X)
        if _sklearn_available():
            from sklearn.metrics import r2_score

            return float(r2_score(y, pred, sample_weight=sample_weight))
        return _r2(np.asarray(y, dtype=np.float64), pred, sample_weight)

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, multi_output=True, single_output=True),
            regressor_tags=RegressorTags(),
            input_tags=InputTags(),
        )


def _r2(y: np.ndarray, pred: np.ndarray, sample_weight=None) -> float:
    """R^2 averaged over targets (scikit-learn's r2_score, 'uniform_average'), for when it is
    not installed: a constant target scores 1 if predicted exactly, else 0, as there."""
    y = y.reshape(len(y), -1)
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = np.average(y, axis=0, weights=w)
    ss_res = (w[:, None] * np.square(y - pred)).sum(axis=0)
    ss_tot = (w[:, None] * np.square(y - mean)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(r2))


class Autoencoder(_RealValued):
    __doc__ = """An autoencoder trained by nnclf's engine: a transformer whose ``transform`` gives
    the code layer's activations, usable wherever a scikit-learn transformer is.

    The network is ``d -> hidden[0] -> ... -> hidden[-1] -> d`` with an identity output,
    trained to reproduce its input x (the array as given, or a DataFrame's preprocessed
    columns) as in ``nnclf train`` with ``task: reconstruction``:

        J(theta) = sum_i w_i sum_j l(x_hat_ij - x_ij) / sum_i w_i + weight_decay / 2 * sum_l ||W_l||^2

    The code is the activation of hidden layer ``code_layer`` (the first narrowest by
    default). Parameters mirror the config keys and are validated by the same schema when
    ``fit`` is called; ``__init__`` only stores them.

    Parameters
    ----------""" + _SHARED_PARAMETERS + """    code_layer : int or None, default=None
        Index into ``hidden`` of the code layer (``model.code_layer``); None is the first
        narrowest layer.

    Attributes
    ----------""" + _SHARED_ATTRIBUTES + """    code_layer_ : int
        Index into ``hidden`` of the code layer.
    n_components_ : int
        Width k of the code (``transform``'s columns).
    validation_scores_ : list of float or None
        Minus the validation reconstruction error (mean squared, per element) after each
        epoch, when rows were held out (higher is better, as ``score``).

    Notes
    -----
    ``score_samples`` is the per-row reconstruction error (higher = worse reconstructed, the
    number ``nnclf predict`` writes as ``reconstruction_error``), the opposite sign of
    scikit-learn's outlier detectors, whose ``score_samples`` is higher for normal rows;
    ``score`` is minus its mean, so that a grid search maximising it minimises the error.

    Examples
    --------
    >>> import numpy as np, nnclf
    >>> X = np.random.default_rng(0).normal(size=(200, 6))
    >>> ae = nnclf.Autoencoder(hidden=(16, 3, 16), epochs=20, random_state=0).fit(X)
    >>> ae.transform(X).shape
    (200, 3)
    """

    _task = "reconstruction"
    _supervised = False
    _score_metric = "val_mse"

    def __init__(
        self,
        hidden=(32, 8, 32),
        activation="relu",
        optimizer="adam",
        lr=0.001,
        batch_size="auto",
        epochs=100,
        weight_decay=0.0,
        early_stopping=None,
        validation_fraction=None,
        dtype="float32",
        random_state=None,
        schedule=None,
        warmup_epochs=0,
        init="auto",
        dropout=0.0,
        loss="mse",
        delta=1.0,
        code_layer=None,
        clip_norm=None,
        shuffle=True,
        threads="auto",
        preprocess="auto",
        categorical=(),
        max_categories=None,
        missing_indicators=False,
        scaling="standard",
        warm_start=False,
        verbose=False,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.random_state = random_state
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.init = init
        self.dropout = dropout
        self.loss = loss
        self.delta = delta
        self.code_layer = code_layer
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.threads = threads
        self.preprocess = preprocess
        self.categorical = categorical
        self.max_categories = max_categories
        self.missing_indicators = missing_indicators
        self.scaling = scaling
        self.warm_start = warm_start
        self.verbose = verbose

    def _target_names(self, given, y):
        return None

    def _encode_targets(self, y, classes, first: bool, n: int):
        return None  # the targets are the inputs themselves (``_training_targets``)

    def _training_targets(self, x, y, x_val, y_val, first: bool, cfg):
        if first:
            from .data.targets import code_layer

            self.code_layer_ = code_layer(cfg.model.hidden, cfg.model.code_layer)
            self.n_components_ = int(cfg.model.hidden[self.code_layer_])
        return x, x_val

    def _validation_score(self, record: dict) -> float:
        return -record["val_mse"]

    def _task_meta(self) -> dict:
        return {"code_layer": int(self.code_layer_)}

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Train the network to reconstruct the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Training rows: an array is used as given; a DataFrame is preprocessed (see the
            class docstring).
        y : ignored
            Accepted for pipelines.
        sample_weight : array-like of shape (n_samples,), optional
            Row weights w_i >= 0: the loss becomes the weighted mean sum w_i l_i / sum w_i.

        Returns
        -------
        self
        """
        return self._fit(X, None, sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """One epoch over X, continuing the weights and optimizer state of earlier calls.

        Returns
        -------
        self
        """
        if not self.__sklearn_is_fitted__() and self.early_stopping not in (None, False):
            raise ValueError("partial_fit does not hold out validation rows: set early_stopping=None")
        return self._fit(X, None, sample_weight, incremental=True)

    def fit_transform(self, X, y=None, sample_weight=None):
        """``fit(X)`` then ``transform(X)``: the codes (n_samples, n_components_)."""
        return self.fit(X, y, sample_weight).transform(X)

    # -- codes and reconstructions -----------------------------------------------------------
    def _inputs(self, X) -> np.ndarray:
        self._check_fitted()
        X, _ = self._validate_X(X, reset=False)
        return self._features(X)

    def transform(self, X) -> np.ndarray:
        """The code: hidden layer ``code_layer_``'s activations (n_samples, n_components_), the
        numbers ``nnclf encode`` writes for a saved checkpoint."""
        x = self._inputs(X)
        with np.errstate(over="ignore", invalid="ignore"):
            return _refuse_overflow(on_one_thread(self.net_.hidden_activations, x, self.code_layer_), "code")

    def inverse_transform(self, X) -> np.ndarray:
        """Decode codes (n_samples, n_components_) through the layers after the code layer: the
        reconstruction x_hat (n_samples, n_features) in the space the network reads (the array
        as given, or a DataFrame's preprocessed columns). ``inverse_transform(transform(X))``
        equals ``reconstruct(X)``."""
        self._check_fitted()
        net = self.net_
        with np.errstate(over="ignore"):  # a code beyond the dtype's range is refused just below
            codes = np.asarray(X, dtype=net.dtype)
        if codes.ndim != 2 or codes.shape[1] != self.n_components_:
            raise ValueError(f"expected codes of shape (n_samples, {self.n_components_}), got {codes.shape}")
        if not np.isfinite(codes).all():  # they decoded to NaN reconstructions
            raise ValueError(f"codes contain NaN or infinity (or a value too large for dtype('{net.dtype}'))")
        a = codes
        with np.errstate(over="ignore", invalid="ignore"):
            for layer in range(self.code_layer_ + 1, net.n_layers):
                # Z = [A, 1] [W; b]: the same single product per layer as the forward pass, so the
                # numbers equal reconstruct's
                z = np.hstack([a, np.ones((len(a), 1), dtype=net.dtype)]) @ net._wb[layer]
                if layer == net.n_layers - 1:
                    return _refuse_overflow(z, "reconstruction")
                a = np.empty_like(z)
                net.activation.forward(z, a)
        return a

    def reconstruct(self, X) -> np.ndarray:
        """x_hat = the network's output (n_samples, n_features), in the space it reads."""
        _, h = self._outputs(X)
        return h

    predict = reconstruct

    def score_samples(self, X) -> np.ndarray:
        """Per-row reconstruction error 1/d sum_j (x_hat_ij - x_ij)^2 (n_samples,), float64: the
        ``reconstruction_error`` column of ``nnclf predict`` (higher = worse reconstructed)."""
        x, h = self._outputs(X)
        return np.square(h - x, dtype=np.float64).mean(axis=1)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Minus the mean reconstruction error of the rows (weighted by ``sample_weight``)."""
        return -float(np.average(self.score_samples(X), weights=sample_weight))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``code_0`` ... ``code_{k-1}``, the columns of ``transform`` (as ``nnclf encode`` names them)."""
        self._check_fitted()
        if input_features is not None:
            n = len(input_features)
            if n != self.n_features_in_:
                raise ValueError(f"input_features should have length equal to number of features ({self.n_features_in_}), got {n}")
            names = getattr(self, "feature_names_in_", None)
            if names is not None and not np.array_equal(np.asarray(input_features, dtype=object), names):
                raise ValueError("input_features is not equal to feature_names_in_")
        return np.array([f"code_{j}" for j in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=[self.dtype if self.dtype in ("float32", "float64") else "float32"]),
            input_tags=InputTags(),
        )
