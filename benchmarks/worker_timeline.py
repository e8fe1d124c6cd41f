"""Where the time of a fit with the worker process goes: its start, the first and later steps, its
exit, against the GEMM-only ceiling measured in the same run.

    python benchmarks/worker_timeline.py --rounds 3

For batch 128 and 512 on the benchmark's wide data (100,000 x 100, 100-256-256-10, Adam): per
round, one two-epoch ``Trainer.fit`` with a clock at every batch end and one ceiling epoch
(``bench.gemm_ceiling``); prints medians of the first step (it includes the fork), the mean step
of epoch 1 and of epoch 2, and each as a fraction of the ceiling's time per step. Then the
pieces of the worker's life (``BatchHalves``: start, first step, a later step, close) and a bare
``os.fork`` of this process, whose size (torch and scikit-learn loaded, if installed) sets the
fork's cost. Linux on x86-64 with two cores only (elsewhere there is no worker to time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import gemm_ceiling, wide_data  # noqa: E402
from nnclf.engine.losses import CrossEntropy  # noqa: E402
from nnclf.engine.network import MLP  # noqa: E402
from nnclf.engine.optimizers import Adam  # noqa: E402
from nnclf.engine.parallel import BatchHalves, fork_available  # noqa: E402
from nnclf.engine.schedules import SCHEDULES  # noqa: E402
from nnclf.trainer import Trainer  # noqa: E402

SIZES = [100, 256, 256, 10]


class Clock:
    def __init__(self):
        self.marks = [time.perf_counter()]

    def on_batch_end(self, *args):
        self.marks.append(time.perf_counter())


def two_epochs(x, y, batch):
    rng = np.random.default_rng(0)
    net = MLP(SIZES, "relu")
    net.initialize("auto", rng)
    clock = Clock()
    trainer = Trainer(net, CrossEntropy(10), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(1e-3, 2),
                      epochs=2, batch_size=batch, rng=rng, monitor="train_loss", callbacks=[clock])
    trainer.fit(x, y)
    steps = np.diff(clock.marks)
    per_epoch = len(steps) // 2
    return steps[0], steps[1:per_epoch].mean(), steps[per_epoch:].mean(), per_epoch


def worker_life(x, y, batch):
    net = MLP(SIZES, "relu")
    net.initialize("auto", np.random.default_rng(0))
    rows = np.arange(batch)
    t0 = time.perf_counter()
    halves = BatchHalves(net, CrossEntropy(10), x, y, batch, parallel=True, optimizer=Adam(net.params.size, net.dtype))
    t1 = time.perf_counter()
    marks = []
    for _ in range(2):  # the first step, then a later one
        halves.gradient(rows)
        halves.update(1e-3)
        marks.append(time.perf_counter())
    halves.close()
    return t1 - t0, marks[0] - t1, marks[1] - marks[0], time.perf_counter() - marks[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not fork_available():
        print("no worker process on this machine (it needs Linux on x86-64 and two usable cores)")
        return
    x, y, _ = wide_data(100_000)
    ms = lambda seconds: f"{seconds * 1e3:7.2f} ms"  # noqa: E731
    for batch in (128, 512):
        ceiling = gemm_ceiling(len(y), SIZES, batch)
        rows = []
        for _ in range(args.rounds):
            first, epoch1, epoch2, steps = two_epochs(x, y, batch)
            rows.append((first, epoch1, epoch2, ceiling() / steps))
        first, epoch1, epoch2, per_step = (statistics.median(column) for column in zip(*rows))
        print(f"batch {batch}, {args.rounds} rounds (medians): ceiling {ms(per_step)} a step")
        print(f"  first step (with the worker's start) {ms(first)}")
        print(f"  epoch 1, later steps               {ms(epoch1)}  {per_step / epoch1:5.0%} of the ceiling")
        print(f"  epoch 2                            {ms(epoch2)}  {per_step / epoch2:5.0%} of the ceiling")
    lives = [worker_life(x, y, 512) for _ in range(args.rounds)]
    start, first, later, close = (statistics.median(column) for column in zip(*lives))
    print(f"the worker's life at batch 512 (medians): start {ms(start)}, first step {ms(first)}, "
          f"a later step {ms(later)}, close {ms(close)}")
    forks = []
    for _ in range(5):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forks.append(time.perf_counter() - t)
        os.waitpid(pid, 0)
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) / 1024
    print(f"os.fork of this process ({rss:.0f} MB resident): {ms(statistics.median(forks))} (median of 5)")


if __name__ == "__main__":
    main()
