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


def curvature_factory(cfg: Config):
    """(net, loss, x, y, weight_decay) -> the curvature product newton_cg asks for, or None."""
    if cfg.optimizer.name != "newton_cg":
        return None
    from functools import partial

    # a partial of a module-level function, not a closure: the estimators pickle their trainer
    return partial(_curvature_product, cfg.optimizer.hyperparameters()["curvature"])


def _curvature_product(kind: str, net, loss, x, y, weight_decay):
    from .engine.curvature import CurvatureProduct

    try:
        return CurvatureProduct(net, loss, x, y, weight_decay, kind)
    except ValueError as e:
        raise NnclfError(f"optimizer.curvature: {e}") from None


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def full_batch_memory(optimizer, net: MLP, n_rows: int) -> int:
    """Bytes a full-batch method needs beyond the data: its float64 state and work vectors
    (L-BFGS: 2 m + 6 vectors of P), the objective's row-chunk buffers (and its [X, 1] copy
    when the rows fit one chunk), and the training-set
    evaluation each epoch (a (n, K) logits array) and, for newton_cg, the float64 curvature
    pass over a chunk (about 6 arrays of chunk x widest layer)."""
    from .engine.network import INFERENCE_ROWS

    widest = max(net.sizes)
    chunk = min(n_rows, INFERENCE_ROWS)
    total = optimizer.memory_bytes() + 3 * net.params.size * net.dtype.itemsize
    total += 4 * chunk * sum(net.sizes) * net.dtype.itemsize + n_rows * net.sizes[-1] * 8
    if n_rows <= chunk:  # the objective's own [X, 1] (engine/step.py)
        total += n_rows * (net.sizes[0] + 1) * net.dtype.itemsize
    if getattr(optimizer, "needs_curvature", False):
        total += 6 * chunk * widest * 8 * len(net.sizes)
    return total


def check_full_batch_memory(cfg: Config, optimizer, net: MLP, n_rows: int, available: int | None = None) -> None:
    """Refuse, before training, a full-batch run whose state would not fit in free memory."""
    need = full_batch_memory(optimizer, net, n_rows)
    free = available_memory() if available is None else available
    if free is not None and need > free:
        hint = " or a smaller optimizer.history" if "history" in cfg.optimizer.hyperparameters() else ""
        raise NnclfError(
            f"optimizer.name: {cfg.optimizer.name} needs about {need / 2**20:,.0f} MiB for {net.params.size:,} parameters "
            f"and {n_rows:,} rows but only {free / 2**20:,.0f} MiB are free; use a smaller model.hidden{hint}, "
            f"or a mini-batch optimizer such as adam"
        )


def build_real_loss(cfg: Config, n_outputs: int):
    """The regression / reconstruction loss of ``cfg`` over ``n_outputs`` identity outputs."""
    from .engine.regression import REGRESSION_LOSSES

    cls = REGRESSION_LOSSES.get(cfg.loss.name)
    return cls(n_outputs, **{key: getattr(cfg.loss, key) for key in cls.hyper})


def build_task_loss(cfg: Config, prepared):
    """The loss for ``cfg.task`` sized by the prepared data: classes, targets or input columns."""
    if cfg.task == "classification":
        labels = prepared.labels
        return build_loss(cfg, len(labels), class_weight_vector(cfg, labels.values, prepared.train.y))
    n_outputs = prepared.train.y.shape[1]
    return build_real_loss(cfg, n_outputs)
