"""BLAS threads for training steps, chosen by measuring the steps themselves.

Why measured and not fixed: with two BLAS threads a wide network's matrix products run up to
twice as fast on a quiet machine, but when another process holds a core, a GEMM split over two
threads waits for the slower one and the same step gets several times slower than with one
thread. No static rule knows which machine it is on, so ``BlasThreads`` times windows of steps
at each thread count and keeps the faster, re-checking now and then because the load changes.

Thread counts must change only the speed. OpenBLAS usually divides a product among threads by
blocks of the output, each element summed in the same order as on one thread, but not always:
for some inner dimensions (OpenBLAS 0.3.31 here: K of about 400 and more that is not a multiple of
its block, such as 784 inputs or a batch of 1437 rows, on one host; on another, with the
Haswell kernels, even (128, 17) @ (17, 256)) the threaded driver blocks the sum differently and
the last bits change. Which shapes do so depends on the BLAS build and the CPU,
so ``auto`` asks the library itself: before a count above one is first tried, ``same_bits``
computes every product shape of the fit (``fit_products``: forward, weight gradient and delta of
each layer at each row count the fit uses) on one thread and on that count, and keeps the count
only if all are bit-identical (``tests/test_threads.py`` checks whole runs
and the refusal). A fixed ``training.threads: N`` is used as given, on any machine.

Small steps never pay for the search: below ``MIN_FLOPS`` a step runs on one thread, where a
second thread's wake-up costs more than it can save.
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache

import numpy as np

# Flops of a step below which one thread is always used: a few milliseconds of work at one
# thread, where a second thread's share cannot outweigh its wake-ups and, on a busy machine,
# its waits (a 64-100-10 step at batch 200 is 9e6; the wide 100-256-256-10 at 128 is 7e7).
MIN_FLOPS = 4e7
WINDOW_STEPS = 16  # steps timed per measurement window
ABORT_RATIO = 1.5  # a trial step this much slower than the chosen count's mean ends the trial
SLOW_STEPS = 3  # steps in a row this much slower than one thread's mean drop a multi-thread choice
FIRST_EXPLOIT_WINDOWS = 8  # windows at the chosen count before the next re-check...
MAX_EXPLOIT_WINDOWS = 64  # ...doubling while the choice holds, so a settled choice costs <= 1/65 of the steps
LOADAVG = "/proc/loadavg"  # Linux: its fourth field counts the threads running right now
TASKS = "/proc/self/task"  # Linux: this process's threads, each with its state in stat


def step_flops(sizes: list[int], batch: int) -> float:
    """Flops of one training step: 2 flops per multiply-add, one product forward and two
    backward (deltas and weight gradients) per layer."""
    return 6.0 * batch * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))


@lru_cache(maxsize=1)
def _blas_libraries():
    """threadpoolctl's handles on the loaded BLAS libraries (scanning them takes milliseconds,
    so it is done once; setting a count through a handle is one C call)."""
    from threadpoolctl import ThreadpoolController

    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BlasThreads:
    """Sets the BLAS thread count around training steps (use ``with BlasThreads(...) as t:``
    around ``fit``; the trainer enters ``t.step()`` around each step).

    ``threads``: a fixed count, or ``"auto"``: one thread for small steps, otherwise the faster
    of the candidate counts (1 .. usable cores, at most ``max_threads``) by measurement:

    - the chosen count (first: 1) runs for a number of windows of ``WINDOW_STEPS`` steps, its
      mean step time kept fresh;
    - then another count is tried for one window; a single step of it slower than
      ``ABORT_RATIO`` times the chosen count's mean ends the trial at once, so on a busy
      machine, where a two-thread product can take ten times as long, a trial costs one step;
    - the faster becomes the chosen count; the number of windows before the next trial doubles
      while the choice holds (up to ``MAX_EXPLOIT_WINDOWS``) and starts again when it changes;
    - a trial of more threads is put off by one window when the kernel's count of running
      threads says another process holds a core they need: the trial would only cost a slow
      step to learn so (asking costs a few reads in /proc);
    - while more than one thread is chosen, ``SLOW_STEPS`` steps in a row slower than
      ``ABORT_RATIO`` times the last one-thread mean drop back to one thread at once: the machine
      got busy, and one thread is the plain path a run must never be slower than (one slow step
      alone is a hiccup of a shared machine, not a busy one);
    - a choice of more threads remembered from an earlier fit (whose one-thread mean is not
      known here) starts at one thread when another process holds a core it needs, and is put
      to a trial of one thread after its first window.

    The choice is remembered in this process for steps of the same size, so a cross-validation's
    fits do not each start the search over. The previous counts are restored on exit.
    """

    # (log2 of flops per step) -> (chosen count, windows before the next trial)
    _memory: dict[int, tuple[int, int]] = {}

    def __init__(self, threads: int | str = "auto", flops_per_step: float = 0.0, max_threads: int = 2, same_bits=None):
        """``same_bits``: for ``auto``, a function n -> whether n threads give the bits one
        thread gives for every product of the fit (``training_threads`` makes it); counts
        above one without it are not tried."""
        self.libraries = _blas_libraries()
        self._saved = [lib.num_threads for lib in self.libraries]
        self._same_bits = same_bits
        self._checked: dict[int, bool] = {}
        if threads == "auto":
            most = max(1, min(_usable_cores(), max_threads, max(self._saved, default=1)))
            # counts above one are checked for their bits only when first about to be used
            # (``_keeps_bits``): a run that never gets that far never pays for the check
            self.candidates = [1] if flops_per_step < MIN_FLOPS or same_bits is None else list(range(1, most + 1))
        else:
            self.candidates = [int(threads)]
        self._key = int(math.log2(max(flops_per_step, 1.0)))
        chosen, exploit = self._memory.get(self._key, (self.candidates[0], 1))
        self.chosen = chosen if chosen in self.candidates else self.candidates[0]
        self._exploit = exploit  # windows at the chosen count between trials
        self._left = exploit  # windows left before the next trial
        self._trial: int | None = None  # the count on trial, if any
        self._trials = 0
        self._mean: dict[int, float] = {}
        self._steps, self._elapsed = 0, 0.0
        self._applied: int | None = None
        self._slow = 0  # steps in a row at the chosen count slower than ABORT_RATIO x one thread's mean
        self._timer = _StepTimer(self)

    @property
    def adaptive(self) -> bool:
        return len(self.candidates) > 1

    @property
    def current(self) -> int:
        return self._trial if self._trial is not None else self.chosen

    def _keeps_bits(self, n: int) -> bool:
        """Whether ``n`` threads give this fit's products one thread's bits; a count that does
        not is dropped from the candidates for good."""
        if n == 1:
            return True
        if n not in self._checked:
            self._checked[n] = bool(self._same_bits is not None and self._same_bits(n))
            if not self._checked[n]:
                self.candidates = [c for c in self.candidates if c != n]
        return self._checked[n]

    def __enter__(self) -> "BlasThreads":
        if self.chosen != self.candidates[0]:
            # a remembered choice of more threads is checked again soon: by a trial of one thread
            # after the first window, or at once when another process holds a core it needs (or
            # when this fit's products would not keep their bits on it: the memory is by size)
            self._left = 1
            if not self._cores_free_for(self.chosen) or not self._keeps_bits(self.chosen):
                self.chosen = self.candidates[0]
        self._apply(self.current)
        return self

    @staticmethod
    def _cores_free_for(n: int) -> bool:
        """Whether no other process runs on the cores ``n`` threads need (True when unknown)."""
        spare = _spare_cores()
        return spare is None or spare >= n

    def __exit__(self, *exc) -> None:
        if self.adaptive:
            self._memory[self._key] = (self.chosen, self._exploit)
        for lib, n in zip(self.libraries, self._saved):
            lib.set_num_threads(n)
        self._applied = None

    def step(self) -> "_StepTimer":
        return self._timer

    def _apply(self, n: int) -> None:
        if n != self._applied:
            for lib in self.libraries:
                lib.set_num_threads(n)
            self._applied = n

    def _observe(self, seconds: float) -> None:
        """One step took ``seconds`` at ``self.current`` threads."""
        self._steps += 1
        self._elapsed += seconds
        reference = self._mean.get(self.chosen)
        if self._trial is not None and reference is not None and seconds > ABORT_RATIO * reference:
            self._end_trial(seconds)  # lost already: one slow step is enough
            return
        plain = self._mean.get(self.candidates[0])
        if self._trial is None and self.chosen != self.candidates[0] and plain is not None:
            self._slow = self._slow + 1 if seconds > ABORT_RATIO * plain else 0
            if self._slow >= SLOW_STEPS:
                self._fall_back()
                return
        if self._steps < WINDOW_STEPS:
            return
        mean = self._elapsed / self._steps
        if self._trial is not None:
            self._end_trial(mean)
            return
        self._mean[self.chosen] = mean
        self._steps, self._elapsed = 0, 0.0
        self._left -= 1
        if self._left <= 0:
            others = [n for n in self.candidates if n != self.chosen]
            if not others:  # every other count was refused for its bits: nothing left to try
                return
            self._trials += 1
            trial = others[self._trials % len(others)]  # each other count in turn
            spare = _spare_cores()
            if trial > self.chosen and spare is not None and spare < trial:
                self._left = 1  # no core for the extra threads: ask again after the next window
                return
            if not self._keeps_bits(trial):
                self._left = self._exploit
                return
            self._trial = trial
            self._apply(self._trial)

    def _fall_back(self) -> None:
        """Back to the plain count (one thread) now, as if it had just won a trial."""
        self._slow = 0
        self.chosen, self._exploit = self.candidates[0], FIRST_EXPLOIT_WINDOWS
        self._left = self._exploit
        self._steps, self._elapsed = 0, 0.0
        self._apply(self.chosen)

    def _end_trial(self, mean: float) -> None:
        trial, self._trial = self._trial, None
        self._steps, self._elapsed = 0, 0.0
        self._mean[trial] = mean
        if mean < self._mean[self.chosen]:
            self.chosen, self._exploit = trial, FIRST_EXPLOIT_WINDOWS
        else:
            self._exploit = min(max(self._exploit, FIRST_EXPLOIT_WINDOWS // 2) * 2, MAX_EXPLOIT_WINDOWS)
        self._left = self._exploit
        self._apply(self.chosen)


def _spare_cores() -> int | None:
    """Usable cores that no other process is running a thread on right now; None where the
    kernel does not say (not Linux). /proc/loadavg's fourth field is the instantaneous count of
    running threads machine-wide; this process's own running threads (``TASKS``) are not others."""
    try:
        with open(LOADAVG, "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        ours = 0
        for task in os.listdir(TASKS):
            try:
                with open(os.path.join(TASKS, task, "stat"), "rb") as f:
                    ours += f.read().rsplit(b")", 1)[1].split()[0] == b"R"
            except (OSError, IndexError):
                continue  # a thread that ended meanwhile
    except (OSError, ValueError, IndexError):
        return None
    return _usable_cores() - max(0, running - max(ours, 1))


class _StepTimer:
    """The context manager around one step: times it for ``BlasThreads`` when it adapts."""

    __slots__ = ("owner", "start")

    def __init__(self, owner: BlasThreads):
        self.owner, self.start = owner, 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.owner.adaptive:
            self.owner._observe(time.perf_counter() - self.start)


def training_threads(threads: int | str, trainer, rows: int, val_rows: int = 0, max_threads: int = 2) -> BlasThreads:
    """The ``BlasThreads`` of ``trainer``'s fit on ``rows`` training rows and ``val_rows``
    validation rows, for ``training.threads``. The row counts its products see: the batch and
    the epoch's last, shorter batch; for a full-batch method (``optimizer.full_batch``: the
    objective and curvature products) and for validation, chunks of ``INFERENCE_ROWS``."""
    from .engine.network import INFERENCE_ROWS

    def counts(n: int, chunk: int) -> set[int]:
        return {c for c in (min(n, chunk), n % chunk) if c > 0}

    sizes, dtype = trainer.net.sizes, trainer.net.dtype
    batch = rows if trainer.batch_size is None else max(1, min(trainer.batch_size, rows))
    objective = getattr(trainer.optimizer, "full_batch", False)
    products = fit_products(sizes, counts(rows, INFERENCE_ROWS if objective else batch), counts(val_rows, INFERENCE_ROWS),
                            curvature=getattr(trainer.optimizer, "needs_curvature", False))
    return BlasThreads(threads, step_flops(sizes, batch), max_threads, same_bits=lambda n: same_bits(products, str(np.dtype(dtype)), n))


@lru_cache(maxsize=64)
def same_bits(products: tuple[tuple[str, int, int, int], ...], dtype: str, threads: int) -> bool:
    """Whether ``threads`` BLAS threads compute each product ``(layout, m, k, n)``, an (m, k)
    by (k, n) matrix product, with the bits one thread gives, on random data in ``dtype``.
    Layouts as the network holds its operands: ``nn`` both C-ordered (forward: A @ [W; b]),
    ``tn`` the left one a transposed C-ordered array (weight gradients: A^T @ delta), ``nt``
    the right one (deltas: delta @ W^T).

    The answer depends on the shapes and layouts only (the BLAS's blocking of the sums), not the
    values; it is cached per process, and costs two runs of the products."""
    libraries = _blas_libraries()
    if not libraries:
        return True
    rng = np.random.default_rng(0)

    def random(rows: int, cols: int) -> np.ndarray:
        return rng.standard_normal((rows, cols)).astype(dtype)

    operands = []
    for layout, m, k, n in products:
        left = random(k, m).T if layout == "tn" else random(m, k)
        right = random(n, k).T if layout == "nt" else random(k, n)
        operands.append((left, right))
    saved = [lib.num_threads for lib in libraries]

    def run(count: int) -> list[np.ndarray]:
        for lib in libraries:
            lib.set_num_threads(count)
        return [np.dot(left, right) for left, right in operands]

    try:
        one, many = run(1), run(threads)
    finally:
        for lib, count in zip(libraries, saved):
            lib.set_num_threads(count)
    return all(np.array_equal(a, b) for a, b in zip(one, many))


def fit_products(sizes: list[int], train_rows: set[int], forward_rows: set[int], curvature: bool = False) -> tuple:
    """The distinct products ``(layout, m, k, n)`` of a fit (see ``same_bits``): for each layer
    n_in -> n_out and each row count B of the training passes, the forward (B, n_in + 1) @
    (n_in + 1, n_out) with the bias column, the weight gradient (n_in + 1, B) @ (B, n_out) and
    the delta (B, n_out) @ (n_out, n_in), and without the bias column (k = n_in) for the
    curvature products; at the row counts of forward-only passes (validation), the forward."""
    found = set()
    for n_in, n_out in set(zip(sizes[:-1], sizes[1:])):
        for b in train_rows:
            for k in (n_in + 1, n_in) if curvature else (n_in + 1,):
                found |= {("nn", b, k, n_out), ("tn", k, b, n_out)}
            found.add(("nt", b, n_out, n_in))
        found |= {("nn", b, n_in + 1, n_out) for b in forward_rows}
    return tuple(sorted(found))


def on_one_thread(compute, *args):
    """``compute(*args)`` with BLAS on one thread: the inference of a trained network (evaluate,
    the run summary, calibration, the estimators' predictions; ``nnclf predict`` does the same
    around its chunks), whose numbers are then the same bits on any machine whatever the shapes
    (see ``same_bits`` for why more threads may not give them). The previous counts come back."""
    with BlasThreads(1):
        return compute(*args)
