"""Config -> engine parts: network, loss, optimizer, schedule, early stopping."""

from __future__ import annotations

import numpy as np

from .config import Config
from .engine.losses import LOSSES, Loss
from .engine.network import MLP, parameter_count
from .engine.optimizers import OPTIMIZERS, Optimizer
from .engine.schedules import SCHEDULES, Schedule
from .errors import NnclfError
from .trainer import EarlyStopper


def class_weight_vector(cfg: Config, labels: list, y_train: np.ndarray) -> np.ndarray | None:
    """``balanced``: w_c = n / (K n_c) (as scikit-learn); a mapping gives w per label, others 1."""
    spec = cfg.loss.class_weights
    if spec is None:
        return None
    k = len(labels)
    if spec == "balanced":
        counts = np.bincount(y_train, minlength=k).astype(np.float64)
        return np.divide(len(y_train), k * counts, out=np.zeros(k), where=counts > 0)
    weights = np.ones(k)
    keys = {str(v).lower() if isinstance(v, bool) else str(v): i for i, v in enumerate(labels)}
    for label, w in spec.items():
        key = str(label).lower() if isinstance(label, bool) else str(label)
        if key not in keys:
            raise NnclfError(f"loss.class_weights: label {label!r} is not a class of the training data; classes: {', '.join(map(str, labels))}")
        weights[keys[key]] = w
    return weights


def build_loss(cfg: Config, n_classes: int, class_weights=None) -> Loss:
    return LOSSES.get(cfg.loss.name)(n_classes, cfg.loss.label_smoothing, class_weights)


def build_network(cfg: Config, n_features: int, loss: Loss) -> MLP:
    sizes = [n_features, *cfg.model.hidden, loss.n_outputs]
    try:
        return MLP(sizes, cfg.model.activation, cfg.model.dropout, cfg.training.dtype)
    except (MemoryError, ValueError):  # numpy: "Unable to allocate ..." / "Maximum allowed dimension exceeded"
        n = parameter_count(sizes)
        raise NnclfError(f"model.hidden: {cfg.model.hidden} makes a network of {n:,} parameters, too many to allocate") from None


def build_optimizer(cfg: Config, net: MLP) -> Optimizer:
    cls = OPTIMIZERS.get(cfg.optimizer.name)
    return cls(net.params.size, net.dtype, net.weight_mask(), **cfg.optimizer.hyperparameters())


def build_schedule(cfg: Config) -> Schedule:
    cls = SCHEDULES.get(cfg.schedule.name)
    return cls(cfg.optimizer.lr, cfg.training.epochs, cfg.schedule.warmup_epochs, **cfg.schedule.hyperparameters())


def build_early_stopping(cfg: Config) -> EarlyStopper | None:
    es = cfg.training.early_stopping
    return None if es is None else EarlyStopper(es.monitor, es.patience, es.min_delta, es.mode)
