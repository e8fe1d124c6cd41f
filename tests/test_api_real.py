"""nnclf.Regressor and nnclf.Autoencoder against the CLI (task: regression / reconstruction):
the same weights and outputs to the bit, checkpoints that round-trip both ways (save ->
`nnclf predict` / `nnclf encode`, a CLI run -> nnclf.load), sample weights against repeated
rows, partial_fit and warm_start against one longer fit, and the config schema's errors."""

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

from conftest import ROOT, write_config


def regression_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """y1 = 3 a - 2 b + 10, y2 = a b - c: learnable, in units far from standard."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    return pd.DataFrame({"a": a, "b": b, "c": c, "y1": 3 * a - 2 * b + 10 + 0.05 * rng.normal(size=n), "y2": a * b - c})


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, float_format="%.6f")
    return path


def numbers(values: np.ndarray) -> list[list[str]]:
    """The CLI's text for numbers (predict_csv's ``%.8g``), row by row."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return [["%.8g" % v for v in row] for row in values.tolist()]


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


REGRESSION_RUN = """
seed: 3
task: regression
data: {{train: {data}, target: {target}, test_split: 0.0, val_split: 0.0}}
model: {{hidden: [8]}}
loss: {{name: {loss}}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 5, batch_size: 16}}
"""

RECONSTRUCTION_RUN = """
seed: 4
task: reconstruction
data: {{train: {data}, test_split: 0.0, val_split: 0.0}}
model: {{hidden: [8, 2, 8], activation: tanh}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 5, batch_size: 16}}
"""


@pytest.mark.parametrize("target, loss", [("y1", "mse"), ("[y1, y2]", "mae")])
def test_regressor_and_cli_train_the_same_bits(tmp_path, cli, target, loss):
    """The same config, seed and data through `nnclf train` and through Regressor on the
    DataFrame (preprocess=True: the CLI scales every column): identical weights and target
    scaling; nnclf.load(run).predict equals the estimator's predict to the bit, and the CLI's
    predict file is its text."""
    frame = regression_frame()
    data = write_csv(frame, tmp_path / "data.csv")
    write_config(tmp_path, REGRESSION_RUN.format(data=data, target=target, loss=loss), "c.yaml")
    result = cli("train c.yaml --name run --quiet")
    assert result.exit_code == 0, result.stderr
    params, meta, _ = load_checkpoint(tmp_path / "runs" / "run" / "checkpoints" / "last.npz")

    frame = read_table(data)  # the CLI's reading of the file
    names = ["y1"] if target == "y1" else ["y1", "y2"]
    X = frame.drop(columns=names)
    y = frame["y1"] if target == "y1" else frame[names]
    reg = nnclf.Regressor(hidden=(8,), loss=loss, lr=0.01, epochs=5, batch_size=16, preprocess=True, random_state=3).fit(X, y)
    np.testing.assert_array_equal(reg.net_.params, params)
    assert reg.targets_.state == meta["targets"] and reg.preprocessor_.state == meta["preprocessor"]
    assert reg.loss_curve_ == [float(r["train_loss"]) for r in reg.history_] and reg.n_iter_ == 5

    model = nnclf.load(tmp_path / "runs" / "run", checkpoint="last")
    assert model.task == "regression" and model.target_names == names and model.classes_ is None
    np.testing.assert_array_equal(model.predict(frame), reg.predict(X))
    assert reg.predict(X).shape == ((len(X),) if target == "y1" else (len(X), 2))

    out = cli(f"predict runs/run {data} --checkpoint last -o pred.csv")
    assert out.exit_code == 0, out.stderr
    header, rows = csv_rows(tmp_path / "pred.csv")
    assert header == (["prediction"] if target == "y1" else ["prediction_y1", "prediction_y2"])
    assert rows == numbers(model.predict(frame))


def test_load_of_a_regression_run_evaluates_as_the_cli(tmp_path, cli):
    data = write_csv(regression_frame(), tmp_path / "data.csv")
    write_config(tmp_path, REGRESSION_RUN.format(data=data, target="[y1, y2]", loss="huber"), "c.yaml")
    assert cli("train c.yaml --name run --quiet").exit_code == 0
    shown = cli(f"evaluate runs/run {data} --json")
    assert shown.exit_code == 0, shown.stderr
    expected = json.loads(shown.stdout)
    report = json.loads(json.dumps(nnclf.load(tmp_path / "runs" / "run").evaluate(read_table(data))))
    assert report.pop("data") == "DataFrame" and expected.pop("data") == str(data)
    assert Path(report.pop("checkpoint")) == tmp_path / expected.pop("checkpoint")
    assert report == expected and report["task"] == "regression"
    with pytest.raises(nnclf.NnclfError, match="predict_proba needs a model trained with task: classification; this one is task: regression"):
        nnclf.load(tmp_path / "runs" / "run").predict_proba(read_table(data))
    with pytest.raises(nnclf.NnclfError, match="encode needs a model trained with task: reconstruction"):
        nnclf.load(tmp_path / "runs" / "run").encode(read_table(data))


def test_autoencoder_and_cli_train_the_same_bits(tmp_path, cli):
    """task: reconstruction through the CLI and Autoencoder(preprocess=True) on the same
    DataFrame: identical weights; transform == nnclf.load(run).encode == `nnclf encode`'s
    numbers, score_samples == load().predict == `nnclf predict`'s reconstruction_error."""
    frame = regression_frame().drop(columns=["y2"])
    data = write_csv(frame, tmp_path / "data.csv")
    write_config(tmp_path, RECONSTRUCTION_RUN.format(data=data), "c.yaml")
    assert cli("train c.yaml --name run --quiet").exit_code == 0
    params, meta, _ = load_checkpoint(tmp_path / "runs" / "run" / "checkpoints" / "last.npz")

    frame = read_table(data)
    ae = nnclf.Autoencoder(hidden=(8, 2, 8), activation="tanh", lr=0.01, epochs=5, batch_size=16, preprocess=True,
                           random_state=4).fit(frame)
    np.testing.assert_array_equal(ae.net_.params, params)
    assert ae.code_layer_ == meta["code_layer"] == 1 and ae.n_components_ == 2

    model = nnclf.load(tmp_path / "runs" / "run", checkpoint="last")
    codes = ae.transform(frame)
    np.testing.assert_array_equal(model.encode(frame), codes)
    np.testing.assert_array_equal(model.predict(frame), ae.score_samples(frame))
    np.testing.assert_array_equal(model.reconstruct(frame), ae.reconstruct(frame))

    assert cli(f"encode runs/run {data} --checkpoint last -o codes.csv").exit_code == 0
    header, rows = csv_rows(tmp_path / "codes.csv")
    assert header == ["code_0", "code_1"] == ae.get_feature_names_out().tolist()
    assert rows == numbers(codes)
    assert cli(f"predict runs/run {data} --checkpoint last -o err.csv").exit_code == 0
    header, rows = csv_rows(tmp_path / "err.csv")
    assert header == ["reconstruction_error"] and rows == numbers(ae.score_samples(frame))


def test_regressor_save_then_cli_predict_and_evaluate(tmp_path, cli):
    """A multi-output Regressor fitted on arrays saves a checkpoint that `nnclf predict` reads:
    columns x0..x2 used unscaled give the estimator's predictions (to the 8 digits written),
    and `nnclf evaluate` scores it against target_0, target_1."""
    frame = regression_frame()
    X, Y = frame[["a", "b", "c"]].to_numpy(), frame[["y1", "y2"]].to_numpy()
    reg = nnclf.Regressor(hidden=(16,), epochs=30, lr=0.01, random_state=0).fit(X, Y)
    reg.save(tmp_path / "model.npz")
    table = pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(target_0=Y[:, 0], target_1=Y[:, 1])
    table.to_csv(tmp_path / "new.csv", index=False, float_format="%.17g")
    out = cli("predict model.npz new.csv -o pred.csv")
    assert out.exit_code == 0, out.stderr
    header, rows = csv_rows(tmp_path / "pred.csv")
    assert header == ["prediction_target_0", "prediction_target_1"]
    assert rows == numbers(reg.predict(X))
    shown = cli("evaluate model.npz new.csv --json")
    assert shown.exit_code == 0, shown.stderr
    report = json.loads(shown.stdout)
    from sklearn.metrics import mean_squared_error, r2_score

    assert report["r2"] == pytest.approx(r2_score(Y, reg.predict(X)), rel=1e-9)
    assert report["rmse"] == pytest.approx(np.mean(np.sqrt(mean_squared_error(Y, reg.predict(X), multioutput="raw_values"))), rel=1e-9)
    loaded = nnclf.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


def test_autoencoder_save_then_cli_encode(tmp_path, cli):
    X = np.random.default_rng(5).normal(size=(90, 4))
    ae = nnclf.Autoencoder(hidden=(6, 3, 6), epochs=10, lr=0.01, loss="huber", delta=0.5, random_state=0).fit(X)
    ae.save(tmp_path / "ae.npz")
    pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).to_csv(tmp_path / "new.csv", index=False, float_format="%.17g")
    out = cli("encode ae.npz new.csv -o codes.csv")
    assert out.exit_code == 0, out.stderr
    header, rows = csv_rows(tmp_path / "codes.csv")
    assert header == ["code_0", "code_1", "code_2"] and rows == numbers(ae.transform(X))
    assert cli("predict ae.npz new.csv -o err.csv").exit_code == 0
    assert csv_rows(tmp_path / "err.csv")[1] == numbers(ae.score_samples(X))
    loaded = nnclf.load(tmp_path / "ae.npz")
    np.testing.assert_array_equal(loaded.encode(X), ae.transform(X))
    assert "task='reconstruction', code_units=3" in repr(loaded)


# -- the estimators' own behaviour --------------------------------------------------------------
def test_target_scaling_is_the_training_targets_mean_and_std():
    frame = regression_frame()
    X, y = frame[["a", "b", "c"]].to_numpy(), frame["y1"].to_numpy()
    reg = nnclf.Regressor(hidden=(4,), epochs=1, random_state=0).fit(X, y)
    assert reg.targets_.center.tolist() == [y.mean()] and reg.targets_.scale.tolist() == [y.std()]
    raw = nnclf.Regressor(hidden=(4,), epochs=1, target_scaling="none", random_state=0).fit(X, y)
    assert raw.targets_.center.tolist() == [0.0] and raw.targets_.scale.tolist() == [1.0]
    # predictions are sigma h + mu of the network's output h
    h = reg.net_.logits(X.astype(np.float32))[:, 0].astype(np.float64)
    np.testing.assert_array_equal(reg.predict(X), h * y.std() + y.mean())
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    weighted = nnclf.Regressor(hidden=(4,), epochs=1, random_state=0).fit(X, y, sample_weight=w)
    mu = np.sum(w * y) / np.sum(w)
    assert weighted.targets_.center[0] == pytest.approx(mu, rel=1e-12)
    assert weighted.targets_.scale[0] == pytest.approx(np.sqrt(np.sum(w * (y - mu) ** 2) / np.sum(w)), rel=1e-12)


def test_a_regressor_learns_and_scores_r2():
    frame = regression_frame(n=300)
    X, Y = frame[["a", "b", "c"]].to_numpy(), frame[["y1", "y2"]].to_numpy()
    reg = nnclf.Regressor(hidden=(32,), epochs=150, lr=0.01, random_state=0).fit(X, Y)
    from sklearn.metrics import r2_score

    assert reg.score(X, Y) == pytest.approx(r2_score(Y, reg.predict(X)), rel=1e-12)
    assert reg.score(X, Y) > 0.9
    w = np.linspace(0.1, 2.0, len(X))
    assert reg.score(X, Y, w) == pytest.approx(r2_score(Y, reg.predict(X), sample_weight=w), rel=1e-12)
    from nnclf.estimators import _r2  # the fallback without scikit-learn, against it

    assert _r2(Y, reg.predict(X), w) == pytest.approx(r2_score(Y, reg.predict(X), sample_weight=w), rel=1e-12)
    constant = np.full(10, 3.0)
    assert _r2(constant, constant) == r2_score(constant, constant) == 1.0
    assert _r2(constant, constant + 1) == r2_score(constant, constant + 1) == 0.0


@pytest.mark.parametrize("make", [
    lambda: nnclf.Regressor(hidden=(5,), optimizer="gd", lr=0.1, epochs=15, dtype="float64", loss="huber", random_state=0),
    lambda: nnclf.Autoencoder(hidden=(5, 2, 5), optimizer="gd", lr=0.1, epochs=15, dtype="float64", loss="mae", random_state=0),
])
def test_sample_weight_two_is_the_row_twice(make):
    """Full-batch gd: integer weights equal repeating the rows (the target scaling is weighted
    too), to float64 rounding; scaling every weight changes nothing."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40) * 5 + 2
    w = rng.integers(0, 3, size=40).astype(float)
    rows = np.repeat(np.arange(40), w.astype(int))
    weighted = make().fit(X, y, sample_weight=w)
    repeated = make().fit(X[rows], y[rows])
    np.testing.assert_allclose(weighted.net_.params, repeated.net_.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)
    scaled = make().fit(X, y, sample_weight=7.5 * w)
    np.testing.assert_allclose(scaled.net_.params, weighted.net_.params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [nnclf.Regressor, nnclf.Autoencoder])
def test_partial_fit_and_warm_start_continue_one_training(cls):
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    settings = dict(hidden=(6, 2, 6), epochs=3, batch_size=8, lr=0.01, random_state=1)
    once = cls(**settings).fit(X, Y)
    inc = cls(**settings)
    for _ in range(3):
        inc.partial_fit(X, Y)
    np.testing.assert_array_equal(inc.net_.params, once.net_.params)
    assert inc.n_iter_ == 3 and inc.loss_curve_ == once.loss_curve_
    long = cls(**{**settings, "epochs": 6}).fit(X, Y)
    warm = cls(**settings, warm_start=True).fit(X, Y).fit(X, Y)
    np.testing.assert_array_equal(warm.net_.params, long.net_.params)
    assert warm.n_iter_ == 6


def test_autoencoder_codes_decode_to_its_reconstruction():
    X = np.random.default_rng(6).normal(size=(30, 5))
    ae = nnclf.Autoencoder(hidden=(8, 3, 6), activation="tanh", epochs=5, random_state=0).fit(X)
    codes = ae.transform(X)
    assert codes.shape == (30, 3) and codes.dtype == np.float32
    np.testing.assert_array_equal(ae.inverse_transform(codes), ae.reconstruct(X))
    np.testing.assert_array_equal(ae.predict(X), ae.reconstruct(X))
    # by hand: tanh layers, identity output
    W, b = ae.net_.weights, ae.net_.biases
    x = X.astype(np.float64)
    h1 = np.tanh(x @ W[0] + b[0])
    code = np.tanh(h1 @ W[1] + b[1])
    x_hat = np.tanh(code @ W[2] + b[2]) @ W[3] + b[3]
    np.testing.assert_allclose(codes, code, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ae.score_samples(X), np.mean((x_hat - x) ** 2, axis=1), rtol=1e-5)
    assert ae.score(X) == pytest.approx(-np.mean((x_hat - x) ** 2), rel=1e-5)
    np.testing.assert_array_equal(ae.fit_transform(X), ae.transform(X))


def test_validation_scores_are_r2_and_minus_mse():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(100, 3))
    y = X @ [1.0, 2.0, -1.0]
    reg = nnclf.Regressor(hidden=(8,), epochs=4, validation_fraction=0.2, random_state=0).fit(X, y)
    assert reg.validation_scores_ == [r["val_r2"] for r in reg.history_] and len(reg.validation_scores_) == 4
    ae = nnclf.Autoencoder(hidden=(4, 2, 4), epochs=3, early_stopping=True, random_state=0).fit(X)
    assert ae.validation_scores_ == [-r["val_mse"] for r in ae.history_]
    assert nnclf.Regressor(epochs=2).fit(X, y).validation_scores_ is None


def test_one_row_and_many_rows_agree_to_float32_rounding():
    """What check_methods_subset_invariance's expected failure is about: predicting a row
    alone or with others changes only the last bits of float32 sums, never more."""
    rng = np.random.default_rng(8)
    X, y = rng.uniform(0, 3, size=(20, 3)), rng.normal(size=20)
    for est in (nnclf.Regressor(epochs=20, random_state=1).fit(X, y), nnclf.Autoencoder(epochs=20, random_state=1).fit(X)):
        full = est.predict(X)
        alone = np.concatenate([est.predict(X[i : i + 1]) for i in range(20)])
        np.testing.assert_allclose(alone, full, rtol=2e-6, atol=2e-6)


def test_rows_in_another_order_agree_to_float32_rounding_and_exactly_in_float64():
    """What check_methods_sample_order_invariance's expected failure (float32) is about: rows
    predicted in another order sit at other positions of the matrix products, whose float32
    sums then differ in the last bits, never more; in float64 the permuted predictions agree
    to float64 rounding."""
    rng = np.random.default_rng(8)
    X, y = rng.uniform(0, 3, size=(30, 3)), rng.normal(size=30)
    order = rng.permutation(30)
    for dtype, tol in (("float32", 4e-6), ("float64", 1e-13)):
        for est in (nnclf.Regressor(epochs=20, dtype=dtype, random_state=1).fit(X, y),
                    nnclf.Autoencoder(epochs=20, dtype=dtype, random_state=1).fit(X),
                    nnclf.Classifier(epochs=20, dtype=dtype, random_state=1).fit(X, (y > 0).astype(int))):
            methods = ("predict", "predict_proba") if isinstance(est, nnclf.Classifier) else ("predict",)
            for method in methods:
                np.testing.assert_allclose(getattr(est, method)(X[order]), getattr(est, method)(X)[order], rtol=tol, atol=tol)


def test_batch_size_auto_is_full_batch_for_the_full_batch_methods_and_64_otherwise():
    """batch_size="auto" (the default): Classifier(optimizer="lbfgs") trains as batch_size=None
    does, bit for bit; a first-order optimizer as batch_size=64; an explicit mini-batch size
    with a full-batch method is still the schema's error."""
    from sklearn.base import clone

    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    for make, target in ((nnclf.Classifier, y), (nnclf.Regressor, X[:, 2]), (nnclf.Autoencoder, None)):
        assert make().get_params()["batch_size"] == "auto"
        for optimizer, same in (("lbfgs", None), ({"name": "cg"}, None), ("newton_cg", None), ("adam", 64)):
            a = make(hidden=(5,), optimizer=optimizer, epochs=3, random_state=0)
            b = make(hidden=(5,), optimizer=optimizer, batch_size=same, epochs=3, random_state=0)
            fit = (lambda e: e.fit(X)) if target is None else (lambda e: e.fit(X, target))
            np.testing.assert_array_equal(fit(a).predict(X), fit(b).predict(X))
            assert clone(a).get_params()["batch_size"] == "auto"
    with pytest.raises(nnclf.NnclfError, match="batch_size"):
        nnclf.Classifier(optimizer="lbfgs", batch_size=64, epochs=1).fit(X, y)


def test_pickle_and_clone_keep_a_fitted_model():
    from sklearn.base import clone

    X = np.random.default_rng(9).normal(size=(40, 3))
    for est in (nnclf.Regressor(hidden=(4,), epochs=2, early_stopping=True, random_state=0).fit(X, X[:, 0]),
                nnclf.Autoencoder(hidden=(4, 2, 4), optimizer="newton_cg", batch_size=None, epochs=2, random_state=0).fit(X)):
        again = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(again.predict(X), est.predict(X))
        assert clone(est).get_params() == est.get_params()


@pytest.mark.parametrize("make, message", [
    (lambda: nnclf.Regressor(loss="maee"), "Regressor: loss.name: unknown loss 'maee' (did you mean 'mae'?)"),
    (lambda: nnclf.Regressor(loss="cross_entropy"), "Regressor: loss.name: 'cross_entropy' is a classification loss; with task: regression use one of mse, mae, huber"),
    (lambda: nnclf.Regressor(delta=0.5), "Regressor: loss.delta: only the huber loss takes delta (loss.name is 'mse')"),
    (lambda: nnclf.Regressor(target_scaling="minmax"), "Regressor: data.target_scaling: "),
    (lambda: nnclf.Autoencoder(code_layer=3), "Autoencoder: model.code_layer: 3 is not an index of model.hidden [32, 8, 32] (0 to 2)"),
    (lambda: nnclf.Autoencoder(hidden=()), "Autoencoder: model.hidden: reconstruction needs at least one hidden layer"),
    (lambda: nnclf.Autoencoder(optimizer={"name": "momentum", "momentun": 0.9}), "Autoencoder: optimizer.momentun: unknown key for optimizer 'momentum' (did you mean 'momentum'?)"),
])
def test_parameters_are_checked_by_the_config_schema(make, message):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(nnclf.NnclfError) as e:
        make().fit(X, X[:, 0])
    assert str(e.value).startswith(message), str(e.value)


def test_regressor_and_autoencoder_work_without_sklearn(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sklearn' or name.startswith('sklearn.'): raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, nnclf\n"
        "rng = np.random.default_rng(0); X = rng.normal(size=(80, 3)); Y = np.c_[X @ [1., 2., 3.], X[:, 0]]\n"
        "r = nnclf.Regressor(hidden=(16,), epochs=60, lr=0.01, random_state=0).fit(X, Y)\n"
        "assert r.score(X, Y) > 0.9, r.score(X, Y)\n"
        "a = nnclf.Autoencoder(hidden=(8, 2, 8), epochs=5, random_state=0).fit(X)\n"
        "assert a.transform(X).shape == (80, 2)\n"
        "try:\n"
        "    r.predict(X[:, :2])\n"
        "except ValueError as e:\n"
        "    print('ERR', e)\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "ERR X has 2 features, but Regressor is expecting 3 features as input." in out.stdout


def test_a_pipeline_and_a_grid_search_over_regressors():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = regression_frame(n=150)
    X, y = frame[["a", "b", "c"]].to_numpy() * 50, frame["y1"].to_numpy()
    search = GridSearchCV(make_pipeline(StandardScaler(), nnclf.Regressor(epochs=30, random_state=0)),
                          {"regressor__hidden": [(8,), (16,)], "regressor__lr": [0.003, 0.01]}, cv=3, n_jobs=2)
    search.fit(X, y)
    assert search.best_score_ > 0.8 and len(search.cv_results_["params"]) == 4
    ae = GridSearchCV(nnclf.Autoencoder(epochs=5, random_state=0), {"hidden": [(4, 1, 4), (4, 2, 4)]}, cv=3).fit(X / 50)
    assert ae.best_params_["hidden"] in [(4, 1, 4), (4, 2, 4)]


def test_dataframes_with_text_columns_go_through_nnclf_preprocessing(tmp_path, cli):
    """Penguins (text columns, missing cells): Regressor and Autoencoder preprocess the
    DataFrame themselves (preprocess="auto"), keep the column names, and their saved
    checkpoints predict on the raw CSV through the CLI with the same numbers."""
    from conftest import DATA

    frame = read_table(DATA / "penguins.csv").dropna(subset=["body_mass_g"])
    X, y = frame.drop(columns=["body_mass_g"]), frame["body_mass_g"]
    reg = nnclf.Regressor(hidden=(16,), epochs=20, lr=0.01, random_state=0).fit(X, y)
    assert reg.preprocessor_ is not None and reg.feature_names_in_.tolist() == list(X.columns)
    assert reg.targets_.names == ["body_mass_g"] and reg.score(X, y) > 0.5
    reg.save(tmp_path / "reg.npz")
    frame.to_csv(tmp_path / "p.csv", index=False)
    assert cli("predict reg.npz p.csv -o pred.csv").exit_code == 0
    header, rows = csv_rows(tmp_path / "pred.csv")
    assert header == ["prediction"] and rows == numbers(reg.predict(X))
    ae = nnclf.Autoencoder(hidden=(8, 3, 8), epochs=5, random_state=0).fit(X)
    assert ae.preprocessor_ is not None and ae.transform(X).shape == (len(X), 3)
    ae.save(tmp_path / "ae.npz")
    X.to_csv(tmp_path / "x.csv", index=False)
    assert cli("encode ae.npz x.csv -o codes.csv").exit_code == 0
    assert csv_rows(tmp_path / "codes.csv")[1] == numbers(ae.transform(X))
