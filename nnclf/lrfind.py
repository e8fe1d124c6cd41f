"""``nnclf lr-find CONFIG``: the learning-rate range test (L. Smith, "Cyclical Learning Rates for
Training Neural Networks", 2017; the form popularised by fastai).

From the config's initial weights, take ``steps`` optimizer steps on consecutive mini-batches
(shuffled epochs, the config's optimizer, batch size, weight decay and clipping) while the
learning rate grows exponentially,

    lr_i = lr_min * (lr_max / lr_min) ** (i / (steps - 1)),      i = 0 .. steps-1,

and record each batch's loss before its step. The curve is smoothed by a bias-corrected
exponential moving average (s_i = beta s_{i-1} + (1 - beta) l_i, shown as s_i / (1 - beta^(i+1)))
and the test stops early once the smoothed loss exceeds ``4 x`` its minimum (divergence) or
turns non-finite. The suggested lr is where the smoothed loss falls fastest per unit of
log(lr), d s / d log(lr) most negative, among the points before the smoothed minimum: large
enough to learn quickly, below the region where training blows up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import NnclfError

DIVERGED = 4.0  # the test stops when the smoothed loss exceeds this multiple of its minimum


@dataclass
class LrFindResult:
    lrs: list[float]  # the lr of every step taken
    losses: list[float]  # each step's batch loss (before the step)
    smoothed: list[float]
    suggestion: Optional[float]  # steepest descent of the smoothed loss before its minimum
    min_loss_lr: Optional[float]  # the lr at the smoothed minimum
    diverged_at: Optional[float]  # the lr at which the test stopped early, if it did
    config_name: str = ""


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """The exponentially growing learning rates, shape (steps,), lr_min first, lr_max last."""
    return lr_min * (lr_max / lr_min) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average of ``losses`` (see the module docstring)."""
    out, avg = [], 0.0
    for i, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest(lrs: list[float], smoothed: list[float], skip: int = 10) -> tuple[Optional[float], Optional[float]]:
    """(steepest-descent lr, lr at the minimum) of a smoothed loss curve.

    The slope at point i is (s[i+w] - s[i-w]) / (log lr[i+w] - log lr[i-w]) with w = n/20
    (a window of a tenth of the curve: batch noise makes a point-to-point slope meaningless
    where the loss is still flat); the first ``skip`` points are ignored (the average is
    still warming up there). None when the curve is too short or never falls.
    """
    s = np.asarray(smoothed, dtype=np.float64)
    n = len(s)
    w = max(2, n // 20)
    if n < skip + 2 * w + 1:
        return None, None
    lo = int(np.argmin(s))
    log_lr = np.log(np.asarray(lrs, dtype=np.float64))
    centre = np.arange(max(skip, w), min(lo, n - w))
    if len(centre) == 0:
        return None, float(lrs[lo])
    slope = (s[centre + w] - s[centre - w]) / (log_lr[centre + w] - log_lr[centre - w])
    if slope.min() >= 0:
        return None, float(lrs[lo])
    return float(lrs[int(centre[np.argmin(slope)])]), float(lrs[lo])


def range_test(step: Callable[[np.ndarray, np.ndarray, float], float], x: np.ndarray, y: np.ndarray, batch: int,
               lrs: np.ndarray, rng: np.random.Generator, beta: float = 0.98) -> tuple[list[float], list[float], list[float], Optional[float]]:
    """Run ``step(xs, ys, lr) -> loss before the step`` over ``lrs`` on shuffled batches of
    (x, y); returns (lrs used, losses, smoothed, lr at divergence or None)."""
    n = len(y)
    batch = min(batch, n)
    order = rng.permutation(n)
    pos = 0
    used, losses, smoothed = [], [], []
    best = math.inf
    avg = 0.0
    for i, lr in enumerate(lrs):
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + batch]
        pos += batch
        loss = step(x[idx], y[idx], float(lr))
        if not math.isfinite(loss):
            return used, losses, smoothed, float(lr)
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (i + 1))
        used.append(float(lr))
        losses.append(float(loss))
        smoothed.append(s)
        best = min(best, s)
        if i > 10 and s > DIVERGED * best:
            return used, losses, smoothed, float(lr)
    return used, losses, smoothed, None


def lr_find(config_path: str | Path, overrides: list[str] = (), steps: int = 200, lr_min: float = 1e-7, lr_max: float = 10.0,
            warn: Callable[[str], None] = lambda m: None) -> LrFindResult:
    """The range test on the config's training rows (its task, split, preprocessing and model).
    The full-batch methods (lbfgs, cg, newton_cg) take no learning rate: refused."""
    from .build import build_network, build_optimizer, build_task_loss
    from .config import load_config
    from .data.dataset import prepare
    from .engine.fullbatch import FULL_BATCH
    from .seeds import model_rng

    if not (0 < lr_min < lr_max) or not math.isfinite(lr_max):
        raise NnclfError(f"--min-lr {lr_min:g} and --max-lr {lr_max:g}: need 0 < min < max")
    if steps < 10:
        raise NnclfError(f"--steps {steps}: the test needs at least 10 steps")
    cfg = load_config(config_path, overrides)
    if cfg.optimizer.name in FULL_BATCH:
        raise NnclfError(
            f"optimizer.name: {cfg.optimizer.name} is a full-batch method that chooses its own step sizes (a line "
            f"search); it has no learning rate to find. The range test needs a mini-batch optimizer (--set optimizer.name=adam)"
        )
    prepared = prepare(cfg.data, cfg.seed, cfg.training.dtype, warn, cfg.task)
    train = prepared.train
    loss = build_task_loss(cfg, prepared)  # classes, targets or input columns, as training builds it
    net = build_network(cfg, train.x.shape[1], loss)
    rng = model_rng(cfg.seed)  # the model stream, as in training
    net.initialize(cfg.model.init, rng)
    optimizer = build_optimizer(cfg, net)
    step = _step_function(net, loss, optimizer, cfg.loss.weight_decay, cfg.training.clip_norm, rng)
    batch = len(train.y) if cfg.training.batch_size == "full" else cfg.training.batch_size
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        used, losses, smoothed, diverged = range_test(step, train.x, train.y, batch, lr_schedule(lr_min, lr_max, steps), rng)
    suggestion, at_min = suggest(used, smoothed)
    return LrFindResult(used, losses, smoothed, suggestion, at_min, diverged, Path(config_path).stem)


def _step_function(net, loss, optimizer, weight_decay: float, clip_norm, rng):
    """``(xs, ys, lr) -> loss``: one training step as the trainer takes it."""
    from .engine.step import TrainingStep

    training_step = TrainingStep(net, loss, optimizer, weight_decay, clip_norm)

    def step(xs, ys, lr):
        return training_step.step(xs, ys, lr, rng).loss

    return step


def plot(result: LrFindResult, path: Path) -> Path:
    """loss (raw and smoothed) against lr on a log axis, the suggestion marked. Needs matplotlib."""
    from .files import write_file

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnclfError('--plot needs matplotlib: pip install ".[plot]" in a clone, or pip install "nnclf[plot]"') from None
    import io

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(result.lrs, result.losses, color="tab:gray", alpha=0.4, lw=1, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", ls="--", label=f"suggested lr {result.suggestion:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = min(max(result.smoothed) if result.smoothed else 1, 2 * result.smoothed[0] if result.smoothed else 1)
    ax.set_ylim(bottom=0, top=top * 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"lr range test: {result.config_name}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_file(path, lambda f: f.write(buffer.getvalue()))
    return path
