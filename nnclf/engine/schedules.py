"""Learning-rate schedules: the learning rate of each epoch e = 0, 1, ..., E-1.

A schedule is a pure function of the epoch, so resuming a run needs only the epoch number.
Optional linear warmup over W epochs multiplies by (e + 1) / (W + 1) for e < W; the decay
then counts epochs t = e - W from the end of warmup. ``reduce_on_plateau`` is the one schedule
that also looks at the metrics; its state is two numbers saved with the checkpoint.
"""

from __future__ import annotations

import math

from ..registry import Registry

SCHEDULES: Registry[type["Schedule"]] = Registry("schedule")


class Schedule:
    name = ""
    hyper: dict[str, float] = {}

    def __init__(self, base_lr: float, epochs: int, warmup_epochs: int = 0, **hyper: float):
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameters {sorted(unknown)}")
        for key, default in self.hyper.items():
            setattr(self, key, hyper.get(key, default))
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.warmup_epochs = int(warmup_epochs)

    def lr(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch``."""
        w = self.warmup_epochs
        if epoch < w:
            return self.decayed(0) * (epoch + 1) / (w + 1)
        return self.decayed(epoch - w)

    def decayed(self, t: int) -> float:
        """Learning rate t epochs after warmup."""
        raise NotImplementedError

    # Only reduce_on_plateau uses these; the others are pure functions of the epoch.
    def observe(self, metrics: dict[str, float]) -> None:
        """Called after each epoch with that epoch's metrics."""

    def state(self) -> dict[str, float]:
        return {}

    def load_state(self, state: dict[str, float]) -> None:
        pass


@SCHEDULES.register("constant")
class Constant(Schedule):
    """lr_t = lr."""

    name = "constant"

    def decayed(self, t):
        return self.base_lr


@SCHEDULES.register("step")
class StepDecay(Schedule):
    """lr_t = lr * gamma^floor(t / step_size)."""

    name = "step"
    hyper = {"step_size": 10, "gamma": 0.1}

    def decayed(self, t):
        return self.base_lr * self.gamma ** (t // int(self.step_size))


@SCHEDULES.register("exponential")
class ExponentialDecay(Schedule):
    """lr_t = lr * gamma^t."""

    name = "exponential"
    hyper = {"gamma": 0.95}

    def decayed(self, t):
        return self.base_lr * self.gamma**t


@SCHEDULES.register("cosine")
class CosineDecay(Schedule):
    """lr_t = min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2, T = E - W - 1: from lr at the
    end of warmup down to min_lr at the last epoch."""

    name = "cosine"
    hyper = {"min_lr": 0.0}

    def decayed(self, t):
        span = max(1, self.epochs - self.warmup_epochs - 1)
        cos = (1.0 + math.cos(math.pi * min(t, span) / span)) / 2.0
        return self.min_lr + (self.base_lr - self.min_lr) * cos


@SCHEDULES.register("reduce_on_plateau", "plateau")
class ReduceOnPlateau(Schedule):
    """lr <- max(min_lr, lr * factor) when the monitored metric has not improved by more than
    min_delta for ``patience`` epochs (mode min for losses, max for accuracy-like metrics)."""

    name = "reduce_on_plateau"
    hyper = {
        "monitor": "val_loss",
        "mode": "auto",
        "factor": 0.1,
        "patience": 5,
        "min_delta": 0.0,
        "min_lr": 0.0,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = self.base_lr
        self.plateau = Improvement(self.monitor, self.mode, self.min_delta)

    def decayed(self, t):
        return self.current

    def observe(self, metrics):
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if not self.plateau.update(value) and self.plateau.bad_epochs >= self.patience:
            self.current = max(self.min_lr, self.current * self.factor)
            self.plateau.bad_epochs = 0

    def state(self):
        return {"current": self.current, "best": self.plateau.best, "bad_epochs": self.plateau.bad_epochs}

    def load_state(self, state):
        self.current = float(state["current"])
        self.plateau.best = None if state["best"] is None else float(state["best"])
        self.plateau.bad_epochs = int(state["bad_epochs"])


class Improvement:
    """Tracks the best value of a monitored metric: early stopping, the best checkpoint and
    ``reduce_on_plateau`` all ask it whether an epoch improved.

    An epoch improves when its value beats the best by more than ``min_delta`` (below it in
    mode min, above it in mode max); the first finite value always improves.
    """

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, resolve_mode(mode, monitor), float(min_delta)
        self.best: float | None = None
        self.best_epoch = 0  # 1-based epoch of the best value; 0: none yet
        self.bad_epochs = 0  # epochs since the last improvement

    def update(self, value: float, epoch: int = 0) -> bool:
        """Record one epoch's value; True when it improved on the best."""
        if self.best is None:
            better = math.isfinite(value)
        elif self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    def state(self) -> dict:
        return {"best_value": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict) -> None:
        self.best = None if state["best_value"] is None else float(state["best_value"])
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])


def resolve_mode(mode: str, monitor: str) -> str:
    """``auto``: maximise accuracy, f1, precision, recall, auc and r2; minimise everything else."""
    if mode != "auto":
        return mode
    maximised = ("accuracy", "f1", "precision", "recall", "auc", "r2")
    return "max" if any(monitor.endswith(m) for m in maximised) else "min"
