"""training.refit on the shipped data sets, against scikit-learn's defaults.

    python benchmarks/refit_bench.py [--seeds 5] [--datasets iris,wine,...]

The config a user would write: one hidden layer of 100, Adam (lr 0.001), batch 32, at most 300
epochs, early stopping on val_loss (patience 10) over a 10% validation split, 20% test split.
One ``nnclf.runs.train`` per data set and seed with ``training.refit: true`` gives both numbers:
``test_before_refit`` (best.npz: trained on the training rows, what refit: false ships) and
``test`` (refit.npz: trained again on training + validation rows for the best epoch's count).
scikit-learn's MLPClassifier, LogisticRegression and HistGradientBoostingClassifier with their
defaults (max_iter raised so the first two converge) fit the same training + validation rows
after nnclf's preprocessing, and are scored on the same test rows. The table gives the test rows
classified correctly, summed over the seeds (each seed another split).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATASETS = {"iris": "species", "wine": "class", "breast_cancer": "diagnosis", "digits": "digit", "penguins": "species"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    args = ap.parse_args()

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from nnclf import runs
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    print(f"test rows right, summed over seeds 0..{args.seeds - 1}")
    print("| data set | test rows | nnclf refit: false | nnclf refit: true | MLPClassifier | LogisticRegression | HistGradientBoosting |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dataset in args.datasets.split(","):
            cfg = {
                "data": {"train": str(ROOT / "data" / f"{dataset}.csv"), "target": DATASETS[dataset], "val_split": 0.1, "test_split": 0.2},
                "model": {"hidden": [100]},
                "optimizer": {"name": "adam", "lr": 0.001},
                "training": {"epochs": 300, "batch_size": 32, "early_stopping": {"monitor": "val_loss", "patience": 10}, "refit": True},
            }
            path = tmp / f"{dataset}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            totals = dict.fromkeys(["rows", "before", "after", "MLPClassifier", "LogisticRegression", "HistGradientBoosting"], 0)
            for seed in range(args.seeds):
                result = runs.train(path, [f"seed={seed}"], tmp / "runs", f"{dataset}-{seed}")
                s = result.summary
                n = s["test"]["n"]
                totals["rows"] += n
                totals["before"] += round(s["test_before_refit"]["accuracy"] * n)
                totals["after"] += round(s["test"]["accuracy"] * n)
                c = load_config(path, [f"seed={seed}"])
                p = prepare(c.data, c.seed, "float64")
                x, y = np.concatenate([p.train.x, p.val.x]), np.concatenate([p.train.y, p.val.y])
                for name, model in (
                    ("MLPClassifier", MLPClassifier(random_state=seed, max_iter=1000)),
                    ("LogisticRegression", LogisticRegression(max_iter=5000)),
                    ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=seed)),
                ):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        model.fit(x, y)
                    totals[name] += int(np.sum(model.predict(p.test.x) == p.test.y))
            r = totals
            print(f"| {dataset} | {r['rows']} | {r['before']} | {r['after']} | {r['MLPClassifier']} | {r['LogisticRegression']} | {r['HistGradientBoosting']} |", flush=True)


if __name__ == "__main__":
    main()
