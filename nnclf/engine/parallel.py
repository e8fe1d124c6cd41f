"""A large batch's gradient as the sum of its two halves' gradients, the second half computed
by a forked worker process while this process computes the first.

For a batch of B >= SPLIT_ROWS rows, with h = B // 2 and the halves' shares s_A = h / B and
s_B = (B - h) / B:

    J = s_A J(rows[:h]) + s_B J(rows[h:])          (each J(.) the mean loss over its rows)
    dJ/dtheta = s_A dJ(rows[:h])/dtheta + s_B dJ(rows[h:])/dtheta

which is the batch mean. Every mode computes exactly this (each half's output delta scaled by
its share, then one addition of two gradient vectors), so the numbers do not depend on whether
a worker ran: ``workers`` changes the speed, never the result (``tests/test_parallel.py``).

Why: NumPy runs a step's elementwise work (activations, their derivatives, the loss, the
gather) on one core between the BLAS calls, which is ~30% of a wide network's step at batch
512 on two cores. Two processes, each with a one-thread BLAS on its half, run all of it on both
cores. Threads cannot: every NumPy call takes the GIL, and a GIL or lock handoff between threads
costs ~45 us here (measured: benchmarks/data_parallel_prototype.py, RESULTS.md).

How: ``fork`` (Linux on x86-64 only: the handoff below relies on x86's in-order stores) after
the training arrays exist, so the worker reads them without a copy. The parameters move into
an anonymous shared mapping; the worker writes its gradient, loss and correct count there.
The two processes meet through step counters in that mapping (polling, then napping after
20 ms, so neither holds a core while the other evaluates or checkpoints). BLAS is held to one
thread per process from before the fork until the worker is gone. The worker ignores Ctrl-C,
dies with its parent (PR_SET_PDEATHSIG), and reports any failure through a flag; a worker
that dies or cannot start leaves the rest to this process, with the same numbers.

The optimizer step is split too: each process adds the two gradients over its half of the
parameter vector and steps the optimizer there, its state in the mapping (every optimizer's
update is elementwise: ``Optimizer.part``). With weight decay or clipping, which need the
whole gradient, the step stays in this process.
"""

from __future__ import annotations

import functools
import mmap
import os
import platform
import signal
import sys
import time
import warnings

import numpy as np

SPLIT_ROWS = 128  # batches of at least this many rows are computed as two halves

# flags in the shared mapping (int64 slots)
_GO, _DONE, _STOP, _FAILED, _SIZE, _DROPOUT, _T, _UPDATE, _UPDATED, _START = range(10)
_FLAGS = 16
_NEVER = 2**62  # a step number no run reaches
# A side that waits polls for this long before it naps: longer than a step, so in the loop
# neither side ever sleeps (a nap of either would make the other nap too, step after step),
# and short enough not to hold a core while the other side evaluates or writes checkpoints
_SPIN_SECONDS = 0.02


class _Stop(Exception):
    """The worker's way out: told to stop, or its parent is gone."""


class _WorkerGone(Exception):
    """The trainer's news that the worker died (its text says how)."""


def _wait_until(flags: np.ndarray, index: int, target: int, check) -> None:
    """Return once flags[index] >= target: poll for ``_SPIN_SECONDS``, then nap 0.1 ms at a
    time (2 ms after a second), calling ``check()`` after every nap."""
    start, polls = None, 0
    while flags[index] < target:
        polls += 1
        if polls % 512 == 0:
            now = time.perf_counter()
            start = start or now
            if now - start > _SPIN_SECONDS:
                time.sleep(1e-4 if now - start < 1.0 else 2e-3)
                check()


def halves_platform() -> bool:
    """Whether batches are split in halves here: on Linux x86-64, where a worker can run. The
    rule depends on the platform only, so on one machine the numbers do not depend on the
    number of cores, CPU affinity or ``workers``. (Elsewhere a batch is one pass, as the
    halves would only cost time; numbers already differ across platforms by their BLAS.)"""
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64") and hasattr(os, "fork")


def fork_available() -> bool:
    """Whether a worker can be forked here: ``halves_platform()`` and two usable cores."""
    return halves_platform() and len(os.sched_getaffinity(0)) >= 2


def predicted_classes(logits: np.ndarray) -> np.ndarray:
    """argmax over classes; a single output column is a sigmoid unit: class 1 when z > 0."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return logits.argmax(axis=1)


def batch_gradient(net, loss, xs: np.ndarray, ys: np.ndarray, share: float, rng=None) -> tuple[float, int]:
    """Fill ``net.grads`` with ``share`` times the gradient of the mean loss over (xs, ys);
    returns (that mean loss, the number of rows classified correctly)."""
    logits = net.forward(xs, rng)
    delta = net.output_delta_buffer(len(ys))
    value = loss.forward_backward(logits, ys, delta)
    classes = loss.last_classes  # the fused loss's argmax, or None
    if classes is None:
        classes = predicted_classes(logits)
    correct = int(np.count_nonzero(classes == ys))
    if share != 1.0:
        delta *= delta.dtype.type(share)
    net.backward(delta)
    return value, correct


class _Replay:
    """Stands in for the trainer's Generator in the worker: ``random(out=)`` hands out the
    uniforms the parent drew for this half, in the order the network asks for them (one
    (rows, n_l) block per hidden layer), so dropout masks are those of the serial mode."""

    def __init__(self, blocks: list):
        self.blocks, self.next = blocks, 0

    def random(self, out: np.ndarray, dtype) -> np.ndarray:
        np.copyto(out, self.blocks[self.next][: out.shape[0]])
        self.next += 1
        return out


def _update_part(optimizer_part, t: int, params, grads_a, grads_b, split_at: int, lr: float, first: bool) -> None:
    """g = grads_a + grads_b and one optimizer step, over params[:split_at] or params[split_at:]."""
    part = slice(0, split_at) if first else slice(split_at, None)
    g = grads_a[part]
    g += grads_b[part]
    optimizer_part.t = t
    optimizer_part._step(params[part], g, lr)


class BatchHalves:
    """Gradients of batches of >= SPLIT_ROWS rows of (x, y), as two halves; with ``parallel``,
    the second half in a forked worker. Use as a context manager (``close`` stops the worker
    and gives the network its own parameter storage back)."""

    def __init__(self, net, loss, x: np.ndarray, y: np.ndarray, max_batch: int, parallel: bool, optimizer=None):
        """With ``optimizer`` (and a worker), ``update`` steps it in both processes, each over
        its half of the parameter vector; the caller must then apply nothing else to the
        gradient (no weight decay or clipping, which ``update`` does not do)."""
        self.net, self.loss, self.x, self.y = net, loss, x, y
        self._optimizer = self._state_owner = optimizer
        half = max_batch - max_batch // 2  # the larger half: each process gathers one half
        self._xb = np.empty((half, x.shape[1]), dtype=x.dtype)
        self._yb = np.empty(half, dtype=y.dtype)
        self._stash = None  # the serial mode's second-half gradient
        self._pid = None
        self._step = 0
        self._uniforms: list = []
        self._own_state: dict = {}
        self.note: str | None = None  # why the worker did not start or did not last, if so
        if parallel:
            try:
                self._start_worker(max_batch)
            except OSError as e:  # out of processes or memory: train in this process
                self.close()
                self.note = f"training's worker process could not start ({e.strerror or e}); training runs in one process"
            except BaseException:
                self.close()
                raise

    # -- the two modes -----------------------------------------------------------------------
    def gradient(self, rows, rng=None) -> tuple[float, int]:
        """Fill ``net.grads`` with dJ/dtheta of the batch x[rows]; returns (J, correct rows).
        ``rows``: an index array, or a ``range`` for rows in file order (read in place)."""
        size = len(rows)
        h = size // 2
        share_a, share_b = h / size, (size - h) / size
        if self._pid is None:
            # second half first, kept aside; then the first half; then their sum
            value_b, correct_b = batch_gradient(self.net, self.loss, *self._gather(rows[h:]), share_b, rng)
            if self._stash is None:
                self._stash = np.empty_like(self.net.grads)
            np.copyto(self._stash, self.net.grads)
            value_a, correct_a = batch_gradient(self.net, self.loss, *self._gather(rows[:h]), share_a, rng)
            self.net.grads += self._stash
        else:
            self._step += 1
            if isinstance(rows, range):
                self._flags[_START] = rows.start
            else:
                self._flags[_START] = -1
                self._rows[:size] = rows
            self._flags[_SIZE] = size
            dropout = rng is not None and self.net.dropout > 0
            if dropout:  # the second half's uniforms first, as the serial mode draws them
                for block in self._uniforms:
                    rng.random(out=block[: size - h], dtype=self.net.dtype)
            self._flags[_DROPOUT] = int(dropout)
            self._flags[_GO] = self._step  # written last: the worker may start now
            value_a, correct_a = batch_gradient(self.net, self.loss, *self._gather(rows[:h]), share_a, rng)
            if self._worker_done():
                value_b, correct_b = float(self._results[0]), int(self._results[1])
                if not self.splits_update:  # else each process adds the halves over its part in update()
                    self.net.grads += self._worker_grads
            else:  # the worker is gone: its half here, with the uniforms drawn for it (same sum)
                self._stash = self.net.grads.copy()
                value_b, correct_b = batch_gradient(self.net, self.loss, *self._gather(rows[h:]), share_b,
                                                    _Replay(self._uniforms) if dropout else None)
                self.net.grads += self._stash
        return share_a * value_a + share_b * value_b, correct_a + correct_b

    @property
    def parallel(self) -> bool:
        return self._pid is not None

    @property
    def splits_update(self) -> bool:
        """Whether ``update`` must follow ``gradient`` (the gradient is summed there)."""
        return self._pid is not None and self._optimizer is not None

    def update(self, lr: float) -> None:
        """The optimizer step after ``gradient``: each process adds the two halves' gradients
        over its half of the parameter vector and steps the optimizer there."""
        t = self._optimizer.t + 1
        self._results[2] = lr
        self._flags[_T] = t
        self._flags[_UPDATE] = self._step  # written last: the worker may update its part now
        _update_part(self._own_part, t, self.net.params, self.net.grads, self._worker_grads, self._split_at, lr, first=True)
        try:
            _wait_until(self._flags, _UPDATED, self._step, self._check_worker)
        except _WorkerGone as gone:  # its half may be half updated: nothing to go on from
            from ..errors import NnclfError

            self._pid = None
            raise NnclfError(f"training's worker process {gone} while updating the weights; "
                             f"resume from the last checkpoint (nnclf train --resume RUN)") from None
        self._optimizer.t = t

    def _gather(self, rows):
        if isinstance(rows, range):  # consecutive rows: views, no copy
            return self.x[rows.start : rows.stop], self.y[rows.start : rows.stop]
        m = len(rows)
        # mode="clip" lets take write straight into the buffer (indices are always valid here)
        return (self.x.take(rows, axis=0, out=self._xb[:m], mode="clip"), self.y.take(rows, out=self._yb[:m], mode="clip"))

    # -- the worker ------------------------------------------------------------------------------
    def _start_worker(self, max_batch: int) -> None:
        import ctypes  # noqa: F401 - imported before the fork: the worker imports nothing

        net = self.net
        n = net.params.size
        hidden = net.sizes[1:-1] if net.dropout > 0 else []
        opt = self._optimizer
        state_names = opt.state_names if opt is not None else ()
        layout = [("flags", np.int64, _FLAGS), ("results", np.float64, 3), ("rows", np.int64, max_batch),
                  ("params", net.dtype, n), ("grads", net.dtype, n), ("main_grads", net.dtype, n),
                  *((f"uniforms{l}", net.dtype, max_batch * width) for l, width in enumerate(hidden)),
                  *((f"state_{name}", opt.dtype, n) for name in state_names)]
        offsets, size = {}, 0
        for name, dtype, count in layout:
            offsets[name] = size
            size += -(-count * np.dtype(dtype).itemsize // 64) * 64  # each part 64-byte aligned
        self._shared = mmap.mmap(-1, size)  # anonymous, MAP_SHARED: the same pages after fork
        part = lambda name, dtype, count: np.frombuffer(self._shared, dtype, count, offsets[name])  # noqa: E731
        self._flags = part("flags", np.int64, _FLAGS)
        self._results = part("results", np.float64, 3)  # the worker's loss and correct count; the lr
        self._rows = part("rows", np.int64, max_batch)
        shared_params = part("params", net.dtype, n)
        self._worker_grads = part("grads", net.dtype, n)
        self._uniforms = [part(f"uniforms{l}", net.dtype, max_batch * w).reshape(max_batch, w) for l, w in enumerate(hidden)]
        np.copyto(shared_params, net.params)
        self._own_params, self._own_grads = net.params, net.grads
        net.bind_storage(shared_params, part("main_grads", net.dtype, n))
        # the optimizer's state too, when the update is split: each process steps its half
        self._split_at = n // 2
        for name in state_names:
            shared = part(f"state_{name}", opt.dtype, n)
            np.copyto(shared, getattr(opt, name))
            self._own_state[name] = getattr(opt, name)
            setattr(opt, name, shared)
        if opt is not None:
            self._own_part = opt.part(slice(0, self._split_at))
        # one BLAS thread per process, set before the fork and kept until the worker is gone:
        # setting it after a fork restarts OpenBLAS's thread pool, whose idle threads spin for
        # ~0.1 s and took a core from the worker (the first ~10 steps ran at a sixth of the speed)
        self._blas_limit = _blas_controller().limit(limits=1, user_api="blas")
        parent = os.getpid()
        with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                self._serve(parent)
                code = 0
            except BaseException:  # noqa: BLE001 - anything at all: tell the parent, then leave
                self._flags[_FAILED] = 1
            finally:
                os._exit(code)
        self._pid = pid

    def _serve(self, parent: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        _die_with_parent()
        if os.getppid() != parent:
            return
        # overflow shows up in the loss the parent checks; no warnings from here
        warnings.simplefilter("ignore")
        np.seterr(all="ignore")
        net, flags = self.net, self._flags
        main_grads = net.grads
        net.bind_storage(net.params, self._worker_grads)  # same shared parameters, own gradient
        opt = self._optimizer
        own_part = opt.part(slice(self._split_at, None)) if opt is not None else None

        def check() -> None:
            if flags[_STOP] or os.getppid() != parent:
                raise _Stop

        step = 0
        while True:
            step += 1
            try:
                _wait_until(flags, _GO, step, check)
            except _Stop:
                return
            if flags[_STOP]:
                return
            size, start = int(flags[_SIZE]), int(flags[_START])
            h = size // 2
            rows = range(start + h, start + size) if start >= 0 else self._rows[h:size]
            rng = _Replay(self._uniforms) if flags[_DROPOUT] else None
            value, correct = batch_gradient(net, self.loss, *self._gather(rows), (size - h) / size, rng)
            self._results[0], self._results[1] = value, correct
            flags[_DONE] = step  # written last: the parent may read the results now
            if own_part is not None:
                try:
                    _wait_until(flags, _UPDATE, step, check)
                except _Stop:
                    return
                if flags[_STOP]:
                    return
                _update_part(own_part, int(flags[_T]), net.params, main_grads, self._worker_grads, self._split_at,
                             float(self._results[2]), first=False)
                flags[_UPDATED] = step

    def _worker_done(self) -> bool:
        """Wait for the worker's half; False if the worker is gone (then it is reaped, the
        reason is in ``note``, and every later batch runs in this process)."""
        try:
            _wait_until(self._flags, _DONE, self._step, self._check_worker)
            return True
        except _WorkerGone as gone:
            self._pid = None
            self._release_blas()
            self.note = f"training's worker process {gone}; training went on in one process (the same numbers, slower)"
            return False

    def _check_worker(self) -> None:
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid == 0 and self._flags[_FAILED]:  # it is on its way out
            pid, status = os.waitpid(self._pid, 0)
        if pid != 0:
            raise _WorkerGone(f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                              else f"failed (exit status {os.waitstatus_to_exitcode(status)})")

    def _release_blas(self) -> None:
        if hasattr(self, "_blas_limit"):
            self._blas_limit.restore_original_limits()
            del self._blas_limit

    def close(self) -> None:
        """Stop the worker (if any); move the parameters, gradients and optimizer state back to
        the arrays they had before (so views of them taken before ``fit`` stay live)."""
        if self._pid is not None:
            self._flags[_STOP] = 1
            self._flags[_GO] = self._flags[_UPDATE] = _NEVER  # wakes the worker at once
            deadline = time.monotonic() + 2.0
            while os.waitpid(self._pid, os.WNOHANG)[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(self._pid, signal.SIGKILL)
                    os.waitpid(self._pid, 0)
                    break
                time.sleep(0.001)
            self._pid = None
        self._release_blas()
        if hasattr(self, "_own_params"):
            np.copyto(self._own_params, self.net.params)
            np.copyto(self._own_grads, self.net.grads)
            self.net.bind_storage(self._own_params, self._own_grads)
            for name, own in self._own_state.items():
                np.copyto(own, getattr(self._state_owner, name))
                setattr(self._state_owner, name, own)
            del self._own_params

    def __enter__(self) -> "BatchHalves":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once (each ``threadpool_limits``
    call scans every loaded library again: 2.5 ms, 11 ms the first time, with torch loaded)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed trainer must not leave
    a worker behind)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # the worker also checks its parent whenever it naps
