"""The prototypes of data-parallel training steps, kept so their numbers can be rerun: two
Python threads (dropped) and two processes (the forked worker of nnclf 0.1, removed in the step redesign: it made busy machines several times slower; see RESULTS.md), the
against the Trainer and the GEMM-only ceiling,
interleaved.

    python benchmarks/data_parallel_prototype.py --rows 100000 --batch 512 --rounds 5

Each step, the main thread and one worker thread each run forward, loss and backward on half
of the batch with a one-thread BLAS (NumPy releases the GIL in GEMMs and large ufuncs), into
their own buffers and gradient vectors that share one parameter vector. The gradients are
summed and Adam is applied to each half of the parameter vector, both halves by the main thread
("dp") or one half in each thread ("dp, split Adam"). Handoffs are raw ``threading.Lock``
releases, the cheapest CPython offers (~45 us a round trip on the 2-core VM of RESULTS.md).

"dp, two processes" (Linux only) forks a worker that holds no GIL in common with the main
process: the parameter vector, both gradient vectors and the epoch's permutation live in one
shared anonymous mapping, each process runs its half of the batch with a one-thread BLAS, adds
the two gradients over its half of the parameter vector and steps Adam there, and the two meet
at two spin barriers per step (a shared counter each, no wake-up, instead of a lock's ~45 us).
Unlike the Trainer it sets the one-thread BLAS limit after the fork, which restarts OpenBLAS's
thread pool and slows its first ~10 steps (RESULTS.md); and "nnclf Trainer" is now itself the
two-process version. Prints medians and each contestant's fraction of the two-thread GEMM ceiling (paired per round).
"""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import gemm_ceiling, wide_data  # noqa: E402
from nnclf.engine.losses import CrossEntropy  # noqa: E402
from nnclf.engine.network import MLP  # noqa: E402
from nnclf.engine.optimizers import Adam  # noqa: E402
from nnclf.engine.schedules import SCHEDULES  # noqa: E402
from nnclf.trainer import Trainer  # noqa: E402

SIZES = [100, 256, 256, 10]


def sharing_params(net: MLP) -> MLP:
    """A second MLP with its own buffers and gradients whose weights are views of ``net.params``."""
    other = MLP(net.sizes, net.activation_name)
    shapes = list(zip(other.sizes[:-1], other.sizes[1:]))
    other.params = net.params
    other.weights, other.biases, other._weight_spans = other._views(other.params, shapes)
    other._wb = [other.params[a : b + n_out].reshape(-1, n_out) for (a, b), (_, n_out) in zip(other._weight_spans, shapes)]
    other._wt = [w.T for w in other.weights]
    return other


class Worker:
    """One thread running submitted jobs; submit/wait hand off through two raw locks."""

    def __init__(self):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.result = None
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            self.go.acquire()
            self.result = self.job()
            self.done.release()

    def submit(self, job):
        self.job = job
        self.go.release()

    def wait(self):
        self.done.acquire()
        return self.result


def rebind(net: MLP, params: np.ndarray, grads: np.ndarray) -> None:
    """Point ``net``'s weight and gradient views at ``params`` and ``grads`` (copying the weights)."""
    shapes = list(zip(net.sizes[:-1], net.sizes[1:]))
    params[:] = net.params
    net.params, net.grads = params, grads
    net.weights, net.biases, net._weight_spans = net._views(params, shapes)
    net.grad_weights, net.grad_biases, _ = net._views(grads, shapes)
    net._wb = [params[a : b + n_out].reshape(-1, n_out) for (a, b), (_, n_out) in zip(net._weight_spans, shapes)]
    net._gwb = [grads[a : b + n_out].reshape(-1, n_out) for (a, b), (_, n_out) in zip(net._weight_spans, shapes)]
    net._wt = [w.T for w in net.weights]
    net._view_cache.clear()


def two_process_epoch(x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """One epoch of data-parallel steps in this process and a forked worker; returns seconds."""
    n, rng = len(y), np.random.default_rng(0)
    net = MLP(SIZES, "relu")
    net.initialize("auto", rng)
    size_p = net.params.size
    shared = mmap.mmap(-1, 3 * size_p * 4 + n * 8 + 64 * 8)  # anonymous and shared across fork
    params, grads0, grads1 = (np.frombuffer(shared, np.float32, size_p, k * size_p * 4) for k in range(3))
    perm = np.frombuffer(shared, np.int64, n, 3 * size_p * 4)
    flags = np.frombuffer(shared, np.int64, 64, 3 * size_p * 4 + n * 8)  # [10 + p]: gradient done, [20 + p]: update done
    middle = size_p // 2
    rebind(net, params, grads0)
    t = time.perf_counter()
    perm[:] = rng.permutation(n)
    pid = os.fork()
    me = 1 if pid == 0 else 0
    if me:
        rebind(net, params, grads1)
    part = slice(0, middle) if me == 0 else slice(middle, None)
    opt, loss = Adam(part.indices(size_p)[1] - part.indices(size_p)[0], net.dtype), CrossEntropy(10)
    xb, yb = np.empty((batch, x.shape[1]), np.float32), np.empty(batch, np.int64)

    def meet(flag: int, step: int) -> None:
        flags[flag + me] = step
        while flags[flag + 1 - me] < step:
            pass

    finished = False
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for step, lo in enumerate(range(0, n, batch), 1):
                size = min(batch, n - lo)
                a, b = (lo, lo + size // 2) if me == 0 else (lo + size // 2, lo + size)
                xs = x.take(perm[a:b], axis=0, out=xb[: b - a], mode="clip")
                ys = y.take(perm[a:b], out=yb[: b - a], mode="clip")
                delta = net.output_delta_buffer(b - a)
                loss.forward_backward(net.forward(xs), ys, delta)
                delta *= np.float32((b - a) / size)
                net.backward(delta)
                meet(10, step)
                g = grads0[part]
                g += grads1[part]
                opt.step(params[part], g, 1e-3)
                meet(20, step)
        finished = True
    finally:
        if me:
            os._exit(0)  # the worker never returns into the caller's code
        if not finished:  # the main process failed: do not leave the worker spinning
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    x, y, _ = wide_data(args.rows)
    n, batch, worker = len(y), args.batch, Worker()

    def trainer_epoch():
        rng = np.random.default_rng(0)
        net = MLP(SIZES, "relu")
        net.initialize("auto", rng)
        trainer = Trainer(net, CrossEntropy(10), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(1e-3, 1),
                          epochs=1, batch_size=batch, rng=rng, monitor="train_loss")
        t = time.perf_counter()
        trainer.fit(x, y)
        return time.perf_counter() - t

    def dp_epoch(split_adam: bool):
        rng = np.random.default_rng(0)
        net = MLP(SIZES, "relu")
        net.initialize("auto", rng)
        other, losses = sharing_params(net), (CrossEntropy(10), CrossEntropy(10))
        middle = net.params.size // 2
        # one Adam per half of the parameter vector, stepped together: the same updates as one
        # Adam over the whole vector (every operation is elementwise), and a half per thread
        halves = [(slice(0, middle), Adam(middle, net.dtype)), (slice(middle, None), Adam(net.params.size - middle, net.dtype))]
        xb, yb = np.empty((batch, x.shape[1]), np.float32), np.empty(batch, np.int64)

        def half(mlp, loss, xs, ys, share):
            delta = mlp.output_delta_buffer(len(ys))
            value = loss.forward_backward(mlp.forward(xs), ys, delta)
            delta *= np.float32(share)  # each half's mean, weighted to the whole batch's mean
            mlp.backward(delta)
            return value, int(np.count_nonzero(loss.last_classes == ys))

        def reduce_and_step(k):
            part, opt = halves[k]
            g = net.grads[part]
            g += other.grads[part]
            opt.step(net.params[part], g, 1e-3)

        with threadpool_limits(limits=1, user_api="blas"):
            t = time.perf_counter()
            perm = rng.permutation(n)
            for lo in range(0, n, batch):
                idx = perm[lo : lo + batch]
                size, h = len(idx), len(idx) // 2
                xs, ys = x.take(idx, axis=0, out=xb[:size], mode="clip"), y.take(idx, out=yb[:size], mode="clip")
                worker.submit(lambda: half(other, losses[1], xs[h:], ys[h:], (size - h) / size))
                half(net, losses[0], xs[:h], ys[:h], h / size)
                worker.wait()
                if split_adam:
                    worker.submit(lambda: reduce_and_step(1))
                    reduce_and_step(0)
                    worker.wait()
                else:
                    reduce_and_step(0)
                    reduce_and_step(1)
            return time.perf_counter() - t

    contestants = {"nnclf Trainer": trainer_epoch, "dp": lambda: dp_epoch(False), "dp, split Adam": lambda: dp_epoch(True),
                   "GEMM-only ceiling": gemm_ceiling(n, SIZES, batch)}
    if hasattr(os, "fork") and sys.platform.startswith("linux"):
        contestants["dp, two processes"] = lambda: two_process_epoch(x, y, batch)
    samples = {name: [] for name in contestants}
    for run in contestants.values():
        run()  # warm-up
    names = list(contestants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(contestants[name]())
    ceiling = samples["GEMM-only ceiling"]
    print(f"wide {n}x100, batch {batch}, {args.rounds} rounds (s/epoch; fraction of the 2-thread GEMM ceiling, paired)")
    for name, times in samples.items():
        fraction = statistics.median(c / s for c, s in zip(ceiling, times))
        print(f"  {name:20s} {statistics.median(times) * 1e3:8.1f} ms  {fraction:5.0%}")


if __name__ == "__main__":
    main()
