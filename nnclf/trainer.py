"""The training loop: mini-batch epochs over float arrays, around one ``TrainingStep``.

It knows nothing of files or terminals: checkpointing, logging and progress displays are
callbacks (``on_batch_end``, ``on_epoch_end``). All randomness (shuffling, dropout) comes from
one explicit Generator; ``state_dict()`` holds it with everything else a resumed run needs, so a
run stopped and resumed (mid-epoch too) continues bit for bit.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Any, Optional

import numpy as np

from .engine.losses import Loss
from .engine.network import INFERENCE_ROWS, MLP
from .engine.optimizers import Optimizer, all_finite
from .engine.schedules import Improvement, Schedule, resolve_mode
from .engine.step import Objective, TrainingStep, check_labels
from .errors import NnclfError
from .metrics import macro_f1


class TrainingDiverged(NnclfError):
    pass


def diverged(what: str, lr: float) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged: {what} (lr {lr:g}); lower optimizer.lr, or set training.clip_norm")


class EarlyStopper:
    """Stop after ``patience`` epochs without an improvement of ``monitor`` by more than ``min_delta``."""

    def __init__(self, monitor: str, patience: int, min_delta: float = 0.0, mode: str = "auto"):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode = resolve_mode(mode, monitor)


# The progress counters saved with a checkpoint (JSON); the permutation and the RNG travel apart.
_PROGRESS = ("epoch", "batch", "loss_sum", "correct", "seen", "stopped_early")


class Trainer:
    """Epochs of mini-batch steps over (x (n, d), y (n,)), with validation, early stopping and
    the best parameters kept. ``batch_size=None`` is full-batch gradient descent."""

    def __init__(
        self,
        net: MLP,
        loss: Loss,
        optimizer: Optimizer,
        schedule: Schedule,
        *,
        epochs: int,
        batch_size: int | None,
        rng: np.random.Generator,
        shuffle: bool = True,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        early_stopping: EarlyStopper | None = None,
        monitor: str = "val_loss",
        callbacks: list = (),
        speed=None,
        metrics=None,
        parallel=None,
    ):
        """``speed``: an object with ``step()`` returning a context manager entered around
        every batch (``nnclf.threads.BlasThreads`` picks BLAS threads there); it may change
        how fast a step runs, never its numbers.

        ``metrics``: ``metrics(outputs (n, K_out), y) -> {name: value}`` computed on the
        validation data after each epoch and logged as ``val_<name>``; the default is the
        classification pair accuracy and macro F1 (regression passes RMSE, MAE, R^2)."""
        self.net, self.loss, self.optimizer, self.schedule = net, loss, optimizer, schedule
        self.step = TrainingStep(net, loss, optimizer, weight_decay, clip_norm)
        self.epochs, self.batch_size, self.rng, self.shuffle = epochs, batch_size, rng, shuffle
        self.early_stopping = early_stopping
        monitor = early_stopping.monitor if early_stopping else monitor
        self.improvement = Improvement(monitor, early_stopping.mode if early_stopping else "auto",
                                       early_stopping.min_delta if early_stopping else 0.0)
        self.callbacks = list(callbacks)
        self.speed = speed
        self.metrics = metrics
        self.classifies = loss.classifies  # False: real-valued targets, no accuracy
        # ``parallel``: a data-parallel step (nnclf.distributed.DataParallelStep) when several
        # processes share each batch: ``part(lo, hi)`` names this process's rows of the batch,
        # ``step(xs, ys, lr, rng, rows, epoch, batch)`` combines the parts and updates
        self.parallel = parallel
        # progress (see state_dict)
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch (non-zero only after a stop)
        self.permutation: Optional[np.ndarray] = None  # the current epoch's row order, mid-epoch
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0  # running sums of the current epoch
        self.stopped_early = False
        self.lr = schedule.lr(0)  # the learning rate the current (or last) epoch's steps use
        self.history: list[dict[str, float]] = []
        self.best_params: np.ndarray | None = None
        self.stop_requested = False  # set from a signal handler: stop after the current batch
        self.interrupted = False
        self.weight_decay = float(weight_decay)
        # full-batch methods (engine/fullbatch.py): curvature(net, loss, x, y, weight_decay) ->
        # a product (theta, v) -> B v, for the ones that need it (set by the builder)
        self.curvature_factory = None

    @property
    def monitor(self) -> str:
        return self.improvement.monitor

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs: ``progress`` and ``schedule``
        (JSON), the RNG state (JSON), and ``optimizer`` and ``permutation`` (arrays)."""
        progress = {k: getattr(self, k) for k in _PROGRESS}
        progress.update(self.improvement.state())
        progress["rng_state"] = self.rng.bit_generator.state
        progress["lr"] = self.lr
        return {
            "progress": progress,
            "schedule": self.schedule.state(),
            "optimizer": self.optimizer.state(),
            "permutation": self.permutation if self.batch > 0 else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        progress = state["progress"]
        for key in _PROGRESS:
            setattr(self, key, type(getattr(self, key))(progress[key]))
        self.improvement.load_state(progress)
        self.rng.bit_generator.state = progress["rng_state"]
        self.schedule.load_state(state["schedule"])
        self.optimizer.load_state(state["optimizer"])
        self.permutation = state.get("permutation")
        if self.batch > 0 and self.permutation is None and self.shuffle:
            raise NnclfError("the checkpoint stopped mid-epoch but holds no row order to continue it")
        # the lr the last steps used (older checkpoints: the schedule's word for that epoch)
        self.lr = float(progress.get("lr", self.schedule.lr(max(self.epoch - (self.batch == 0), 0))))

    @property
    def best_epoch(self) -> int:
        return self.improvement.best_epoch

    @property
    def best_value(self) -> float | None:
        return self.improvement.best

    # -- helpers -----------------------------------------------------------------------------
    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(self, *args)

    def evaluate(self, x: np.ndarray, y: np.ndarray, chunk: int = INFERENCE_ROWS) -> dict[str, float]:
        """Mean loss (without weight decay) and the ``metrics`` (by default accuracy and macro
        F1) on (x, y)."""
        total = 0.0
        outputs = np.empty((len(y), self.net.sizes[-1]), dtype=self.net.dtype)
        for start in range(0, len(y), chunk):
            stop = min(start + chunk, len(y))
            logits = self.net.forward(x[start:stop])
            total += self.loss.forward(logits, y[start:stop]) * (stop - start)
            outputs[start:stop] = logits
        result = {"loss": total / len(y)}
        if self.metrics is not None:
            result.update(self.metrics(outputs, y))
        else:
            predictions = self.loss.predict_classes(outputs)
            result.update(accuracy=float(np.mean(predictions == y)), f1=macro_f1(y, predictions, self.loss.n_classes))
        return result

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, x_val=None, y_val=None, w: np.ndarray | None = None) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are done (or early stopping, or a stop request).

        ``w`` (n,): optional per-row weights of the training rows (scaled by the caller to
        mean 1, so the logged train_loss is the weighted mean loss); validation is unweighted.
        """
        for labels in (y, y_val) if self.classifies else ():
            if labels is not None:
                try:
                    check_labels(labels, self.loss.n_classes)
                except ValueError as e:
                    raise NnclfError(f"training labels: {e}") from None
        if getattr(self.optimizer, "full_batch", False):
            if w is not None:  # the Objective and curvature products have no row weights yet
                raise NnclfError(f"optimizer.name: {self.optimizer.name} does not take sample weights yet; use gd, sgd, momentum or adam")
            return self._fit_full_batch(x, y, x_val, y_val)
        n = len(y)
        batch = n if self.batch_size is None else min(self.batch_size, n)
        n_batches = math.ceil(n / batch)
        xb = np.empty((batch, x.shape[1]), dtype=x.dtype)
        yb = np.empty((batch, *y.shape[1:]), dtype=y.dtype)  # (B,) class indices or (B, m) targets
        wb = None if w is None else np.empty(batch, dtype=w.dtype)
        has_val = x_val is not None and len(y_val) > 0
        pace = self.speed.step if self.speed is not None else nullcontext
        while self.epoch < self.epochs and not self.stop_requested:
            epoch_start = time.perf_counter()
            self.lr = lr = self.schedule.lr(self.epoch)
            if self.batch == 0:
                self.permutation = self.rng.permutation(n) if self.shuffle else None
                self.loss_sum, self.correct, self.seen = 0.0, 0, 0
            for b in range(self.batch, n_batches):
                lo, hi = b * batch, min((b + 1) * batch, n)
                mine = (lo, hi) if self.parallel is None else self.parallel.part(lo, hi)  # the rows read here
                if self.permutation is not None:
                    idx = self.permutation[mine[0] : mine[1]]
                    # mode="clip" (indices are always valid here) lets take write straight
                    # into the buffer; mode="raise" gathers into a hidden temporary first
                    xs = x.take(idx, axis=0, out=xb[: len(idx)], mode="clip")
                    ys = y.take(idx, axis=0, out=yb[: len(idx)], mode="clip")
                    ws = None if w is None else w.take(idx, out=wb[: len(idx)], mode="clip")
                else:
                    xs, ys = x[mine[0] : mine[1]], y[mine[0] : mine[1]]
                    ws = None if w is None else w[mine[0] : mine[1]]
                with pace():
                    if self.parallel is None:
                        result = self.step.step(xs, ys, lr, self.rng, ws)
                    else:
                        result = self.parallel.step(xs, ys, lr, self.rng, hi - lo, self.epoch, b, ws)
                if not math.isfinite(result.loss):
                    raise diverged(f"the loss became {result.loss} at epoch {self.epoch + 1}, batch {b + 1}", lr)
                self.loss_sum += result.loss * (hi - lo)
                self.correct += result.correct
                self.seen += hi - lo
                self.batch = b + 1
                self._emit("on_batch_end", self.epoch, b, n_batches, result.loss)
                if self.stop_requested and self.batch < n_batches:
                    self.interrupted = True
                    return self.history
            self._check_finite_state(lr)
            record = {
                "epoch": self.epoch + 1,
                "lr": lr,
                "train_loss": self.loss_sum / self.seen,
            }
            if self.classifies:
                record["train_accuracy"] = self.correct / self.seen
            if self._end_epoch(record, epoch_start, lr, x_val, y_val if has_val else None):
                break
        if self.stop_requested and self.epoch < self.epochs and not self.stopped_early:
            self.interrupted = True
        return self.history

    def _end_epoch(self, record: dict, epoch_start: float, lr: float, x_val, y_val) -> bool:
        """Validation, the improvement tracker, early stopping, the epoch event; True to stop."""
        if y_val is not None:
            val = self.evaluate(x_val, y_val)
            if not math.isfinite(val["loss"]):  # finite weights whose outputs overflow
                raise diverged(f"the validation loss became {val['loss']} at epoch {self.epoch + 1}", lr)
            record.update({f"val_{name}": value for name, value in val.items()})
        record["seconds"] = time.perf_counter() - epoch_start
        self.epoch += 1
        self.batch, self.permutation = 0, None
        self.schedule.observe(record)
        value = record.get(self.monitor)
        if value is None:
            raise NnclfError(f"training.early_stopping.monitor: metric '{self.monitor}' is not logged; logged: {', '.join(k for k in record if k not in ('epoch', 'seconds'))}")
        improved = self.improvement.update(value, self.epoch)
        if improved:
            self.best_params = self.net.params.copy()
        self.history.append(record)
        self.stopped_early = self.early_stopping is not None and self.improvement.bad_epochs >= self.early_stopping.patience
        self._emit("on_epoch_end", record, improved)
        return self.stopped_early

    def _fit_full_batch(self, x, y, x_val, y_val) -> list[dict[str, float]]:
        """Epochs of a full-batch method: one outer iteration each (engine/fullbatch.py) on the
        objective over all training rows. The record's train_loss and train_accuracy are at the
        new point (without weight decay, as for mini-batch epochs), ``evaluations`` counts the
        function-and-gradient evaluations the iteration used, ``products`` its curvature
        products. A method that has converged ends training like early stopping does."""
        opt = self.optimizer
        objective = Objective(self.net, self.loss, x, y, self.weight_decay)
        curvature = None
        if opt.needs_curvature:
            curvature = self.curvature_factory(self.net, self.loss, x, y, self.weight_decay)
        has_val = x_val is not None and len(y_val) > 0
        pace = self.speed.step if self.speed is not None else nullcontext
        while self.epoch < self.epochs and not self.stop_requested and not opt.converged:
            epoch_start = time.perf_counter()
            self.lr = lr = self.schedule.lr(self.epoch)
            with pace():
                result = opt.iterate(objective, self.net.params, curvature)
            if not math.isfinite(result.value):
                raise diverged(f"the loss became {result.value} at epoch {self.epoch + 1}", lr)
            accepted = opt.x if opt.x.dtype == self.net.dtype else opt.x.astype(self.net.dtype)
            if result.evaluations and bool((self.net.params == accepted).all()):  # same shape always
                train_loss, train_accuracy = objective.last_loss, objective.last_correct / len(y)  # its last call was here
            else:  # the last call was a rejected trial point (or there was none): one more pass
                self.net.params[...] = accepted
                train = self.evaluate(x, y)
                train_loss, train_accuracy = train["loss"], train.get("accuracy")
            self._emit("on_batch_end", self.epoch, 0, 1, result.value)
            self._check_finite_state(lr)
            record = {
                "epoch": self.epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                **({"train_accuracy": train_accuracy} if self.classifies else {}),
                "evaluations": result.evaluations,
                "products": result.products,
            }
            if self._end_epoch(record, epoch_start, lr, x_val, y_val if has_val else None):
                break
        if self.stop_requested and self.epoch < self.epochs and not self.stopped_early and not opt.converged:
            self.interrupted = True
        return self.history

    def _check_finite_state(self, lr: float) -> None:
        """Weights and optimizer state must stay finite (Adam's v = g^2 can overflow while the
        loss still looks fine); checked once per epoch, so no NaN is ever checkpointed."""
        if not all_finite(self.net.params):
            raise diverged(f"the weights became NaN or infinite during epoch {self.epoch + 1}", lr)
        name = self.optimizer.nonfinite_state()
        if name is not None:
            raise diverged(
                f"the gradients overflowed (optimizer state '{name}' became NaN or infinite) during epoch {self.epoch + 1}", lr
            )
