"""Full-batch methods measured side by side (issue 14). Three parts, all in one process:

A. L-BFGS against scikit-learn's MLPClassifier(solver="lbfgs") on iris, wine, breast cancer and
   digits: hidden (100,), relu, the same L2 (sklearn's alpha = nnclf's weight_decay * n_train),
   the same standardised splits, at most 200 iterations each; test accuracy and wall time,
   interleaved over several splits (ratios of medians). nnclf runs from three starts: its
   default for the full-batch methods (``model.init: auto``: Glorot-uniform weights, zero biases,
   scikit-learn's scheme), He-normal (the mini-batch default for relu, and the full-batch one
   before the third pass) and scikit-learn's own initial
   parameters (weights and biases, read off its first objective call), which compares the two
   L-BFGS implementations on one objective from one point.
B. Time and "function evaluations" (full passes over the training set: one per evaluation for
   lbfgs/cg/newton_cg, where a newton_cg curvature product counts as 2; one per epoch for
   gd/sgd/adam) to first reach a fixed training objective, for gd, sgd, adam, lbfgs, cg, newton_cg
   on wine and digits.
C. float32 against float64 for lbfgs, cg and newton_cg: the objective reached, iterations, and how
   each run stopped (line-search failures are the float32 risk).
D. The same on a convex problem run to the end (no tolerances): the gap to the best objective
   found, which shows where each precision's line search stalls.
E. L-BFGS in float32 against float64 on more problems, at its default tolerances: the four data
   sets with three networks ((100,) relu, (64, 32) tanh, (128, 64) relu), the diabetes
   regression and a digits autoencoder, two seeds each, at most 300 iterations: the objective
   reached (evaluated in float64), iterations, how it stopped, seconds (the evidence behind
   lbfgs's float32 default).

    PYTHONPATH=. python benchmarks/beyond_bench.py [--quick] [--parts abcde] [--splits 5] [--dtype float32|float64]

Prints markdown tables (pasted into benchmarks/RESULTS.md with the machine's load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnclf.config import FULL_BATCH_DTYPE  # noqa: E402
from nnclf.engine.curvature import CurvatureProduct  # noqa: E402
from nnclf.engine.fullbatch import FULL_BATCH  # noqa: E402
from nnclf.engine.losses import LOSSES  # noqa: E402
from nnclf.engine.network import MLP  # noqa: E402
from nnclf.engine.optimizers import OPTIMIZERS  # noqa: E402
from nnclf.engine.schedules import SCHEDULES  # noqa: E402
from nnclf.engine.step import Objective  # noqa: E402
from nnclf.trainer import Trainer  # noqa: E402

TIME_CAP = 60.0  # seconds per run in part B: a method that has not reached the target by then is "no"
DATASETS = {"iris": "species", "wine": "class", "breast_cancer": "diagnosis", "digits": "target"}


def load(name: str, seed: int):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(ROOT / "data" / f"{name}.csv")
    target = DATASETS[name] if DATASETS[name] in frame else frame.columns[-1]
    y_raw = frame.pop(target)
    classes = sorted(y_raw.unique().tolist(), key=str)
    y = y_raw.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    x = frame.to_numpy(np.float64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    return scaler.transform(x_tr), scaler.transform(x_te), y_tr, y_te, len(classes)


def nnclf_fit(name, x, y, k, hidden=(100,), weight_decay=1e-4, epochs=200, seed=0, dtype="float64", init="auto", **hyper):
    """Train with ``name`` through the Trainer; ``init`` is an initialiser name or a start
    (list of W_l, list of b_l) to copy in."""
    loss = LOSSES.get("cross_entropy")(k)
    net = MLP([x.shape[1], *hidden, loss.n_outputs], "relu", dtype=dtype)
    rng = np.random.default_rng(seed)
    if isinstance(init, str):
        net.initialize(init, rng, full_batch=name in FULL_BATCH)
    else:
        for w, b, w0, b0 in zip(net.weights, net.biases, *init):
            w[...], b[...] = w0, b0
    opt = OPTIMIZERS.get(name)(net.params.size, dtype, net.weight_mask(), **hyper)
    trainer = Trainer(net, loss, opt, SCHEDULES.get("constant")(1e-3, epochs), epochs=epochs, batch_size=None, rng=rng,
                      weight_decay=weight_decay, monitor="train_loss")
    if opt.needs_curvature:
        trainer.curvature_factory = lambda *a: CurvatureProduct(*a, kind=opt.curvature)
    trainer.fit(x.astype(dtype), y)
    return trainer


def accuracy(trainer, x, y):
    logits = trainer.net.logits(x.astype(trainer.net.dtype))
    pred = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)
    return float(np.mean(pred == y))


def _counting_mlp():
    """MLPClassifier that counts its objective evaluations and keeps its initial parameters."""
    from sklearn.neural_network import MLPClassifier

    class Counting(MLPClassifier):
        def _loss_grad_lbfgs(self, packed, *args):
            out = super()._loss_grad_lbfgs(packed, *args)  # unpacks ``packed`` into coefs_ first
            if not hasattr(self, "start_"):
                self.start_ = ([c.copy() for c in self.coefs_], [b.copy() for b in self.intercepts_])
                self.evaluations_ = 0
            self.evaluations_ += 1
            return out

    return Counting


# "auto" is nnclf's default start for these methods (Glorot-uniform since the third pass; it was
# He-normal for relu before, the second row)
INITS = {"auto (xavier_uniform)": "auto", "he_normal": "he_normal", "sklearn's start": None}


def part_a(seeds, dtype="float64"):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # iris: both sides run all 200 iterations
    Counting = _counting_mlp()
    print(f"\n### A. L-BFGS vs scikit-learn MLPClassifier(solver='lbfgs'), hidden (100,), relu, nnclf in {dtype}\n")
    print("| data | rows (train) | alpha = wd * n | nnclf start | nnclf test acc | sklearn test acc | nnclf s (median) | sklearn s (median) | "
          "time ratio nnclf/sklearn | nnclf iters / evals | sklearn iters / evals |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in DATASETS:
        runs = {label: {"acc": [], "t": [], "it": [], "ev": []} for label in (*INITS, "sklearn")}
        for seed in seeds:
            x_tr, x_te, y_tr, y_te, k = load(name, seed)
            wd = 1e-4
            alpha = wd * len(y_tr)
            # interleaved, and who goes first alternates; sklearn's start exists only after its fit
            order = ["sklearn", "auto (xavier_uniform)", "he_normal", "sklearn's start"]
            if seed % 2:
                order = ["auto (xavier_uniform)", "he_normal", "sklearn", "sklearn's start"]
            for label in order:
                r = runs[label]
                if label == "sklearn":
                    start = time.perf_counter()
                    clf = Counting(hidden_layer_sizes=(100,), solver="lbfgs", alpha=alpha, max_iter=200, random_state=seed).fit(x_tr, y_tr)
                    r["t"].append(time.perf_counter() - start)
                    r["acc"].append(clf.score(x_te, y_te))
                    r["it"].append(clf.n_iter_)
                    r["ev"].append(clf.evaluations_)
                else:
                    init = INITS[label] or clf.start_
                    start = time.perf_counter()
                    tr = nnclf_fit("lbfgs", x_tr, y_tr, k, weight_decay=wd, epochs=200, seed=seed, init=init, gtol=1e-4, dtype=dtype)
                    r["t"].append(time.perf_counter() - start)
                    r["acc"].append(accuracy(tr, x_te, y_te))
                    r["it"].append(tr.epoch)
                    r["ev"].append(sum(rec["evaluations"] for rec in tr.history))
        s = runs["sklearn"]
        ms = statistics.median(s["t"])
        for label in INITS:
            r = runs[label]
            mn = statistics.median(r["t"])
            print(f"| {name} | {len(y_tr)} | {alpha:.4g} | {label} | {np.mean(r['acc']):.4f} | {np.mean(s['acc']):.4f} | {mn:.3f} | {ms:.3f} | "
                  f"{mn / ms:.3f} | {statistics.median(r['it']):.0f} / {statistics.median(r['ev']):.0f} | "
                  f"{statistics.median(s['it']):.0f} / {statistics.median(s['ev']):.0f} |", flush=True)
        for label in INITS:
            print(f"<!-- {name} {label}: per split test acc {' '.join(f'{a:.4f}' for a in runs[label]['acc'])}; "
                  f"sklearn {' '.join(f'{a:.4f}' for a in s['acc'])} -->")


def objective_value(net, loss, x, y, wd):
    return Objective(net, loss, x, y, wd)(net.params.astype(np.float64))[0]


def part_b(targets):
    print("\n### B. Time and full-data passes to reach a fixed training objective J (hidden (100,), relu, wd 1e-4, float64)\n")
    print("| data | target J | method | reached | epochs / iterations | full passes | seconds |")
    print("|---|---|---|---|---|---|---|")
    runs = {
        "gd": dict(lr=0.5, batch=None), "sgd": dict(lr=0.05, batch=32), "adam": dict(lr=1e-3, batch=32),
        "lbfgs": {}, "cg": {}, "newton_cg": {},
    }
    for name, target in targets.items():
        x, _, y, _, k = load(name, 0)
        for method, spec in runs.items():
            loss = LOSSES.get("cross_entropy")(k)
            net = MLP([x.shape[1], 100, loss.n_outputs], "relu", dtype="float64")
            rng = np.random.default_rng(0)
            full = method in FULL_BATCH
            net.initialize("auto", rng, full_batch=full)  # each method from its own default start
            opt = OPTIMIZERS.get(method)(net.params.size, "float64", net.weight_mask(), **({"gtol": 0.0, "ftol": 0.0} if full else {}))
            limit = 300 if full else 2000
            trainer = Trainer(net, loss, opt, SCHEDULES.get("constant")(spec.get("lr", 1e-3), limit), epochs=limit,
                              batch_size=spec.get("batch"), rng=rng, weight_decay=1e-4, monitor="train_loss", shuffle=True)
            if full and opt.needs_curvature:
                trainer.curvature_factory = lambda *a: CurvatureProduct(*a, kind="gauss_newton")
            passes, elapsed, reached, epochs = 0.0, 0.0, False, 0
            for epoch in range(limit):
                trainer.epochs = epoch + 1
                start = time.perf_counter()
                trainer.fit(x, y)
                elapsed += time.perf_counter() - start
                record = trainer.history[-1] if trainer.history else {}
                passes += record.get("evaluations", 1) + 2 * record.get("products", 0)
                epochs = trainer.epoch
                if objective_value(net, loss, x, y, 1e-4) <= target:
                    reached = True
                    break
                if (full and opt.converged) or elapsed > TIME_CAP:
                    break
            print(f"| {name} | {target} | {method} | {'yes' if reached else 'no'} | {epochs} | {passes:.0f} | {elapsed:.2f} |")


def part_c(seeds):
    print("\n### C. float32 vs float64 for the full-batch methods (hidden (100,), relu, wd 1e-4, at most 200 iterations)\n")
    print("| data | method | dtype | final J (float64 eval) | iterations | stopped by | test acc |")
    print("|---|---|---|---|---|---|---|")
    from nnclf.engine.fullbatch import STOPPED

    for name in DATASETS:
        for seed in seeds[:1]:
            x_tr, x_te, y_tr, y_te, k = load(name, seed)
            for method in ("lbfgs", "cg", "newton_cg"):
                for dtype in ("float32", "float64"):
                    tr = nnclf_fit(method, x_tr, y_tr, k, epochs=200, seed=seed, dtype=dtype)
                    net64 = MLP(tr.net.sizes, "relu", dtype="float64")
                    net64.params[...] = tr.net.params
                    j = objective_value(net64, tr.loss, x_tr, y_tr, 1e-4)
                    why = {1: "gtol", 2: "ftol", 3: "line search failed"}.get(tr.optimizer.status, "200 iterations")
                    assert tr.optimizer.status in (0, *STOPPED)
                    print(f"| {name} | {method} | {dtype} | {j:.3e} | {tr.epoch} | {why} | {accuracy(tr, x_te, y_te):.4f} |")


def part_d():
    print("\n### D. How close to the optimum each precision gets: convex logistic regression (no hidden layer, wd 1e-3), gtol = ftol = 0, at most 500 iterations\n")
    print("| data | method | dtype | J - J* | iterations until it stopped | stopped by |")
    print("|---|---|---|---|---|---|")
    for name in DATASETS:
        x, _, y, _, k = load(name, 0)
        best = {}
        for method in ("lbfgs", "cg", "newton_cg"):
            for dtype in ("float64", "float32"):
                tr = nnclf_fit(method, x, y, k, hidden=(), weight_decay=1e-3, epochs=500, dtype=dtype, gtol=0.0, ftol=0.0)
                net64 = MLP(tr.net.sizes, "relu", dtype="float64")
                net64.params[...] = tr.optimizer.x
                best[(method, dtype)] = (objective_value(net64, tr.loss, x, y, 1e-3), tr.epoch, tr.optimizer.status)
        j_star = min(v[0] for v in best.values())
        for (method, dtype), (j, epochs, status) in best.items():
            why = {1: "gradient exactly 0", 2: "no decrease (ftol 0)", 3: "line search failed"}.get(status, "500 iterations")
            print(f"| {name} | {method} | {dtype} | {j - j_star:.2e} | {epochs} | {why} |")


def part_e():
    from nnclf.engine.regression import REGRESSION_LOSSES

    print("\n### E. L-BFGS, float32 against float64, default tolerances (gtol 1e-5, ftol 1e-9), wd 1e-4, at most 300 iterations\n")
    print("| data | hidden | activation | seed | J float32 | J float64 | (J32 - J64) / J64 | iterations 32 / 64 | stopped 32 / 64 | seconds 32 / 64 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    why = {0: "300 it", 1: "gtol", 2: "ftol", 3: "line search"}

    def fit(x, y, loss, hidden, act, dtype, seed):
        net = MLP([x.shape[1], *hidden, loss.n_outputs], act, dtype=dtype)
        rng = np.random.default_rng(seed)
        net.initialize("auto", rng, full_batch=True)
        opt = OPTIMIZERS.get("lbfgs")(net.params.size, dtype, net.weight_mask())
        trainer = Trainer(net, loss, opt, SCHEDULES.get("constant")(1e-3, 300), epochs=300, batch_size=None, rng=rng,
                          weight_decay=1e-4, monitor="train_loss")
        start = time.perf_counter()
        trainer.fit(x.astype(dtype), y)
        seconds = time.perf_counter() - start
        net64 = MLP(net.sizes, act, dtype="float64")
        net64.params[...] = opt.x
        return objective_value(net64, loss, x, y, 1e-4), trainer.epoch, opt.status, seconds

    problems = []
    for name in DATASETS:
        x, _, y, _, k = load(name, 0)
        for hidden, act in (((100,), "relu"), ((64, 32), "tanh"), ((128, 64), "relu")):
            problems.append((name, x, y, LOSSES.get("cross_entropy")(k), hidden, act))
    frame = pd.read_csv(ROOT / "data" / "diabetes.csv")
    target = frame.pop(frame.columns[-1]).to_numpy(np.float64)
    features = frame.to_numpy(np.float64)
    features = (features - features.mean(0)) / features.std(0)
    problems.append(("diabetes (mse)", features, ((target - target.mean()) / target.std())[:, None], REGRESSION_LOSSES.get("mse")(1), (100,), "relu"))
    digits = load("digits", 0)[0]
    problems.append(("digits autoencoder (mse)", digits, digits, REGRESSION_LOSSES.get("mse")(digits.shape[1]), (32,), "relu"))
    for name, x, y, loss, hidden, act in problems:
        for seed in (0, 1):
            a, b = (fit(x, y, loss, hidden, act, dtype, seed) for dtype in ("float32", "float64"))
            print(f"| {name} | {hidden} | {act} | {seed} | {a[0]:.5g} | {b[0]:.5g} | {(a[0] - b[0]) / b[0]:+.1e} | {a[1]} / {b[1]} | "
                  f"{why[a[2]]} / {why[b[2]]} | {a[3]:.3f} / {b[3]:.3f} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="abcde")
    parser.add_argument("--splits", type=int, default=5, help="splits (seeds 0..N-1) of parts A and C")
    parser.add_argument("--dtype", default=FULL_BATCH_DTYPE["lbfgs"], choices=("float64", "float32"),
                        help=f"nnclf's precision in part A (default: lbfgs's own default, {FULL_BATCH_DTYPE['lbfgs']})")
    args = parser.parse_args()
    seeds = [0, 1] if args.quick else list(range(args.splits))
    # scipy's own OpenBLAS (line searches, L-BFGS-B, the two-loop's ddot) and sklearn's OpenMP
    # runtime must be loaded before the limit: threadpool_limits covers only the
    # libraries loaded when it is called (before this, scipy's BLAS ran with 2 threads here)
    import scipy.linalg.blas  # noqa: F401
    import scipy.optimize  # noqa: F401
    import sklearn.neural_network  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    # one BLAS thread for both sides: on a shared 2-core machine spinning BLAS threads make
    # timings meaningless, and these problems are far too small to gain from two
    threadpool_limits(1)
    assert all(lib["num_threads"] == 1 for lib in threadpool_info()), threadpool_info()
    print(f"load average at start: {os.getloadavg()}; BLAS threads: 1")
    if "a" in args.parts:
        part_a(seeds, args.dtype)
    if "b" in args.parts:
        part_b({"wine": 0.02, "digits": 0.05})
    if "c" in args.parts:
        part_c(seeds)
    if "d" in args.parts:
        part_d()
    if "e" in args.parts:
        part_e()
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
