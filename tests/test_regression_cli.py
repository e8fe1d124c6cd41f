"""task: regression and task: reconstruction through the real CLI: train, evaluate, predict,
encode, resume, runs; multi-output; every error with its exact message."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, write_config


def regression_csv(path: Path, n: int = 120, seed: int = 0, targets: int = 1) -> Path:
    """y1 = 3 a - 2 b + 10 (+ y2 = a b - c): learnable, in units far from standard."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    cols = {"a": a, "b": b, "c": c, "y1": 3 * a - 2 * b + 10 + 0.05 * rng.normal(size=n)}
    if targets == 2:
        cols["y2"] = a * b - c
    lines = [",".join(cols)] + [",".join(f"{v[i]:.6f}" for v in cols.values()) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


REGRESSION = """\
task: regression
data:
  train: data.csv
  target: {target}
model:
  hidden: [16]
optimizer:
  lr: 0.01
training:
  epochs: {epochs}
  batch_size: 16
"""


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def trained(cli, tmp_path, text: str, name: str = "r") -> Path:
    write_config(tmp_path, text, "c.yaml")
    r = cli(f"train c.yaml --name {name} --quiet")
    assert r.exit_code == 0, r.stderr
    return tmp_path / "runs" / name


def test_regression_train_evaluate_predict(cli, tmp_path):
    regression_csv(tmp_path / "data.csv")
    run = trained(cli, tmp_path, REGRESSION.format(target="y1", epochs=60))
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,val_loss,val_rmse,val_mae,val_r2,evaluations,products,seconds"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["targets"] == ["y1"]
    assert summary["headline"] == {"metric": "test_rmse", "value": summary["test"]["rmse"]}
    # y1 has std ~3.6: a learned model is far better than predicting the mean
    assert summary["test"]["r2"] > 0.9

    r = cli(f"evaluate {run} --json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == summary["rows"]["test"] == 24
    assert report["rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-9)
    assert set(report["per_target"]) == {"y1"} and set(report["per_target"]["y1"]) == {"rmse", "mae", "r2"}

    # predictions are in the target's units: recompute the test metrics from predict's output
    r = cli(f"predict {run} data.csv")
    assert r.exit_code == 0, r.stderr
    rows = read_csv(r.stdout)
    assert list(rows[0]) == ["prediction"] and len(rows) == 120
    with np.load(run / "splits.npz") as s:
        test_rows = s["test"]
    truth = np.loadtxt(tmp_path / "data.csv", delimiter=",", skiprows=1)[:, 3]
    pred = np.array([float(row["prediction"]) for row in rows])
    rmse = np.sqrt(np.mean((pred[test_rows] - truth[test_rows]) ** 2))
    assert rmse == pytest.approx(report["rmse"], rel=1e-5)
    r2 = 1 - np.sum((pred[test_rows] - truth[test_rows]) ** 2) / np.sum((truth[test_rows] - truth[test_rows].mean()) ** 2)
    assert r2 == pytest.approx(report["r2"], rel=1e-5)

    r = cli(f"evaluate {run}")  # the terminal version shows the residual quantiles
    assert r.exit_code == 0 and "residuals" in r.stdout and "95%" in r.stdout

    r = cli("runs --json")
    (row,) = json.loads(r.stdout)
    assert row["task"] == "regression" and row["headline"]["metric"] == "test_rmse"


def test_multi_output_regression(cli, tmp_path):
    regression_csv(tmp_path / "data.csv", targets=2)
    run = trained(cli, tmp_path, REGRESSION.format(target="[y1, y2]", epochs=40))
    report = json.loads(cli(f"evaluate {run} --json").stdout)
    per = report["per_target"]
    assert set(per) == {"y1", "y2"}
    for key in ("rmse", "mae", "r2"):
        assert report[key] == pytest.approx((per["y1"][key] + per["y2"][key]) / 2)
    r = cli(f"predict {run} data.csv -o out.csv")
    assert r.exit_code == 0, r.stderr
    rows = read_csv((tmp_path / "out.csv").read_text())
    assert list(rows[0]) == ["prediction_y1", "prediction_y2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["targets"] == ["y1", "y2"]
    # neither target is an input
    assert [c["name"] for c in summary["columns"]] == ["a", "b", "c"]


def test_target_scaling_none_gives_the_same_units(cli, tmp_path):
    regression_csv(tmp_path / "data.csv")
    text = REGRESSION.format(target="y1", epochs=60).replace("  target: y1\n", "  target: y1\n  target_scaling: none\n")
    run = trained(cli, tmp_path, text, "unscaled")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["r2"] > 0.9  # predictions still in units: the metric is meaningful


def test_regression_resume_equals_uninterrupted(cli, tmp_path):
    regression_csv(tmp_path / "data.csv")
    full = trained(cli, tmp_path, REGRESSION.format(target="y1", epochs=12), "full")
    part = trained(cli, tmp_path, REGRESSION.format(target="y1", epochs=5), "part")
    r = cli(f"train --resume {part} --set training.epochs=12 --quiet")
    assert r.exit_code == 0, r.stderr
    assert (part / "metrics.csv").read_text().splitlines()[1:] != []
    a = [row["val_rmse"] for row in csv.DictReader((full / "metrics.csv").open())]
    b = [row["val_rmse"] for row in csv.DictReader((part / "metrics.csv").open())]
    assert a == b
    with np.load(full / "checkpoints" / "last.npz") as fa, np.load(part / "checkpoints" / "last.npz") as fb:
        assert np.array_equal(fa["params"], fb["params"])


def test_early_stopping_on_r2_maximises(cli, tmp_path):
    regression_csv(tmp_path / "data.csv")
    text = REGRESSION.format(target="y1", epochs=200) + "  early_stopping:\n    monitor: val_r2\n    patience: 3\n"
    run = trained(cli, tmp_path, text)
    summary = json.loads((run / "summary.json").read_text())
    r2 = [float(row["val_r2"]) for row in csv.DictReader((run / "metrics.csv").open())]
    assert summary["monitor"] == "val_r2"
    assert summary["best_value"] == max(r2)  # mode auto is max for r2
    assert summary["best_epoch"] == int(np.argmax(r2)) + 1


def test_missing_targets_dropped_with_a_count(cli, tmp_path):
    path = regression_csv(tmp_path / "data.csv")
    lines = path.read_text().splitlines()
    for i in (3, 7, 9):
        lines[i] = ",".join(lines[i].split(",")[:3]) + ","
    path.write_text("\n".join(lines) + "\n")
    write_config(tmp_path, REGRESSION.format(target="y1", epochs=2), "c.yaml")
    r = cli("train c.yaml --quiet")
    assert r.exit_code == 0, r.stderr
    assert f"warning: {path}: 3 row(s) with a missing 'y1' value dropped\n" in r.stderr


def test_non_numeric_target_names_the_line(cli, tmp_path):
    path = regression_csv(tmp_path / "data.csv")
    lines = path.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:3]) + ",high"
    path.write_text("\n".join(lines) + "\n")
    write_config(tmp_path, REGRESSION.format(target="y1", epochs=2), "c.yaml")
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert r.stderr == f"error: {path}, line 6: target 'y1': non-numeric value 'high'; task: regression needs numbers\n"


def test_targets_far_from_unit_scale_are_scaled_or_refused(cli, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    # 1e300s: the variance overflows; was NaN at epoch 1 and "training diverged ... lower optimizer.lr"
    lines = ["a,y1"] + [f"{a[i]:.6f},{(3 + a[i]) * 1e300:.6e}" for i in range(60)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    write_config(tmp_path, REGRESSION.format(target="y1", epochs=2), "c.yaml")
    r = cli("train c.yaml --name r --quiet")
    assert (r.exit_code, r.stderr) == (1, f"error: {(tmp_path / 'data.csv').resolve()}: target 'y1': values too large to scale (mean or standard deviation overflows)\n")
    assert not (tmp_path / "runs").exists()
    # 1e-200s: the variance underflows to 0; the target was taken for a constant (scale 1), so the
    # scaled targets were ~1e-200 and float32 made them 0: a model of nothing
    lines = ["a,y1"] + [f"{a[i]:.6f},{(3 + a[i]) * 1e-200:.6e}" for i in range(60)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    run = trained(cli, tmp_path, REGRESSION.format(target="y1", epochs=2))
    with np.load(run / "checkpoints" / "best.npz", allow_pickle=False) as ckpt:
        scale = json.loads(str(ckpt["meta"]))["targets"]["scale"][0]
    assert 0.5e-200 < scale < 2e-200


def test_a_target_too_large_to_scale_names_the_target_and_line(cli, tmp_path):
    # finite targets near 1e300: their standard deviation overflowed to inf and writing the run
    # ended in a JSON traceback; with target_scaling none the float32 cast gave inf targets
    path = regression_csv(tmp_path / "data.csv")
    lines = path.read_text().splitlines()
    lines[1:] = [",".join(line.split(",")[:3] + [f"{float(line.split(',')[3]) * 1e299!r}"]) for line in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    write_config(tmp_path, REGRESSION.format(target="y1", epochs=2), "c.yaml")
    r = cli("train c.yaml --name a")
    assert r.exit_code == 1
    assert r.stderr == f"error: {path}: target 'y1': values too large to scale (mean or standard deviation overflows)\n"
    r = cli("train c.yaml --name b --set data.target_scaling=none")
    assert r.exit_code == 1
    first = float(lines[1].split(",")[3])
    assert r.stderr == (f"error: {path}, line 2: target 'y1': value {first:.6g} is too large for float32 numbers "
                        "once scaled with the training statistics\n")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_classification_refuses_a_fractional_target(cli, tmp_path):
    path = regression_csv(tmp_path / "data.csv")
    write_config(tmp_path, "data:\n  train: data.csv\n  target: y1\n", "c.yaml")
    r = cli("train c.yaml")
    assert r.exit_code == 1
    first = path.read_text().splitlines()[1].split(",")[3]
    assert r.stderr == (
        f"error: {path}, line 2: target 'y1' has the non-integer value {float(first)!r}; "
        "a class label cannot be a fraction: to predict a number set task: regression\n"
    )


def test_classification_warns_on_many_integer_values(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = rng.integers(0, 120, size=200)
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{a:.4f},{b}\n" for a, b in zip(x, y)))
    write_config(tmp_path, "data:\n  train: data.csv\n  target: y\n  test_split: 0\n  val_split: 0\ntraining:\n  epochs: 1\n", "c.yaml")
    r = cli("train c.yaml --quiet")
    distinct = len(set(y.tolist()))
    assert (
        f"warning: {tmp_path / 'data.csv'}: target 'y' has {distinct} distinct integer values in 200 rows, many for classes; "
        "if it is a quantity, set task: regression\n"
    ) in r.stderr


@pytest.mark.parametrize(
    "body, message",
    [
        ("data:\n  train: data.csv\n  target: [y1, y2]\n",
         "c.yaml, line 3: data.target: classification takes one target column, got a list; for several real-valued targets use task: regression"),
        ("task: regression\ndata:\n  train: data.csv\n",
         "c.yaml, line 2: data.target: required key is missing"),
        ("task: regression\ndata:\n  train: data.csv\n  target: y1\nloss:\n  name: cross_entropy\n",
         "c.yaml, line 6: loss.name: 'cross_entropy' is a classification loss; with task: regression use one of mse, mae, huber"),
        ("data:\n  train: data.csv\n  target: y1\nloss:\n  name: huber\n",
         "c.yaml, line 5: loss.name: 'huber' is a loss for task: regression or reconstruction; "
         "with task: classification use one of cross_entropy, ce, bce, nll, kl_div, kl, mse"),
        ("task: regression\ndata:\n  train: data.csv\n  target: y1\nloss:\n  delta: 2\n",
         "c.yaml, line 6: loss.delta: only the huber loss takes delta (loss.name is 'mse')"),
        ("task: regression\ndata:\n  train: data.csv\n  target: y1\nloss:\n  label_smoothing: 0.1\n",
         "c.yaml, line 6: loss.label_smoothing: applies to task: classification only, not regression"),
        ("task: reconstruction\ndata:\n  train: data.csv\nmodel:\n  hidden: [8, 2, 8]\n  code_layer: 3\n",
         "c.yaml, line 6: model.code_layer: 3 is not an index of model.hidden [8, 2, 8] (0 to 2)"),
        ("task: reconstruction\ndata:\n  train: data.csv\nmodel:\n  hidden: []\n",
         "c.yaml, line 5: model.hidden: reconstruction needs at least one hidden layer (the code), e.g. [32, 8, 32]"),
        ("task: regression\ndata:\n  train: data.csv\n  target: y1\nmodel:\n  code_layer: 0\n",
         "c.yaml, line 6: model.code_layer: applies to task: reconstruction only, not regression"),
        ("task: regression\ndata:\n  train: data.csv\n  target: y1\nloss:\n  name: mae\noptimizer:\n  name: newton_cg\n",
         "c.yaml, line 8: optimizer.name: newton_cg needs curvature, and absolute error (loss mae) has none (its second "
         "derivative is 0 almost everywhere); use loss mse or huber, or lbfgs or cg"),
        ("task: clustering\ndata:\n  train: data.csv\n  target: y1\n",
         "c.yaml, line 1: task: must be one of classification, regression, reconstruction, got 'clustering'"),
    ],
    ids=["list-for-classification", "no-target", "ce-for-regression", "huber-for-classification", "delta-without-huber",
         "smoothing", "code-layer-range", "no-hidden", "code-layer-regression", "newton-cg", "unknown-task"],
)
def test_config_errors(cli, tmp_path, body, message):
    regression_csv(tmp_path / "data.csv", targets=2)
    write_config(tmp_path, body, "c.yaml")
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert r.stderr == f"error: {message}\n"


# -- reconstruction --------------------------------------------------------------------------
AUTOENCODER = """\
task: reconstruction
data:
  train: {train}
  target: digit
model:
  hidden: [32, 8, 32]
  activation: tanh
optimizer:
  lr: 0.003
training:
  epochs: {epochs}
  batch_size: 32
"""


def test_reconstruction_train_evaluate_predict_encode(cli, tmp_path):
    run = trained(cli, tmp_path, AUTOENCODER.format(train=DATA / "digits.csv", epochs=3), "ae")
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,val_loss,val_mse,evaluations,products,seconds"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "reconstruction" and summary["headline"]["metric"] == "test_mse"
    assert "digit" not in [c["name"] for c in summary["columns"]]  # the target is left out

    report = json.loads(cli(f"evaluate {run} --json").stdout)
    assert report["n"] == summary["rows"]["test"] == 359
    assert report["code_units"] == 8
    assert set(report["per_feature"]) == {f"pixel_{i}" for i in range(64)}
    # mse is the mean over the 64 columns; per_feature holds each column's mean over rows
    assert report["mse"] == pytest.approx(sum(report["per_feature"].values()) / 64)
    assert report["mse"] == pytest.approx(summary["test"]["mse"]) and report["pca_mse"] == pytest.approx(summary["test"]["pca_mse"])

    r = cli(f"encode {run} {DATA / 'digits.csv'} -o codes.csv")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == f"wrote 1797 codes to codes.csv\n"
    codes = read_csv((tmp_path / "codes.csv").read_text())
    assert list(codes[0]) == [f"code_{j}" for j in range(8)] and len(codes) == 1797
    values = np.array([[float(v) for v in row.values()] for row in codes])
    assert np.all(np.abs(values) <= 1)  # tanh units

    r = cli(f"predict {run} {DATA / 'digits.csv'}")
    rows = read_csv(r.stdout)
    assert list(rows[0]) == ["reconstruction_error"]
    errors = np.array([float(row["reconstruction_error"]) for row in rows])
    with np.load(run / "splits.npz") as s:
        test_rows = s["test"]
    assert errors[test_rows].mean() == pytest.approx(report["mse"], rel=1e-5)

    r = cli(f"encode {run} {DATA / 'digits.csv'} -o codes.csv")
    assert r.exit_code == 1 and r.stderr == "error: codes.csv: already exists; pass --overwrite to replace it (nothing was written)\n"


def test_encode_code_layer_chosen(cli, tmp_path):
    text = AUTOENCODER.format(train=DATA / "digits.csv", epochs=1).replace("  activation: tanh\n", "  activation: tanh\n  code_layer: 2\n")
    run = trained(cli, tmp_path, text, "ae2")
    r = cli(f"encode {run} {DATA / 'digits.csv'}")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == ",".join(f"code_{j}" for j in range(32))


def test_encode_refuses_a_classifier(cli, tmp_path):
    write_config(tmp_path, f"data:\n  train: {DATA / 'iris.csv'}\n  target: species\ntraining:\n  epochs: 1\n", "c.yaml")
    assert cli("train c.yaml --name clf --quiet").exit_code == 0
    r = cli(f"encode runs/clf {DATA / 'iris.csv'}")
    assert r.exit_code == 1
    assert r.stderr == (
        f"error: runs/clf/checkpoints/best.npz: encode needs a reconstruction model (task: reconstruction); "
        "this one is task: classification\n"
    )


@pytest.mark.parametrize("task", ["regression", "reconstruction"])
def test_calibrate_refuses_a_model_without_class_probabilities(cli, tmp_path, task):
    regression_csv(tmp_path / "data.csv")
    text = REGRESSION.format(target="y1", epochs=2).replace("regression", task)
    run = trained(cli, tmp_path, text.replace("[16]", "[4, 2, 4]") if task == "reconstruction" else text)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    for args in ("", " data.csv"):
        r = cli(f"calibrate runs/r{args}")
        assert (r.exit_code, r.stderr) == (
            1, f"error: runs/r/checkpoints/best.npz: calibrate needs a classification model (temperature scaling "
            f"rescales class probabilities); this one is task: {task}\n")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_reconstruction_resume_equals_uninterrupted(cli, tmp_path):
    full = trained(cli, tmp_path, AUTOENCODER.format(train=DATA / "digits.csv", epochs=4), "full")
    part = trained(cli, tmp_path, AUTOENCODER.format(train=DATA / "digits.csv", epochs=2), "part")
    r = cli(f"train --resume {part} --set training.epochs=4 --quiet")
    assert r.exit_code == 0, r.stderr
    assert (full / "metrics.csv").read_text().splitlines()[0] == (part / "metrics.csv").read_text().splitlines()[0]
    a = [row["val_mse"] for row in csv.DictReader((full / "metrics.csv").open())]
    b = [row["val_mse"] for row in csv.DictReader((part / "metrics.csv").open())]
    assert a == b
    ra, rb = json.loads(cli(f"evaluate {full} --json").stdout), json.loads(cli(f"evaluate {part} --json").stdout)
    assert ra["mse"] == rb["mse"] and ra["pca_mse"] == rb["pca_mse"]


def test_gradcheck_covers_the_new_tasks(cli, tmp_path):
    regression_csv(tmp_path / "data.csv", targets=2)
    for name, text in (
        ("mse", REGRESSION.format(target="[y1, y2]", epochs=1)),
        ("huber", REGRESSION.format(target="[y1, y2]", epochs=1) + "loss:\n  name: huber\n  delta: 0.5\n  weight_decay: 0.01\n"),
        ("ae", "task: reconstruction\ndata:\n  train: data.csv\nmodel:\n  hidden: [4, 2, 4]\n  activation: tanh\n"),
    ):
        write_config(tmp_path, text, f"{name}.yaml")
        r = cli(f"gradcheck {name}.yaml --samples 8")
        assert r.exit_code == 0, (name, r.stdout, r.stderr)
        assert "FAIL" not in r.stdout and "W1" in r.stdout


def test_old_checkpoint_without_task_loads_as_classification(cli, tmp_path):
    write_config(tmp_path, f"data:\n  train: {DATA / 'iris.csv'}\n  target: species\ntraining:\n  epochs: 2\n", "c.yaml")
    assert cli("train c.yaml --name old --quiet").exit_code == 0
    path = tmp_path / "runs" / "old" / "checkpoints" / "best.npz"
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["task"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    r = cli(f"evaluate {path} {DATA / 'iris.csv'} --json")
    assert r.exit_code == 0, r.stderr
    assert "accuracy" in json.loads(r.stdout)


def test_full_batch_lbfgs_fits_a_regression(cli, tmp_path):
    """lbfgs runs on the full-data Objective, which takes (n, m) real targets."""
    regression_csv(tmp_path / "data.csv")
    text = REGRESSION.format(target="y1", epochs=30).replace("  batch_size: 16\n", "").replace("  lr: 0.01\n", "  name: lbfgs\n  lr: 1.0\n")
    run = trained(cli, tmp_path, text, "lbfgs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["r2"] > 0.95


@pytest.mark.parametrize("task", ["regression", "reconstruction"])
def test_report_draws_what_fits_the_task(cli, tmp_path, task):
    import re

    if task == "regression":
        regression_csv(tmp_path / "data.csv", targets=2)
        run = trained(cli, tmp_path, REGRESSION.format(target="[y1, y2]", epochs=5), "rep")
        sections = ["Predictions", "Per target"]
        images = 3 + 2 * 2  # loss, error, lr; predicted-vs-true and residuals per target
    else:
        run = trained(cli, tmp_path, AUTOENCODER.format(train=DATA / "digits.csv", epochs=2), "rep")
        sections = ["Reconstruction error per column", "Largest errors"]
        images = 3 + 1
    r = cli(f"report {run}")
    assert r.exit_code == 0, r.stderr
    page = (run / "report.html").read_text()
    for title in sections:
        assert f">{title}</h" in page
    assert "Confusion matrix" not in page and "accuracy" not in page.split("<h2>Epochs</h2>")[0].lower()
    assert len(re.findall("data:image/png;base64,", page)) == images


def test_a_huge_non_numeric_target_cell_is_quoted_short(cli, tmp_path):
    path = regression_csv(tmp_path / "data.csv")
    lines = path.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:3]) + "," + "x" * 100_000
    path.write_text("\n".join(lines) + "\n")
    write_config(tmp_path, REGRESSION.format(target="y1", epochs=2), "c.yaml")
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert f"{path}, line 6: target 'y1': non-numeric value 'xxx" in r.stderr
    assert len(r.stderr) < 300, len(r.stderr)
