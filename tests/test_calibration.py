"""Calibration: ECE/MCE/Brier against hand-worked examples, the fitted temperature against a
brute-force grid, temperature scaling never changing a label, and the CLI (config key,
``nnclf calibrate``, evaluate's report)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from conftest import run_cli, write_config
from nnclf.calibration import fit_temperature
from nnclf.engine.losses import LOSSES
from nnclf.metrics import brier_score, calibration_errors


# -- ECE, MCE, Brier by hand -------------------------------------------------------------------
def test_ece_mce_hand_computed():
    # 15 bins of width 1/15 = 0.0667. Top-label confidences and correctness:
    #   row 0: p = (0.90, 0.10), y 0 -> conf 0.90 correct   bin 13 (0.8667, 0.9333]
    #   row 1: p = (0.92, 0.08), y 1 -> conf 0.92 wrong     bin 13
    #   row 2: p = (0.30, 0.70), y 1 -> conf 0.70 correct   bin 10 (0.6667, 0.7333]
    #   row 3: p = (0.55, 0.45), y 0 -> conf 0.55 correct   bin 8 (0.5333, 0.6]
    # bin 13: acc 1/2, conf 0.91 -> gap 0.41, weight 2/4; bin 10: acc 1, conf 0.7 -> gap 0.3;
    # bin 8: acc 1, conf 0.55 -> gap 0.45.
    # ECE = 2/4 * 0.41 + 1/4 * 0.3 + 1/4 * 0.45 = 0.205 + 0.075 + 0.1125 = 0.3925; MCE = 0.45
    proba = np.array([[0.90, 0.10], [0.92, 0.08], [0.30, 0.70], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    ece, mce = calibration_errors(y, proba)
    assert ece == pytest.approx(0.3925, abs=1e-12)
    assert mce == pytest.approx(0.45, abs=1e-12)


def test_ece_bin_edges_are_right_closed():
    # conf exactly 2/3 belongs to bin (0.6, 0.6667], not (0.6667, 0.7333]: with one correct row
    # at 2/3 and one wrong row at 0.7, the bins stay apart (gaps 1/3 and 0.7, ECE 0.5167).
    proba = np.array([[2 / 3, 1 / 3, 0.0], [0.7, 0.3, 0.0]])
    ece, mce = calibration_errors(np.array([0, 1]), proba)
    assert ece == pytest.approx((1 / 3 + 0.7) / 2, abs=1e-12)
    assert mce == pytest.approx(0.7, abs=1e-12)


def test_perfectly_calibrated_bins_give_zero_and_unknown_labels_are_left_out():
    # 10 rows at confidence 0.8 with 8 correct: acc = conf in the only bin
    proba = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert calibration_errors(y, proba) == pytest.approx((0.0, 0.0), abs=1e-12)
    with_unknown = np.r_[y, -1]
    assert calibration_errors(with_unknown, np.r_[proba, [[0.99, 0.01]]]) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_brier_hand_computed():
    # binary: (p1 - y)^2 = (0.1-0)^2, (0.08-1)^2, (0.7-1)^2, (0.45-0)^2 -> mean
    proba = np.array([[0.90, 0.10], [0.92, 0.08], [0.30, 0.70], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    assert brier_score(y, proba) == pytest.approx((0.01 + 0.8464 + 0.09 + 0.2025) / 4, abs=1e-12)
    # three classes: sum_k (p_k - onehot_k)^2 per row, then the mean
    p3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    want = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert brier_score(np.array([0, 1]), p3) == pytest.approx(want, abs=1e-12)


# -- temperature against a brute-force grid ----------------------------------------------------
def _grid_temperature(nll, lo=0.05, hi=20.0, n=40001):
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), n))
    values = np.array([nll(t) for t in grid])
    i = int(values.argmin())
    return grid[i], grid[min(i + 1, n - 1)] / grid[i]


def _tempered_data(rng, n, k, true_t):
    """Logits z and labels drawn from softmax(z / true_t) (so z is miscalibrated by true_t)."""
    z = rng.normal(scale=3.0, size=(n, k))
    p = np.exp(z / true_t - logsumexp(z / true_t, axis=1, keepdims=True))
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_softmax_temperature_matches_grid(true_t):
    rng = np.random.default_rng(3)
    z, y = _tempered_data(rng, 600, 4, true_t)
    loss = LOSSES.get("cross_entropy")(4)

    def nll(t):  # independent of nnclf: log-softmax via scipy's logsumexp
        s = z / t
        return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))

    grid_t, step = _grid_temperature(nll)
    fitted = fit_temperature(z, y, loss.predict_proba)
    assert fitted["temperature"] == pytest.approx(grid_t, rel=2 * (step - 1))
    assert fitted["nll_after"] == pytest.approx(nll(grid_t), abs=1e-9)
    assert fitted["nll_before"] == pytest.approx(nll(1.0), abs=1e-12)
    assert fitted["temperature"] == pytest.approx(true_t, rel=0.25)  # and it recovers the truth


def test_binary_sigmoid_temperature_matches_grid():
    rng = np.random.default_rng(4)
    z = rng.normal(scale=4.0, size=(500, 1))
    y = (rng.random(500) < 1 / (1 + np.exp(-z[:, 0] / 3.0))).astype(np.int64)
    loss = LOSSES.get("cross_entropy")(2)

    def nll(t):  # -[y log s + (1-y) log(1-s)] = softplus(s) - y s for s = z / t
        s = z[:, 0] / t
        return float(np.mean(np.logaddexp(0, s) - y * s))

    grid_t, step = _grid_temperature(nll)
    assert fit_temperature(z, y, loss.predict_proba)["temperature"] == pytest.approx(grid_t, rel=2 * (step - 1))


# -- temperature never changes a label ----------------------------------------------------------
@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    loss_name=st.sampled_from(["cross_entropy", "nll", "kl_div", "mse"]),
    k=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.01, 30.0),
    t=st.floats(0.01, 100.0),
)
def test_temperature_never_changes_the_predicted_label(tmp_path_factory, loss_name, k, seed, scale, t):
    """TrainedModel.predict with a temperature gives the labels it gives without one, and they
    are the argmax of the tempered probabilities wherever those have a unique largest entry
    (saturated sigmoid outputs tie at 1.0 where the logits do not: the logits decide)."""
    from nnclf.data.labels import Labels
    from nnclf.engine.network import MLP
    from nnclf.model import TrainedModel

    loss = LOSSES.get(loss_name)(k)
    rng = np.random.default_rng(seed)
    net = MLP([3, 5, loss.n_outputs], "tanh", 0.0, "float64")
    net.params[...] = rng.normal(scale=scale, size=net.params.size)
    model = TrainedModel(net, loss, None, Labels(list(range(k))), {}, None)
    x = rng.normal(size=(60, 3))
    plain, _ = model.predict(x)
    model.temperature = t
    tempered, proba = model.predict(x)
    np.testing.assert_array_equal(plain, tempered)
    top2 = np.sort(proba, axis=1)[:, -2:]
    unique = top2[:, 1] > top2[:, 0]
    np.testing.assert_array_equal(proba.argmax(axis=1)[unique], plain[unique])


# -- through the CLI ----------------------------------------------------------------------------
def _data(folder, n=300, seed=0):
    """Three noisy classes from two numeric columns and a text column."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    tone = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    score = x1 + 0.5 * x2 + rng.normal(scale=0.8, size=n)
    y = np.digitize(score, [-0.5, 0.5])
    lines = ["x1,x2,tone,label"] + [f"{x1[i]:.4f},{x2[i]:.4f},{tone[i]},{'klm'[y[i]]}" for i in range(n)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")


CONFIG = "seed: 2\ndata:\n  train: d.csv\n  target: label\n  val_split: 0.25\nmodel:\n  hidden: [16]\n" \
         "optimizer:\n  lr: 0.03\ntraining:\n  epochs: 60\n  batch_size: 32\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training twice: without and with training.calibration: temperature."""
    folder = tmp_path_factory.mktemp("cal")
    _data(folder)
    write_config(folder, CONFIG, "c.yaml")
    for name, extra in (("plain", []), ("cal", ["--set", "training.calibration=temperature"])):
        r = run_cli(["train", "c.yaml", "--name", name, "--quiet", *extra], folder)
        assert r.exit_code == 0, r.stderr
    return folder


def _meta(path):
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f["meta"])), f["params"].copy()


def test_training_calibration_stores_a_temperature_fitted_on_the_validation_rows(runs):
    from nnclf.model import TrainedModel

    meta_plain, params_plain = _meta(runs / "runs/plain/checkpoints/best.npz")
    meta_cal, params_cal = _meta(runs / "runs/cal/checkpoints/best.npz")
    assert "calibration" not in meta_plain
    np.testing.assert_array_equal(params_plain, params_cal)  # the same training, weights untouched
    entry = meta_cal["calibration"]
    assert entry["method"] == "temperature" and entry["fitted_on"] == "validation split"
    # refit by hand on the validation rows listed in splits.npz: the same T
    model = TrainedModel.load(runs / "runs/plain/checkpoints/best.npz")
    import pandas as pd

    frame = pd.read_csv(runs / "d.csv")
    with np.load(runs / "runs/cal/splits.npz") as s:
        val = frame.iloc[s["val"]]
    assert entry["rows"] == len(val)
    z = model.net.logits(model.features(val, "val", print)).astype(np.float64)
    y = model.labels.encode(val["label"])
    again = fit_temperature(z, y, model.loss.predict_proba)
    assert entry["temperature"] == pytest.approx(again["temperature"], rel=1e-9)
    assert entry["nll_after"] <= entry["nll_before"]
    summary = json.loads((runs / "runs/cal/summary.json").read_text())
    assert summary["temperature"] == entry["temperature"]
    assert {"ece", "mce", "brier"} <= set(summary["test"])


def test_predict_applies_the_temperature_and_keeps_every_label(runs):
    plain = run_cli("predict runs/plain d.csv", runs)
    cal = run_cli("predict runs/cal d.csv", runs)
    assert plain.exit_code == cal.exit_code == 0
    p = np.loadtxt(plain.stdout.splitlines()[1:], delimiter=",", dtype=str)
    c = np.loadtxt(cal.stdout.splitlines()[1:], delimiter=",", dtype=str)
    np.testing.assert_array_equal(p[:, 0], c[:, 0])  # labels unchanged
    t = _meta(runs / "runs/cal/checkpoints/best.npz")[0]["calibration"]["temperature"]
    from nnclf.model import TrainedModel
    import pandas as pd

    model = TrainedModel.load(runs / "runs/plain/checkpoints/best.npz")
    z = model.net.logits(model.features(pd.read_csv(runs / "d.csv"), "d", print)).astype(np.float64)
    want = np.exp(z / t - logsumexp(z / t, axis=1, keepdims=True))
    np.testing.assert_allclose(c[:, 1:].astype(float), want, atol=2e-6)
    assert not np.allclose(p[:, 1:].astype(float), c[:, 1:].astype(float), atol=1e-3)


def test_evaluate_reports_ece_mce_brier(runs):
    r = run_cli("evaluate runs/cal --json", runs)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert 0 <= report["ece"] <= report["mce"] <= 1 and 0 <= report["brier"] <= 2
    assert report["temperature"] == _meta(runs / "runs/cal/checkpoints/best.npz")[0]["calibration"]["temperature"]
    text = run_cli("evaluate runs/cal", runs).stdout
    assert "ece (15 bins, top label)" in text and "brier" in text and "temperature" in text


def test_calibrate_writes_a_new_checkpoint_and_keeps_the_original(runs):
    best = runs / "runs/plain/checkpoints/best.npz"
    before = best.read_bytes()
    r = run_cli("calibrate runs/plain --json", runs)
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert best.read_bytes() == before
    out = runs / "runs/plain/checkpoints/calibrated.npz"
    assert result["output"] == "runs/plain/checkpoints/calibrated.npz" and out.is_file()
    # the same rows and weights as training.calibration, so the same temperature
    t_train = _meta(runs / "runs/cal/checkpoints/best.npz")[0]["calibration"]["temperature"]
    assert _meta(out)[0]["calibration"]["temperature"] == pytest.approx(t_train, rel=1e-9)
    assert result["nll_after"] <= result["nll_before"]
    ev = json.loads(run_cli("evaluate runs/plain --checkpoint calibrated --json", runs).stdout)
    assert ev["temperature"] == pytest.approx(t_train, rel=1e-9)
    # an existing output is kept unless --overwrite; calibrating onto the input is refused
    again = run_cli("calibrate runs/plain", runs)
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.stderr
    onto = run_cli("calibrate runs/plain --checkpoint calibrated -o runs/plain/checkpoints/calibrated.npz --overwrite", runs)
    assert onto.exit_code == 1 and "is the checkpoint being calibrated" in onto.stderr
    # the data file is an input too: never replaced by the calibrated checkpoint
    data = (runs / "d.csv").read_bytes()
    onto = run_cli("calibrate runs/plain d.csv -o d.csv --overwrite", runs)
    assert (onto.exit_code, onto.stderr) == (1, "error: d.csv: is an input of this command; refusing to overwrite it (nothing was written)\n")
    assert (runs / "d.csv").read_bytes() == data
    os.link(best, runs / "hard.npz")
    onto = run_cli("calibrate runs/plain -o hard.npz --overwrite", runs)
    assert (onto.exit_code, onto.stderr) == (
        1, "error: hard.npz: is an input of this command (the same file as runs/plain/checkpoints/best.npz); "
        "refusing to overwrite it (nothing was written)\n")
    # messages name the file and say calibrate (they said evaluate, and nothing of the file)
    (runs / "nolabel.csv").write_text((runs / "d.csv").read_text().replace("label", "other", 1))
    r = run_cli("calibrate runs/plain nolabel.csv -o x.npz", runs)
    assert (r.exit_code, r.stderr) == (
        1, "error: nolabel.csv: target column 'label' not found; calibrate needs labels (use predict for unlabelled data)\n")
    lines = (runs / "d.csv").read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    first[header.split(",").index("label")] = "never-seen"
    (runs / "unseen.csv").write_text(header + "\n" + ",".join(first) + "\n")
    r = run_cli("calibrate runs/plain unseen.csv -o x.npz", runs)
    assert (r.exit_code, r.stderr) == (
        1, "warning: unseen.csv: 1 row(s) have labels never seen in training: 'never-seen' (1); left out\n"
           "error: unseen.csv: no rows with a label known to the model to fit a temperature on\n")
    assert not (runs / "x.npz").exists()
    # on a given CSV
    r = run_cli("calibrate runs/plain d.csv -o other.npz", runs)
    assert r.exit_code == 0, r.stderr
    assert _meta(runs / "other.npz")[0]["calibration"]["fitted_on"] == "d.csv"
    assert "temperature" in r.stdout and "wrote other.npz" in r.stdout


def test_calibration_without_validation_rows_is_an_error_before_training(tmp_path):
    _data(tmp_path, n=60)
    write_config(tmp_path, CONFIG.replace("val_split: 0.25", "val_split: 0"), "c.yaml")
    r = run_cli("train c.yaml --name x --set training.calibration=temperature", tmp_path)
    assert (r.exit_code, r.stderr) == (
        1, "error: training.calibration: temperature is fitted on validation data; set data.val_split > 0 or data.val\n")
    assert not (tmp_path / "runs" / "x").exists()
    bad = run_cli("config c.yaml --set training.calibration=platt", tmp_path)
    assert bad.exit_code == 1 and "training.calibration" in bad.stderr and "temperature" in bad.stderr


def test_a_damaged_temperature_is_refused(runs, tmp_path):
    from nnclf.checkpoint import load_checkpoint, save_checkpoint

    params, meta, arrays = load_checkpoint(runs / "runs/cal/checkpoints/best.npz")
    meta["calibration"]["temperature"] = -1.0
    save_checkpoint(tmp_path / "bad.npz", params, meta, arrays)
    r = run_cli(["predict", tmp_path / "bad.npz", runs / "d.csv"])
    assert r.exit_code == 1 and "calibration temperature -1.0 is not a positive number" in r.stderr
