"""nnclf.Classifier against scikit-learn's MLPClassifier inside scikit-learn's own tools.

1. ``cross_val_score`` (5 folds) on digits, 64-100-10, Adam lr 1e-3, 50 epochs, batch 200,
   no L2 (MLPClassifier alpha=0, no early stopping), features standardised in a pipeline:
   rounds interleaved (nnclf, then scikit-learn), the ratio taken per round, on a quiet
   machine and beside one competing busy process (a Python busy loop this script starts and
   stops).
2. ``GridSearchCV`` over hidden x lr (4 candidates, 3 folds) with n_jobs=1 and n_jobs=2
   (estimators cloned and fitted in joblib's worker processes), interleaved.

    PYTHONPATH=. python benchmarks/api_bench.py [--rounds 3] [--sklearn-blas-threads 1] [--no-grid]

``--sklearn-blas-threads N`` runs MLPClassifier under ``threadpool_limits(N)`` (by default it
gets OpenBLAS's own thread count, as a user's would; on an oversubscribed machine those threads
wait for each other, so this separates the implementations from that effect). ``--no-grid``
skips part 2.

Prints one line per measurement and a summary; the machine's load average is printed first,
since other processes change every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np


def cv_seconds(make, X, y) -> tuple[float, float]:
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scores = cross_val_score(make_pipeline(StandardScaler(), make()), X, y, cv=5)
    return time.perf_counter() - start, float(scores.mean())


def grid_seconds(X, y, n_jobs: int) -> float:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import nnclf

    pipe = make_pipeline(StandardScaler(), nnclf.Classifier(epochs=50, batch_size=200, random_state=0))
    grid = GridSearchCV(pipe, {"classifier__hidden": [(32,), (100,)], "classifier__lr": [1e-3, 3e-3]}, cv=3, n_jobs=n_jobs)
    start = time.perf_counter()
    grid.fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sklearn-blas-threads", type=int, default=None)
    parser.add_argument("--no-grid", action="store_true")
    args = parser.parse_args()
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    def sklearn_limits():
        if args.sklearn_blas_threads is None:
            return nullcontext()
        return threadpool_limits(limits=args.sklearn_blas_threads, user_api="blas")

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    import nnclf

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X, y = load_digits(return_X_y=True)
    ours = lambda: nnclf.Classifier(hidden=(100,), optimizer="adam", lr=1e-3, epochs=50, batch_size=200, random_state=0)  # noqa: E731
    theirs = lambda: MLPClassifier(hidden_layer_sizes=(100,), solver="adam", learning_rate_init=1e-3, max_iter=50,  # noqa: E731
                                   batch_size=200, alpha=0.0, tol=0.0, n_iter_no_change=10**9, random_state=0)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    cv_seconds(ours, X, y)  # warm-up: imports, first BLAS calls
    with sklearn_limits():
        cv_seconds(theirs, X, y)
    if args.sklearn_blas_threads is not None:
        print(f"MLPClassifier under threadpool_limits({args.sklearn_blas_threads}, 'blas')", flush=True)
    for label, busy in (("quiet", False), ("one busy process", True)):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            ratios = []
            for r in range(args.rounds):
                t_ours, acc_ours = cv_seconds(ours, X, y)
                with sklearn_limits():
                    t_theirs, acc_theirs = cv_seconds(theirs, X, y)
                ratios.append(t_theirs / t_ours)
                print(f"cross_val_score [{label}] round {r + 1}: nnclf {t_ours:.2f} s (acc {acc_ours:.3f}), "
                      f"MLPClassifier {t_theirs:.2f} s (acc {acc_theirs:.3f}), ratio {t_theirs / t_ours:.2f}x", flush=True)
            print(f"cross_val_score [{label}]: median ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    if args.no_grid:
        print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
        return
    grid_seconds(X, y, 2)  # warm-up of the worker pool
    ratios = []
    for r in range(args.rounds):
        one = grid_seconds(X, y, 1)
        two = grid_seconds(X, y, 2)
        ratios.append(one / two)
        print(f"GridSearchCV round {r + 1}: n_jobs=1 {one:.2f} s, n_jobs=2 {two:.2f} s, speed-up {one / two:.2f}x", flush=True)
    print(f"GridSearchCV: median speed-up of n_jobs=2 {statistics.median(ratios):.2f}x", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
