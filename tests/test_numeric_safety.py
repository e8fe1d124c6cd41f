"""Numbers at the edges: extreme and denormal feature values, constant columns, perfectly
separable data, huge learning rates. Whatever happens, no NaN or infinity is written silently
into a checkpoint, metrics.csv, summary.json or a prediction file, and divergence is reported
(exit 1, "training diverged", summary status "diverged")."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import merged, run_cli

# numpy noise ("RuntimeWarning: overflow ...", two lines with a source line) is not a one-line
# message: every overflow must be handled (errstate) and reported, so make it fail here
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
FINITE_ERRORS = ("values too large to scale", "is too large for float32", "is too large for float64")


def strict_json(text: str):
    def refuse(token):
        raise AssertionError(f"{token} in a JSON file")

    return json.loads(text, parse_constant=refuse)


def assert_all_finite_outputs(run: Path) -> None:
    """Every number nnclf wrote into the run folder is finite."""
    for path in (run / "checkpoints").glob("*.npz"):
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                a = z[name]
                if a.dtype.kind == "f":
                    assert np.all(np.isfinite(a)), (path.name, name)
                elif name == "meta":
                    strict_json(str(a))
    if (run / "metrics.csv").exists():
        for row in csv.DictReader(io.StringIO((run / "metrics.csv").read_text())):
            for key, value in row.items():
                if value != "":
                    assert math.isfinite(float(value)), (key, value)
    strict_json((run / "summary.json").read_text())
    strict_json((run / "schema.json").read_text())


def assert_predictions_finite(text: str, n_rows: int) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + n_rows
    for row in rows[1:]:
        p = [float(v) for v in row[1:]]
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in p) and abs(sum(p) - 1) < 1e-4, row


def write(folder: Path, columns: dict[str, list], config: str) -> int:
    n = len(next(iter(columns.values())))
    lines = [",".join(columns)] + [",".join(str(columns[c][i]) for c in columns) for i in range(n)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    (folder / "c.yaml").write_text(merged("seed: 2\ndata: {train: d.csv, target: label}", config))
    return n


def train(folder: Path, *args: str):
    return run_cli(["train", "c.yaml", "--name", "r", "--quiet", *args], folder)


def outcome(folder: Path, result, n_rows: int) -> str:
    """'trained' (all outputs finite, predict works), 'diverged' (reported as such) or a refusal."""
    run = folder / "runs" / "r"
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:
        assert_all_finite_outputs(run)
        assert strict_json((run / "summary.json").read_text())["status"] == "finished"
        p = run_cli(["predict", run, "d.csv", "-o", "p.csv"], folder)
        if p.exit_code == 0:
            assert_predictions_finite((folder / "p.csv").read_text(), n_rows)
        else:  # a training row that overflows the trained network: named, and no file written
            assert p.stderr.startswith("error: d.csv, line ") and "overflows to NaN" in p.stderr, p.stderr
            assert not (folder / "p.csv").exists()
        e = run_cli(["evaluate", run, "--json"], folder)
        if e.exit_code == 0:
            strict_json(e.stdout)
        else:
            assert "overflows to NaN" in e.stderr, e.stderr
        return "trained"
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if "training diverged" in lines[0]:
        assert strict_json((run / "summary.json").read_text())["status"] == "diverged"
        assert_all_finite_outputs(run)
        return "diverged"
    assert any(e in lines[0] for e in FINITE_ERRORS), lines[0]
    assert not (folder / "runs").exists() or not any((folder / "runs").iterdir())
    return "refused"


def separable(n: int = 40, scale: float = 1.0) -> dict[str, list]:
    a = [scale * (i - n / 2 + 0.5) for i in range(n)]
    return {"a": [f"{v:.17g}" for v in a], "b": [i % 3 for i in range(n)], "label": ["hi" if v > 0 else "lo" for v in a]}


# -- extreme feature values ----------------------------------------------------------------------
EXTREMES = {
    "1e30 and -1e30": ["1e30", "-1e30"],
    "1e30 among small numbers": ["1e30", "0.5", "-0.5", "1"],
    "3e38 (float32 max is 3.4e38)": ["3e38", "-3e38", "1"],
    "1e300": ["1e300", "-1e300", "0"],
    "1.7e308": ["1.7e308", "-1.7e308"],
    "denormals": ["1e-310", "2e-310", "-1e-310", "5e-324"],
    "denormals and zero": ["0", "1e-320"],
    "tiny spread around a huge value": ["1e20", "1.0000000000000002e20"],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scaling", ["standard", "minmax", "none"])
@pytest.mark.parametrize("values", list(EXTREMES))
def test_extreme_feature_values_never_write_nan(tmp_path, values, scaling, dtype):
    cycle = EXTREMES[values]
    n = 24
    columns = {"a": [cycle[i % len(cycle)] for i in range(n)], "b": [i % 5 for i in range(n)], "label": ["xy"[(i // 2) % 2] for i in range(n)]}
    write(tmp_path, columns, f"data: {{train: d.csv, target: label, scaling: {scaling}}}\nmodel: {{hidden: [4, 4]}}\n"
                             f"training: {{epochs: 3, batch_size: 8, dtype: {dtype}}}\n")
    result = outcome(tmp_path, train(tmp_path), n)
    if scaling != "none" and values in ("1e30 and -1e30", "denormals", "denormals and zero", "tiny spread around a huge value"):
        assert result == "trained"  # scaling brings these to a few units: nothing to refuse


def test_denormals_are_scaled_not_flushed(tmp_path):
    """A column of denormals (1e-310 vs 3e-310) decides the class: after standard scaling the
    model separates it perfectly (float32 would flush the raw values to zero)."""
    n = 30
    columns = {"a": ["3e-310" if i % 2 else "1e-310" for i in range(n)], "label": ["xy"[i % 2] for i in range(n)]}
    write(tmp_path, columns, "model: {hidden: [4]}\noptimizer: {lr: 0.1}\ntraining: {epochs: 30, batch_size: 8}\n")
    assert outcome(tmp_path, train(tmp_path), n) == "trained"
    schema = strict_json((tmp_path / "runs" / "r" / "schema.json").read_text())
    assert schema["columns"][0]["scale"] > 0
    assert strict_json((tmp_path / "runs" / "r" / "summary.json").read_text())["final"]["train_accuracy"] == 1.0


def test_constant_columns_stay_finite(tmp_path):
    n = 30
    columns = {"zero": [0] * n, "big": ["1e30"] * n, "tiny": ["1e-310"] * n, "seven": [7] * n, "t": ["a"] * n,
               "label": ["xyz"[i % 3] for i in range(n)]}
    for scaling in ("standard", "minmax", "none"):
        folder = tmp_path / scaling
        folder.mkdir()
        write(folder, columns, f"data: {{train: d.csv, target: label, scaling: {scaling}}}\nmodel: {{hidden: [3]}}\ntraining: {{epochs: 2}}\n")
        result = outcome(folder, train(folder), n)
        if scaling != "none":  # without scaling the raw 1e30 may legitimately diverge
            assert result == "trained"
        if result == "trained":
            schema = strict_json((folder / "runs" / "r" / "schema.json").read_text())
            assert all(c["scale"] == 1.0 for c in schema["columns"] if c["kind"] == "numeric")


# -- perfectly separable data: saturated outputs ---------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "mse", "kl_div"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_perfectly_separable_data_saturates_without_nan(tmp_path, loss, dtype):
    """A large learning rate on separable data drives logits far apart: probabilities of exactly
    0 and 1, losses at or near 0, and still no NaN anywhere (log 0 must not leak)."""
    n = write(tmp_path, separable(scale=1000.0), f"data: {{train: d.csv, target: label, scaling: none}}\nloss: {{name: {loss}}}\n"
              f"model: {{hidden: [8]}}\noptimizer: {{name: sgd, lr: 5.0}}\ntraining: {{epochs: 25, batch_size: 4, dtype: {dtype}}}\n")
    assert outcome(tmp_path, train(tmp_path), n) in ("trained", "diverged")


# -- huge learning rates -------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
@pytest.mark.parametrize("lr", [1e4, 1e12, 1e30])
def test_huge_learning_rates_diverge_loudly_or_stay_finite(tmp_path, optimizer, lr):
    n = write(tmp_path, separable(), f"model: {{hidden: [8, 8]}}\noptimizer: {{name: {optimizer}, lr: {lr}}}\n"
                                     f"training: {{epochs: 4, batch_size: 8}}\n")
    assert outcome(tmp_path, train(tmp_path), n) in ("trained", "diverged")


@pytest.mark.parametrize("val_split", [0.0, 0.2])
def test_a_certain_divergence_is_reported_as_such(tmp_path, val_split):
    """SGD with lr 1e30: the weights reach ~1e30 after one step, the next forward pass overflows
    float32. The run must say so, keep its last good checkpoint, and hold no NaN."""
    n = write(tmp_path, separable(), f"data: {{train: d.csv, target: label, val_split: {val_split}}}\nmodel: {{hidden: [8, 8]}}\n"
                                     f"optimizer: {{name: sgd, lr: 1.0e30}}\ntraining: {{epochs: 5, batch_size: 4}}\n")
    result = train(tmp_path)
    assert outcome(tmp_path, result, n) == "diverged"
    assert result.stderr.startswith("error: training diverged: the ")
    assert "(lr 1e+30); lower optimizer.lr, or set training.clip_norm" in result.stderr
    summary = strict_json((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["error"] in result.stderr


def test_validation_loss_that_overflows_is_divergence_not_a_crash(tmp_path):
    """Weights still finite after epoch 1 but so large that the validation pass overflows: this
    used to crash while saving a checkpoint whose metadata held NaN."""
    n = write(tmp_path, separable(), "model: {hidden: [8]}\noptimizer: {name: adam, lr: 1.0e20}\n"
                                     "training: {epochs: 3, batch_size: full}\n")  # one step per epoch
    result = train(tmp_path)
    assert outcome(tmp_path, result, n) == "diverged"
    assert "training diverged: the validation loss became nan at epoch 1 (lr 1e+20)" in result.stderr


def test_a_last_step_that_blows_up_without_validation_data_is_divergence(tmp_path):
    """One full-batch SGD step with lr 1e30 and no validation split: training itself never sees
    a NaN, but the test rows do. This used to finish with "log_loss": NaN in summary.json."""
    n = write(tmp_path, separable(), "data: {train: d.csv, target: label, val_split: 0}\nmodel: {hidden: [8, 8]}\n"
                                     "optimizer: {name: sgd, lr: 1.0e30}\ntraining: {epochs: 1, batch_size: full}\n")
    result = train(tmp_path)
    assert outcome(tmp_path, result, n) == "diverged"
    assert "training diverged: the trained model's outputs on the test rows are NaN or infinite (lr 1e+30)" in result.stderr


# -- prediction with values the model never saw ---------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("numeric_model")
    write(folder, separable(), "model: {hidden: [8, 8]}\noptimizer: {lr: 0.05}\ntraining: {epochs: 10, batch_size: 8}\n")
    assert train(folder).exit_code == 0
    return folder / "runs" / "r"


@pytest.mark.parametrize(
    "a, expected",
    [
        ("1e30", "ok"),
        ("-1e30", "ok"),
        ("1e-310", "ok"),
        ("5e-324", "ok"),
        ("3.3e38", "ok or line 3: the model's output for this row overflows to NaN"),
        ("1e39", "ok"),  # scaled by the training std (~11.5), still a float32
        ("1e40", "line 3: column 'a': value 1e+40 is too large for float32 numbers"),
        ("-1.7e308", "line 3: column 'a': value -1.7e+308 is too large for float32 numbers"),
        ("inf", "line 3: column 'a': infinite value inf"),
    ],
)
def test_predict_and_evaluate_never_write_nan_for_extreme_inputs(tmp_path, model, a, expected):
    (tmp_path / "new.csv").write_text(f"a,b,label\n1,0,hi\n{a},1,lo\n-2,2,lo\n")
    (tmp_path / "p.csv").write_text("previous\n")
    r = run_cli(["predict", model, "new.csv", "-o", "p.csv", "--overwrite"], tmp_path)
    e = run_cli(["evaluate", model, "new.csv", "--json"], tmp_path)
    s = run_cli(["predict", model, "new.csv"], tmp_path)  # to stdout
    if expected.startswith("ok or ") and r.exit_code != 0:
        expected = expected[len("ok or "):]
    if expected.startswith("ok"):
        assert r.exit_code == e.exit_code == s.exit_code == 0, (r.stderr, e.stderr, s.stderr)
        assert_predictions_finite((tmp_path / "p.csv").read_text(), 3)
        assert_predictions_finite(s.stdout, 3)
        report = strict_json(e.stdout)
        assert math.isfinite(report["log_loss"])
    else:
        for result in (r, e, s):
            assert result.exit_code == 1 and result.stderr == f"error: new.csv, {expected}" + result.stderr.split(expected, 1)[1]
            assert result.stderr.count("\n") == 1
        assert (tmp_path / "p.csv").read_text() == "previous\n"
        assert "nan" not in s.stdout.lower()


def test_float64_model_refuses_rows_that_overflow_float64_once_scaled(tmp_path):
    columns = {"a": [f"{(i % 2) * 1e-6:.1e}" for i in range(30)], "label": ["xy"[i % 2] for i in range(30)]}
    write(tmp_path, columns, "model: {hidden: [4]}\ntraining: {epochs: 2, dtype: float64}\n")
    assert train(tmp_path).exit_code == 0
    (tmp_path / "new.csv").write_text("a\n0\n1e300\n1e303\n")  # the training std is 5e-7
    r = run_cli(["predict", "runs/r", "new.csv"], tmp_path)
    assert r.exit_code == 1, r.stdout
    assert r.stderr == "error: new.csv, line 4: column 'a': value 1e+303 is too large for float64 numbers " \
                       "once scaled with the training statistics; fix or remove it\n"


def test_a_model_whose_outputs_overflow_refuses_the_row_instead_of_writing_nan(tmp_path, model):
    """A legal, finite checkpoint whose first layer has weights of 3e38 and whose second layer
    alternates +1/-1: an ordinary row with a positive sum overflows to +inf in all hidden units,
    and the next layer computes inf - inf = NaN. The NaN must never reach a file or a report."""
    from nnclf.checkpoint import load_checkpoint, save_checkpoint

    params, meta, arrays = load_checkpoint(model / "checkpoints" / "best.npz")
    assert meta["network"]["sizes"][:2] == [2, 8]
    huge = np.ones_like(params)
    huge[: 2 * 8 + 8] = 3e38  # W1 and b1: x1 + x2 + 1 > 1.2 overflows float32
    huge[24 : 24 + 64] = np.repeat([1.0, -1.0] * 4, 8)  # W2 (8 x 8, row-major): row i has sign (-1)^i
    save_checkpoint(tmp_path / "huge.npz", huge, meta, arrays)
    (tmp_path / "new.csv").write_text("a,b,label\n0,0,hi\n5,1,lo\n")
    for args in (["predict", "huge.npz", "new.csv"], ["predict", "huge.npz", "new.csv", "-o", "p.csv"],
                 ["evaluate", "huge.npz", "new.csv", "--json"]):
        r = run_cli(args, tmp_path)
        assert r.exit_code == 1, (args, r.stdout)
        assert r.stderr.startswith("error: new.csv, line ") and "overflows to NaN" in r.stderr and r.stderr.count("\n") == 1
        assert "nan" not in r.stdout.lower()
    assert not (tmp_path / "p.csv").exists()
