"""tune.cv: each trial scored by K folds of the training pool. The folds partition the pool and
are stratified; fold 0 is the ordinary run; every other fold equals an independent ``nnclf
train`` on CSVs of its rows; the study's value is the folds' mean; errors; continuing a study;
pruning; the final model (refit on every pool row) through the CLI."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DATA, merged, write_config

pytest.importorskip("optuna")

# standard scaling (the default): a fold fits its own, so a fold trained from CSVs of its own rows
# sees the very same numbers
BASE = f"""
seed: 3
data:
  train: {DATA / 'iris.csv'}
  target: species
  val_split: 0.3333
model:
  hidden: [8]
optimizer:
  lr: 0.01
training:
  epochs: 12
  batch_size: 16
  early_stopping: {{patience: 4}}
tune:
  metric: val_loss
  trials: 2
  sampler: random
  cv: 3
  space:
    optimizer.lr: {{type: loguniform, low: 3.0e-3, high: 3.0e-2}}
"""


def config(tmp_path: Path, *extra: str, name: str = "study.yaml") -> Path:
    return write_config(tmp_path, merged(BASE, *extra), name)


def table(folder: Path) -> list[dict]:
    with (folder / "trials.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _prepared(text: str, tmp_path: Path):
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    cfg = load_config(write_config(tmp_path, text, "p.yaml"))
    return cfg, prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)


# -- the folds ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, val_split", [(3, 0.3333), (5, 0.2), (4, 0.25)])
def test_folds_partition_the_pool_and_are_stratified(tmp_path, k, val_split):
    from nnclf.tune.folds import fold_data

    cfg, p = _prepared(merged(BASE, f"data: {{train: {DATA / 'wine.csv'}, target: class, val_split: {val_split}}}"), tmp_path)
    pool = np.sort(np.concatenate([p.train.rows, p.val.rows]))
    test = set(p.test.rows.tolist())
    vals, sizes = [], []
    counts = np.bincount(np.concatenate([p.train.y, p.val.y]))
    for fold in range(k):
        f = fold_data(p, fold, k, cfg.seed)
        # train and val of a fold are disjoint and together the pool, in data-row order
        assert not set(f.train.rows.tolist()) & set(f.val.rows.tolist())
        assert np.array_equal(np.sort(np.concatenate([f.train.rows, f.val.rows])), pool)
        assert np.all(np.diff(f.train.rows) > 0) and np.all(np.diff(f.val.rows) > 0)
        assert not test & set(f.val.rows.tolist()) and not test & set(f.train.rows.tolist())
        # each row's features and label travel with it
        x_by_row = dict(zip(np.concatenate([p.train.rows, p.val.rows]).tolist(), np.concatenate([p.train.x, p.val.x])))
        assert all(np.array_equal(x_by_row[r], x) for r, x in zip(f.val.rows.tolist(), f.val.x))
        # stratified: every class's share of the fold within one row of n_c / k
        per_class = np.bincount(f.val.y, minlength=len(counts))
        assert np.all(np.abs(per_class - counts / k) <= 1.0 + 1e-9), (per_class, counts / k)
        vals.append(f.val.rows)
        sizes.append(len(f.val))
    every = np.concatenate(vals)
    assert len(every) == len(pool) and np.array_equal(np.sort(every), pool)  # each pool row validated once
    assert max(sizes) - min(sizes) <= 2  # fold 0 is the config's rounding of val_split, the rest within one
    assert np.array_equal(vals[0], p.val.rows)  # fold 0 is the config's own validation split
    assert fold_data(p, 0, k, cfg.seed) is p


def test_regression_folds_are_plain_and_partition_the_pool(tmp_path):
    from nnclf.tune.folds import fold_data

    text = merged(BASE, f"task: regression\ndata: {{train: {DATA / 'diabetes.csv'}, target: progression, val_split: 0.2}}")
    cfg, p = _prepared(text, tmp_path)
    pool = np.sort(np.concatenate([p.train.rows, p.val.rows]))
    vals = [fold_data(p, fold, 5, cfg.seed).val for fold in range(5)]
    assert np.array_equal(np.sort(np.concatenate([v.rows for v in vals])), pool)
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 1
    for v in vals:  # the unscaled targets travel with their rows
        frame = pd.read_csv(DATA / "diabetes.csv")
        assert np.array_equal(v.values[:, 0], frame["progression"].to_numpy(np.float64)[v.rows])
    # the dealing depends on the split seed, not on the trial
    assert not np.array_equal(fold_data(p, 1, 5, cfg.seed + 1).val.rows, vals[1].rows)
    assert np.array_equal(fold_data(p, 1, 5, cfg.seed).val.rows, vals[1].rows)


@pytest.mark.parametrize("task, source, extra", [
    ("classification", "penguins.csv", "target: species, categorical: [island, sex], missing_indicators: true"),
    ("classification", "wine.csv", "target: class, scaling: minmax"),
    ("regression", "diabetes.csv", "target: progression"),
    ("reconstruction", "wine.csv", "target: null, ignore: [class]"),
])
def test_a_fold_is_prepared_like_a_split_of_its_own_rows(tmp_path, task, source, extra):
    """prepare(..., fold=(f, K)) equals the ordinary preparation of CSVs holding exactly the
    fold's training, validation and test rows: imputation, categories, scaling and the
    regression targets' scaling are fitted on the fold's training rows alone (no statistic of
    its validation rows), and the rows are those of the dealing (``fold_data``)."""
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare
    from nnclf.tune.folds import fold_data

    text = merged(BASE, f"task: {task}\ndata: {{train: {DATA / source}, val_split: 0.25, {extra}}}")
    cfg, p = _prepared(text, tmp_path)
    frame = pd.read_csv(DATA / source)
    for fold in (1, 3):
        got = prepare(cfg.data, cfg.seed, cfg.training.dtype, task=task, fold=(fold, 4))
        cut = fold_data(p, fold, 4, cfg.seed)
        for role in ("train", "val", "test"):
            assert np.array_equal(getattr(got, role).rows, getattr(cut, role).rows), role
            frame.iloc[getattr(got, role).rows].to_csv(tmp_path / f"{role}{fold}.csv", index=False)
        ref_cfg = load_config(write_config(tmp_path, merged(text, f"""
data: {{train: {tmp_path / f'train{fold}.csv'}, val: {tmp_path / f'val{fold}.csv'}, test: {tmp_path / f'test{fold}.csv'}, val_split: 0, test_split: 0}}
"""), f"ref{fold}.yaml"))
        ref = prepare(ref_cfg.data, ref_cfg.seed, ref_cfg.training.dtype, task=task)
        for role in ("train", "val", "test"):
            assert np.array_equal(getattr(got, role).x, getattr(ref, role).x), role
            assert np.array_equal(getattr(got, role).y, getattr(ref, role).y), role
        assert got.preprocessor.to_json() == ref.preprocessor.to_json()
        # and not the ordinary split's fitted statistics: the fold's validation rows are left out
        assert got.preprocessor.to_json() != p.preprocessor.to_json()
        assert not np.array_equal(got.val.x, cut.val.x)
        if task == "regression":
            assert got.targets.state == ref.targets.state != p.targets.state
    assert prepare(cfg.data, cfg.seed, cfg.training.dtype, task=task, fold=(0, 4)).preprocessor.to_json() == p.preprocessor.to_json()


# -- errors ---------------------------------------------------------------------------------------
def test_cv_errors_name_the_key(cli, tmp_path):
    def error(*extra):
        nonlocal offset
        path = config(tmp_path, *extra)
        lines = path.read_text().split("\n")
        offset = next(i for i, line in enumerate(lines) if line.startswith("  cv:")) + 1 if any(l.startswith("  cv:") for l in lines) else None
        result = cli(f"tune {path}")
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("trial-*"))
        return result.stderr.strip().replace(f"{path}, ", "")

    offset = None
    assert error("tune: {cv: 1}") == f"error: line {offset}: tune.cv: must be an integer >= 2 (the number of folds), or null, got 1"
    assert error("tune: {cv: five}") == f"error: line {offset}: tune.cv: must be an integer >= 2 (the number of folds), or null, got 'five'"
    assert error("tune: {cv: 5}") == (
        f"error: line {offset}: tune.cv: 5 folds need data.val_split: 0.2 (fold 0 is the config's validation split, "
        f"the other folds are equal parts of the rest), got 0.3333")
    val = tmp_path / "val.csv"
    pd.read_csv(DATA / "iris.csv").head(30).to_csv(val, index=False)
    assert error(f"data: {{val: {val}}}") == (
        f"error: line {offset}: tune.cv: the folds are cut from the training rows, so data.val (a separate file) cannot be one "
        f"of them; remove data.val and set data.val_split: 0.3333")
    assert error("tune: {metric: train_loss}") == (
        f"error: line {offset}: tune.cv: scores each fold on its validation rows; tune.metric 'train_loss' is not a validation metric")
    assert error("tune: {refit: maybe}").endswith("tune.refit: must be auto, true or false, got 'maybe'")
    assert error("tune: {cv: null, refit: true}").endswith(
        "tune.refit: needs tune.cv: the final model trains for the folds' mean best epoch count; set tune.cv: 5, or use training.refit for one run")


def test_more_folds_than_rows_of_the_smallest_class_is_an_error(cli, tmp_path):
    frame = pd.read_csv(DATA / "iris.csv")
    small = pd.concat([frame[frame.species != "virginica"], frame[frame.species == "virginica"].head(5)])
    small.to_csv(tmp_path / "small.csv", index=False)
    # 5 virginica rows: the test split takes 1, the pool keeps 4 < 5 folds
    path = config(tmp_path, f"data: {{train: {tmp_path / 'small.csv'}, val_split: 0.2}}", "tune: {cv: 5}")
    result = cli(f"tune {path}")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {path}: tune.cv: 5 folds need at least 5 rows of every class in the training pool; "
        f"class 'virginica' has 4; use fewer folds")
    assert not list((tmp_path / "runs").rglob("trial-*"))


# -- the study's value ----------------------------------------------------------------------------
def test_cv_value_is_the_mean_of_independent_fold_runs(cli, tmp_path):
    """Fold 0 is the trial's run folder; fold k >= 1 equals ``nnclf train`` on CSVs of the fold's
    training and validation rows with the fold's seed; the study's value is their mean."""
    from nnclf.tune.folds import fold_data, fold_seed

    path = config(tmp_path, "tune: {trials: 1}")
    result = cli(f"tune {path} --study s -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    trial = json.loads((folder / "trial-0000" / "trial.json").read_text())
    summary = json.loads((folder / "trial-0000" / "summary.json").read_text())
    assert trial["cv"]["folds"] == 3 and summary["status"] == "finished"
    # fold 0: the run's own validation metric at its best epoch, read from metrics.csv
    with (folder / "trial-0000" / "metrics.csv").open(newline="") as f:
        history = list(csv.DictReader(f))
    values = [float(history[summary["best_epoch"] - 1]["val_loss"])]
    cfg, p = _prepared(merged(BASE, f"optimizer: {{lr: {trial['params']['optimizer.lr']!r}}}"), tmp_path)
    frame = pd.read_csv(DATA / "iris.csv")
    for k in (1, 2):
        f = fold_data(p, k, 3, cfg.seed)
        frame.iloc[f.train.rows].to_csv(tmp_path / f"train{k}.csv", index=False)
        frame.iloc[f.val.rows].to_csv(tmp_path / f"val{k}.csv", index=False)
        ref = write_config(tmp_path, merged(BASE, f"""
seed: {fold_seed(trial['seed'], k)}
tune: null
data: {{train: {tmp_path / f'train{k}.csv'}, val: {tmp_path / f'val{k}.csv'}, val_split: 0, test_split: 0}}
optimizer: {{lr: {trial['params']['optimizer.lr']!r}}}
"""), f"ref{k}.yaml")
        r = cli(f"train {ref} --name ref{k} -q")
        assert r.exit_code == 0, r.stderr
        ref_summary = json.loads((tmp_path / "runs" / f"ref{k}" / "summary.json").read_text())
        values.append(ref_summary["best"]["val_loss"])
        assert trial["cv"]["best_epochs"][k] == ref_summary["best_epoch"]
        assert trial["cv"]["seeds"][k] == fold_seed(trial["seed"], k) != trial["seed"]
    assert trial["cv"]["values"] == values
    mean = statistics.fmean(values)
    assert trial["value"] == pytest.approx(mean, rel=1e-15, abs=0)
    row = table(folder)[0]
    assert float(row["val_loss"]) == trial["value"] and json.loads(row["fold_values"]) == values
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    assert study.trials[0].value == trial["value"]


def test_each_fold_is_prepared_once_per_study(tmp_path):
    """Folds 1..K-1 are prepared from the CSV in the first trial and kept: later trials read
    nothing again (the memo holds fold 0 and each other fold)."""
    from nnclf.tune import study as st
    from nnclf.tune.prepared import process_memo

    setup = st.prepare_study(config(tmp_path, "tune: {trials: 3}"), runs_dir=tmp_path / "runs")
    seen = []

    class Look:  # on the trials' own runs (fold 0), not on the in-memory folds
        def on_epoch_end(self, trainer, record, improved):
            seen.append((len(process_memo()), process_memo().misses))

    result = st.tune(setup, callbacks=[Look()])
    assert result.ran == 3
    first, last = seen[0], seen[-1]
    assert first[0] == 1 and last[0] == 3  # fold 0, then folds 1 and 2 beside it
    assert last[1] - first[1] == 2  # folds 1 and 2 prepared once, in the first trial


def test_cv_on_the_memory_mapped_cache_cuts_the_folds_from_its_arrays(cli, tmp_path):
    """data.cache: mmap keeps no data in memory: a fold is cut from the trial's memory-mapped
    arrays (fold 0's preprocessing), and its value is that of a fold trained on them."""
    from nnclf.config import load_config
    from nnclf.data.cache import DiskCache
    from nnclf.data.dataset import prepare
    from nnclf.tune.folds import fold_data, fold_seed, train_fold

    path = config(tmp_path, f"data: {{cache: mmap, cache_dir: {tmp_path / 'cache'}}}", "tune: {trials: 1}")
    result = cli(f"tune {path} --study s -q")
    assert result.exit_code == 0, result.stderr
    trial = json.loads((tmp_path / "runs" / "s" / "trial-0000" / "trial.json").read_text())
    assert len(trial["cv"]["values"]) == 3
    # the trial's own config (as the study makes it: data.split_seed is the config's seed, 3)
    cfg = load_config(path, ["tune=null", f"seed={trial['seed']}", "data.split_seed=3", f"optimizer.lr={trial['params']['optimizer.lr']!r}"])
    p = prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task, cache=DiskCache(cfg.data.cache_dir, cfg.data, cfg.seed, cfg.training.dtype))
    assert isinstance(p.train.x, np.memmap)
    fold_cfg = cfg.model_copy(deep=True)
    fold_cfg.seed = fold_seed(cfg.seed, 2)
    assert train_fold(fold_cfg, fold_data(p, 2, 3, 3), "val_loss")["value"] == trial["cv"]["values"][2]


def test_fold_0_is_the_ordinary_run_and_best_yaml_repeats_it(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 2}")
    assert cli(f"tune {path} --study s -q").exit_code == 0
    folder = tmp_path / "runs" / "s"
    best_yaml = folder / "best.yaml"
    number = int(best_yaml.read_text().split("best trial ")[1].split()[0])
    best = yaml.safe_load(best_yaml.read_text())
    trial = json.loads((folder / f"trial-{number:04d}" / "trial.json").read_text())
    assert best["training"]["refit"] is True
    expected = int(np.floor(np.mean(trial["cv"]["best_epochs"]) + 0.5))
    assert best["training"]["refit_epochs"] == expected
    # the final model: best.yaml trained by the study, and again here, bit for bit
    final = folder / f"final-{number:04d}"
    assert cli(f"train {best_yaml} --name again -q").exit_code == 0
    again = tmp_path / "runs" / "again"
    for which in ("best", "last", "refit"):
        a = np.load(final / "checkpoints" / f"{which}.npz", allow_pickle=False)["params"]
        b = np.load(again / "checkpoints" / f"{which}.npz", allow_pickle=False)["params"]
        assert a.tobytes() == b.tobytes()
    for which in ("best", "last"):  # fold 0 = the trial's run = best.yaml's run
        a = np.load(folder / f"trial-{number:04d}" / "checkpoints" / f"{which}.npz", allow_pickle=False)["params"]
        b = np.load(again / "checkpoints" / f"{which}.npz", allow_pickle=False)["params"]
        assert a.tobytes() == b.tobytes()
    s = json.loads((final / "summary.json").read_text())
    assert s["refit"]["epochs"] == expected and s["refit"]["rows"] == s["rows"]["train"] + s["rows"]["val"]
    # and a plain nnclf train of the config (no tune) with the trial's values is fold 0 too
    plain = write_config(tmp_path, merged(BASE, f"seed: {trial['seed']}\ntune: null\ndata: {{split_seed: 3}}\n"
                                                 f"optimizer: {{lr: {trial['params']['optimizer.lr']!r}}}"), "plain.yaml")
    assert cli(f"train {plain} --name plain -q").exit_code == 0
    a = np.load(folder / f"trial-{number:04d}" / "checkpoints" / "best.npz", allow_pickle=False)["params"]
    b = np.load(tmp_path / "runs" / "plain" / "checkpoints" / "best.npz", allow_pickle=False)["params"]
    assert a.tobytes() == b.tobytes()
    # evaluate on the final run uses the refit model
    out = json.loads(cli(f"evaluate {final} --json").stdout)
    assert out["checkpoint"].endswith("refit.npz") and out["accuracy"] == s["test"]["accuracy"]


def test_refit_false_makes_no_final_run(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 1, refit: false}")
    assert cli(f"tune {path} --study s -q").exit_code == 0
    folder = tmp_path / "runs" / "s"
    assert not list(folder.glob("final-*"))
    meta = json.loads((folder / "study.json").read_text())
    assert (meta["cv"], meta["refit"]) == (3, False)
    pytest.importorskip("matplotlib")
    r = cli(f"report {folder}")
    assert r.exit_code == 0, r.stderr
    assert (folder / "report.html").is_file()
    assert yaml.safe_load((folder / "best.yaml").read_text())["training"]["refit"] is False


def test_continuing_a_cv_study_equals_running_it_at_once(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 2}")
    assert cli(f"tune {path} --study a -q").exit_code == 0
    first_final = sorted(p.name for p in (tmp_path / "runs" / "a").glob("final-*"))
    result = cli(f"tune {path} --study a --trials 3")
    assert result.exit_code == 0, result.stderr
    assert "3 trials done" in result.stdout and "1 run by this command" in result.stdout
    assert cli(f"tune {path} --study b --trials 3 -q").exit_code == 0
    keep = ["number", "state", "val_loss", "fold_values", "fold_best_epochs", "optimizer.lr"]
    a, b = table(tmp_path / "runs" / "a"), table(tmp_path / "runs" / "b")
    # the trials before the continuation are the same as in one run (the continuation's sampler
    # is seeded with the number of trials done, so its draws are not the one run's: test_tune)
    assert [{k: r[k] for k in keep} for r in a[:2]] == [{k: r[k] for k in keep} for r in b[:2]]
    folds = json.loads(a[2]["fold_values"])
    assert a[2]["state"] == "complete" and len(folds) == 3 and float(a[2]["val_loss"]) == pytest.approx(statistics.fmean(folds), rel=1e-15)
    finals = sorted(p.name for p in (tmp_path / "runs" / "a").glob("final-*"))
    assert set(first_final) <= set(finals)  # the earlier final run is kept; a new best gets its own
    best = int((tmp_path / "runs" / "a" / "best.yaml").read_text().split("best trial ")[1].split()[0])
    assert f"final-{best:04d}" in finals
    # a changed number of folds is another study
    other = config(tmp_path, "tune: {cv: 4, trials: 3}", "data: {val_split: 0.25}", name="other.yaml")
    result = cli(f"tune {other} --study a")
    assert result.exit_code == 1 and "another config" in result.stderr


def test_pruning_with_cv_reports_fold_0_epochs_only(cli, tmp_path):
    """The pruner sees fold 0's per-epoch metric (the same rows for every trial); a pruned
    trial runs no other fold, a complete one runs all of them."""
    import optuna

    path = config(tmp_path, "tune: {trials: 6, pruner: median, sampler: random, "
                            "space: {optimizer.lr: {type: loguniform, low: 1.0e-5, high: 3.0e-2}}}",
                  "training: {epochs: 20, early_stopping: {patience: 20}}")
    result = cli(f"tune {path} --study s -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and "COMPLETE" in states, states
    for t in study.trials:
        trial = json.loads((folder / f"trial-{t.number:04d}" / "trial.json").read_text())
        with (folder / f"trial-{t.number:04d}" / "metrics.csv").open(newline="") as f:
            history = list(csv.DictReader(f))
        # every reported value is fold 0's val_loss of that epoch
        assert sorted(t.intermediate_values) == [int(h["epoch"]) for h in history]
        assert all(t.intermediate_values[int(h["epoch"])] == float(h["val_loss"]) for h in history)
        if t.state.name == "PRUNED":
            assert "cv" not in trial and trial["state"] == "pruned"
        else:
            assert len(trial["cv"]["values"]) == 3 and t.value == trial["cv"]["mean"]


def test_regression_refit_is_tested_on_the_refit_model(cli, tmp_path):
    """training.refit on a regression run: refit.npz equals an independent run on a CSV of the
    training + validation rows, and summary.json's test RMSE is the refit model's."""
    text = f"""
seed: 2
task: regression
data: {{train: {DATA / 'diabetes.csv'}, target: progression, scaling: none, target_scaling: none, val_split: 0.2}}
model: {{hidden: [8]}}
loss: {{name: mse}}
optimizer: {{lr: 0.01}}
training: {{epochs: 30, batch_size: 32, early_stopping: {{monitor: val_rmse, patience: 3}}, refit: true, refit_epochs: 7}}
"""
    path = write_config(tmp_path, text)
    r = cli(f"train {path} --name r -q")
    assert r.exit_code == 0, r.stderr
    run = tmp_path / "runs" / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["refit"]["epochs"] == 7 and summary["test"]["checkpoint"] == "refit"
    frame = pd.read_csv(DATA / "diabetes.csv")
    with np.load(run / "splits.npz") as splits:
        rows = np.concatenate([splits["train"], splits["val"]])
        test_rows = splits["test"]
    frame.iloc[rows].to_csv(tmp_path / "both.csv", index=False)
    ref_text = text.replace(str(DATA / "diabetes.csv"), str(tmp_path / "both.csv")).replace("val_split: 0.2", "val_split: 0, test_split: 0")
    ref_text = ref_text.replace("early_stopping: {monitor: val_rmse, patience: 3}, refit: true, refit_epochs: 7", "epochs: 7").replace("epochs: 30, ", "")
    ref = write_config(tmp_path, ref_text, "ref.yaml")
    r = cli(f"train {ref} --name ref -q")
    assert r.exit_code == 0, r.stderr
    refit = np.load(run / "checkpoints" / "refit.npz", allow_pickle=False)["params"]
    reference = np.load(tmp_path / "runs" / "ref" / "checkpoints" / "last.npz", allow_pickle=False)["params"]
    assert refit.tobytes() == reference.tobytes()
    frame.iloc[test_rows].to_csv(tmp_path / "test.csv", index=False)
    r = cli(f"evaluate {run} {tmp_path / 'test.csv'} --json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["checkpoint"].endswith("refit.npz")
    assert out["rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-12)


@pytest.mark.slow
def test_cv_study_on_breast_cancer_end_to_end(cli, tmp_path):
    """The shipped breast_cancer tune config with cv 5 through the CLI: every trial complete or
    pruned, the final model's folder, and predict on it."""
    cfg = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / "tune" / "breast_cancer.yaml").read_text())
    cfg["data"]["train"] = str(DATA / "breast_cancer.csv")
    cfg["data"]["val_split"] = 0.2
    cfg["tune"].update(trials=4, cv=5)
    cfg["training"]["epochs"] = 40
    path = tmp_path / "bc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = cli(f"tune {path} --study bc")
    assert result.exit_code == 0, result.stderr
    assert "(mean of 5 folds)" in result.stdout and "final model:" in result.stdout and "final model's test_accuracy: 0." in result.stdout
    folder = tmp_path / "runs" / "bc"
    rows = table(folder)
    assert len(rows) == 4 and {r["state"] for r in rows} <= {"complete", "pruned"}
    finals = list(folder.glob("final-*"))
    assert len(finals) == 1 and (finals[0] / "checkpoints" / "refit.npz").is_file()
    frame = pd.read_csv(DATA / "breast_cancer.csv").drop(columns=["diagnosis"]).head(20)
    frame.to_csv(tmp_path / "new.csv", index=False)
    r = cli(f"predict {finals[0]} {tmp_path / 'new.csv'} --output {tmp_path / 'out.csv'}")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == 20


def test_ctrl_c_during_a_later_fold_marks_the_trial_interrupted(tmp_path):
    """Stop requested after fold 0's last epoch: fold 1 stops at its first batch, the trial is
    interrupted (not complete with a partial mean), and the study ends."""
    import threading

    from nnclf.tune import study as st

    path = config(tmp_path, "tune: {trials: 3}", "training: {epochs: 5, early_stopping: null}")
    setup = st.prepare_study(path, runs_dir=tmp_path / "runs", study="s")
    stop = threading.Event()

    class AfterFold0:
        def on_epoch_end(self, trainer, record, improved):
            if record["epoch"] == 5:
                stop.set()

    result = st.tune(setup, stop=stop, callbacks=[AfterFold0()])
    assert result.interrupted
    assert [r["state"] for r in result.rows] == ["interrupted"]
    trial = json.loads((tmp_path / "runs" / "s" / "trial-0000" / "trial.json").read_text())
    assert trial["state"] == "interrupted" and "cv" not in trial
    assert result.best is None and not list((tmp_path / "runs" / "s").glob("final-*"))


@pytest.mark.slow
def test_cv_study_with_two_worker_processes(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 4}")
    result = cli(f"tune {path} --study s --jobs 2 -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    # (two workers asking for the budget's last trial at once leave a surplus one, "skipped")
    rows = [r for r in table(folder) if r["state"] != "skipped"]
    numbers = [int(r["number"]) for r in rows]
    assert len(rows) == 4 and len(set(numbers)) == 4
    for r in rows:
        assert r["state"] == "complete"
        assert float(r["val_loss"]) == pytest.approx(statistics.fmean(json.loads(r["fold_values"])), rel=1e-15)
    best = int((folder / "best.yaml").read_text().split("best trial ")[1].split()[0])
    assert (folder / f"final-{best:04d}" / "checkpoints" / "refit.npz").is_file()


def test_a_reconstruction_study_cross_validates_without_a_final_run(cli, tmp_path):
    text = f"""
task: reconstruction
data: {{train: {DATA / 'iris.csv'}, target: species, val_split: 0.25}}
model: {{hidden: [4, 2, 4]}}
training: {{epochs: 3}}
tune:
  metric: val_mse
  trials: 1
  cv: 4
  space:
    optimizer.lr: {{type: loguniform, low: 1.0e-3, high: 1.0e-2}}
"""
    path = write_config(tmp_path, text, "ae.yaml")
    result = cli(f"tune {path} --study s -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    trial = json.loads((folder / "trial-0000" / "trial.json").read_text())
    assert len(trial["cv"]["values"]) == 4 and trial["value"] == pytest.approx(statistics.fmean(trial["cv"]["values"]), rel=1e-15)
    assert not list(folder.glob("final-*"))
    assert yaml.safe_load((folder / "best.yaml").read_text())["training"]["refit"] is False
