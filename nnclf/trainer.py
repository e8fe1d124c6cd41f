"""The training loop: mini-batch epochs over float arrays, reporting through callbacks.

It knows nothing of files or terminals: checkpointing, logging and progress displays are
callbacks. All randomness (shuffling, dropout) comes from one explicit Generator whose state
is part of ``TrainerState``, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np

from .engine.losses import Loss
from .engine.network import INFERENCE_ROWS, MLP
from .engine.optimizers import Optimizer
from .engine.parallel import SPLIT_ROWS, BatchHalves, batch_gradient, fork_available, halves_platform, predicted_classes
from .engine.schedules import Schedule, resolve_mode
from .errors import NnclfError
from .metrics import macro_f1


class TrainingDiverged(NnclfError):
    pass


def diverged(what: str, lr: float) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged: {what} (lr {lr:g}); lower optimizer.lr, or set training.clip_norm")


@dataclass
class EarlyStopper:
    """Stop after ``patience`` epochs without an improvement of more than ``min_delta``."""

    monitor: str
    patience: int
    min_delta: float = 0.0
    mode: str = "auto"

    def __post_init__(self):
        self.mode = resolve_mode(self.mode, self.monitor)


@dataclass
class TrainerState:
    """Everything besides weights and optimizer arrays that a resumed run needs."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch (non-zero only after an interrupt)
    permutation: Optional[np.ndarray] = None  # the current epoch's row order, mid-epoch only
    loss_sum: float = 0.0  # running sums of the current epoch, mid-epoch only
    correct: int = 0
    seen: int = 0
    best_value: Optional[float] = None
    best_epoch: int = 0
    bad_epochs: int = 0
    rng_state: dict = field(default_factory=dict)
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "permutation"}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], permutation: Optional[np.ndarray]) -> "TrainerState":
        return cls(**{**data, "permutation": permutation})


class Callback(Protocol):  # every method optional; see Trainer._emit
    def on_batch_end(self, trainer: "Trainer", epoch: int, batch: int, n_batches: int, loss: float) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", record: dict[str, float], improved: bool) -> None: ...


class Trainer:
    def __init__(
        self,
        net: MLP,
        loss: Loss,
        optimizer: Optimizer,
        schedule: Schedule,
        *,
        epochs: int,
        batch_size: int | None,  # None: full batch
        rng: np.random.Generator,
        shuffle: bool = True,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        early_stopping: EarlyStopper | None = None,
        monitor: str = "val_loss",
        callbacks: list = (),
        workers: int | None = None,
    ):
        self.net, self.loss, self.optimizer, self.schedule = net, loss, optimizer, schedule
        self.epochs, self.batch_size, self.rng = epochs, batch_size, rng
        self.shuffle, self.weight_decay, self.clip_norm = shuffle, weight_decay, clip_norm
        self.early_stopping = early_stopping
        self.monitor = early_stopping.monitor if early_stopping else monitor
        self.monitor_mode = early_stopping.mode if early_stopping else resolve_mode("auto", self.monitor)
        self.callbacks = list(callbacks)
        # on Linux x86-64, batches of >= SPLIT_ROWS rows are computed as two halves
        # (engine/parallel.py), the second in a worker process unless ``workers`` is 1 or the
        # process has one core. The numbers are the same with or without the worker.
        self.workers = workers
        self.notes: list[str] = []  # things the caller should tell the user (a lost worker)
        self.used_worker = False  # whether a worker process computed half of the batches
        self.state = TrainerState()
        self.history: list[dict[str, float]] = []
        self.best_params: np.ndarray | None = None
        self.stop_requested = False  # set from a signal handler: stop after the current batch
        self.interrupted = False

    # -- helpers -----------------------------------------------------------------------------
    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(self, *args)

    def evaluate(self, x: np.ndarray, y: np.ndarray, chunk: int = INFERENCE_ROWS) -> dict[str, float]:
        """Mean loss (without weight decay), accuracy and macro F1 on (x, y)."""
        total, predictions = 0.0, np.empty(len(y), dtype=np.int64)
        for start in range(0, len(y), chunk):
            stop = min(start + chunk, len(y))
            logits = self.net.forward(x[start:stop])
            total += self.loss.forward(logits, y[start:stop]) * (stop - start)
            predictions[start:stop] = predicted_classes(logits)
        return {
            "loss": total / len(y),
            "accuracy": float(np.mean(predictions == y)),
            "f1": macro_f1(y, predictions, self.loss.n_classes),
        }

    def _improved(self, value: float) -> bool:
        best = self.state.best_value
        if best is None:
            return math.isfinite(value)
        delta = self.early_stopping.min_delta if self.early_stopping else 0.0
        return value < best - delta if self.monitor_mode == "min" else value > best + delta

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, x_val=None, y_val=None) -> list[dict[str, float]]:
        n = len(y)
        batch = n if self.batch_size is None else min(self.batch_size, n)
        n_batches = math.ceil(n / batch)
        xb = np.empty((batch, x.shape[1]), dtype=x.dtype)
        yb = np.empty(batch, dtype=y.dtype)
        has_val = x_val is not None and len(y_val) > 0
        halves = None
        if batch >= SPLIT_ROWS and halves_platform():
            # the optimizer step is split between the processes too when nothing needs the
            # whole gradient first (weight decay and clipping do)
            split_update = self.weight_decay == 0 and self.clip_norm is None
            halves = BatchHalves(self.net, self.loss, x, y, batch, parallel=self.workers != 1 and fork_available(),
                                 optimizer=self.optimizer if split_update else None)
            self.used_worker = self.used_worker or halves.parallel
        try:
            return self._epochs(x, y, x_val, y_val, batch, n_batches, xb, yb, has_val, halves)
        finally:
            if halves is not None:
                halves.close()
                if halves.note:
                    self.notes.append(halves.note)

    def _epochs(self, x, y, x_val, y_val, batch, n_batches, xb, yb, has_val, halves) -> list[dict[str, float]]:
        n = len(y)
        st = self.state
        while st.epoch < self.epochs and not self.stop_requested:
            epoch_start = time.perf_counter()
            lr = self.schedule.lr(st.epoch)
            if st.batch == 0:
                st.permutation = self.rng.permutation(n) if self.shuffle else None
                st.loss_sum, st.correct, st.seen = 0.0, 0, 0
            for b in range(st.batch, n_batches):
                lo, hi = b * batch, min((b + 1) * batch, n)
                size = hi - lo
                if halves is not None and size >= SPLIT_ROWS:
                    rows = st.permutation[lo:hi] if st.permutation is not None else range(lo, hi)
                    batch_loss = self._update(*halves.gradient(rows, self.rng), lr, st.epoch, b, halves)
                else:
                    if st.permutation is not None:
                        idx = st.permutation[lo:hi]
                        # mode="clip" (indices are always valid here) lets take write straight
                        # into the buffer; mode="raise" gathers into a hidden temporary first
                        xs = x.take(idx, axis=0, out=xb[:size], mode="clip")
                        ys = y.take(idx, out=yb[:size], mode="clip")
                    else:
                        xs, ys = x[lo:hi], y[lo:hi]
                    batch_loss = self._step(xs, ys, lr, st.epoch, b)
                st.loss_sum += batch_loss * size
                st.seen += size
                st.batch = b + 1
                self._emit("on_batch_end", st.epoch, b, n_batches, batch_loss)
                if self.stop_requested and st.batch < n_batches:
                    self.interrupted = True
                    return self.history
            self._check_finite_state(st.epoch, lr)
            record = {
                "epoch": st.epoch + 1,
                "lr": lr,
                "train_loss": st.loss_sum / st.seen,
                "train_accuracy": st.correct / st.seen,
            }
            if has_val:
                val = self.evaluate(x_val, y_val)
                if not math.isfinite(val["loss"]):  # finite weights whose outputs overflow
                    raise diverged(f"the validation loss became {val['loss']} at epoch {st.epoch + 1}", lr)
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_f1=val["f1"])
            record["seconds"] = time.perf_counter() - epoch_start
            st.epoch += 1
            st.batch, st.permutation = 0, None
            self.schedule.observe(record)
            value = record.get(self.monitor)
            if value is None:
                raise NnclfError(f"training.early_stopping.monitor: metric '{self.monitor}' is not logged; logged: {', '.join(k for k in record if k not in ('epoch', 'seconds'))}")
            improved = self._improved(value)
            if improved:
                st.best_value, st.best_epoch, st.bad_epochs = value, st.epoch, 0
                self.best_params = self.net.params.copy()
            else:
                st.bad_epochs += 1
            self.history.append(record)
            stop = self.early_stopping is not None and st.bad_epochs >= self.early_stopping.patience
            st.stopped_early = stop
            self._emit("on_epoch_end", record, improved)
            if stop:
                break
        if self.stop_requested and st.epoch < self.epochs and not st.stopped_early:
            self.interrupted = True
        return self.history

    def _check_finite_state(self, epoch: int, lr: float) -> None:
        """Weights and optimizer state must stay finite (Adam's v = g^2 can overflow while the
        loss still looks fine); checked once per epoch, so no NaN is ever checkpointed."""
        if not np.all(np.isfinite(self.net.params)):
            raise diverged(f"the weights became NaN or infinite during epoch {epoch + 1}", lr)
        for name, value in self.optimizer.state().items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise diverged(
                    f"the gradients overflowed (optimizer state '{name}' became NaN or infinite) during epoch {epoch + 1}", lr
                )

    def _step(self, xs: np.ndarray, ys: np.ndarray, lr: float, epoch: int, b: int) -> float:
        """One gradient step on a batch; returns its loss before the step (no weight decay)."""
        return self._update(*batch_gradient(self.net, self.loss, xs, ys, 1.0, self.rng), lr, epoch, b)

    def _update(self, batch_loss: float, correct: int, lr: float, epoch: int, b: int, halves=None) -> float:
        """The step after ``net.grads`` holds the batch's gradient: weight decay, clipping, the
        optimizer (or, with a worker sharing the update, ``halves.update``). Returns ``batch_loss``."""
        if not math.isfinite(batch_loss):
            raise diverged(f"the loss became {batch_loss} at epoch {epoch + 1}, batch {b + 1}", lr)
        self.state.correct += correct
        if halves is not None and halves.splits_update:
            halves.update(lr)
            return batch_loss
        net = self.net
        net.add_l2_gradient(self.weight_decay)
        if self.clip_norm is not None:
            norm = math.sqrt(float(np.dot(net.grads, net.grads)))
            if norm > self.clip_norm:
                net.grads *= net.dtype.type(self.clip_norm / norm)
        self.optimizer.step(net.params, net.grads, lr)
        return batch_loss
