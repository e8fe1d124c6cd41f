"""Interleaved A/B of nnclf's training loop: an older copy of the package against the working tree.

    git archive <rev> nnclf | tar -x -C /tmp/nnb/base && mv /tmp/nnb/base/nnclf /tmp/nnb/base/nnclf_base
    OPENBLAS_NUM_THREADS=1 python benchmarks/ab_engine.py --baseline /tmp/nnb/base --rows 50000 --rounds 9

Each round trains one epoch of each version (order alternating), from the same initialisation,
on the wide data (make_classification, 100 features, 10 classes, 100-256-256-10 ReLU, Adam 1e-3,
float32) and optionally the 8x8 digits (64-32-10, batch 32, 20 epochs). Prints the medians, the
median of the paired per-round ratios new/base (with min and max), and whether the two versions'
final parameters are bit-identical. Use OPENBLAS_NUM_THREADS=1 for non-GEMM changes: with two
OpenBLAS threads on a shared 2-core machine, contention swamps effects of a few percent.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load(pkg):
    get = lambda mod, name: getattr(importlib.import_module(f"{pkg}.{mod}"), name)  # noqa: E731
    return (get("engine.network", "MLP"), get("engine.losses", "CrossEntropy"), get("engine.optimizers", "Adam"),
            get("engine.schedules", "SCHEDULES"), get("trainer", "Trainer"))


def epoch_seconds(impl, x, y, sizes, batch, epochs=1, workers=None):
    MLP, CE, Adam, SCHEDULES, Trainer = impl
    rng = np.random.default_rng(0)
    net = MLP(sizes, "relu")
    net.initialize("auto", rng)
    extra = {"workers": workers} if workers is not None and "workers" in inspect.signature(Trainer).parameters else {}
    trainer = Trainer(net, CE(sizes[-1]), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(1e-3, epochs),
                      epochs=epochs, batch_size=batch, rng=rng, monitor="train_loss", **extra)
    t = time.perf_counter()
    trainer.fit(x, y)
    return (time.perf_counter() - t) / epochs, net.params.copy()


def compare(impls, x, y, sizes, batch, rounds, epochs, label, workers=None):
    times = {k: [] for k in impls}
    params = {}
    for k in impls:  # warm-up
        epoch_seconds(impls[k], x, y, sizes, batch, epochs, workers)
    for r in range(rounds):
        for k in (list(impls) if r % 2 == 0 else list(impls)[::-1]):
            t, params[k] = epoch_seconds(impls[k], x, y, sizes, batch, epochs, workers)
            times[k].append(t)
    ratios = [a / b for a, b in zip(times["new"], times["base"])]
    print(f"{label}: base {statistics.median(times['base']) * 1e3:.1f} ms, new {statistics.median(times['new']) * 1e3:.1f} ms"
          f" per epoch; new/base median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f});"
          f" bit-identical parameters: {np.array_equal(params['new'], params['base'])}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="folder holding nnclf_base/ (an older copy of the package)")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--batches", default="512,128")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--tiny", action="store_true", help="also compare on the digits, batch 32")
    ap.add_argument("--workers", type=int, default=None, help="Trainer(workers=) for versions that have it")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, args.baseline)
    impls = {"base": load("nnclf_base"), "new": load("nnclf")}
    from sklearn.datasets import load_digits, make_classification

    x, y = make_classification(n_samples=args.rows, n_features=100, n_informative=60, n_classes=10, random_state=0)
    x, y = x.astype(np.float32), y.astype(np.int64)
    for batch in (int(b) for b in args.batches.split(",")):
        compare(impls, x, y, [100, 256, 256, 10], batch, args.rounds, 1, f"wide {args.rows}x100 batch {batch}", args.workers)
    if args.tiny:
        d = load_digits()
        xd = (d.data / 16.0).astype(np.float32)
        compare(impls, xd, d.target.astype(np.int64), [64, 32, 10], 32, args.rounds, 20, "tiny digits batch 32")


if __name__ == "__main__":
    main()
