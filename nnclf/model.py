"""A trained model loaded from a checkpoint: network + loss + preprocessing + labels."""

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


class TrainedModel:
    def __init__(self, net: MLP, loss: Loss, preprocessor: Preprocessor, labels: Labels, meta: dict[str, Any], path: Path):
        self.net, self.loss, self.preprocessor, self.labels = net, loss, preprocessor, labels
        self.meta, self.path = meta, path
        self.temperature = 1.0  # T of temperature scaling (nnclf.calibration); 1 when uncalibrated

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        path = Path(path)
        params, meta, _ = load_checkpoint(path)
        try:
            network, loss_meta = meta["network"], meta["loss"]
            labels = Labels(meta["labels"])
            loss = LOSSES.get(loss_meta["name"])(len(labels), 0.0, None)
            net = MLP(network["sizes"], network["activation"], 0.0, params.dtype)
            preprocessor = Preprocessor(meta["preprocessor"])
            _check_preprocessor(preprocessor.state, path)
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
        model = cls(net, loss, preprocessor, labels, meta, path)
        model.temperature = calibration_of(meta, path)
        return model

    @property
    def target(self) -> str:
        return self.preprocessor.state["target"]

    def features(self, frame, source: str, warn: Callable[[str], None], notes=None) -> np.ndarray:
        return self.preprocessor.transform(frame, source, self.net.dtype, warn, notes=notes)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, K_out) logits z / T for preprocessed features x (n, d), T the calibrated temperature."""
        z = self.net.logits(x)
        if self.temperature != 1.0:
            z /= z.dtype.type(self.temperature)
        return z

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, K) class probabilities for preprocessed features x (n, d), temperature applied."""
        return self.loss.predict_proba(self.logits(x))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class indices (n,), probabilities (n, K)) for preprocessed features x (n, d). The
        classes come from the logits before temperature scaling, so T never changes one."""
        z = self.net.logits(x)
        classes = self.loss.predict_classes(z)
        if self.temperature != 1.0:
            z /= z.dtype.type(self.temperature)
        return classes, self.loss.predict_proba(z)


_COLUMN_KEYS = {
    "numeric": ("name", "fill", "center", "scale", "missing_in_training", "indicator"),
    "categorical": ("name", "categories", "missing_in_training"),
}


def _check_preprocessor(state: dict, path: Path) -> None:
    """Every entry transform() reads is present, so a damaged checkpoint fails here, not mid-predict."""
    if not isinstance(state, dict):
        raise TypeError(f"'preprocessor' is a {type(state).__name__}, not a mapping")
    missing = [key for key in ("target", "features", "columns") if key not in state]
    for c in state["columns"] if not missing else []:
        if c["kind"] not in _COLUMN_KEYS:
            raise NnclfError(f"{path}: not a valid checkpoint (unknown column kind {c['kind']!r})")
        missing += [key for key in _COLUMN_KEYS[c["kind"]] if key not in c]
    if missing:
        raise KeyError(missing[0])
