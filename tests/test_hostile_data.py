"""Answers that must not be silently wrong, through the CLI: labels as written, missing-value
tokens, one CSV dialect at training and predict time, the hash of what was read, wide headers,
short quotes of huge cells, empty columns, standard input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import numpy as np
import pytest

from conftest import write_config


def _config(tmp_path, data_extra: str = "", train: str = "d.csv", target: str = "label", epochs: int = 2) -> None:
    write_config(
        tmp_path,
        f"seed: 0\ndata:\n  train: {train}\n  target: {target}\n  test_split: 0.2\n  val_split: 0.0\n{data_extra}"
        f"model:\n  hidden: [4]\ntraining:\n  epochs: {epochs}\n  batch_size: 8\n",
        "c.yaml",
    )


def _write_rows(path, header, rows) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_text(buffer.getvalue())


def _predictions(cli, run: str, data: str, input=None) -> list[list[str]]:
    r = cli(f"predict {run} {data}", input=input)
    assert r.exit_code == 0, r.stderr
    return list(csv.reader(io.StringIO(r.stdout)))


def _meta(tmp_path, run: str = "r") -> dict:
    with np.load(tmp_path / "runs" / run / "checkpoints" / "last.npz", allow_pickle=False) as ckpt:
        return json.loads(str(ckpt["meta"]))


# -- labels are text as written -------------------------------------------------------------
LABEL_SETS = {
    "booleans": ["True", "False"],
    "leading zeros": ["001", "1", "010"],
    "missing-value words": ["NA", "None", "null", "n/a"],
    "huge integers": ["10000000000000000", "10000000000000001", "99999999999999999999"],
    "mixed text": ["1.0", "1", "one"],
    "spaces and commas": ["a b", "a,b", 'say "hi"'],
}


@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_predictions_give_back_the_labels_exactly_as_written(cli, tmp_path, name):
    labels = LABEL_SETS[name]
    rows = [[str(i % 5), str((i * 7) % 3), labels[i % len(labels)]] for i in range(60)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr
    meta = _meta(tmp_path)
    assert len(meta["labels"]) == len(labels)  # no two labels became one, none was dropped
    out = _predictions(cli, "runs/r", "d.csv")
    assert out[0] == ["prediction", *(f"proba_{label}" for label in map(str, meta["labels"]))]
    assert sorted(map(str, meta["labels"])) == sorted(labels)
    assert {row[0] for row in out[1:]} <= set(labels)
    report = json.loads(cli("evaluate runs/r d.csv --json").stdout)
    assert report["n"] == 60 and report["unknown_labels"] == 0  # every cell matches its class


def test_integer_labels_are_numbers_sorted_as_numbers(cli, tmp_path):
    rows = [[str(i % 5), str(i % 3), ["2", "10", "-3"][i % 3]] for i in range(60)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    assert _meta(tmp_path)["labels"] == [-3, 2, 10]


def test_minus_zero_is_a_label_of_its_own_not_a_second_integer_zero(cli, tmp_path):
    # '-0' is not a plainly written integer: as an integer it would be a second class 0 (two
    # output units for one label, and its rows encoded as unseen: training failed)
    rows = [[str(i % 5), str(i % 3), ["0", "-0", "1"][i % 3]] for i in range(60)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr
    assert _meta(tmp_path)["labels"] == ["-0", "0", "1"]
    header = _predictions(cli, "runs/r", "d.csv")[0]
    assert header == ["prediction", "proba_-0", "proba_0", "proba_1"]
    # a model with integer labels matches a '-0' cell as the number 0 (like '0.0')
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], [[r[0], r[1], r[2].lstrip("-")] for r in rows])
    assert cli("train c.yaml --name ints --quiet").exit_code == 0
    _write_rows(tmp_path / "e.csv", ["a", "b", "label"], [["1", "1", "-0"], ["2", "2", "1"]])
    report = json.loads(cli("evaluate runs/ints e.csv --json").stdout)
    assert report["n"] == 2 and report["unknown_labels"] == 0


def test_a_row_encodes_the_same_whatever_its_neighbours_hold(cli, tmp_path):
    # pandas reads 'True' as a boolean only in a column of nothing else, and '2007' as 2007.0 in
    # a column with gaps: beside a text cell the same row's flag was a value never seen in training
    rows = [[str(i % 5), ["True", "False"][i % 2], ["2007", "2008"][i % 3 == 0], "xy"[i % 2]] for i in range(60)]
    _write_rows(tmp_path / "d.csv", ["a", "flag", "year", "label"], rows)
    _config(tmp_path, "  categorical: [year]\n")
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    _write_rows(tmp_path / "alone.csv", ["a", "flag", "year"], [["1", "True", "2007"], ["2", "FALSE", "2008"]])
    _write_rows(tmp_path / "beside.csv", ["a", "flag", "year"], [["1", "True", "2007.0"], ["2", "FALSE", "2008"], ["3", "maybe", "n/a?"]])
    alone = _predictions(cli, "runs/r", "alone.csv")
    r = cli("predict runs/r beside.csv")
    assert r.exit_code == 0, r.stderr
    assert list(csv.reader(io.StringIO(r.stdout)))[:3] == alone
    assert "'maybe'" in r.stderr and "'True'" not in r.stderr and "'FALSE'" not in r.stderr and "'2007.0'" not in r.stderr


def test_a_boolean_column_read_in_chunks_of_booleans_and_text_is_one_vocabulary(cli, tmp_path, monkeypatch):
    # the first chunk (1024 rows) is all True/False (pandas: booleans, keys 'true'/'false'), the
    # last holds 'maybe' too (text): 'True' was two categories, 'true' and 'True', and predicting
    # a file of text cells said every True and False was never seen in training
    from nnclf.data import reading

    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", 1000)  # chunks of MIN_CHUNK_ROWS rows
    rows = [[str(i % 7), ["True", "False"][i % 2] if i < 1900 else ["True", "False", "maybe"][i % 3], "xy"[i % 2]]
            for i in range(2000)]
    _write_rows(tmp_path / "d.csv", ["a", "flag", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr
    flag = next(c for c in _meta(tmp_path)["preprocessor"]["columns"] if c["name"] == "flag")
    assert flag["categories"] == ["false", "maybe", "true"]
    r = cli("predict runs/r d.csv -o out.csv")
    assert (r.exit_code, r.stderr) == (0, "wrote 2000 predictions to out.csv\n")


def test_a_missing_value_token_in_the_target_is_a_class_and_said_so(cli, tmp_path):
    rows = [[str(i % 5), str(i % 3), ["NA", "yes"][i % 2]] for i in range(40)]
    rows[3][2] = ""  # an empty cell is a missing label
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr
    assert _meta(tmp_path)["labels"] == ["NA", "yes"]
    assert "1 row(s) with a missing 'label' label dropped" in r.stderr
    assert "label(s) 'NA' (20) are in data.na_values" in r.stderr and "kept as classes" in r.stderr


def test_na_values_config_key_decides_what_is_missing_in_features(cli, tmp_path):
    rows = [[["?", "1.5", "2.5", "-999"][i % 4], str(i % 3), str(i % 2)] for i in range(40)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name default --quiet")  # '?' is not a default token: text, so categorical
    assert r.exit_code == 0, r.stderr
    schema = json.loads((tmp_path / "runs" / "default" / "schema.json").read_text())
    assert schema["columns"][0]["kind"] == "categorical"
    _config(tmp_path, "  na_values: ['', '?', -999]\n")
    r = cli("train c.yaml --name custom --quiet")
    assert r.exit_code == 0, r.stderr
    a = json.loads((tmp_path / "runs" / "custom" / "schema.json").read_text())["columns"][0]
    assert a["kind"] == "numeric" and a["missing_in_training"] > 0 and a["fill"] in (1.5, 2.0, 2.5)
    # predict reads with the run's tokens: a '?' is imputed, not an error
    (tmp_path / "p.csv").write_text("a,b\n?,1\n-999,2\n1.5,0\n")
    assert len(_predictions(cli, "runs/custom", "p.csv")) == 4


def test_na_values_must_be_cell_texts(cli, tmp_path):
    _write_rows(tmp_path / "d.csv", ["a", "label"], [["1", "0"], ["2", "1"]])
    _config(tmp_path, "  na_values: [[1, 2]]\n")
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert "data.na_values" in r.stderr and "expected a list of cell texts" in r.stderr


# -- one dialect at training and predict time --------------------------------------------------
def _inches_rows(n: int) -> list[str]:
    """Unquoted fields with a literal quote (12" screen), and quoted fields with newlines."""
    notes = ['12" screen', "tv", '"two\nlines, and a comma"', 'a "quoted" word', '"say ""hi"""']
    return [f"{i % 10},{notes[i % len(notes)]},{'ab'[i % 2]}" for i in range(n)]


@pytest.mark.parametrize("chunk", [1, 100, 100_000])
def test_a_literal_quote_in_an_unquoted_field_predicts_like_it_trained(cli, tmp_path, chunk):
    (tmp_path / "d.csv").write_text("x,note,label\n" + "\n".join(_inches_rows(3000)) + "\n")
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    out = _predictions(cli, "runs/r", f"d.csv --chunk-rows {chunk}")
    assert len(out) == 3001
    whole = _predictions(cli, "runs/r", "d.csv")
    assert [row[0] for row in out] == [row[0] for row in whole]


def test_literal_quotes_never_grow_a_block():
    from nnclf.data.blocks import record_blocks

    data = ("x,note,label\n" + "\n".join(_inches_rows(30_000)) + "\n").encode()
    blocks = list(record_blocks(io.BytesIO(data), 1 << 14, ","))
    assert b"".join(block for _, block in blocks) == data
    assert max(len(block) for _, block in blocks) <= 1 << 14  # every cut found inside its block
    for _, block in blocks:  # and never inside a quoted field: each block parses on its own
        assert {len(row) for row in csv.reader(io.StringIO(block.decode(), newline=""))} == {3}


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("command", ["train", "predict"])
def test_a_short_row_is_found_in_a_block_with_quotes(cli, tmp_path, quoted, command):
    note = '"a, b"' if quoted else "plain"
    rows = [f"{i % 10},{note if i % 3 == 0 else 'plain'},{i % 2}" for i in range(2000)]
    good = "x,note,label\n" + "\n".join(rows) + "\n"
    rows[1500] = "7,plain"  # the label is missing: a short row, not an empty label
    bad = "x,note,label\n" + "\n".join(rows) + "\n"
    line = 1502
    if command == "train":
        (tmp_path / "d.csv").write_text(bad)
        _config(tmp_path)
        r = cli("train c.yaml")
    else:
        (tmp_path / "d.csv").write_text(good)
        _config(tmp_path)
        assert cli("train c.yaml --name r --quiet").exit_code == 0
        (tmp_path / "p.csv").write_text(bad)
        r = cli("predict runs/r p.csv --chunk-rows 50")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].endswith(f", line {line}: expected 3 fields like the header, saw 2")


# -- the hash is of what was read -------------------------------------------------------------
def test_a_file_replaced_while_it_is_read_is_recorded_as_read(cli, tmp_path, monkeypatch):
    from nnclf.data import reading

    rows = [[str(i % 7), str(i % 3), str(i % 2)] for i in range(60)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    original = (tmp_path / "d.csv").read_bytes()
    _write_rows(tmp_path / "other.csv", ["a", "b", "label"], [[str(i % 5), "0", str(i % 2)] for i in range(90)])
    real = reading._read_head

    def replaced_meanwhile(path, stream, encoding):
        head = real(path, stream, encoding)
        if path.name == "d.csv":  # after the file is open: another process renames a new file over it
            os.replace(tmp_path / "other.csv", tmp_path / "d.csv")
        return head

    monkeypatch.setattr(reading, "_read_head", replaced_meanwhile)
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    monkeypatch.undo()
    recorded = _meta(tmp_path)["data_files"]["train"]
    assert recorded["sha256"] == hashlib.sha256(original).hexdigest() and recorded["bytes"] == len(original)
    r = cli("evaluate runs/r")  # the held-out rows are rows of the file that was read, not of this one
    assert r.exit_code == 1
    assert "the training file changed since the run (its SHA-256 differs)" in r.stderr


# -- wide files -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["20,000 columns", "long names"])
def test_wide_headers_read_without_false_duplicates(cli, tmp_path, shape):
    if shape == "20,000 columns":
        names = [f"c{i}" for i in range(20_000)]  # a 108,889-character header line
    else:
        names = ["x" * 70_000 + "a", "x" * 70_000 + "b"]  # the first 65,536 characters are equal
    rng = np.random.default_rng(0)
    lines = [",".join([*names, "label"])]
    for i in range(12):
        lines.append(",".join([*(f"{v:.2f}" for v in rng.normal(size=len(names))), str(i % 2)]))
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    _config(tmp_path, epochs=1)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr[-500:]
    assert json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())["features"]["columns"] == len(names)
    assert len(_predictions(cli, "runs/r", "d.csv")) == 13


# -- messages, empty columns ------------------------------------------------------------------
def test_a_huge_cell_is_quoted_short(cli, tmp_path):
    rows = [[str(i % 7), str(i % 2)] for i in range(30)]
    rows[5][0] = "z" * 2_000_000
    _write_rows(tmp_path / "d.csv", ["a", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert len(r.stderr) < 400
    assert "non-numeric value 'zzzzzzzz" in r.stderr and "(2,000,000 characters)" in r.stderr


def test_a_huge_unseen_category_is_quoted_short(cli, tmp_path):
    rows = [[["red", "blue"][i % 2], str(i % 2)] for i in range(30)]
    _write_rows(tmp_path / "d.csv", ["colour", "label"], rows)
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    _write_rows(tmp_path / "p.csv", ["colour"], [["q" * 1_000_000], ["red"]])
    r = cli("predict runs/r p.csv")
    assert r.exit_code == 0
    assert "never seen in training" in r.stderr and len(r.stderr) < 400


def test_a_column_with_no_values_is_dropped_with_a_warning(cli, tmp_path):
    rows = [[str(i % 7), "", "NA" if i % 2 else "", str(i % 2)] for i in range(30)]
    _write_rows(tmp_path / "d.csv", ["a", "empty", "na", "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0, r.stderr
    assert "columns 'empty', 'na' dropped: no values in the training rows" in r.stderr
    schema = json.loads((tmp_path / "runs" / "r" / "schema.json").read_text())
    assert schema["features"] == ["a"]
    assert [d["name"] for d in schema["dropped"]] == ["empty", "na"]
    (tmp_path / "p.csv").write_text("a\n1\n2\n")  # the dropped columns are not needed to predict
    assert len(_predictions(cli, "runs/r", "p.csv")) == 3


def test_only_empty_feature_columns_is_an_error(cli, tmp_path):
    _write_rows(tmp_path / "d.csv", ["e", "label"], [["", str(i % 2)] for i in range(10)])
    _config(tmp_path)
    r = cli("train c.yaml")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].endswith("every feature column is empty in the training rows; nothing to train on")


# -- standard input ---------------------------------------------------------------------------
def test_predict_and_evaluate_read_standard_input(cli, tmp_path):
    rows = [[str(i % 7), str(i % 3), ["True", "001"][i % 2]] for i in range(40)]
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], rows)
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    text = (tmp_path / "d.csv").read_text()
    assert _predictions(cli, "runs/r", "-", input=text) == _predictions(cli, "runs/r", "d.csv")
    from_stdin = cli("evaluate runs/r - --json", input=text)
    assert from_stdin.exit_code == 0, from_stdin.stderr
    report, direct = json.loads(from_stdin.stdout), json.loads(cli("evaluate runs/r d.csv --json").stdout)
    assert report["data"] == "stdin" and report["accuracy"] == direct["accuracy"] and report["n"] == 40


def test_an_empty_standard_input_is_one_line(cli, tmp_path):
    _write_rows(tmp_path / "d.csv", ["a", "label"], [[str(i), str(i % 2)] for i in range(20)])
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    r = cli("predict runs/r -", input="")
    assert r.exit_code == 1
    assert r.stderr == "error: -: the file is empty (expected a header row and data rows)\n"


def test_the_training_summary_of_a_wide_file_stays_short(cli, tmp_path):
    names = [f"n{i}" for i in range(15)] + [f"t{i}" for i in range(15)]
    rows = [[*("" if (i + j) % 9 == 0 else str((i * j) % 7) for j in range(15)), *(f"v{(i + j) % 3}" for j in range(15)), str(i % 2)]
            for i in range(40)]
    _write_rows(tmp_path / "d.csv", [*names, "label"], rows)
    _config(tmp_path)
    r = cli("train c.yaml --name r")
    assert r.exit_code == 0, r.stderr
    summary = r.stdout[r.stdout.index("columns"):]
    block = summary[: summary.index("rows train")]
    assert block.count("\n") <= 5  # four lines, not one per column
    assert "categorical: t0, t1, t2, t3 and 11 more" in block
    schema = json.loads((tmp_path / "runs" / "r" / "schema.json").read_text())
    assert len(schema["columns"]) == 30  # the full list stays in schema.json


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_short_row_on_standard_input_is_an_error_naming_its_line(cli, tmp_path, command):
    """A file is scanned again for a short row when pandas pads one; stdin cannot be re-read,
    so its records are checked as they stream (also past the first block of a megabyte)."""
    _write_rows(tmp_path / "d.csv", ["a", "b", "label"], [[str(i), str(i % 3), str(i % 2)] for i in range(40)])
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    rows = [f"{i},{i % 3},{i % 2}" for i in range(120_000)]  # 1.4 MB: more than one block
    rows[100_000] = "1,2"
    r = cli(f"{command} runs/r -", input="a,b,label\n" + "\n".join(rows) + "\n")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == "error: -, line 100002: expected 3 fields like the header, saw 2"
    quoted = cli(f"{command} runs/r -", input='a,b,label\n"1,5",2,1\n3,"x\ny",1\n')  # quotes: no short row
    assert "expected 3 fields" not in quoted.stderr


def test_a_stray_carriage_return_is_an_error_naming_its_line_and_other_endings_work(cli, tmp_path):
    """pandas ends a row at a lone CR; records here end at newlines. In a file of LF (or CRLF)
    lines a CR inside a line (outside quotes) would make the two disagree: refused everywhere."""
    lines = ["a,b,label"] + [f"{i % 7},{i % 3},{i % 2}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    _config(tmp_path)
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    mixed = list(lines)
    mixed[30] = "1,2,0\r3,4"  # what concatenating a CR-only file onto an LF file looks like
    (tmp_path / "mixed.csv").write_bytes(("\n".join(mixed) + "\n").encode())
    want = "error: mixed.csv, line 31: a carriage return (\\r) inside the line, outside quotes: mixed line endings?"
    for command in ("predict runs/r mixed.csv", "evaluate runs/r mixed.csv"):
        r = cli(command)
        assert r.exit_code == 1 and r.stderr.startswith(want), (command, r.stderr)
    _config(tmp_path, train="mixed.csv")
    r = cli("train c.yaml --name m --quiet")
    assert r.exit_code == 1 and r.stderr.startswith(want.replace("mixed.csv", str(tmp_path / "mixed.csv"))), r.stderr
    # a CR inside quotes is a character of the cell; CRLF and CR-only files are whole-line endings
    quoted = list(lines)
    quoted[5] = '1,2,"0\r"'
    (tmp_path / "quoted.csv").write_bytes(("\n".join(quoted) + "\n").encode())
    assert cli("evaluate runs/r quoted.csv").exit_code == 0
    expected = _predictions(cli, "runs/r", "d.csv")
    for name, ending in (("crlf.csv", "\r\n"), ("cr.csv", "\r")):
        (tmp_path / name).write_bytes((ending.join(lines) + ending).encode())
        assert _predictions(cli, "runs/r", name) == expected, name
