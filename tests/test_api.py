"""The Python API against the CLI: same weights and probabilities to the bit, checkpoints that
round-trip both ways, the config schema's errors, and library hygiene (no sklearn on import,
nothing printed, BLAS threads restored)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnclf
from nnclf.checkpoint import load_checkpoint
from nnclf.data.reading import read_table

from conftest import DATA, ROOT, write_config

PENGUINS = DATA / "penguins.csv"
SETTINGS = dict(hidden=[8], epochs=4, batch_size=16, lr=0.01)


def penguins_config(tmp_path, **extra):
    text = f"""
seed: 3
data: {{train: {PENGUINS}, target: species, test_split: 0.0, val_split: 0.0}}
model: {{hidden: [8]}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 4, batch_size: 16}}
"""
    return write_config(tmp_path, text)


def test_import_nnclf_and_cli_do_not_import_sklearn():
    code = (
        "import sys, nnclf, nnclf.cli\n"
        "assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
        "nnclf.Classifier, nnclf.Regressor, nnclf.Autoencoder, nnclf.load, nnclf.train\n"
        "assert 'sklearn' not in sys.modules and 'pandas' not in sys.modules, 'imported by the API names'\n"
        "print(sorted(nnclf.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    for name in ("Classifier", "Regressor", "Autoencoder", "Model", "load", "train", "NnclfError"):
        assert f"'{name}'" in out.stdout


def test_estimator_works_without_sklearn(tmp_path):
    """With scikit-learn made unimportable, fit/predict/get_params still work."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sklearn' or name.startswith('sklearn.'): raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, nnclf\n"
        "rng = np.random.default_rng(0); X = rng.normal(size=(60, 3)); y = (X[:, 0] > 0).astype(int)\n"
        "c = nnclf.Classifier(hidden=(4,), epochs=30, lr=0.05, random_state=0).fit(X, y)\n"
        "assert c.score(X, y) > 0.9, c.score(X, y)\n"
        "assert c.get_params()['epochs'] == 30 and c.set_params(epochs=2).epochs == 2\n"
        "try:\n"
        "    c.predict(X[:, :2])\n"
        "except ValueError as e:\n"
        "    print('ERR', e)\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "ERR X has 2 features, but Classifier is expecting 3 features as input." in out.stdout


def test_api_and_cli_train_the_same_bits(tmp_path, cli):
    """The same config, seed and data through the CLI and through Classifier on a DataFrame:
    identical weights, and nnclf.load(run) gives the estimator's probabilities to the bit."""
    result = cli(f"train {penguins_config(tmp_path)} --name run")
    assert result.exit_code == 0, result.stderr
    params, meta, _ = load_checkpoint(tmp_path / "runs" / "run" / "checkpoints" / "last.npz")

    frame = read_table(PENGUINS)
    X, y = frame.drop(columns="species"), frame["species"]
    clf = nnclf.Classifier(**SETTINGS, random_state=3).fit(X, y)
    assert clf.preprocessor_ is not None  # text columns: nnclf's preprocessing
    assert clf.preprocessor_.state == meta["preprocessor"]
    np.testing.assert_array_equal(clf.net_.params, params)
    assert clf.loss_curve_ == [r["train_loss"] for r in clf.history_] and len(clf.loss_curve_) == 4

    model = nnclf.load(tmp_path / "runs" / "run", checkpoint="last")
    np.testing.assert_array_equal(model.predict_proba(frame), clf.predict_proba(X))
    np.testing.assert_array_equal(model.predict(frame), clf.predict(X))
    assert model.classes_.tolist() == clf.classes_.tolist() == ["Adelie", "Chinstrap", "Gentoo"]
    assert model.schema == meta["preprocessor"] and model.config["seed"] == 3


def test_load_evaluate_is_evaluate_json(tmp_path, cli):
    assert cli(f"train {penguins_config(tmp_path)} --name run").exit_code == 0
    shown = cli(f"evaluate runs/run {PENGUINS} --json")
    assert shown.exit_code == 0, shown.stderr
    expected = json.loads(shown.stdout)
    report = nnclf.load(tmp_path / "runs" / "run").evaluate(read_table(PENGUINS))
    got = json.loads(json.dumps(report, default=str))
    assert got.pop("data") == "DataFrame" and expected.pop("data") == str(PENGUINS)
    assert Path(got.pop("checkpoint")) == tmp_path / expected.pop("checkpoint")
    assert got == expected


def test_save_then_cli_predict(tmp_path, cli):
    """An estimator fitted on an array saves a checkpoint that `nnclf predict` reads: the CSV's
    columns x0..x3, used unscaled, give the estimator's probabilities (to the 6 digits written)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = nnclf.Classifier(hidden=(6,), epochs=20, lr=0.02, random_state=0).fit(X, y)
    clf.save(tmp_path / "model.npz")
    pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).to_csv(tmp_path / "new.csv", index=False)
    out = cli(f"predict model.npz new.csv -o pred.csv")
    assert out.exit_code == 0, out.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["prediction"].tolist() == clf.predict(X).tolist()
    np.testing.assert_allclose(pred[["proba_no", "proba_yes"]].to_numpy(), clf.predict_proba(X), rtol=1e-5, atol=1e-6)
    # and nnclf.load reads it back to the bit
    np.testing.assert_array_equal(nnclf.load(tmp_path / "model.npz").predict_proba(X), clf.predict_proba(X))


def test_train_wraps_the_cli_run(tmp_path, cli, monkeypatch):
    cfg = penguins_config(tmp_path)
    assert cli(f"train {cfg} --name cli --set training.epochs=3").exit_code == 0
    monkeypatch.chdir(tmp_path)
    run = nnclf.train(cfg, name="api", training__epochs=3)
    a = load_checkpoint(tmp_path / "runs" / "cli" / "checkpoints" / "last.npz")[0]
    b = load_checkpoint(run.folder / "checkpoints" / "last.npz")[0]
    np.testing.assert_array_equal(a, b)
    assert len(run.history) == 3 and run.summary["status"] == "finished"
    # a mapping works too, and loads like a run folder
    import yaml

    raw = yaml.safe_load(cfg.read_text())
    again = nnclf.train(raw, name="dict", training__epochs=3)
    np.testing.assert_array_equal(load_checkpoint(again.folder / "checkpoints" / "last.npz")[0], b)
    assert nnclf.load(again).predict(read_table(PENGUINS)).shape == (len(read_table(PENGUINS)),)


def test_train_override_errors_name_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nnclf.NnclfError, match=r"optimizer\.lr: must be a number > 0, got -1"):
        nnclf.train(penguins_config(tmp_path), optimizer__lr=-1.0)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"activation": "rellu"}, r"Classifier: model\.activation: unknown activation 'rellu' \(did you mean 'relu'\?\)"),
        ({"optimizer": {"name": "momentum", "momentun": 0.9}}, r"optimizer\.momentun: unknown key for optimizer 'momentum' \(did you mean 'momentum'\?\)"),
        ({"optimizer": "adamm"}, r"optimizer\.name: unknown optimizer 'adamm' \(did you mean 'adam'\?\)"),
        ({"early_stopping": {"patiense": 3}}, r"training\.early_stopping\.patiense: unknown key \(did you mean 'patience'\?\)"),
        ({"lr": 0.0}, r"optimizer\.lr"),
    ],
)
def test_parameters_are_checked_by_the_config_schema(params, message):
    X, y = np.eye(4), [0, 1, 0, 1]
    with pytest.raises(nnclf.NnclfError, match=message):
        nnclf.Classifier(epochs=1, **params).fit(X, y)


def test_values_beyond_float32_are_refused_not_turned_into_nan():
    # scikit-learn checks X as float64; 1e300 is finite there and became inf in the float32
    # cast: fit "diverged" (lower the lr, it said), predict gave NaN probabilities and label 0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    too_large = "Input X contains a value too large for dtype\\('float32'\\), the estimator's dtype"
    with pytest.raises(ValueError, match=too_large):
        nnclf.Classifier(hidden=(4,), epochs=2, random_state=0).fit(X * 1e300, y)
    fitted = nnclf.Classifier(hidden=(4,), epochs=2, random_state=0).fit(X, y)
    regressor = nnclf.Regressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0])
    autoencoder = nnclf.Autoencoder(hidden=(4, 2, 4), epochs=2, random_state=0).fit(X)
    for method in (fitted.predict, fitted.predict_proba, regressor.predict, autoencoder.transform, autoencoder.score_samples):
        with pytest.raises(ValueError, match=too_large):
            method(X[:2] * 1e300)
    # float64 estimators take them
    assert nnclf.Classifier(hidden=(4,), epochs=2, random_state=0, dtype="float64").fit(X, y).predict(X[:2] * 1e300).shape == (2,)
    # targets whose spread overflows, or beyond float32 unscaled, name the target
    with pytest.raises(nnclf.NnclfError, match=r"^y: target 'target': values too large to scale \(mean or standard deviation overflows\)$"):
        nnclf.Regressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0] * 1e300)
    with pytest.raises(nnclf.NnclfError, match=r"^y: target 'target': value .* is too large for float32 numbers once scaled"):
        nnclf.Regressor(hidden=(4,), epochs=2, random_state=0, target_scaling="none").fit(X, X[:, 0] * 1e300)


def test_init_only_stores_and_clone_works():
    from sklearn.base import clone

    c = nnclf.Classifier(hidden=(3, 2), activation="nonsense")  # no error before fit
    assert c.hidden == (3, 2) and c.activation == "nonsense"
    assert clone(c).get_params() == c.get_params()
    with pytest.raises(ValueError, match="did you mean 'hidden'"):
        c.set_params(hiden=(2,))


def test_sample_weight_is_a_weighted_mean():
    """Full-batch gd: integer weights train exactly like repeated rows (the weighted mean loss
    equals the mean over the repeated data), and weights times a constant change nothing."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=30) > 0).astype(int)
    w = rng.integers(1, 4, size=30)
    params = dict(hidden=(5,), optimizer="gd", lr=0.3, epochs=15, dtype="float64", random_state=0)
    weighted = nnclf.Classifier(**params).fit(X, y, sample_weight=w)
    repeated = nnclf.Classifier(**params).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.net_.params, repeated.net_.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)
    scaled = nnclf.Classifier(**params).fit(X, y, sample_weight=w * 7.5)
    np.testing.assert_allclose(scaled.net_.params, weighted.net_.params, rtol=1e-10, atol=1e-12)
    plain = nnclf.Classifier(**params).fit(X, y)
    assert not np.allclose(plain.net_.params, weighted.net_.params)


def test_partial_fit_continues_the_optimizer():
    """Three partial_fit calls are three epochs of one fit, to the bit (same rows, same RNG,
    Adam's moments carried over)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    whole = nnclf.Classifier(hidden=(4,), epochs=3, random_state=0).fit(X, y)
    parts = nnclf.Classifier(hidden=(4,), epochs=3, random_state=0)
    for _ in range(3):
        parts.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_array_equal(parts.net_.params, whole.net_.params)
    assert parts.n_iter_ == 3 and parts.loss_curve_ == whole.loss_curve_


def test_warm_start_continues():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    whole = nnclf.Classifier(hidden=(4,), epochs=4, random_state=0).fit(X, y)
    warm = nnclf.Classifier(hidden=(4,), epochs=2, random_state=0, warm_start=True).fit(X, y)
    warm.fit(X, y)
    np.testing.assert_array_equal(warm.net_.params, whole.net_.params)
    assert warm.n_iter_ == 4
    cold = nnclf.Classifier(hidden=(4,), epochs=2, random_state=0).fit(X, y).fit(X, y)
    assert cold.n_iter_ == 2


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] > 0).astype(int)
    c = nnclf.Classifier(hidden=(16,), lr=0.05, epochs=200, early_stopping={"patience": 3}, random_state=0).fit(X, y)
    assert c.stopped_early_ and c.n_iter_ < 200
    assert len(c.validation_scores_) == c.n_iter_
    best = int(np.argmin([r["val_loss"] for r in c.history_]))
    assert c.n_iter_ == best + 1 + 3


def test_pickle_quiet_and_blas_restored(capsys):
    from threadpoolctl import threadpool_info

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    c = nnclf.Classifier(hidden=(4,), epochs=3, threads=1, random_state=0).fit(X, y)
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before
    assert capsys.readouterr().out == ""
    again = pickle.loads(pickle.dumps(c))
    np.testing.assert_array_equal(again.predict_proba(X), c.predict_proba(X))
    again.partial_fit(X, y)  # the unpickled trainer still trains
    nnclf.Classifier(hidden=(4,), epochs=2, verbose=True, random_state=0).fit(X, y)
    assert capsys.readouterr().out.count("Iteration") == 2


def test_probabilities_and_decisions_agree():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    for k in (2, 3):
        y = rng.integers(0, k, size=60)
        c = nnclf.Classifier(hidden=(5,), epochs=5, random_state=0).fit(X, y)
        p = c.predict_proba(X)
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
        np.testing.assert_allclose(np.exp(c.predict_log_proba(X)), p, rtol=1e-6)
        d = c.decision_function(X)
        assert d.shape == ((60,) if k == 2 else (60, k))
        expected = c.classes_[(d > 0).astype(int)] if k == 2 else c.classes_[d.argmax(axis=1)]
        np.testing.assert_array_equal(c.predict(X), expected)


def test_pipeline_cross_val_and_grid_search():
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), nnclf.Classifier(hidden=(16,), epochs=40, lr=0.01, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85
    grid = GridSearchCV(pipe, {"classifier__hidden": [(4,), (16,)], "classifier__lr": [0.01, 0.03]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"classifier__hidden", "classifier__lr"}
    assert grid.score(X, y) > 0.85
