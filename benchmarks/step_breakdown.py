"""Where one training step of the wide MLP goes: each GEMM and each elementwise piece, timed.

    python benchmarks/step_breakdown.py --batch 512 --threads 2
    OPENBLAS_NUM_THREADS=1 python benchmarks/step_breakdown.py --batch 128 --threads 1

Runs nnclf's own pieces (``MLP`` buffers and views, ``CrossEntropy.forward_backward``, the ReLU
class, ``Adam``) in the order ``Trainer._step`` runs them, with a clock between pieces, over a
few epochs of the benchmark's wide data (100 features, 10 classes, 100-256-256-10). Prints
microseconds per step and the share of each piece. The clock adds ~0.1 us per piece.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nnclf.engine.losses import CrossEntropy  # noqa: E402
from nnclf.engine.network import MLP  # noqa: E402
from nnclf.engine.optimizers import Adam  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (threadpoolctl); default: the library's")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    try:
        from sklearn.datasets import make_classification

        x, y = make_classification(n_samples=args.rows, n_features=100, n_informative=60, n_classes=10, random_state=0)
    except ImportError:
        x, y = rng.standard_normal((args.rows, 100)), rng.integers(0, 10, args.rows)
    x, y = x.astype(np.float32), y.astype(np.int64)
    net = MLP([100, 256, 256, 10], "relu")
    net.initialize("auto", rng)
    loss, opt = CrossEntropy(10), Adam(net.params.size, net.dtype)
    batch = args.batch
    xb, yb = np.empty((batch, 100), np.float32), np.empty(batch, np.int64)
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    last = net.n_layers - 1

    def run():
        for _ in range(args.epochs):
            perm = rng.permutation(args.rows)
            for lo in range(0, args.rows - batch + 1, batch):
                t0 = clock()
                idx = perm[lo : lo + batch]
                xs, ys = x.take(idx, axis=0, out=xb, mode="clip"), y.take(idx, out=yb, mode="clip")
                t1 = clock()
                spent["gather"] += t1 - t0
                v = net._batch_views(batch)
                np.copyto(v.x, xs)
                spent["copy into [X, 1]"] += clock() - t1
                a = v.inputs[0]
                for l, wb in enumerate(net._wb):
                    t = clock()
                    np.dot(a, wb, out=v.z[l])
                    t_ = clock()
                    spent[f"GEMM forward {l}"] += t_ - t
                    if l == last:
                        break
                    net.activation.forward(v.z[l], v.acts[l])
                    spent[f"ReLU {l}"] += clock() - t_
                    a = v.inputs[l + 1]
                t = clock()
                delta = v.deltas[-1]
                loss.forward_backward(v.z[-1], ys, delta)
                np.count_nonzero(loss.last_classes == ys)
                spent["loss + accuracy"] += clock() - t
                for l in range(last, 0, -1):
                    t = clock()
                    np.dot(v.inputs_t[l], delta, out=net._gwb[l])
                    t_ = clock()
                    spent[f"GEMM dW {l}"] += t_ - t
                    np.dot(delta, net._wt[l], out=v.deltas[l - 1])
                    t__ = clock()
                    spent[f"GEMM delta {l - 1}"] += t__ - t_
                    delta = net.activation.backward(None, v.acts[l - 1], v.deltas[l - 1])
                    spent[f"ReLU' {l - 1}"] += clock() - t__
                t = clock()
                np.dot(v.inputs_t[0], delta, out=net._gwb[0])
                t_ = clock()
                spent["GEMM dW 0"] += t_ - t
                opt.step(net.params, net.grads, 1e-3)
                spent["Adam"] += clock() - t_

    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.threads, user_api="blas"):
            run()
    else:
        run()
    steps = args.epochs * (args.rows // batch)
    total = sum(spent.values())
    gemm = sum(v for k, v in spent.items() if k.startswith("GEMM"))
    print(f"batch {batch}, BLAS threads {args.threads or 'default'}: {total / steps * 1e6:.0f} us per step, "
          f"GEMMs {gemm / total:.0%}")
    for name, seconds in spent.items():
        print(f"  {name:18s} {seconds / steps * 1e6:8.1f} us  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()
