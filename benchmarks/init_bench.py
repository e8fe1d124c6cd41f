"""Which initialisation should ``model.init: auto`` pick for the full-batch methods? (issue 14)

Training-side evidence only (no test rows are read): for each problem, method, initialiser and
seed, one run through the product's own path (config -> data preparation -> ``_make_trainer``,
the CLI's trainer without its run folder), recording after every outer iteration the training
objective J (mean loss + weight decay, the quantity the method minimises), the function
evaluations and curvature products used so far, and the seconds spent in the method's
iterations. Reported per problem and initialiser, over the seeds (``seed`` draws both the split
and the start):

- evaluations (full passes: a newton_cg product counts 2) and seconds to first reach
  J <= J* + 1% (J_0 - J*) and J <= J* + 0.1% (J_0 - J*), where J* is the lowest J any run of the
  problem (any initialiser, any seed) reached and J_0 the median starting J over those runs
  (how many runs reached it is given; medians are over the runs that did);
- the final J after the iteration cap or the method's own stopping rule (median, and in how
  many seeds each scheme ended lowest).

The four initialisers cross the two variances (He: 2 / fan_in; Glorot: 2 / (fan_in + fan_out))
with the two distributions (normal, uniform), so a difference can be traced to one of them.

    PYTHONPATH=$PWD python benchmarks/init_bench.py [--seeds 10] [--methods lbfgs,cg,newton_cg]
        [--problems all|NAME,...] [--out runs.jsonl] [--summary-only runs.jsonl]

Prints two markdown tables (benchmarks/RESULTS.md, full-batch section): every initialiser, and
He-normal against Glorot-uniform seed by seed; writes every run's curve as a JSON line to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INITS = ("he_normal", "xavier_uniform", "he_uniform", "xavier_normal")


def synthetic_data(folder: Path) -> dict[str, Path]:
    """Three synthetic CSVs (scikit-learn generators, fixed seeds): a 5-class problem with
    informative and redundant features, two interleaved moons, and Friedman's regression #1."""
    from sklearn.datasets import make_classification, make_friedman1, make_moons

    out = {}
    x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_redundant=4, n_classes=5,
                               class_sep=1.0, random_state=0)
    out["synthetic5"] = _write(folder / "synthetic5.csv", x, y)
    x, y = make_moons(n_samples=600, noise=0.25, random_state=0)
    out["moons"] = _write(folder / "moons.csv", x, y)
    x, y = make_friedman1(n_samples=1000, n_features=10, noise=0.5, random_state=0)
    out["friedman1"] = _write(folder / "friedman1.csv", x, y)
    return out


def _write(path: Path, x, y) -> Path:
    import pandas as pd

    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["target"] = y
    frame.to_csv(path, index=False)
    return path


def problems(synthetic: dict[str, Path]) -> dict[str, dict]:
    """name -> config mapping (without optimizer, init and seed)."""
    data = ROOT / "data"

    def clf(train, target, hidden, activation="relu", wd=1e-4, **extra):
        return {"data": {"train": str(train), "target": target}, "model": {"hidden": hidden, "activation": activation},
                "loss": {"weight_decay": wd}, **extra}

    return {
        "iris [100] relu": clf(data / "iris.csv", "species", [100]),
        "wine [100] relu": clf(data / "wine.csv", "class", [100]),
        "breast_cancer [100] relu": clf(data / "breast_cancer.csv", "diagnosis", [100]),
        "digits [100] relu": clf(data / "digits.csv", "digit", [100]),
        "penguins [32] relu": clf(data / "penguins.csv", "species", [32], wd=1e-3),
        "synthetic5 [100] relu": clf(synthetic["synthetic5"], "target", [100]),
        "moons [100] relu": clf(synthetic["moons"], "target", [100]),
        "digits [256] relu": clf(data / "digits.csv", "digit", [256]),
        "digits [100, 100] relu": clf(data / "digits.csv", "digit", [100, 100]),
        "wine [64, 64, 64] relu": clf(data / "wine.csv", "class", [64, 64, 64]),
        "breast_cancer [100] tanh": clf(data / "breast_cancer.csv", "diagnosis", [100], "tanh"),
        "digits [100] sigmoid": clf(data / "digits.csv", "digit", [100], "sigmoid"),
        "diabetes [100] relu (regression)": {"task": "regression", "data": {"train": str(data / "diabetes.csv"), "target": "progression"},
                                             "model": {"hidden": [100]}, "loss": {"name": "mse", "weight_decay": 0.03}},
        "friedman1 [100] relu (regression)": {"task": "regression", "data": {"train": str(synthetic["friedman1"]), "target": "target"},
                                              "model": {"hidden": [100]}, "loss": {"name": "mse", "weight_decay": 1e-3}},
        "digits [32, 8, 32] tanh (reconstruction)": {"task": "reconstruction", "data": {"train": str(data / "digits.csv"), "target": "digit"},
                                                     "model": {"hidden": [32, 8, 32], "activation": "tanh"}},
        "digits [32, 8, 32] relu (reconstruction)": {"task": "reconstruction", "data": {"train": str(data / "digits.csv"), "target": "digit"},
                                                     "model": {"hidden": [32, 8, 32], "activation": "relu"}},
    }


def run_one(config: dict, method: str, init: str, seed: int, epochs: int) -> dict:
    """One run through the product's config, data and trainer path; the curve of J."""
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare
    from nnclf.runs import _make_trainer, _prepare

    values = {"optimizer.name": method, "model.init": init, "seed": seed, "training.epochs": epochs, "data.cache": "memory"}
    cfg = load_config(config, values=values)
    prepared = _prepare(prepare, cfg, lambda m: None)
    curve = []

    class Curve:
        def on_epoch_end(self, trainer, record, improved):
            opt = trainer.optimizer
            if not curve:
                curve.append((float(opt.f[1]), 0, 0, 0.0))  # J_0: the "previous" f after the first step
            j, ev, pr, sec = curve[-1]
            curve.append((float(opt.f[0]), ev + record["evaluations"], pr + record["products"], sec + spent[0]))
            spent[0] = 0.0

    spent = [0.0]
    trainer = _make_trainer(cfg, prepared, [Curve()])
    inner = trainer.optimizer.iterate

    def timed(*args):
        start = time.perf_counter()
        try:
            return inner(*args)
        finally:
            spent[0] += time.perf_counter() - start

    trainer.optimizer.iterate = timed
    val = prepared.val
    if val is not None and len(val):
        trainer.fit(prepared.train.x, prepared.train.y, val.x, val.y)
    else:
        trainer.fit(prepared.train.x, prepared.train.y)
    if not curve:  # converged before the first step (gtol at the start)
        curve.append((float(trainer.optimizer.f[0]), 0, 0, 0.0))
    return {"curve": curve, "status": int(trainer.optimizer.status), "iterations": trainer.epoch}


def _by_problem(rows: list[dict]):
    """(problem, method, its runs, J* = the lowest J any run reached, J_0 = the median start)
    for each problem and method, in the order first seen."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["problem"], row["method"]), []).append(row)
    for (problem, method), runs in groups.items():
        j_star = min(min(p[0] for p in r["curve"]) for r in runs)
        yield problem, method, runs, j_star, statistics.median(r["curve"][0][0] for r in runs)


def summarise(rows: list[dict]) -> None:
    print("| problem | method | init | J_0 (median) | reached J* + 1% gap | evaluations to it (median) | "
          "seconds to it (median) | reached J* + 0.1% gap | evaluations to it (median) | seconds to it (median) | "
          "final J (median) | lowest final J in seeds | iterations (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for problem, method, runs, j_star, j_0 in _by_problem(rows):
        targets = (j_star + 0.01 * (j_0 - j_star), j_star + 0.001 * (j_0 - j_star))
        seeds = sorted({r["seed"] for r in runs})
        finals = {(r["init"], r["seed"]): r["curve"][-1][0] for r in runs}
        for init in INITS:
            mine = [r for r in runs if r["init"] == init]
            if not mine:
                continue
            cells = []
            for target in targets:
                hits = [next(((ev + 2 * pr, sec) for j, ev, pr, sec in r["curve"] if j <= target), None) for r in mine]
                reached = [h for h in hits if h is not None]
                ev = f"{statistics.median(h[0] for h in reached):.0f}" if reached else "-"
                sec = f"{statistics.median(h[1] for h in reached):.3f}" if reached else "-"
                cells.append(f"{len(reached)}/{len(mine)} | {ev} | {sec}")
            lowest = sum(1 for s in seeds if (init, s) in finals and
                         finals[(init, s)] == min(finals[(i, s)] for i in INITS if (i, s) in finals))
            print(f"| {problem} | {method} | {init} | {statistics.median(r['curve'][0][0] for r in mine):.4g} | "
                  f"{' | '.join(cells)} | {statistics.median(r['curve'][-1][0] for r in mine):.4g} | "
                  f"{lowest}/{len(seeds)} | {statistics.median(r['iterations'] for r in mine):.0f} |", flush=True)


def paired(rows: list[dict], a: str = "he_normal", b: str = "xavier_uniform") -> None:
    """Seed by seed, ``b`` against ``a``: evaluations to J* + 0.1% (J_0 - J*) and the final J."""
    print(f"\n| problem | method | seeds | evaluations to J* + 0.1% gap, {a} / {b} (median; runs that reached it) | "
          f"seeds where {b} needed fewer / as many / more | final J, {b} / {a} (median ratio) |")
    print("|---|---|---|---|---|---|")
    for problem, method, runs, j_star, j_0 in _by_problem(rows):
        target = j_star + 0.001 * (j_0 - j_star)
        by = {(r["init"], r["seed"]): r for r in runs}
        seeds = [s for s in sorted({r["seed"] for r in runs}) if (a, s) in by and (b, s) in by]
        if not seeds:
            continue

        def hit(r):
            return next((ev + 2 * pr for j, ev, pr, sec in r["curve"] if j <= target), math.inf)

        ha, hb = [hit(by[(a, s)]) for s in seeds], [hit(by[(b, s)]) for s in seeds]
        fewer = sum(y < x for x, y in zip(ha, hb))
        more = sum(y > x for x, y in zip(ha, hb))

        def med(v):
            got = [x for x in v if x < math.inf]
            return f"{statistics.median(got):.0f} ({len(got)})" if got else "- (0)"

        ratio = statistics.median(by[(b, s)]["curve"][-1][0] / by[(a, s)]["curve"][-1][0] for s in seeds)
        print(f"| {problem} | {method} | {len(seeds)} | {med(ha)} / {med(hb)} | {fewer} / {len(seeds) - fewer - more} / {more} | {ratio:.3f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--methods", default="lbfgs")
    parser.add_argument("--problems", default="all")
    parser.add_argument("--inits", default=",".join(INITS))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--out", default=None)
    parser.add_argument("--summary-only", default=None, help="summarise earlier --out files (comma-separated)")
    args = parser.parse_args()
    if args.summary_only:
        rows = [json.loads(line) for name in args.summary_only.split(",") for line in Path(name).read_text().splitlines() if line.strip()]
        summarise(rows)
        paired(rows)
        return
    # scipy's own OpenBLAS (line searches, L-BFGS-B, the two-loop's ddot) must be loaded before the limit: threadpool_limits covers only the
    # libraries loaded when it is called (before this, scipy's BLAS ran with 2 threads here)
    import scipy.linalg.blas  # noqa: F401
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(1)
    assert all(lib["num_threads"] == 1 for lib in threadpool_info()), threadpool_info()
    print(f"load average at start: {os.getloadavg()}; BLAS threads: 1", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        table = problems(synthetic_data(Path(tmp)))
        names = list(table) if args.problems == "all" else [n for n in table if any(p in n for p in args.problems.split(","))]
        out = open(args.out, "a") if args.out else None
        for name in names:
            for method in args.methods.split(","):
                for seed in range(args.seeds):
                    for init in args.inits.split(","):
                        run = run_one(table[name], method, init, seed, args.epochs)
                        row = {"problem": name, "method": method, "init": init, "seed": seed, **run}
                        rows.append(row)
                        if out:
                            out.write(json.dumps(row) + "\n")
                            out.flush()
        if out:
            out.close()
    summarise(rows)
    paired(rows)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
