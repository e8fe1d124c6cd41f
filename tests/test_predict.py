"""`nnclf evaluate` and `nnclf predict` through the real CLI, checked against predictions and
metrics recomputed here from the CSVs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest

from conftest import run_cli, write_config

N = 80


def _make_rows(labels, n: int = N, seed: int = 5):
    """x1, x2 numeric; tone text; the label depends on x1 (and tone, a little)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    tone = np.array(["dark", "light", "pale"])[rng.integers(0, 3, n)]
    cut = np.quantile(x1, np.linspace(0, 1, len(labels) + 1)[1:-1])
    y = np.digitize(x1, cut)
    return [[f"{x1[i]:.5f}", f"{x2[i]:.5f}", tone[i], str(labels[y[i]])] for i in range(n)]


def _csv(header, rows) -> str:
    return ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)


HEADER = ["x1", "x2", "tone", "label"]


def _train(folder, labels, epochs: int = 40):
    rows = _make_rows(labels)
    (folder / "d.csv").write_text(_csv(HEADER, rows))
    write_config(folder, f"seed: 1\ndata:\n  train: d.csv\n  target: label\nmodel:\n  hidden: [8]\n"
                         f"optimizer:\n  lr: 0.05\ntraining:\n  epochs: {epochs}\n  batch_size: 16\n", "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / "r", rows


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """A run on integer labels 0/1/2, with its training rows."""
    folder = tmp_path_factory.mktemp("three")
    run, rows = _train(folder, [0, 1, 2])
    return run, rows, folder / "d.csv"


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A run on string labels no/yes."""
    folder = tmp_path_factory.mktemp("binary")
    run, rows = _train(folder, ["no", "yes"])
    return run, rows, folder / "d.csv"


def predict_rows(cli, run, data, *args):
    r = cli(["predict", run, data, *args])
    assert r.exit_code == 0, r.stderr
    return list(csv.reader(io.StringIO(r.stdout))), r


def evaluate_json(cli, run, *args):
    r = cli(["evaluate", run, *args, "--json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout), r


def expected_report(true, predicted, labels):
    """Accuracy, confusion matrix (rows = true, in label order) and per-class stats, by hand."""
    k = len(labels)
    cm = [[sum(1 for t, p in zip(true, predicted) if t == labels[i] and p == labels[j]) for j in range(k)] for i in range(k)]
    per_class = []
    for i in range(k):
        tp = cm[i][i]
        col = sum(cm[r][i] for r in range(k))
        row = sum(cm[i])
        precision = tp / col if col else 0.0
        recall = tp / row if row else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"label": labels[i], "precision": precision, "recall": recall, "f1": f1, "support": row})
    accuracy = sum(t == p for t, p in zip(true, predicted)) / len(true)
    return accuracy, cm, per_class


# -- predict output ---------------------------------------------------------------------------
def test_predict_writes_csv_to_stdout_with_integer_labels(cli, three, tmp_path):
    run, rows, data = three
    out, r = predict_rows(cli, run, data)
    assert out[0] == ["prediction", "proba_0", "proba_1", "proba_2"]
    assert len(out) == N + 1
    for line in out[1:]:
        assert line[0] in {"0", "1", "2"}  # never '0.0'
        proba = [float(v) for v in line[1:]]
        assert sum(proba) == pytest.approx(1, abs=1e-4)
        assert int(line[0]) == int(np.argmax(proba))
    assert r.stderr == ""


def test_integer_labels_with_blanks_stay_integers(cli, tmp_path):
    rows = _make_rows([0, 1, 2])
    rows[3][3] = rows[10][3] = ""  # pandas reads this label column as floats
    (tmp_path / "d.csv").write_text(_csv(HEADER, rows))
    write_config(tmp_path, "data:\n  train: d.csv\n  target: label\nmodel:\n  hidden: [4]\ntraining:\n  epochs: 2\n", "c.yaml")
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    out, _ = predict_rows(cli, "runs/r", "d.csv")
    assert out[0] == ["prediction", "proba_0", "proba_1", "proba_2"]
    assert {line[0] for line in out[1:]} <= {"0", "1", "2"}


def test_string_labels_stay_strings(cli, binary):
    run, rows, data = binary
    out, _ = predict_rows(cli, run, data)
    assert out[0] == ["prediction", "proba_no", "proba_yes"]
    assert {line[0] for line in out[1:]} <= {"no", "yes"}
    accuracy = np.mean([line[0] == row[3] for line, row in zip(out[1:], rows)])
    assert accuracy > 0.8  # it learned the labels, in the right order


def test_predict_matches_columns_by_name(cli, three, tmp_path):
    run, rows, data = three
    reordered = [["note", "label", "tone", "x2", "x1"]] + [["n", r[3], r[2], r[1], r[0]] for r in rows]
    (tmp_path / "shuffled.csv").write_text("".join(",".join(r) + "\n" for r in reordered))
    (tmp_path / "plain.csv").write_text(_csv(["x1", "x2", "tone"], [r[:3] for r in rows]))
    a, _ = predict_rows(cli, run, data)
    b, _ = predict_rows(cli, run, "shuffled.csv")
    c, _ = predict_rows(cli, run, "plain.csv")  # no target column at all
    assert a == b == c


def test_missing_feature_column_is_an_error(cli, three, tmp_path):
    run, rows, _ = three
    (tmp_path / "p.csv").write_text(_csv(["x1", "tone"], [[r[0], r[2]] for r in rows]))
    r = cli(["predict", run, "p.csv"])
    assert r.exit_code == 1
    assert r.stderr == "error: p.csv: missing feature column 'x2' (the model was trained with it)\n"
    assert r.stdout == ""  # not even a header
    r = cli(["predict", run, "p.csv", "-o", "out.csv"])
    assert r.exit_code == 1
    assert r.stderr == "error: p.csv: missing feature column 'x2' (the model was trained with it)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
    (tmp_path / "p.csv").write_text(_csv(["x1"], [[r[0]] for r in rows]))
    r = cli(["predict", run, "p.csv"])
    assert (r.exit_code, r.stderr) == (1, "error: p.csv: missing feature columns 'x2', 'tone' (the model was trained with them)\n")


def test_unseen_categories_warn_once_per_column_with_totals(cli, three, tmp_path):
    run, rows, _ = three
    new = [list(r) for r in rows]
    for i in range(0, N, 10):
        new[i][2] = "mauve"  # 8 rows
    for i in (5, 25, 45):
        new[i][2] = "teal"  # 3 rows, spread over several chunks
    (tmp_path / "p.csv").write_text(_csv(HEADER, new))
    expected = ("warning: p.csv: column 'tone': 11 value(s) never seen in training "
                "(2 distinct, e.g. 'mauve', 'teal'); encoded as unknown (all zeros)\n")
    for chunk in ("7", "100000"):
        r = cli(["predict", run, "p.csv", "--chunk-rows", chunk])
        assert r.exit_code == 0
        assert r.stderr == expected, chunk


def test_unseen_and_missing_values_in_one_column_are_both_reported(cli, three, tmp_path):
    run, rows, _ = three
    new = [list(r) for r in rows]
    new[1][2] = "mauve"
    new[2][2] = ""
    new[3][0] = ""
    (tmp_path / "p.csv").write_text(_csv(HEADER, new))
    r = cli(["predict", run, "p.csv", "--chunk-rows", "2"])
    assert r.exit_code == 0
    fill = next(c for c in json.loads((run / "schema.json").read_text())["columns"] if c["name"] == "x1")["fill"]
    assert r.stderr.splitlines() == [
        "warning: p.csv: column 'tone': 1 value(s) never seen in training (1 distinct, e.g. 'mauve'); "
        "encoded as unknown (all zeros)",
        f"warning: p.csv: column 'x1': 1 missing value(s), none were missing in training; imputed with the training median {fill:g}",
        "warning: p.csv: column 'tone': 1 missing value(s), none were missing in training; encoded as unknown (all zeros)",
    ]
    with np.load(run / "splits.npz", allow_pickle=False) as s:
        train_rows = s["train"]
    assert fill == pytest.approx(np.median([float(rows[i][0]) for i in train_rows]))


def test_chunked_prediction_equals_one_piece(cli, three, tmp_path):
    run, _, data = three
    whole, _ = predict_rows(cli, run, data)
    chunked, _ = predict_rows(cli, run, data, "--chunk-rows", "7")
    assert chunked == whole
    r = cli(["predict", run, data, "--chunk-rows", "7", "-o", "o.csv"])
    assert r.exit_code == 0
    assert r.stderr == f"wrote {N} predictions to o.csv\n"
    assert list(csv.reader(io.StringIO((tmp_path / "o.csv").read_text()))) == whole


def test_output_is_never_clobbered_without_overwrite(cli, three, tmp_path):
    run, _, data = three
    (tmp_path / "o.csv").write_text("precious\n")
    r = cli(["predict", run, data, "-o", "o.csv"])
    assert r.exit_code == 1
    assert r.stderr == "error: o.csv: already exists; pass --overwrite to replace it (nothing was written)\n"
    assert (tmp_path / "o.csv").read_text() == "precious\n"
    r = cli(["predict", run, data, "-o", "o.csv", "--overwrite"])
    assert r.exit_code == 0
    assert (tmp_path / "o.csv").read_text().startswith("prediction,proba_0,proba_1,proba_2\n")


def test_output_is_atomic_when_a_later_chunk_fails(cli, three, tmp_path):
    run, rows, _ = three
    bad = [list(r) for r in rows]
    bad[50][1] = "oops"  # file line 52, in the 8th chunk of 7 rows
    (tmp_path / "p.csv").write_text(_csv(HEADER, bad))
    expected = ("error: p.csv, line 52: column 'x2': non-numeric value 'oops' in a numeric column "
                "(fix it, or list 'x2' in data.categorical)\n")
    r = cli(["predict", run, "p.csv", "--chunk-rows", "7", "-o", "o.csv"])
    assert (r.exit_code, r.stderr) == (1, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # no output, no temporary file
    (tmp_path / "o.csv").write_text("old\n")
    r = cli(["predict", run, "p.csv", "--chunk-rows", "7", "-o", "o.csv", "--overwrite"])
    assert (r.exit_code, r.stderr) == (1, expected)
    assert (tmp_path / "o.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "p.csv"]


def test_output_folder_must_exist(cli, three, tmp_path):
    run, _, data = three
    r = cli(["predict", run, data, "-o", "nowhere/o.csv"])
    assert (r.exit_code, r.stderr) == (1, "error: nowhere/o.csv: folder nowhere does not exist\n")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty (expected a header row and data rows)"),
    ("x1,x2,tone\n", "has a header row (3 columns) but no data rows"),
])
def test_predict_on_empty_input(cli, three, tmp_path, text, message):
    run, _, _ = three
    (tmp_path / "p.csv").write_text(text)
    r = cli(["predict", run, "p.csv"])
    assert (r.exit_code, r.stderr, r.stdout) == (1, f"error: p.csv: {message}\n", "")


# -- evaluate ---------------------------------------------------------------------------------
def test_evaluate_json_on_a_labelled_csv(cli, three):
    run, rows, data = three
    report, _ = evaluate_json(cli, run, data)
    assert {"n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss", "labels",
            "confusion_matrix", "per_class"} <= set(report)
    assert "roc_auc" not in report and "roc_auc_ovr" in report  # three classes: one-vs-rest
    out, _ = predict_rows(cli, run, data)
    predicted = [int(line[0]) for line in out[1:]]
    true = [int(r[3]) for r in rows]
    accuracy, cm, per_class = expected_report(true, predicted, [0, 1, 2])
    assert report["n"] == N
    assert report["labels"] == [0, 1, 2]
    assert report["accuracy"] == pytest.approx(accuracy)
    assert report["confusion_matrix"] == cm
    for got, want in zip(report["per_class"], per_class):
        assert {k: got[k] for k in want} == pytest.approx(want)
    assert report["macro_f1"] == pytest.approx(np.mean([c["f1"] for c in per_class]))
    assert report["macro_precision"] == pytest.approx(np.mean([c["precision"] for c in per_class]))
    assert report["macro_recall"] == pytest.approx(np.mean([c["recall"] for c in per_class]))
    proba = np.array([[float(v) for v in line[1:]] for line in out[1:]])
    log_loss = -np.mean(np.log(np.clip(proba[np.arange(N), true], 1e-15, 1)))
    assert report["log_loss"] == pytest.approx(log_loss, rel=1e-3)


def test_evaluate_binary_has_roc_auc(cli, binary):
    run, rows, data = binary
    report, _ = evaluate_json(cli, run, data)
    assert report["labels"] == ["no", "yes"]
    out, _ = predict_rows(cli, run, data)
    score = [float(line[2]) for line in out[1:]]
    pos = [s for s, r in zip(score, rows) if r[3] == "yes"]
    neg = [s for s, r in zip(score, rows) if r[3] == "no"]
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
    assert report["roc_auc"] == pytest.approx(sum(pairs) / len(pairs), abs=1e-3)
    _, cm, _ = expected_report([r[3] for r in rows], [line[0] for line in out[1:]], ["no", "yes"])
    assert report["confusion_matrix"] == cm


def test_evaluate_text_report(cli, three):
    run, _, data = three
    r = cli(["evaluate", run, data])
    assert r.exit_code == 0, r.stderr
    report, _ = evaluate_json(cli, run, data)
    assert f"{report['accuracy']:.4f}" in r.stdout


def test_evaluate_without_data_uses_the_held_out_test_rows(cli, three, tmp_path):
    run, rows, _ = three
    report, _ = evaluate_json(cli, run)
    with np.load(run / "splits.npz", allow_pickle=False) as s:
        test_rows = s["test"].tolist()
    assert report["n"] == len(test_rows) > 0
    assert report["data"].endswith("d.csv (test split)")
    (tmp_path / "t.csv").write_text(_csv(HEADER, [rows[i] for i in test_rows]))
    assert evaluate_json(cli, run, "t.csv")[0]["confusion_matrix"] == report["confusion_matrix"]
    out, _ = predict_rows(cli, run, "t.csv")
    accuracy, cm, _ = expected_report([int(rows[i][3]) for i in test_rows], [int(l[0]) for l in out[1:]], [0, 1, 2])
    assert report["accuracy"] == pytest.approx(accuracy)
    assert report["confusion_matrix"] == cm
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["n"] == report["n"]
    assert summary["test"]["accuracy"] == pytest.approx(report["accuracy"])


def test_evaluate_held_out_rows_when_the_training_csv_shrank(cli, three, tmp_path):
    run, rows, _ = three
    folder = tmp_path / "copy"
    shutil.copytree(run.parent.parent, folder)
    data = folder / "d.csv"
    # point the copied run at the copied CSV, then cut the CSV short
    ckpt = folder / "runs" / "r" / "checkpoints" / "best.npz"
    with np.load(ckpt, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["config"]["data"]["train"] = str(data)
    meta.pop("data_files")  # no fingerprint to compare: the row-range check is the last line of defence
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(ckpt, **arrays)
    data.write_text(_csv(HEADER, rows[:10]))
    with np.load(folder / "runs" / "r" / "splits.npz", allow_pickle=False) as s:
        last = int(s["test"].max()) + 1
    r = cli(["evaluate", folder / "runs" / "r"])
    assert r.exit_code == 1
    assert r.stderr == (f"error: {data}: has 10 data rows but the run's test split lists row {last}; "
                        f"the file changed since training (give a labelled CSV to evaluate on)\n")


def test_evaluate_warns_about_labels_never_seen_in_training(cli, three, tmp_path):
    run, rows, _ = three
    new = [list(r) for r in rows[:12]]
    for i in (0, 4):
        new[i][3] = "7"
    new[9][3] = "9"
    (tmp_path / "e.csv").write_text(_csv(HEADER, new))
    report, r = evaluate_json(cli, run, "e.csv")
    assert r.stderr == "warning: e.csv: 3 row(s) have labels never seen in training: '7' (2), '9' (1); scored as wrong\n"
    out, _ = predict_rows(cli, run, "e.csv")
    correct = sum(line[0] == row[3] for line, row in zip(out[1:], new))
    assert report["n"] == 12
    assert report["accuracy"] == pytest.approx(correct / 12)
    assert report["labels"] == [0, 1, 2]
    assert sum(map(sum, report["confusion_matrix"])) == 9  # unseen labels are in no row


def test_evaluate_skips_rows_without_label(cli, three, tmp_path):
    run, rows, _ = three
    new = [list(r) for r in rows[:12]]
    new[2][3] = ""
    (tmp_path / "e.csv").write_text(_csv(HEADER, new))
    report, r = evaluate_json(cli, run, "e.csv")
    assert r.stderr == "warning: e.csv: 1 row(s) with a missing 'label' label skipped\n"
    assert report["n"] == 11


def test_evaluate_needs_the_target_column(cli, three, tmp_path):
    run, rows, _ = three
    (tmp_path / "e.csv").write_text(_csv(["x1", "x2", "tone"], [r[:3] for r in rows]))
    r = cli(["evaluate", run, "e.csv"])
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == "error: e.csv: target column 'label' not found; evaluate needs labels (use predict for unlabelled data)\n"


def test_evaluate_and_predict_name_bad_runs(cli, three, tmp_path):
    run, _, data = three
    for command in ("evaluate", "predict"):
        r = cli([command, "nope", data])
        assert (r.exit_code, r.stderr) == (1, "error: nope: no such run folder or checkpoint file\n")
        r = cli([command, run, data, "--checkpoint", "middle"])
        assert (r.exit_code, r.stderr) == (2, f"error: Invalid value for '--checkpoint': 'middle' is not one of 'auto', 'best', 'last', 'calibrated', 'refit' (see: nnclf {command} --help)\n")
        (tmp_path / "empty").mkdir(exist_ok=True)
        r = cli([command, "empty", data])
        assert (r.exit_code, r.stderr) == (1, "error: empty: no checkpoints/best.npz (is it a run folder?)\n")
        r = cli([command, run, data, "--checkpoint", "refit"])  # was "(is it a run folder?)" of a run folder
        assert (r.exit_code, r.stderr) == (1, f"error: {run}: no checkpoints/refit.npz; the run was trained without training.refit: true\n")
        if not (tmp_path / "fifo").exists():
            os.mkfifo(tmp_path / "fifo")
        r = cli([command, "fifo", data])  # neither a folder nor a file to read a checkpoint from
        assert (r.exit_code, r.stderr) == (1, "error: fifo: is a pipe (FIFO or process substitution); expected a run folder or a checkpoint file\n")


def test_a_run_that_saved_no_checkpoint_is_named_as_a_run(cli, three, tmp_path):
    # diverged in its first epoch: a run folder, which was answered "(is it a run folder?)"
    _, _, data = three
    (tmp_path / "d.csv").write_bytes(data.read_bytes())
    write_config(tmp_path, "data:\n  train: d.csv\n  target: label\noptimizer:\n  name: sgd\n  lr: 1.0e+30\n", "c.yaml")
    r = cli("train c.yaml --name div --quiet")
    assert r.exit_code == 1 and "training diverged" in r.stderr
    for command in ("evaluate", "predict", "export", "calibrate"):
        r = cli([command, "runs/div", "d.csv"] if command in ("evaluate", "predict") else [command, "runs/div"])
        assert (r.exit_code, r.stderr) == (1, "error: runs/div: no checkpoints/best.npz; the run (status diverged) saved no checkpoint\n"), command


def test_checkpoint_file_can_be_given_directly(cli, three):
    run, _, data = three
    a, _ = predict_rows(cli, run, data, "--checkpoint", "last")
    b, _ = predict_rows(cli, run / "checkpoints" / "last.npz", data)
    assert a == b


def test_evaluate_json_is_strict_json_when_a_metric_is_undefined(cli, binary, tmp_path):
    """ROC AUC needs both classes; with one it is undefined: null, not NaN (which JSON lacks)."""
    run, rows, _ = binary
    (tmp_path / "yes.csv").write_text(_csv(HEADER, [r for r in rows if r[3] == "yes"]))
    r = cli(["evaluate", run, "yes.csv", "--json"])
    assert r.exit_code == 0, r.stderr

    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    report = json.loads(r.stdout, parse_constant=reject)
    assert report["roc_auc"] is None
    assert report["n"] == sum(1 for row in rows if row[3] == "yes")
    text = cli(["evaluate", run, "yes.csv"])
    assert text.exit_code == 0 and "nan" not in text.stdout.lower()


# -- True/False columns -----------------------------------------------------------------------
def test_boolean_feature_with_a_blank_at_prediction_time(cli, tmp_path):
    """A True/False column with one blank is read as Python bools in an object column; its values
    must still match the training categories (not all be 'never seen')."""
    rows = [[str(i % 7), "True" if i % 3 else "False", str(i % 2)] for i in range(40)]
    (tmp_path / "d.csv").write_text(_csv(["a", "flag", "label"], rows))
    write_config(tmp_path, "data:\n  train: d.csv\n  target: label\nmodel:\n  hidden: [3]\ntraining:\n  epochs: 2\n", "c.yaml")
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    blank = [list(r) for r in rows]
    blank[2][1] = ""
    (tmp_path / "p.csv").write_text(_csv(["a", "flag", "label"], blank))
    r = cli("predict runs/r p.csv")
    assert r.exit_code == 0
    assert r.stderr == ("warning: p.csv: column 'flag': 1 missing value(s), none were missing in training; "
                        "encoded as unknown (all zeros)\n")
    full, _ = predict_rows(cli, "runs/r", "d.csv")
    mixed = list(csv.reader(io.StringIO(r.stdout)))
    assert [row for i, row in enumerate(mixed) if i != 3] == [row for i, row in enumerate(full) if i != 3]


def test_boolean_target_with_blank_labels(cli, tmp_path):
    rows = [[str(i % 7), str((i * 3) % 5), "True" if i % 2 else "False"] for i in range(40)]
    (tmp_path / "clean.csv").write_text(_csv(["a", "b", "label"], rows))
    holes = [list(r) for r in rows]
    holes[3][2] = ""
    (tmp_path / "d.csv").write_text(_csv(["a", "b", "label"], holes))
    write_config(tmp_path, "data:\n  train: d.csv\n  target: label\nmodel:\n  hidden: [3]\ntraining:\n  epochs: 2\n", "c.yaml")
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    report, r = evaluate_json(cli, "runs/r", "clean.csv")
    assert r.stderr == ""  # the labels of a blank-free file are the same labels
    assert report["labels"] == ["False", "True"]  # as the file writes them
    assert report["n"] == 40 and report["unknown_labels"] == 0
    out, _ = predict_rows(cli, "runs/r", "clean.csv")
    assert out[0] == ["prediction", "proba_False", "proba_True"]
    assert {line[0] for line in out[1:]} <= {"True", "False"}


def test_evaluate_and_predict_read_with_the_configured_delimiter(cli, tmp_path):
    # ':' is never detected automatically; the config names it, and new files are read with it too
    lines = ["a:b:label"] + [f"{i % 5}:{(i * 7) % 11}:{i % 2}" for i in range(60)]
    (tmp_path / "colon.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text("data: {train: colon.csv, target: label, delimiter: ':'}\ntraining: {epochs: 2}\n")
    trained = cli(["train", "c.yaml", "--quiet"])
    assert trained.exit_code == 0, trained.stderr
    run = tmp_path / trained.stdout.strip()
    predicted = cli(["predict", run, tmp_path / "colon.csv"])
    assert predicted.exit_code == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 61
    evaluated = cli(["evaluate", run, tmp_path / "colon.csv", "--json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 60


@pytest.mark.parametrize("command", ["predict", "evaluate", "calibrate", "export", "report"])
def test_checkpoint_given_with_a_checkpoint_file_is_refused(cli, three, tmp_path, command):
    """--checkpoint chooses among a run folder's checkpoints; with a checkpoint file as RUN it
    would be ignored, so giving it is a one-line error (and leaving it out uses the file)."""
    run, _, data = three
    model = run / "checkpoints" / "best.npz"
    before = sorted(p.name for p in run.rglob("*"))
    args = {"predict": [model, data], "evaluate": [model, data], "calibrate": [model, data, "-o", tmp_path / "c.npz"],
            "export": [model, "-o", tmp_path / "m.onnx"], "report": [model]}[command]
    r = cli([command, *args, "--checkpoint", "last"])
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == (f"error: --checkpoint last: {model} is a checkpoint file, the model used as it is; --checkpoint "
                        "chooses among a run folder's checkpoints (leave it out, or give the run folder)\n")
    assert sorted(p.name for p in run.rglob("*")) == before and not list(tmp_path.iterdir())
    if command in ("predict", "evaluate"):
        assert cli([command, *args]).exit_code == 0  # the file itself
