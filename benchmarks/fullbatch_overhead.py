"""Where a full-batch run's time goes outside the arithmetic (issue 14, third to fifth pass). Five parts:

loop     L-BFGS through the Trainer (no run folder) on iris and digits, hidden (100,), relu,
         float64, Glorot-uniform start, gtol 1e-4 (beyond_bench's part-A setting): time per
         iteration and the part of it spent outside ``Objective`` calls; process CPU time,
         minimum of --reps fits. Run it once per source tree to compare two versions:

             PYTHONPATH=OLD python benchmarks/fullbatch_overhead.py loop
             PYTHONPATH=NEW python benchmarks/fullbatch_overhead.py loop

         (alternate them a few times; the script only imports ``nnclf`` from PYTHONPATH).
pieces   one float64 ``Objective`` evaluation on digits (1437 x 64 -> 100 -> 10, relu, cross-entropy)
         against its matrix products alone, at their exact shapes and layouts: the two large
         ones ([X, 1] W_1 and [X, 1]^T delta_1) and the three narrow ones of the output layer;
         minimum over --reps x 300 calls, one BLAS thread.

             PYTHONPATH=$PWD python benchmarks/fullbatch_overhead.py pieces
direction  the L-BFGS direction (the two-loop recursion, 10 pairs) alone, on the parameter counts
         of iris and digits with hidden (100,) (P = 803 and 7510): us per call, minimum over
         --reps runs; beside it the compact form of the same direction (``_compact_direction``).

             PYTHONPATH=$PWD python benchmarks/fullbatch_overhead.py direction
fits     --reps iris fits of ``loop``'s setting in float32 (lbfgs's default), and nothing else (it
         prints how often scipy's line search ran): a workload for an instruction counter, which, unlike a clock, a busy host does not
         disturb. Instructions per fit = (count at --reps 3 - count at --reps 1) / 2, which
         leaves out the start-up:

             valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
                 env OPENBLAS_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/fullbatch_overhead.py fits --reps 1

         (A count is not a time: valgrind counts each byte of a `rep stos` memset as an
         instruction, and BLAS and the interpreter retire instructions at different rates.)
cadence  ``runs.train`` (what ``nnclf train`` calls) on an lbfgs config with checkpoints and
         metrics.csv written every epoch (``_Checkpointer.WRITE_SECONDS = 0``) against at most
         every 2 s (the default), alternated; wall and CPU seconds. Needs a tree with the
         cadence (beyond3's commit 5b194e2 or later).

             PYTHONPATH=$PWD python benchmarks/fullbatch_overhead.py cadence [CONFIG ...]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _fit(x, y, k, dtype="float64"):
    """L-BFGS through the Trainer from a Glorot-uniform start (only calls that older trees have)."""
    from nnclf.engine.losses import LOSSES
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import OPTIMIZERS
    from nnclf.engine.schedules import SCHEDULES
    from nnclf.trainer import Trainer

    loss = LOSSES.get("cross_entropy")(k)
    net = MLP([x.shape[1], 100, loss.n_outputs], "relu", dtype=dtype)
    rng = np.random.default_rng(0)
    net.initialize("xavier_uniform", rng)
    opt = OPTIMIZERS.get("lbfgs")(net.params.size, dtype, net.weight_mask(), gtol=1e-4)
    trainer = Trainer(net, loss, opt, SCHEDULES.get("constant")(1e-3, 200), epochs=200, batch_size=None, rng=rng,
                      weight_decay=1e-4, monitor="train_loss")
    trainer.fit(x.astype(dtype), y)
    return trainer


def fits(reps: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import beyond_bench as bb  # its data loading only

    import scipy.optimize

    searches = [0]
    real = scipy.optimize.line_search

    def counted(*args, **kwargs):  # (nnclf imports it from scipy.optimize at each call)
        searches[0] += 1
        return real(*args, **kwargs)

    scipy.optimize.line_search = counted
    x, _, y, _, k = bb.load("iris", 0)
    for _ in range(reps):
        trainer = _fit(x, y, k, "float32")
    print(f"{reps} iris fits of {trainer.epoch} iterations; scipy's line search ran {searches[0] / reps:g} times a fit", flush=True)


def loop(reps: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import beyond_bench as bb  # its data loading only
    import nnclf.engine.step as step

    spent = [0.0]
    inner = step.Objective.__call__

    def timed(self, theta):
        start = time.process_time()
        try:
            return inner(self, theta)
        finally:
            spent[0] += time.process_time() - start

    step.Objective.__call__ = timed
    for name in ("iris", "digits"):
        x, _, y, _, k = bb.load(name, 0)
        totals, outside = [], []
        for _ in range(reps):
            spent[0] = 0.0
            start = time.process_time()
            trainer = _fit(x, y, k)
            total = time.process_time() - start
            totals.append(total / trainer.epoch * 1e6)
            outside.append((total - spent[0]) / trainer.epoch * 1e6)
        print(f"{name}: {trainer.epoch} iterations; per iteration {min(totals):.0f} us (min of {reps}), "
              f"outside the objective {min(outside):.0f} us", flush=True)


def cadence(configs: list[str], reps: int) -> None:
    from nnclf import runs

    results: dict[tuple[str, float], list[tuple[float, float, int]]] = {}
    for _ in range(reps):
        for config in configs:
            for seconds in (0.0, runs._Checkpointer.WRITE_SECONDS):
                saved = runs._Checkpointer.WRITE_SECONDS
                runs._Checkpointer.WRITE_SECONDS = seconds
                folder = Path(tempfile.mkdtemp())
                try:
                    wall, cpu = time.perf_counter(), time.process_time()
                    result = runs.train(config, runs_dir=folder, name="r")
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                finally:
                    runs._Checkpointer.WRITE_SECONDS = saved
                    shutil.rmtree(folder, ignore_errors=True)
                results.setdefault((config, seconds), []).append((wall, cpu, len(result.history)))
    print("| config | epochs | writes | wall min / median (s) | CPU min / median (s) |")
    print("|---|---|---|---|---|")
    for (config, seconds), got in results.items():
        walls, cpus = [g[0] for g in got], [g[1] for g in got]
        label = "every epoch" if seconds == 0 else f"at most every {seconds:g} s"
        print(f"| {config} | {got[0][2]} | {label} | {min(walls):.3f} / {statistics.median(walls):.3f} | "
              f"{min(cpus):.3f} / {statistics.median(cpus):.3f} |", flush=True)


def pieces(reps: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import beyond_bench as bb  # its data loading only
    from nnclf.engine.losses import LOSSES
    from nnclf.engine.network import MLP
    from nnclf.engine.step import Objective

    x, _, y, _, k = bb.load("digits", 0)
    loss = LOSSES.get("cross_entropy")(k)
    net = MLP([x.shape[1], 100, loss.n_outputs], "relu", dtype="float64")
    net.initialize("xavier_uniform", np.random.default_rng(0))
    objective, theta = Objective(net, loss, x, y, 1e-4), net.params.copy()
    rng = np.random.default_rng(1)
    xa = np.hstack([x, np.ones((len(x), 1))])  # [X, 1] (n, 65), C-ordered as the network holds it
    ha = rng.standard_normal((len(x), 101))  # [A_1, 1]
    w1, w2 = rng.standard_normal((65, 100)), rng.standard_normal((101, 10))
    d1, d2 = rng.standard_normal((len(x), 100)), rng.standard_normal((len(x), 10))
    cases = {
        "one Objective evaluation": lambda: objective(theta),
        "[X, 1] W_1 (1437x65 @ 65x100)": lambda: np.dot(xa, w1),
        "[X, 1]^T delta_1 (65x1437 @ 1437x100)": lambda: np.dot(xa.T, d1),
        "[A_1, 1] W_2 (1437x101 @ 101x10)": lambda: np.dot(ha, w2),
        "[A_1, 1]^T delta_2 (101x1437 @ 1437x10)": lambda: np.dot(ha.T, d2),
        "delta_2 W_2^T (1437x10 @ 10x100)": lambda: np.dot(d2, w2[:100].T),
    }
    print("| piece | us (min of runs of 300 calls) |")
    print("|---|---|")
    for label, call in cases.items():
        best = math.inf
        for _ in range(reps):
            start = time.perf_counter()
            for _ in range(300):
                call()
            best = min(best, (time.perf_counter() - start) / 300)
        print(f"| {label} | {best * 1e6:.0f} |", flush=True)


def _compact_direction(opt):
    """The compact (Byrd-Nocedal-Schnabel 1994) form of the same d = -H g, for timing against
    the two-loop recursion: with the pairs oldest first, A_ij = s_i.y_j, R = triu(A),
    D = diag(A), G = (y_i.y_j) and gamma = s.y / y.y of the newest pair,

        R a = S q0,  tau = gamma (Y q0 - G a),  R^T c = D a - tau,  d = gamma q0 + S^T c - gamma Y^T a

    (q0 = -g): one (2m, P) matrix-vector product each way and two m x m triangular solves in
    place of 2m dot products and 2m axpys. A, G and R are made here once; a real
    implementation would update them with each new pair (two more matrix-vector products per
    iteration), which this leaves out: the timing favours the compact form."""
    from scipy.linalg.blas import daxpy, dtrsv

    k, m, head = int(opt.pairs), opt.history, int(opt.head)
    order = (head + np.arange(k)) % m
    stacked = np.concatenate([opt.s, opt.y])
    a_mat = opt.s[order] @ opt.y[order].T
    gram = opt.y[order] @ opt.y[order].T
    upper = np.asfortranarray(np.triu(a_mat))
    diag = np.diag(a_mat).copy()
    rows = np.concatenate([order, m + order])
    gamma = a_mat[-1, -1] / gram[-1, -1]

    def direction(g):
        v = (stacked @ g).take(rows)
        a = dtrsv(upper, -v[:k])
        tau = gamma * (-v[k:] - gram @ a)
        c = dtrsv(upper, diag * a - tau, trans=1)
        w = np.zeros(2 * m)
        w[order], w[m + order] = c, -gamma * a
        return daxpy(g, w @ stacked, a=-gamma)

    return direction


def direction(reps: int) -> None:
    from nnclf.engine.fullbatch import LBFGS

    rng = np.random.default_rng(0)
    for p in (803, 7510):
        opt = LBFGS(p, "float64")
        for _ in range(13):  # more pairs than the history holds: the ring has wrapped
            s = rng.standard_normal(p)
            opt._remember(s, s + 0.1 * rng.standard_normal(p))
        g = rng.standard_normal(p)
        compact = _compact_direction(opt)
        d, d_compact = opt.direction(g), compact(g)
        calls = 3000 if p < 1000 else 500
        best = {"two-loop": math.inf, "compact": math.inf}
        for _ in range(reps):
            for name, fn in (("two-loop", opt.direction), ("compact", compact)):
                start = time.perf_counter()
                for _ in range(calls):
                    fn(g)
                best[name] = min(best[name], (time.perf_counter() - start) / calls)
        print(f"P = {p}: {int(opt.pairs)} pairs, {best['two-loop'] * 1e6:.1f} us per direction (two-loop recursion); "
              f"compact form {best['compact'] * 1e6:.1f} us (largest difference {np.max(np.abs(d - d_compact)) / np.max(np.abs(d)):.1e} of max |d|)",
              flush=True)


def main() -> None:
    # nnclf from PYTHONPATH (the tree under test), imported before beyond_bench, which puts this
    # checkout first on sys.path for its own imports: the modules already loaded are the ones used
    import nnclf.engine.step  # noqa: F401
    import nnclf.trainer  # noqa: F401

    print(f"nnclf from {Path(nnclf.__file__).parent}", flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["loop", "pieces", "direction", "fits", "cadence"])
    parser.add_argument("configs", nargs="*", default=[str(ROOT / "configs" / "lbfgs.yaml")])
    parser.add_argument("--reps", type=int, default=12)
    args = parser.parse_args()
    import scipy.linalg.blas  # noqa: F401  (loaded before the limit, which covers loaded libraries only)
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    np.seterr(all="ignore")
    if args.part == "loop":
        loop(args.reps)
    elif args.part == "pieces":
        pieces(max(1, args.reps // 2))
    elif args.part == "direction":
        direction(max(1, args.reps // 2))
    elif args.part == "fits":
        fits(args.reps)
    else:
        cadence(args.configs, max(1, args.reps // 3))


if __name__ == "__main__":
    main()
