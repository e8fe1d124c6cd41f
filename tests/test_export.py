"""`nnclf export`: the ONNX graph, run in onnxruntime on raw CSV columns, gives what
`nnclf predict` gives (within 1e-5), for every shipped data set, every activation and loss,
missing values, unseen categories, folded categories, indicators and temperature."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import CONFIGS, DATA, ROOT, run_cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _feeds(session, frame: pd.DataFrame) -> dict:
    """Graph inputs from raw CSV columns, written independently of nnclf: numbers as float64
    (NaN stays NaN), text and booleans as str ('True') with '' for a missing cell."""
    feeds = {}
    for i in session.get_inputs():
        column = frame[i.name]
        if i.type == "tensor(string)":
            feeds[i.name] = column.astype(str).where(column.notna(), "").to_numpy(object)
        else:
            feeds[i.name] = column.to_numpy(np.float64)
    return feeds


def _predict_cli(folder, run, csv_path):
    r = run_cli(["predict", run, csv_path], folder)
    assert r.exit_code == 0, r.stderr
    table = pd.read_csv(pd.io.common.StringIO(r.stdout), keep_default_na=False, dtype=str)
    return table["prediction"].to_numpy(), table.drop(columns="prediction").to_numpy(np.float64)


def _export_and_compare(folder, run, csv_path, extra=()):
    r = run_cli(["export", run, "-o", folder / "m.onnx", "--overwrite", *extra], folder)
    assert r.exit_code == 0, r.stderr
    model = onnx.load(folder / "m.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}  # the standard opset only
    session = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    frame = pd.read_csv(csv_path)
    labels, proba = session.run(None, _feeds(session, frame))
    want_labels, want_proba = _predict_cli(folder, run, csv_path)
    assert proba.shape == want_proba.shape
    assert np.abs(proba - want_proba).max() <= 1e-5
    text = np.array(["true" if v is True else "false" if v is False else str(v) for v in labels.tolist()])
    np.testing.assert_array_equal(text, want_labels)
    # the graph's preprocessing alone equals nnclf's feature matrix (saturated probabilities
    # could hide a wrong one-hot column)
    from nnclf.data.reading import read_table
    from nnclf.export import build_onnx
    from nnclf.model import TrainedModel

    model = TrainedModel.load(run / "checkpoints" / "best.npz")
    debug = ort.InferenceSession(build_onnx(model, features_output=True).SerializeToString(), providers=["CPUExecutionProvider"])
    (features,) = debug.run(["features"], _feeds(session, frame))
    np.testing.assert_allclose(features, model.features(read_table(csv_path), "csv", lambda m: None), rtol=1e-6, atol=1e-7)
    return session, frame


def _train(folder, config, *overrides, name="r"):
    args = ["train", config, "--name", name, "--quiet", "--runs-dir", folder / "runs", "--set", "training.epochs=3"]
    for o in overrides:
        args += ["--set", o]
    r = run_cli(args, folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / name


def _task(config) -> str:
    import yaml

    return (yaml.safe_load((CONFIGS / config).read_text()) or {}).get("task", "classification")


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_exports_and_matches_predict(tmp_path, config):
    run = _train(tmp_path, CONFIGS / config)
    data = json.loads((run / "summary.json").read_text())
    train_csv = __import__("yaml").safe_load((run / "config.yaml").read_text())["data"]["train"]
    if _task(config) == "classification":
        _export_and_compare(tmp_path, run, train_csv)
    else:
        _export_and_compare_real(tmp_path, run, train_csv)
    assert data["status"] == "finished"


def _toy(folder, n=120, seed=0, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(scale=50, size=n) + 1000
    tone = np.array(["red", "green", "blue", "grey"])[rng.integers(0, 4, n)]
    score = x1 + (x2 - 1000) / 50 + (tone == "red")
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1]))
    frame = pd.DataFrame({"x1": x1, "x2": x2, "tone": tone, "flag": rng.random(n) < 0.5, "y": np.array(labels, dtype=object)[y]})
    frame.loc[rng.random(n) < 0.1, "x1"] = np.nan
    frame.loc[rng.random(n) < 0.1, "tone"] = np.nan
    frame.to_csv(folder / "toy.csv", index=False)
    cfg = folder / "toy.yaml"
    cfg.write_text("data:\n  train: toy.csv\n  target: y\nmodel:\n  hidden: [6, 5]\noptimizer:\n  lr: 0.02\n"
                   "training:\n  epochs: 5\n  batch_size: 16\n")
    return cfg


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu"])
def test_every_activation(tmp_path, activation):
    run = _train(tmp_path, _toy(tmp_path), f"model.activation={activation}", "optimizer.lr=0.3")
    _export_and_compare(tmp_path, run, tmp_path / "toy.csv")


@pytest.mark.parametrize("loss,labels", [("cross_entropy", ("a", "b", "c")), ("cross_entropy", (3, 7)), ("nll", (0, 1)),
                                         ("kl_div", ("a", "b", "c")), ("mse", ("a", "b", "c")), ("mse", (True, False))])
def test_every_loss_and_label_type(tmp_path, loss, labels):
    run = _train(tmp_path, _toy(tmp_path, labels=labels), f"loss.name={loss}")
    session, _ = _export_and_compare(tmp_path, run, tmp_path / "toy.csv")
    label_type = session.get_outputs()[0].type
    # True/False in a CSV are labels as written ("True", "False"): text, like every non-integer label
    assert label_type == {str: "tensor(string)", int: "tensor(int64)", bool: "tensor(string)"}[type(labels[0])]


def test_missing_values_unseen_categories_folding_indicators_and_temperature(tmp_path):
    """Penguins with every preprocessing option and a file full of surprises: numeric cells
    missing where training had none, unseen and missing categories, '__other__'."""
    run = _train(tmp_path, CONFIGS / "penguins.yaml", "data.max_categories=2", "data.missing_indicators=true",
                 "data.scaling=minmax", "training.calibration=temperature", "training.epochs=15", "data.categorical=[year]")
    meta = run / "checkpoints" / "best.npz"
    with np.load(meta, allow_pickle=False) as f:
        state = json.loads(str(f["meta"]))
    columns = {c["name"]: c for c in state["preprocessor"]["columns"]}
    assert "__other__" in columns["island"]["categories"] and any(c.get("indicator") for c in columns.values())
    assert columns["year"]["categories"] == ["2008", "__other__"]
    assert state["calibration"]["temperature"] != 1.0
    frame = pd.read_csv(DATA / "penguins.csv").head(40).copy()
    frame.loc[0:4, "year"] = np.nan  # never missing in training; the column now reads as floats ('2007.0')
    frame.loc[5:9, "bill_length_mm"] = np.nan  # missing in training: an indicator column
    frame.loc[30:32, "flipper_length_mm"] = np.nan  # missing in training too
    frame.loc[33:36, "year"] = 2008  # the named year category (the others are folded), read as '2008.0'
    frame.loc[10:14, "island"] = "Atlantis"  # unseen: folded into __other__
    frame.loc[15:19, "island"] = np.nan  # never missing in training: all zeros
    frame.loc[20:24, "sex"] = "unknown"  # unseen, no __other__ (two categories + missing): all zeros
    frame.loc[25:29, "sex"] = np.nan  # missing in training: its own category
    frame.to_csv(tmp_path / "odd.csv", index=False)
    _export_and_compare(tmp_path, run, tmp_path / "odd.csv")
    r = run_cli(["export", "--check", run, tmp_path / "odd.csv"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert re.match(r"40 rows: largest probability difference onnxruntime vs nnclf predict \S+ .*labels differing 0\n", r.stdout)
    assert "never seen in training" in r.stderr  # predict's own warnings, once per column


def test_dynamic_batch_and_one_row(tmp_path):
    run = _train(tmp_path, _toy(tmp_path))
    session, frame = _export_and_compare(tmp_path, run, tmp_path / "toy.csv")
    assert session.get_inputs()[0].shape == ["N"]
    whole = session.run(["probabilities"], _feeds(session, frame))[0]
    for rows in (frame.iloc[:1], frame.iloc[3:10]):
        part = session.run(["probabilities"], _feeds(session, rows))[0]
        np.testing.assert_allclose(part, whole[rows.index], atol=1e-6)


def test_check_fails_on_a_wrong_graph(tmp_path, monkeypatch):
    from nnclf import export

    run = _train(tmp_path, _toy(tmp_path), "model.activation=tanh")
    monkeypatch.setitem(export.ACTIVATIONS, "tanh", export.ACTIVATIONS["sigmoid"])
    r = run_cli(["export", "--check", run, tmp_path / "toy.csv", "--json"], tmp_path)
    assert r.exit_code == 1
    assert json.loads(r.stdout)["max_abs_diff"] > 1e-3
    assert r.stderr == "error: the ONNX graph disagrees with nnclf predict beyond 1e-05\n"


def test_export_refuses_to_overwrite_and_names_problems(tmp_path):
    run = _train(tmp_path, _toy(tmp_path))
    assert run_cli(["export", run], tmp_path).stdout == f"wrote {run / 'model.onnx'}\n"
    r = run_cli(["export", run], tmp_path)
    assert (r.exit_code, r.stderr) == (1, f"error: {run / 'model.onnx'}: already exists; pass --overwrite to replace it (nothing was written)\n")
    r = run_cli(["export", "--check", run], tmp_path)
    assert (r.exit_code, r.stderr) == (1, "error: --check needs DATA.csv (nnclf export --check RUN DATA.csv)\n")
    r = run_cli(["export", run, "--checkpoint", "calibrated"], tmp_path)
    assert r.exit_code == 1 and "nnclf calibrate" in r.stderr


def test_export_never_replaces_its_checkpoint_or_data(tmp_path):
    # --overwrite replaced the checkpoint being exported with the ONNX bytes (the run's model lost)
    run = _train(tmp_path, _toy(tmp_path))
    best = run / "checkpoints" / "best.npz"
    (tmp_path / "link.npz").symlink_to(best)
    before = best.read_bytes(), (tmp_path / "toy.csv").read_bytes()
    for args, shown in (
        (["export", run, "-o", best, "--overwrite"], f"{best}: is an input of this command"),
        (["export", best, "-o", "link.npz", "--overwrite"], f"link.npz: is an input of this command (the same file as {best})"),
        (["export", "--check", run, "toy.csv", "-o", "toy.csv", "--overwrite"], "toy.csv: is an input of this command"),
    ):
        r = run_cli(args, tmp_path)
        assert (r.exit_code, r.stderr) == (1, f"error: {shown}; refusing to overwrite it (nothing was written)\n"), args
    assert (best.read_bytes(), (tmp_path / "toy.csv").read_bytes()) == before


def test_missing_onnx_is_a_one_line_hint(tmp_path, monkeypatch):
    run = _train(tmp_path, _toy(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)
    r = run_cli(["export", run, "-o", tmp_path / "x.onnx"], tmp_path)
    assert (r.exit_code, r.stderr) == (1, 'error: nnclf export needs the onnx package: pip install ".[onnx]" (from a clone) or pip install "nnclf[onnx]"\n')
    assert not (tmp_path / "x.onnx").exists()


def test_cli_start_does_not_import_onnx():
    code = "import sys, nnclf.cli; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_snippet_runs(tmp_path):
    """The README's onnxruntime snippet, as printed there, on a penguins model."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Export to ONNX"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 12  # about ten lines
    run = _train(tmp_path, CONFIGS / "penguins.yaml", name="penguins")
    assert run_cli(["export", run, "-o", tmp_path / "model.onnx"], tmp_path).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "penguins.csv").write_bytes((DATA / "penguins.csv").read_bytes())
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    want_labels, _ = _predict_cli(tmp_path, run, DATA / "penguins.csv")
    assert out.stdout.split()[:5] == list(want_labels[:5])


def _export_and_compare_real(folder, run, csv_path):
    """Regression and reconstruction: the graph's one output against predict's CSV columns;
    predictions within 1e-5 of the target's scale (the network's output units), reconstruction
    errors within 1e-5."""
    from nnclf.model import TrainedModel

    r = run_cli(["export", run, "-o", folder / "m.onnx", "--overwrite"], folder)
    assert r.exit_code == 0, r.stderr
    onnx.checker.check_model(onnx.load(folder / "m.onnx"), full_check=True)
    session = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, _feeds(session, pd.read_csv(csv_path)))
    r = run_cli(["predict", run, csv_path], folder)
    assert r.exit_code == 0, r.stderr
    want = pd.read_csv(pd.io.common.StringIO(r.stdout)).to_numpy(np.float64)
    model = TrainedModel.load(run / "checkpoints" / "best.npz")
    if model.task == "regression":
        assert [o.name for o in session.get_outputs()] == ["prediction"]
        assert np.abs((got - want) / model.targets.scale).max() <= 1e-5
    else:
        assert [o.name for o in session.get_outputs()] == ["reconstruction_error"]
        assert np.abs(got - want[:, 0]).max() <= 1e-5
    return got


def test_regression_with_two_targets_and_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 150
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(scale=20, size=n) + 300,
                          "kind": np.array(["x", "y", "z"])[rng.integers(0, 3, n)]})
    frame["t1"] = 3 * frame["a"] + (frame["kind"] == "x") * 2 + rng.normal(scale=0.1, size=n)
    frame["t2"] = 1000 + 5 * frame["b"] + rng.normal(size=n)
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame.to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "r.yaml").write_text("task: regression\ndata:\n  train: r.csv\n  target: [t1, t2]\nmodel:\n  hidden: [8]\n"
                                     "optimizer:\n  lr: 0.01\ntraining:\n  epochs: 20\n  batch_size: 16\n")
    run = _train(tmp_path, tmp_path / "r.yaml", "training.epochs=20")
    odd = frame.head(30).copy()
    odd.loc[0:4, "b"] = np.nan  # never missing in training
    odd.loc[5:9, "kind"] = "w"  # unseen
    odd.to_csv(tmp_path / "odd.csv", index=False)
    got = _export_and_compare_real(tmp_path, run, tmp_path / "odd.csv")
    assert got.shape == (30, 2) and got.dtype == np.float64
    r = run_cli(["export", "--check", run, tmp_path / "odd.csv"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("30 rows: largest prediction difference onnxruntime vs nnclf predict ")


def test_reconstruction_check(tmp_path):
    run = _train(tmp_path, CONFIGS / "digits_autoencoder.yaml", "training.epochs=2")
    got = _export_and_compare_real(tmp_path, run, DATA / "digits.csv")
    assert got.shape == (1797,)
    r = run_cli(["export", "--check", run, DATA / "digits.csv", "--json"], tmp_path)
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["task"] == "reconstruction" and result["ok"] and result["max_abs_diff"] <= 1e-5
