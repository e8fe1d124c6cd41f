"""MPI data-parallel training (``mpirun -n 2``) against one process, on the wide network.

    python benchmarks/mpi_bench.py                    # batches 128 and 512, quiet and busy, 3 rounds
    python benchmarks/mpi_bench.py --rounds 5 --rows 40000

Contestants, each a fresh process (start-up not timed), on the same data (``--rows`` x 100,
10 classes, the network 100-256-256-10 ReLU, Adam 1e-3, shuffled), timing the second of two
epochs (the first warms the buffers):

* ``1 process, 1 thread``: ``Trainer.fit``, BLAS held to one thread;
* ``1 process, 2 threads``: BLAS with two threads (what one process can do with the two cores);
* ``mpirun -n 2``: two ranks, one BLAS thread each, ``DataParallelStep`` over ``MpiCommunicator``.

Runs are interleaved in rounds (each round runs every contestant once, in a rotated order). The
busy condition runs one competing CPU-bound process (a Python busy loop) beside every contestant.
Ratios are per round (paired) medians of one-process time over the contestant's time (> 1: faster
than one process with one thread).

For the scaling model the MPI workers also report, per step, the time in the two exchanges
(gradient Allgather + rank-order sum, and the 3 scalars), and a standalone measurement of the
Allgather of the gradient vector alone (the pure communication cost on this machine's shared
memory); one-process workers report the step time at batch B/2 too (the compute a rank does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = [100, 256, 256, 10]


def make_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, 100)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    x = centers[y] + 2.0 * rng.standard_normal((rows, 100)).astype(np.float32)
    np.save(path / "x.npy", x.astype(np.float32))
    np.save(path / "y.npy", y.astype(np.int64))


class TimedComm:
    """A communicator that adds up the time spent in its exchanges."""

    def __init__(self, comm):
        self.comm, self.seconds, self.calls = comm, 0.0, 0
        self.rank, self.size, self.local_size = comm.rank, comm.size, comm.local_size

    def sum_in_rank_order(self, local, out):
        t = time.perf_counter()
        result = self.comm.sum_in_rank_order(local, out)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return result


def worker(args) -> None:
    from threadpoolctl import threadpool_limits

    from nnclf.engine.losses import CrossEntropy
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import Adam
    from nnclf.engine.schedules import SCHEDULES
    from nnclf.trainer import Trainer

    x, y = np.load(Path(args.data) / "x.npy"), np.load(Path(args.data) / "y.npy")
    rng = np.random.default_rng(0)
    net = MLP(SIZES, "relu")
    net.initialize("auto", rng)
    trainer = Trainer(net, CrossEntropy(10), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(1e-3, 2),
                      epochs=2, batch_size=args.batch, rng=rng, monitor="train_loss")
    out = {}
    comm = None
    if args.mpi:
        from nnclf.distributed import DataParallelStep, MpiCommunicator

        real = MpiCommunicator()
        # the gradient vector's Allgather + sum alone, after a barrier: the pure exchange cost
        g = np.ones(net.params.size, dtype=np.float32)
        real.barrier()
        t = time.perf_counter()
        for _ in range(50):
            real.sum_in_rank_order(g, g.copy())
        out["allgather_ms"] = (time.perf_counter() - t) / 50 * 1e3
        comm = TimedComm(real)
        trainer.parallel = DataParallelStep(trainer.step, comm, None, 0)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if comm is not None:
            comm.comm.barrier()
        trainer.fit(x, y)
        if comm is not None:  # two exchanges a step, averaged over both epochs
            out["exchange_ms_per_step"] = comm.seconds / (comm.calls / 2) * 1e3
        if not args.mpi:  # the compute of one rank of two: a step at batch B/2
            half = max(1, args.batch // 2)
            xb, yb = x[:half], y[:half]
            for _ in range(5):
                trainer.step.step(xb, yb, 1e-3)
            t = time.perf_counter()
            for _ in range(40):
                trainer.step.step(xb, yb, 1e-3)
            out["half_step_ms"] = (time.perf_counter() - t) / 40 * 1e3
            t = time.perf_counter()
            xb, yb = x[: args.batch], y[: args.batch]
            for _ in range(40):
                trainer.step.step(xb, yb, 1e-3)
            out["step_ms"] = (time.perf_counter() - t) / 40 * 1e3
    out["epoch_s"] = trainer.history[1]["seconds"]
    out["steps"] = -(-len(y) // args.batch)
    if comm is None or comm.rank == 0:
        print(json.dumps(out), flush=True)


def step_times(x, y, batches: list[int], repeats: int = 20) -> dict[int, float]:
    """Best-of-5 mean step time (ms) of one process, one BLAS thread, at each batch size: on a
    shared machine the fastest window is the closest to the step's own cost."""
    from threadpoolctl import threadpool_limits

    from nnclf.engine.losses import CrossEntropy
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import Adam
    from nnclf.engine.step import TrainingStep

    net = MLP(SIZES, "relu")
    net.initialize("auto", np.random.default_rng(0))
    step = TrainingStep(net, CrossEntropy(10), Adam(net.params.size, net.dtype))
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for b in batches:
            xb, yb = np.ascontiguousarray(x[:b]), y[:b]
            for _ in range(5):
                step.step(xb, yb, 1e-3)
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(repeats):
                    step.step(xb, yb, 1e-3)
                samples.append((time.perf_counter() - t) / repeats * 1e3)
            out[b] = min(samples)
    return out


def scaling_model(data: Path, batches: list[int], alpha_ms: float, gbit: float) -> None:
    """Predicted speed-up S(K) = T1(B) / (T1(B/K) + (K-1) (alpha + 4P/beta + t_add) + (K-1) alpha)."""
    x, y = np.load(data / "x.npy"), np.load(data / "y.npy")
    p = sum((i + 1) * o for i, o in zip(SIZES[:-1], SIZES[1:]))
    beta = gbit * 1e9 / 8  # bytes per second
    g = np.ones(p, np.float32)
    h = np.ones(p, np.float32)
    t = time.perf_counter()
    for _ in range(200):
        g += h
    add_ms = (time.perf_counter() - t) / 200 * 1e3
    ks = [2, 4, 8, 16, 32]
    sizes = sorted({max(1, b // k) for b in batches for k in [1, *ks]})
    measured = step_times(x, y, sizes)
    # T1(b) = t0 + c b: a step's fixed cost (Python, the optimizer over all P parameters) and its
    # per-row cost (the matrix products), fitted to the measurements, smooths the noise away
    times = np.array([measured[b] for b in sizes])
    c, t0 = np.polyfit(sizes, times, 1, w=1 / times)  # relative errors: small batches count too
    t0 = max(t0, 0.0)
    t1 = {b: t0 + c * b for b in sizes}
    transfer_ms = 4 * p / beta * 1e3
    print(f"\n[scaling model] P = {p} parameters ({4 * p / 1e3:.0f} KB float32); {gbit:g} Gbit/s: "
          f"{transfer_ms:.3f} ms per vector; latency alpha = {alpha_ms:g} ms; adding a vector {add_ms:.3f} ms (measured)")
    print("  one process, one thread, step time T1(b) ms, best of 5: " + ", ".join(f"b={b}: {measured[b]:.2f}" for b in sizes))
    print(f"  fitted T1(b) = {t0:.3f} ms + {c * 1e3:.2f} us x b")
    for b in batches:
        cells = []
        for k in ks:
            exchange = (k - 1) * (alpha_ms + transfer_ms + add_ms) + (k - 1) * alpha_ms
            cells.append(f"K={k}: {t1[b] / (t1[max(1, b // k)] + exchange):.2f}x")
        print(f"  batch {b}: predicted speed-up " + ", ".join(cells))


def run(contestant: str, data: Path, batch: int) -> dict:
    py = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(data), "--batch", str(batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if contestant == "mpirun -n 2":
        command = [str(Path(sys.executable).parent / "mpirun"), "-n", "2", *py, "--mpi", "--threads", "1"]
    else:
        command = py + ["--threads", "2" if "2 threads" in contestant else "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--model-only", action="store_true", help="only the scaling model's measurements and predictions")
    parser.add_argument("--alpha-ms", type=float, default=0.03, help="network latency per message for the model (ms)")
    parser.add_argument("--gbit", type=float, default=10.0, help="network bandwidth for the model (Gbit/s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    contestants = ["1 process, 1 thread", "1 process, 2 threads", "mpirun -n 2"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        make_data(data, args.rows)
        print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
        scaling_model(data, [int(b) for b in args.batches.split(",")], args.alpha_ms, args.gbit)
        if args.model_only:
            return
        for condition in args.conditions.split(","):
            hog = None
            if condition == "busy":  # one competing CPU-bound process for the whole condition
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for batch in [int(b) for b in args.batches.split(",")]:
                    results: dict[str, list[dict]] = {c: [] for c in contestants}
                    loads = []
                    for r in range(args.rounds):
                        for c in contestants[r % 3:] + contestants[: r % 3]:
                            loads.append(os.getloadavg()[0])
                            results[c].append(run(c, data, batch))
                    base = [o["epoch_s"] for o in results[contestants[0]]]
                    print(f"\n[{condition}] {args.rows}x100, 100-256-256-10, batch {batch}, {args.rounds} rounds, "
                          f"load average {min(loads):.1f}-{max(loads):.1f}")
                    print(f"  {'contestant':24s} {'epoch s (median)':>17s} {'speed-up vs 1 thread':>21s}")
                    for c in contestants:
                        times = [o["epoch_s"] for o in results[c]]
                        ratio = statistics.median(b / t for b, t in zip(base, times))
                        print(f"  {c:24s} {statistics.median(times):17.3f} {ratio:21.2f}")
                    one = results[contestants[0]]
                    mpi = results["mpirun -n 2"]
                    print(f"  per step: 1 process {statistics.median(o['epoch_s'] / o['steps'] for o in one) * 1e3:.2f} ms "
                          f"(isolated {statistics.median(o['step_ms'] for o in one):.2f} ms, at batch {batch // 2}: "
                          f"{statistics.median(o['half_step_ms'] for o in one):.2f} ms); mpirun -n 2 "
                          f"{statistics.median(o['epoch_s'] / o['steps'] for o in mpi) * 1e3:.2f} ms, of which exchanges "
                          f"(waits included) {statistics.median(o['exchange_ms_per_step'] for o in mpi):.2f} ms; the gradient "
                          f"Allgather alone {statistics.median(o['allgather_ms'] for o in mpi):.3f} ms", flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()


if __name__ == "__main__":
    main()
