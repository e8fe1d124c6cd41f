"""How much memory a training will take, checked before the network is allocated.

Without the check, ``model.hidden: [30000, 30000]`` on a 150-row file grows until the machine
runs out of memory (21 GB on a 23 GB machine before anything said no).
"""

from __future__ import annotations

from typing import Optional

from .engine.network import parameter_count
from .errors import NnclfError

INFERENCE_ROWS = 2048  # the evaluation chunk (engine.network.INFERENCE_ROWS)


def available_memory() -> Optional[int]:
    """Bytes this process could still allocate: ``MemAvailable``, capped by an address-space
    limit (``ulimit -v``) when one is set; None when the system does not say."""
    limit = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limit = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limit = soft if limit is None else min(limit, soft)
    except (ImportError, OSError, ValueError):
        pass
    return limit


def size_text(n: float) -> str:
    if n >= 1e15:
        return f"{n / 1e12:.3g} TB"
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def training_bytes(sizes: list[int], itemsize: int, optimizer_vectors: int, batch_rows: int) -> tuple[int, int]:
    """(bytes for parameter-sized vectors, bytes for per-row buffers) of one training.

    Parameter-sized: the weights P, their gradient P, the optimizer's state (``state_names``,
    P each), the best epoch's copy P and one P of slack for the checkpoint and evaluation
    copies. Per-row: each layer's outputs and deltas for a batch, and for an evaluation chunk.
    """
    p = parameter_count(sizes)
    vectors = (4 + optimizer_vectors) * p * itemsize
    widths = sum(sizes[1:])
    buffers = 2 * (batch_rows + INFERENCE_ROWS) * widths * itemsize
    return vectors, buffers


def check_training_fits(cfg, n_inputs: int, n_outputs: int, n_train_rows: int) -> None:
    """Refuse, naming the key, a network whose training would not fit in available memory."""
    from .engine.optimizers import OPTIMIZERS

    hidden = list(cfg.model.hidden)
    sizes = [n_inputs, *hidden, n_outputs]
    itemsize = 8 if cfg.training.dtype == "float64" else 4
    batch = n_train_rows if cfg.training.batch_size == "full" else min(cfg.training.batch_size, n_train_rows)
    try:
        names = OPTIMIZERS.get(cfg.optimizer.name).state_names
    except NnclfError:
        names = None
    # full-batch methods compute theirs per instance (and check their own memory, build.py)
    state = len(names) if isinstance(names, (tuple, list)) else 2
    vectors, buffers = training_bytes(sizes, itemsize, state, batch)
    available = available_memory()
    if available is None or vectors + buffers <= available:
        return
    need = size_text(vectors + buffers)
    p = parameter_count(sizes)
    if buffers > vectors and batch > INFERENCE_ROWS:
        raise NnclfError(
            f"training.batch_size: {cfg.training.batch_size} rows through layers {sizes} need about {need} of buffers, "
            f"but {size_text(available)} are available; use a smaller batch_size or smaller model.hidden"
        )
    raise NnclfError(
        f"model.hidden: {hidden} makes a network of {p:,} parameters, too many to allocate: training needs about {need} "
        f"(weights, gradients, {cfg.optimizer.name} state, buffers) but {size_text(available)} are available; "
        f"use fewer or smaller hidden layers"
    )
