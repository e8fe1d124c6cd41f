"""Test RMSE of a shipped regression config against scikit-learn's MLPRegressor and Ridge.

    PYTHONPATH=. python benchmarks/regression_baselines.py [configs/diabetes.yaml] [--seeds 0 1 2]

For each seed, nnclf trains the config (``seed`` overridden) through ``nnclf.runs.train``; its
run folder's ``splits.npz`` names the train, validation and test rows. The baselines see the
same rows: they are fitted on train + validation (what nnclf learned from or stopped on), with
features standardised and the target standardised (StandardScaler on those rows), and scored on
the test rows in the target's units:

- MLPRegressor(hidden_layer_sizes=(100,), solver="adam", early_stopping=True), sklearn defaults
  otherwise (lr 0.001, batch 200, L2 alpha 1e-4, its own 10 % validation split);
- Ridge(alpha=1.0).

It prints one line per seed and the mean over seeds. It needs scikit-learn (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def one_seed(config: Path, seed: int, runs: Path) -> dict[str, float]:
    import pandas as pd
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    from nnclf.config import load_config
    from nnclf.runs import train

    result = train(config, [f"seed={seed}"], runs, name=f"seed{seed}")
    cfg = load_config(config, [f"seed={seed}"])
    frame = pd.read_csv(cfg.data.train)
    target = cfg.data.targets
    features = [c for c in frame.columns if c not in target and c not in cfg.data.ignore]
    with np.load(result.folder / "splits.npz") as s:
        fit_rows = np.concatenate([s["train"], s["val"]]) if "val" in s.files else s["train"]
        test_rows = s["test"]
    x_fit, x_test = frame.loc[fit_rows, features].to_numpy(float), frame.loc[test_rows, features].to_numpy(float)
    y_fit, y_test = frame.loc[fit_rows, target].to_numpy(float), frame.loc[test_rows, target].to_numpy(float)
    xs, ys = StandardScaler().fit(x_fit), StandardScaler().fit(y_fit)
    out = {"nnclf": result.summary["test"]["rmse"]}
    mlp = MLPRegressor(hidden_layer_sizes=(100,), solver="adam", early_stopping=True, max_iter=2000, random_state=seed)
    mlp.fit(xs.transform(x_fit), ys.transform(y_fit).ravel() if y_fit.shape[1] == 1 else ys.transform(y_fit))
    pred = ys.inverse_transform(mlp.predict(xs.transform(x_test)).reshape(len(x_test), -1))
    out["MLPRegressor"] = rmse(pred, y_test)
    ridge = Ridge(alpha=1.0).fit(xs.transform(x_fit), ys.transform(y_fit))
    out["Ridge"] = rmse(ys.inverse_transform(ridge.predict(xs.transform(x_test)).reshape(len(x_test), -1)), y_test)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "diabetes.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as runs:
        for seed in args.seeds:
            rows[seed] = one_seed(Path(args.config), seed, Path(runs))
            print(f"seed {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in rows[seed].items()), flush=True)
    means = {k: float(np.mean([r[k] for r in rows.values()])) for k in rows[args.seeds[0]]}
    print("test RMSE, mean over seeds: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"per_seed": rows, "mean": means}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
