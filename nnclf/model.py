"""A trained model loaded from a checkpoint: network + loss + preprocessing + labels (or targets).

``meta["task"]`` says what the network does; checkpoints written before it existed are
classification models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .calibration import calibration_of
from .checkpoint import load_checkpoint
from .data.labels import Labels
from .data.preprocess import Preprocessor
from .engine.losses import LOSSES, Loss
from .engine.network import MLP
from .errors import NnclfError
from .threads import on_one_thread


class TrainedModel:
    def __init__(self, net: MLP, loss: Loss, preprocessor: Preprocessor, labels: Labels, meta: dict[str, Any], path: Path,
                 targets=None, pca=None):
        self.net, self.loss, self.preprocessor, self.labels = net, loss, preprocessor, labels
        self.meta, self.path = meta, path
        self.temperature = 1.0  # T of temperature scaling (nnclf.calibration); 1 when uncalibrated
        self.task = meta.get("task", "classification")
        self.targets = targets  # regression: nnclf.data.targets.Targets
        self.pca = pca  # reconstruction: the PCA baseline fitted on the training rows

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        path = Path(path)
        params, meta, arrays = load_checkpoint(path, state=False)  # the model only: no optimizer state
        targets = pca = None
        try:
            network, loss_meta = meta["network"], meta["loss"]
            _check_meta(meta)
            labels = Labels(meta["labels"])
            task = meta.get("task", "classification")
            if task == "classification":
                # one binary sigmoid unit fits a list of 1 label too, and repeated labels would give
                # two proba_ columns of one name and classes no prediction can tell apart
                if len(labels) < 2 or len(labels._index) != len(labels):
                    raise NnclfError(f"{path}: not a valid checkpoint (labels {meta['labels']!r} are not 2 or more distinct classes)")
                loss = LOSSES.get(loss_meta["name"])(len(labels), 0.0, None)
            elif task in ("regression", "reconstruction"):
                from .data.targets import PCABaseline, Targets
                from .engine.regression import REGRESSION_LOSSES

                cls_ = REGRESSION_LOSSES.get(loss_meta["name"])
                loss = cls_(network["sizes"][-1], **{k: loss_meta[k] for k in cls_.hyper if k in loss_meta})
                if task == "regression":
                    targets = Targets(meta["targets"])
                    if len(targets.names) != network["sizes"][-1]:
                        raise NnclfError(f"{path}: not a valid checkpoint (targets and network sizes disagree)")
                else:
                    if "pca.mean" in arrays and "pca.components" in arrays:
                        pca = PCABaseline(arrays["pca.mean"], arrays["pca.components"])
                    if not 0 <= int(meta["code_layer"]) < len(network["sizes"]) - 2:
                        raise NnclfError(f"{path}: not a valid checkpoint (code_layer outside the hidden layers)")
            else:
                raise NnclfError(f"{path}: not a valid checkpoint (unknown task {task!r})")
            net = MLP(network["sizes"], network["activation"], 0.0, params.dtype)
            preprocessor = Preprocessor.from_json(meta["preprocessor"])
            if task == "classification" and not isinstance(preprocessor.target, str):
                raise TypeError("'preprocessor.target' of a classification model should be one column name")
            if preprocessor.n_outputs != network["sizes"][0] or loss.n_outputs != network["sizes"][-1]:
                raise NnclfError(f"{path}: not a valid checkpoint (preprocessing, labels and network sizes disagree)")
        except NnclfError as e:  # e.g. an activation or loss name this nnclf does not know
            message = str(e)
            raise NnclfError(message if message.startswith(f"{path}:") else f"{path}: not a valid checkpoint ({message})") from None
        except KeyError as e:
            raise NnclfError(f"{path}: not a valid checkpoint (missing entry {e})") from None
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise NnclfError(f"{path}: not a valid checkpoint (malformed metadata: {e})") from None
        net.params[...] = params
        model = cls(net, loss, preprocessor, labels, meta, path, targets, pca)
        model.temperature = calibration_of(meta, path)
        return model

    @property
    def target(self) -> str:
        return self.preprocessor.target

    @property
    def target_names(self) -> list[str]:
        """Regression targets, or the classification target as a one-item list; [] for reconstruction."""
        if self.targets is not None:
            return self.targets.names
        target = self.target
        return [] if target is None else [target] if isinstance(target, str) else list(target)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Regression: predictions (n, m) in the targets' units; reconstruction: x_hat (n, d) in
        the preprocessed space; classification: class probabilities (n, K)."""
        z = on_one_thread(self.net.logits, x)
        if self.task == "regression":
            return self.targets.decode(z)
        if self.task == "reconstruction":
            return z
        return self.loss.predict_proba(z)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """The code layer's activations (n, k) for preprocessed rows x (reconstruction)."""
        return on_one_thread(self.net.hidden_activations, x, int(self.meta["code_layer"]))

    def features(self, frame, source: str, warn: Callable[[str], None], notes=None) -> np.ndarray:
        return self.preprocessor.transform(frame, source, self.net.dtype, warn, notes=notes)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, K_out) logits z / T for preprocessed features x (n, d), T the calibrated temperature."""
        z = on_one_thread(self.net.logits, x)
        if self.temperature != 1.0:
            z /= z.dtype.type(self.temperature)
        return z

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, K) class probabilities for preprocessed features x (n, d), temperature applied."""
        return self.loss.predict_proba(self.logits(x))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class indices (n,), probabilities (n, K)) for preprocessed features x (n, d). The
        classes come from the logits before temperature scaling, so T never changes one."""
        z = on_one_thread(self.net.logits, x)
        classes = self.loss.predict_classes(z)
        if self.temperature != 1.0:
            z /= z.dtype.type(self.temperature)
        return classes, self.loss.predict_proba(z)


_SCALAR = (str, int, float, bool, type(None))


def _check_meta(meta: dict) -> None:
    """Labels and the data settings predict and evaluate read, with their JSON types."""
    labels = meta.get("labels")
    if not isinstance(labels, list) or not all(isinstance(v, _SCALAR) for v in labels):
        raise TypeError("'labels' should be a list of values")
    data = meta.get("config", {}).get("data") if isinstance(meta.get("config"), dict) else None
    if not isinstance(data, dict):
        raise TypeError("'config.data' should be an object")
    for key in ("encoding", "train"):
        if not isinstance(data.get(key), str):
            raise TypeError(f"'config.data.{key}' should be a string")
    target = data.get("target")
    if not (target is None or isinstance(target, str) or (isinstance(target, list) and all(isinstance(t, str) for t in target))):
        raise TypeError("'config.data.target' should be a column name or a list of them")
    na = data.get("na_values")
    if na is not None and not (isinstance(na, list) and all(isinstance(v, str) for v in na)):
        raise TypeError("'config.data.na_values' should be a list of strings")
    for key in ("delimiter", "val", "test"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise TypeError(f"'config.data.{key}' should be a string or null")
