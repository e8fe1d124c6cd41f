"""nnclf tune benchmarks: search quality against scikit-learn defaults, per-trial overhead, workers.

    python benchmarks/tune_bench.py accuracy [--trials 30] [--datasets iris,wine,...] [--jobs 1] [--space issue|shipped] [--cv K] [--extra KEY=YAML] [--keep DIR]
    python benchmarks/tune_bench.py regression [--trials 30] [--space issue|shipped] [--seeds 0 1 2] [--cv K] [--extra KEY=YAML] [--keep DIR]
    python benchmarks/tune_bench.py nested [--trials 30] [--datasets digits,...] [--outer 0 1 2] [--inner 10 11] [--variant NAME=KEY=YAML[;KEY=YAML]] [--keep DIR]
    python benchmarks/tune_bench.py overhead [--trials 20] [--rounds 2]
    python benchmarks/tune_bench.py jobs [--trials 20] [--rounds 2] [--case tiny|shipped]
    python benchmarks/tune_bench.py start [--rounds 8] [--jobs 1] [--trees DIR,DIR]

accuracy
    For each shipped classification data set: ``nnclf tune`` (the real command, in a subprocess)
    over the search space below, starting from the shipped config; the best trial (chosen by
    val_loss) is scored on its held-out test rows (its summary.json). Against it, scikit-learn's
    MLPClassifier, LogisticRegression and HistGradientBoostingClassifier with their defaults
    (max_iter raised for the first two where they do not converge), fitted on the trial's
    training + validation rows (the training pool) with nnclf's preprocessing (one-hot,
    scaling, imputation) fitted on the whole pool, rows in file order (``data.val_split=0``
    with the same seed: the same test rows), and scored on the same test rows. (Before
    2026-12-01 16:00 the baselines were fitted on the trial's training rows followed by its
    validation rows, scaled with the training rows' statistics: MLPClassifier's result then
    depended on the config's val_split through the row order.)
    ``--cv K``: the studies score each trial by K folds (``tune.cv: K``, with data.val_split
    1/K as tune.cv requires; ``--cv 0``: tune.cv off; without --cv: as the config says, and the
    shipped configs/tune files say 5); printed are the best trial's own run (fold 0: training rows only)
    and the study's final model (``final-NNNN``: the best settings refitted on every
    training-pool row for the folds' mean best epoch count), both on the same test rows. The
    test rows do not depend on data.val_split (the test split is cut first), and the
    baselines are fitted on the same training pool either way.
    Under each row: the pick's validation score, and per ``model.hidden`` value the study drew
    (validation side only): trials drawn, complete, and the best complete trial's value.
    ``--extra 'tune.space.model.hidden={type: choice, values: [[], [32]]}'`` replaces a
    dimension; ``--keep DIR`` keeps the studies in DIR/runs/ (default: a temporary folder).
regression
    The same on data/diabetes.csv from configs/diabetes.yaml (metric val_rmse): the best trial's
    test RMSE (target units) against MLPRegressor, Ridge and HistGradientBoostingRegressor with
    their defaults (MLPRegressor's max_iter raised to 2000), fitted on the trial's training +
    validation rows with nnclf's preprocessing (standardised features) and the target
    standardised on those rows (as nnclf's data.target_scaling: standard does), scored on the
    same test rows.
nested
    Study settings compared without any outer test row: for each outer split (``--outer``, the
    seed whose test rows ``accuracy`` scores on), the training pool's rows are written to a CSV
    and become the data of the shipped study (configs/tune/DATASET.yaml); its own test split
    (seed ``--inner``) is cut from the pool, so the outer test rows are never read. Each
    ``--variant NAME=KEY=YAML[;KEY=YAML...]`` (as --extra; ``shipped`` is always run) is one
    study on the same inner split, scored like ``accuracy`` against the scikit-learn defaults
    fitted on the same inner pool. Printed: the final models' and best trials' test rows against
    the best baseline, per split and summed per variant.

overhead
    ``nnclf tune`` of N one-epoch trials of a 4-unit network on iris: (wall time of the whole
    command - the sum of the trials' training seconds from their summary.json) / N. This is
    everything but training: interpreter start and imports (once), the config checks, the
    storage (SQLite, heartbeats), reading the CSV and preprocessing, the run folder's files.
    Also printed: the steady state ((last trial's end - first trial's start) - training) / N,
    without the command's start, and the CPU seconds (user + system) of the command per trial.
jobs
    The same 20-trial study with --jobs 1 and --jobs 2, in interleaved rounds (1, 2, 2, 1, ...);
    the ratio is the median of the per-round ratios time(jobs 2) / time(jobs 1). The machine's
    load average is printed with each run, and where the time went: from the command's start
    to the first trial's start (interpreter, imports, storage, data), the trials, and from the
    last trial's end to the command's end (the serial parts that a second worker cannot share). Cases: ``tiny`` (digits, a 32-unit network, 8
    epochs, lr and batch size searched: the trials are mostly overhead) and ``shipped``
    (configs/digits.yaml as shipped: 64 units, 40 epochs, lr and batch size searched).
start
    The serial start alone: ``nnclf tune`` of the ``tiny`` case with as many trials as
    ``--jobs`` (one each), from the command's start to the first trial's start (summary.json's
    ``started_at``), for each source tree of ``--trees`` (PYTHONPATH; default: this checkout),
    in interleaved rounds (A, B, B, A, ...) so that a busy machine slows them alike; printed are
    the minimum and the median per tree and their ratio to the first tree. Mostly one process,
    so it can be run beside other work (the minimum is the least disturbed figure).
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
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"iris": "species", "wine": "class", "breast_cancer": "diagnosis", "digits": "digit", "penguins": "species"}
SPACE = {
    "optimizer.lr": {"type": "loguniform", "low": 3.0e-4, "high": 3.0e-2},
    "model.hidden": {"type": "choice", "values": [[32], [64], [128], [64, 64]]},
    "loss.weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 3.0e-2},
    "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
    "training.batch_size": {"type": "choice", "values": [16, 32, 64]},
}


def nnclf(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "nnclf", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nnclf {' '.join(args)} failed:\n{result.stderr}")
    return time.perf_counter() - start, result


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def study_config(folder: Path, dataset: str, trials: int, extra: dict | None = None, space: str = "issue") -> Path:
    """``space``: ``issue`` (SPACE above, 150 epochs, early stopping on val_loss, patience 15)
    or ``shipped`` (the tune section of configs/tune/DATASET.yaml, epochs and early stopping as
    that file says)."""
    if space == "shipped":
        cfg = yaml.safe_load((ROOT / "configs" / "tune" / f"{dataset}.yaml").read_text())
        cfg["data"]["train"] = str(ROOT / "data" / f"{dataset}.csv")
        cfg["tune"]["trials"] = trials
    else:
        cfg = yaml.safe_load((ROOT / "configs" / f"{dataset}.yaml").read_text())
        cfg["data"]["train"] = str(ROOT / "data" / f"{dataset}.csv")
        monitor = "val_rmse" if cfg.get("task") == "regression" else "val_loss"
        cfg.setdefault("training", {}).update(epochs=150, early_stopping={"monitor": monitor, "patience": 15})
        cfg["tune"] = {"metric": monitor, "trials": trials, "sampler": "tpe", "pruner": "median", "space": SPACE}
    for key, value in (extra or {}).items():
        if key.startswith("tune.space."):  # a dimension: its name is itself a dotted key
            cfg["tune"]["space"][key[len("tune.space."):]] = value
            continue
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = folder / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def sklearn_baselines(best_yaml: Path) -> dict[str, float]:
    import warnings

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    sys.path.insert(0, str(ROOT))
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    cfg = load_config(best_yaml, ["data.val_split=0"])  # the whole training pool, in file order
    p = prepare(cfg.data, cfg.seed, "float64")
    x = np.concatenate([p.train.x, p.val.x]) if p.val is not None else p.train.x
    y = np.concatenate([p.train.y, p.val.y]) if p.val is not None else p.train.y
    out = {}
    for name, model in (
        ("MLPClassifier", MLPClassifier(random_state=0, max_iter=1000)),
        ("LogisticRegression", LogisticRegression(max_iter=5000)),
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=0)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        out[name] = float(np.mean(model.predict(p.test.x) == p.test.y))
    out["test rows"] = len(p.test.y)
    return out


def cv_settings(args) -> dict:
    """--cv K and every --extra KEY=YAML (a study setting or, as tune.space.KEY, a dimension)."""
    out = {} if args.cv is None else {"tune.cv": None} if args.cv == 0 else {"tune.cv": args.cv, "data.val_split": 1 / args.cv}
    for item in args.extra:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def picked(folder: Path) -> str:
    """The validation-side score of the best trial, as best.yaml's header gives it."""
    return folder.joinpath("best.yaml").read_text().split("\n")[0].split(": ", 1)[1]


def by_hidden(folder: Path) -> str:
    """Per ``model.hidden`` value drawn: how many trials, how many complete, and the best
    complete trial's validation score (trial.json ``value``: the K-fold mean with tune.cv),
    so the validation side of each architecture can be read without any test row."""
    rows: dict[str, list] = {}
    for path in sorted(folder.glob("trial-*/trial.json")):
        t = json.loads(path.read_text())
        hidden = json.dumps(t["params"].get("model.hidden", "(not searched)"))
        rows.setdefault(hidden, []).append(t["value"] if t["state"] == "complete" else None)
    parts = []
    for hidden, values in rows.items():
        done = [v for v in values if v is not None]
        parts.append(f"{hidden}: {len(values)} drawn, {len(done)} complete" + (f", best {min(done):.4f}" if done else ""))
    return "; ".join(parts)


def study_results(folder: Path, headline: str) -> tuple[Path, float, float | None, int]:
    """(best.yaml, the best trial's test metric, the final model's (None without one), trial)."""
    best_yaml = folder / "best.yaml"
    number = int(best_yaml.read_text().split("best trial ")[1].split()[0])
    trial = json.loads((folder / f"trial-{number:04d}" / "summary.json").read_text())["test"][headline]
    final = folder / f"final-{number:04d}" / "summary.json"
    return best_yaml, trial, json.loads(final.read_text())["test"][headline] if final.is_file() else None, number


def kept_or_temporary(keep: str | None):
    """``--keep DIR``: the study configs and DIR/runs/STUDY folders stay there (DIR must not
    hold a study of the same name: a second run would continue it); otherwise a temporary
    folder, removed at the end."""
    import contextlib

    if keep is None:
        return tempfile.TemporaryDirectory()
    Path(keep).mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(Path(keep).resolve()))


def cv_on(args) -> bool:
    """Whether the studies cross-validate: --cv K, or (no --cv) the shipped configs' tune.cv: 5."""
    return bool(args.cv) if args.cv is not None else args.space == "shipped"


def accuracy(args) -> None:
    cv = f", cv {args.cv or 'as shipped'}" if cv_on(args) else ", no cv"
    print(f"nnclf tune, {args.trials} trials ({args.space} space{cv}) vs scikit-learn defaults; load {load()}")
    final = " final model (refit) |" if cv_on(args) else ""
    print(f"| data set | test rows | nnclf tune best trial |{final} MLPClassifier | LogisticRegression | HistGradientBoosting | tune time |")
    print("|---|---|---|---|---|---|---|" + ("---|" if cv_on(args) else ""))
    with kept_or_temporary(args.keep) as tmp:
        tmp = Path(tmp)
        for dataset, seed in ((d, s) for d in args.datasets.split(",") for s in args.seeds or [None]):
            path = study_config(tmp, dataset, args.trials, cv_settings(args), space=args.space)
            study = dataset if seed is None else f"{dataset}-s{seed}"
            extra = [] if seed is None else ["--set", f"seed={seed}"]
            seconds, _ = nnclf(["tune", str(path), "--runs-dir", str(tmp / "runs"), "--study", study, *extra, "--jobs", str(args.jobs), "-q"], tmp)
            best_yaml, ours, refit, _ = study_results(tmp / "runs" / study, "accuracy")
            base = sklearn_baselines(best_yaml)
            top = max(base[k] for k in ("MLPClassifier", "LogisticRegression", "HistGradientBoosting"))

            def cell(v):
                return f"**{v:.4f}** ({'ok' if v >= top else 'below'}: {round((v - top) * base['test rows']):+d} rows)"

            final = f" {cell(refit)} |" if cv_on(args) else ""
            name = dataset if seed is None else f"{dataset} (split {seed})"
            print(f"| {name} | {base['test rows']} | {cell(ours)} |{final} {base['MLPClassifier']:.4f} | "
                  f"{base['LogisticRegression']:.4f} | {base['HistGradientBoosting']:.4f} | {seconds:.0f} s (load {load()}) |", flush=True)
            print(f"  picked on validation: {picked(tmp / 'runs' / study)}", flush=True)
            print(f"  by model.hidden (validation): {by_hidden(tmp / 'runs' / study)}", flush=True)


def pool_csv(folder: Path, dataset: str, seed: int) -> Path:
    """The rows of data/DATASET.csv that are not in split ``seed``'s test rows (what
    ``accuracy`` scores on), in file order, as FOLDER/DATASET-pool-SEED.csv."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    cfg = load_config(study_config(folder, dataset, 1, space="shipped"), [f"seed={seed}", "data.val_split=0"])
    test_rows = prepare(cfg.data, cfg.seed, "float64").test.rows
    frame = pd.read_csv(ROOT / "data" / f"{dataset}.csv", dtype=str, keep_default_na=False)
    path = folder / f"{dataset}-pool-{seed}.csv"
    frame.drop(index=test_rows).to_csv(path, index=False)
    return path


def nested(args) -> None:
    variants = {"shipped": {}}
    for item in args.variant:
        name, _, settings = item.partition("=")
        variants[name] = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in settings.split(";"))}
    print(f"nnclf tune, {args.trials} trials, shipped studies on each outer split's training pool (inner test split from the pool); "
          f"variants {variants}; load {load()}")
    print("| data set | outer / inner split | inner test rows | best baseline | " + " | ".join(f"{v}: final (best trial)" for v in variants) + " |")
    print("|---|---|---|---|" + "---|" * len(variants))
    totals = {v: [0, 0] for v in variants}
    with kept_or_temporary(args.keep) as tmp:
        tmp = Path(tmp)
        for dataset in args.datasets.split(","):
            for outer in args.outer:
                pool = pool_csv(tmp, dataset, outer)
                for inner in args.inner:
                    cells, top, rows = [], None, None
                    for name, settings in variants.items():
                        path = study_config(tmp, dataset, args.trials, {**settings, "data.train": str(pool)}, space="shipped")
                        path = path.rename(tmp / f"{dataset}-{name}.yaml")
                        study = f"{dataset}-o{outer}-i{inner}-{name}"
                        nnclf(["tune", str(path), "--runs-dir", str(tmp / "runs"), "--study", study, "--set", f"seed={inner}", "-q"], tmp)
                        best_yaml, trial, final, _ = study_results(tmp / "runs" / study, "accuracy")
                        if top is None:
                            base = sklearn_baselines(best_yaml)
                            rows = base["test rows"]
                            top = max(base[k] for k in ("MLPClassifier", "LogisticRegression", "HistGradientBoosting"))
                        d_final, d_trial = round((final - top) * rows), round((trial - top) * rows)
                        totals[name][0] += d_final
                        totals[name][1] += d_trial
                        cells.append(f"{final:.4f} ({d_final:+d}) ({d_trial:+d})")
                    print(f"| {dataset} | {outer} / {inner} | {rows} | {top:.4f} | " + " | ".join(cells) + " |", flush=True)
    print("\nrows against the best baseline, summed: " + "; ".join(f"{v}: final {t[0]:+d}, best trial {t[1]:+d}" for v, t in totals.items()))


def regression_baselines(best_yaml: Path) -> dict[str, float]:
    import warnings

    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    sys.path.insert(0, str(ROOT))
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    cfg = load_config(best_yaml, ["data.val_split=0"])  # the whole training pool, in file order
    p = prepare(cfg.data, cfg.seed, "float64", task="regression")
    x = np.concatenate([p.train.x, p.val.x]) if p.val is not None else p.train.x
    values = np.concatenate([p.train.values, p.val.values]) if p.val is not None else p.train.values
    center, scale = values.mean(axis=0), values.std(axis=0)
    y = ((values - center) / scale).ravel()
    out = {}
    for name, model in (
        ("MLPRegressor", MLPRegressor(random_state=0, max_iter=2000)),
        ("Ridge", Ridge()),
        ("HistGradientBoosting", HistGradientBoostingRegressor(random_state=0)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        pred = model.predict(p.test.x).reshape(-1, 1) * scale + center
        out[name] = float(np.sqrt(np.mean((pred - p.test.values) ** 2)))
    out["test rows"] = len(p.test.values)
    return out


def regression(args) -> None:
    """One study per split (``--seeds``: the config's seed, which is also the split's), and
    the mean test RMSE over the splits."""
    names = ("MLPRegressor", "Ridge", "HistGradientBoosting")
    cv = f", cv {args.cv or 'as shipped'}" if cv_on(args) else ", no cv"
    print(f"nnclf tune, {args.trials} trials ({args.space} space{cv}) on diabetes vs scikit-learn defaults, test RMSE; load {load()}")
    final = " final model (refit) |" if cv_on(args) else ""
    print(f"| split seed | test rows | nnclf tune best trial |{final} MLPRegressor | Ridge | HistGradientBoosting | tune time |")
    print("|---|---|---|---|---|---|---|" + ("---|" if cv_on(args) else ""))
    results = []
    with kept_or_temporary(args.keep) as tmp:
        tmp = Path(tmp)
        path = study_config(tmp, "diabetes", args.trials, cv_settings(args), space=args.space)
        for seed in args.seeds:
            study = f"diabetes-s{seed}"
            seconds, _ = nnclf(["tune", str(path), "--runs-dir", str(tmp / "runs"), "--study", study, "--set", f"seed={seed}",
                                "--jobs", str(args.jobs), "-q"], tmp)
            best_yaml, ours, refit, _ = study_results(tmp / "runs" / study, "rmse")
            base = regression_baselines(best_yaml)
            results.append({"nnclf": ours, **({"refit": refit} if cv_on(args) else {}), **{k: base[k] for k in names}})
            top = min(base[k] for k in names)
            final = f" **{refit:.2f}** ({'ok' if refit <= top else 'above'}) |" if cv_on(args) else ""
            print(f"| {seed} | {base['test rows']} | **{ours:.2f}** ({'ok' if ours <= top else 'above'}) |{final} {base['MLPRegressor']:.2f} | "
                  f"{base['Ridge']:.2f} | {base['HistGradientBoosting']:.2f} | {seconds:.0f} s (load {load()}) |", flush=True)
            print(f"  picked on validation: {picked(tmp / 'runs' / study)}", flush=True)
            print(f"  by model.hidden (validation): {by_hidden(tmp / 'runs' / study)}", flush=True)
    if len(results) > 1:
        mean = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
        final = f" **{mean['refit']:.2f}** |" if cv_on(args) else ""
        print(f"| mean | | **{mean['nnclf']:.2f}** |{final} {mean['MLPRegressor']:.2f} | {mean['Ridge']:.2f} | {mean['HistGradientBoosting']:.2f} | |")


def _cpu_children() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _steady(folder: Path) -> tuple[float, int]:
    """(last trial's end - first trial's start) in seconds, from the trials' trial.json and
    summary.json files, and the number of trials between them."""
    import datetime as dt

    starts, ends = [], []
    for s in folder.glob("trial-*/summary.json"):
        summary = json.loads(s.read_text())
        starts.append(dt.datetime.fromisoformat(summary["started_at"]))
        ends.append(s.stat().st_mtime)
    return max(ends) - min(starts).timestamp(), len(ends)


def _first_start_last_end(folder: Path) -> tuple[float, float]:
    """The first trial's start (summary.json's started_at, to the millisecond) and the last
    trial's end (its summary.json's modification time), as epoch seconds."""
    import datetime as dt

    starts, ends = [], []
    for s in folder.glob("trial-*/summary.json"):
        starts.append(dt.datetime.fromisoformat(json.loads(s.read_text())["started_at"]).timestamp())
        ends.append(s.stat().st_mtime)
    return min(starts), max(ends)


def overhead(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = study_config(tmp, "iris", args.trials, {"training.epochs": 1, "training.early_stopping": None,
                                                       "tune.pruner": "none", "model.hidden": [4]})
        cfg = yaml.safe_load(path.read_text())
        cfg["tune"]["space"] = {"optimizer.lr": SPACE["optimizer.lr"]}
        path.write_text(yaml.safe_dump(cfg))
        for round_ in range(args.rounds):
            runs = tmp / f"runs{round_}"
            cpu0 = _cpu_children()
            wall, _ = nnclf(["tune", str(path), "--runs-dir", str(runs), "-q"], tmp)
            cpu = _cpu_children() - cpu0
            trained = sum(json.loads(s.read_text())["seconds"]["train"] for s in (runs / "iris").glob("trial-*/summary.json"))
            span, n = _steady(runs / "iris")
            steady = (span - trained) / max(n - 1, 1)
            print(f"{args.trials} trials: wall {wall:.2f} s, training {trained:.2f} s, overhead {(wall - trained) / args.trials * 1000:.0f} ms per trial; "
                  f"steady state {steady * 1000:.0f} ms per trial; CPU {cpu / args.trials * 1000:.0f} ms per trial (load {load()})", flush=True)


def jobs(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.case == "tiny":
            path = study_config(tmp, "digits", args.trials, {"training.epochs": 8, "training.early_stopping": None, "tune.pruner": "none"})
        else:
            path = study_config(tmp, "digits", args.trials, {"training.epochs": 40, "training.early_stopping": None, "tune.pruner": "none"})
        cfg = yaml.safe_load(path.read_text())
        cfg["tune"]["space"] = {"optimizer.lr": SPACE["optimizer.lr"], "training.batch_size": SPACE["training.batch_size"]}
        cfg["model"]["hidden"] = [32] if args.case == "tiny" else [64]
        path.write_text(yaml.safe_dump(cfg))
        print(f"case {args.case}: digits, hidden {cfg['model']['hidden']}, {cfg['training']['epochs']} epochs, {args.trials} trials")
        ratios = []
        for round_ in range(args.rounds):
            times = {}
            for j in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                before = load()
                cpu0 = _cpu_children()
                t0 = time.time()
                times[j], _ = nnclf(["tune", str(path), "--runs-dir", str(tmp / f"r{round_}j{j}"), "--jobs", str(j), "-q"], tmp)
                t1 = time.time()
                cpu = _cpu_children() - cpu0
                folder = tmp / f"r{round_}j{j}" / "digits"
                trained = sum(json.loads(s.read_text())["seconds"]["train"] for s in folder.glob("trial-*/summary.json"))
                first, last = _first_start_last_end(folder)
                print(f"round {round_ + 1}: --jobs {j}: {times[j]:.2f} s, CPU {cpu:.2f} s, trials' training {trained:.2f} s; "
                      f"start to the first trial {first - t0:.2f} s, trials {last - first:.2f} s, last trial to the end {t1 - last:.2f} s "
                      f"(load before {before}, after {load()})", flush=True)
            ratios.append(times[2] / times[1])
        print(f"--jobs 2 / --jobs 1: median {statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


def _tiny_config(folder: Path, trials: int) -> Path:
    path = study_config(folder, "digits", trials, {"training.epochs": 8, "training.early_stopping": None, "tune.pruner": "none"})
    cfg = yaml.safe_load(path.read_text())
    cfg["tune"]["space"] = {"optimizer.lr": SPACE["optimizer.lr"], "training.batch_size": SPACE["training.batch_size"]}
    cfg["model"]["hidden"] = [32]
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(args) -> None:
    import datetime as dt

    trees = [Path(t).resolve() for t in args.trees.split(",")] if args.trees else [ROOT]
    times: dict[Path, list[float]] = {t: [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = _tiny_config(tmp, args.jobs)
        print(f"nnclf tune, {args.jobs} trial(s), --jobs {args.jobs}: start to the first trial (load before {load()})")
        for round_ in range(args.rounds):
            for tree in (trees if round_ % 2 == 0 else trees[::-1]):
                runs = tmp / f"r{round_}-{trees.index(tree)}"
                env = {**os.environ, "PYTHONPATH": str(tree)}
                t0 = time.time()
                result = subprocess.run([sys.executable, "-m", "nnclf", "tune", str(path), "--runs-dir", str(runs), "--jobs", str(args.jobs), "-q"],
                                        cwd=tmp, env=env, capture_output=True, text=True)
                if result.returncode != 0:
                    raise SystemExit(f"{tree}: nnclf tune failed:\n{result.stderr}")
                first = min(dt.datetime.fromisoformat(json.loads(s.read_text())["started_at"]).timestamp()
                            for s in runs.glob("*/trial-*/summary.json"))
                times[tree].append(first - t0)
    base = times[trees[0]]
    for tree in trees:
        t = times[tree]
        print(f"{tree}: min {min(t):.3f} s ({min(t) / min(base):.2f}x), median {statistics.median(t):.3f} s "
              f"({statistics.median(t) / statistics.median(base):.2f}x); rounds {' '.join(f'{x:.2f}' for x in t)}")
    print(f"(load after {load()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--trials", type=int, default=30)
    a.add_argument("--datasets", default=",".join(DATASETS))
    a.add_argument("--jobs", type=int, default=1)
    a.add_argument("--space", choices=("issue", "shipped"), default="issue")
    a.add_argument("--seeds", type=int, nargs="+", default=None, help="one study per split (--set seed=S); default: the config's seed")
    a.add_argument("--cv", type=int, default=None, help="folds per trial (tune.cv, with data.val_split 1/K); 0: none, the config's one validation split; default: as the config says (shipped: 5)")
    a.add_argument("--extra", action="append", default=[], metavar="KEY=YAML", help="a study setting, e.g. tune.space.model.hidden={type: choice, values: [[], [32]]}")
    a.add_argument("--keep", metavar="DIR", default=None, help="keep the studies in DIR/runs (default: a temporary folder)")
    r = sub.add_parser("regression")
    r.add_argument("--trials", type=int, default=30)
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--space", choices=("issue", "shipped"), default="shipped")
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--cv", type=int, default=None, help="folds per trial (tune.cv, with data.val_split 1/K); 0: none, the config's one validation split; default: as the config says (shipped: 5)")
    r.add_argument("--extra", action="append", default=[], metavar="KEY=YAML", help="a study setting, e.g. tune.space.model.hidden={type: choice, values: [[], [32]]}")
    r.add_argument("--keep", metavar="DIR", default=None, help="keep the studies in DIR/runs (default: a temporary folder)")
    n = sub.add_parser("nested")
    n.add_argument("--trials", type=int, default=30)
    n.add_argument("--datasets", default="digits")
    n.add_argument("--outer", type=int, nargs="+", default=[0, 1, 2])
    n.add_argument("--inner", type=int, nargs="+", default=[10, 11])
    n.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=YAML[;KEY=YAML]")
    n.add_argument("--keep", metavar="DIR", default=None)
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=20)
    o.add_argument("--rounds", type=int, default=2)
    j = sub.add_parser("jobs")
    j.add_argument("--trials", type=int, default=20)
    j.add_argument("--rounds", type=int, default=2)
    j.add_argument("--case", choices=("tiny", "shipped"), default="tiny")
    st = sub.add_parser("start")
    st.add_argument("--rounds", type=int, default=8)
    st.add_argument("--jobs", type=int, default=1)
    st.add_argument("--trees", default=None, help="comma-separated source trees to compare (each run with PYTHONPATH=TREE); default: this checkout")
    args = ap.parse_args()
    {"accuracy": accuracy, "nested": nested, "regression": regression, "overhead": overhead, "jobs": jobs, "start": start}[args.what](args)


if __name__ == "__main__":
    main()
