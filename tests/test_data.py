"""Reading and preprocessing CSVs through `nnclf train`: one-line errors naming file, line,
column and value; real-world files (BOM, CRLF, semicolons, decimal commas, gzip, latin-1) read
fine; typing decisions recorded in schema.json."""

from __future__ import annotations

import gzip
import json
import statistics

import numpy as np
import pytest

from conftest import write_config


def config_text(train: str = "d.csv", target: str = "label", data_extra: str = "", epochs: int = 2) -> str:
    return (
        f"seed: 0\ndata:\n  train: {train}\n  target: {target}\n{data_extra}"
        f"model:\n  hidden: [4]\ntraining:\n  epochs: {epochs}\n  batch_size: 8\n"
    )


def rows_text(n: int = 30, sep: str = ",") -> str:
    """a (int), b (float), label (0/1); deterministic."""
    lines = [sep.join(["a", "b", "label"])]
    lines += [sep.join([str(i % 7), f"{(i * 37 % 100) / 10:.1f}", str(i % 2)]) for i in range(n)]
    return "\n".join(lines) + "\n"


def train(cli, tmp_path, data, data_extra: str = "", file: str = "d.csv", target: str = "label", args: str = "--name r"):
    path = tmp_path / file
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    write_config(tmp_path, config_text(file, target, data_extra), "c.yaml")
    return cli(f"train c.yaml {args}")


def fails(r, tmp_path, expected: str):
    assert r.exit_code == 1, r.stderr
    assert r.stderr.splitlines()[-1] == f"error: {expected}"
    assert not (tmp_path / "runs").exists()


def abspath(tmp_path, name: str = "d.csv") -> str:
    return str((tmp_path / name).resolve())


def schema(tmp_path, run: str = "r") -> dict:
    return json.loads((tmp_path / "runs" / run / "schema.json").read_text())


def summary(tmp_path, run: str = "r") -> dict:
    return json.loads((tmp_path / "runs" / run / "summary.json").read_text())


def column(tmp_path, name: str, run: str = "r") -> dict:
    return next(c for c in schema(tmp_path, run)["columns"] if c["name"] == name)


# -- file-level errors ------------------------------------------------------------------------
def test_missing_data_file(cli, tmp_path):
    write_config(tmp_path, config_text("nope.csv"), "c.yaml")
    fails(cli("train c.yaml"), tmp_path, f"{abspath(tmp_path, 'nope.csv')}: data file not found")


def test_empty_file(cli, tmp_path):
    fails(train(cli, tmp_path, ""), tmp_path, f"{abspath(tmp_path)}: the file is empty (expected a header row and data rows)")


def test_header_only(cli, tmp_path):
    fails(train(cli, tmp_path, "a,b,label\n"), tmp_path, f"{abspath(tmp_path)}: has a header row (3 columns) but no data rows")


def test_ragged_row_names_line_and_field_counts(cli, tmp_path):
    lines = rows_text(20).splitlines()
    lines[6] = "1,2.0,0,99"  # the 7th line of the file
    fails(train(cli, tmp_path, "\n".join(lines) + "\n"), tmp_path, f"{abspath(tmp_path)}, line 7: expected 3 fields like the header, saw 4")


def test_short_row_names_line_and_field_counts(cli, tmp_path):
    lines = rows_text(20).splitlines()
    lines[8] = "1,2.0"  # the 9th line of the file: pandas alone would pad it with a missing label
    lines.insert(3, "")  # blank lines are skipped, not short, and still count as lines
    fails(train(cli, tmp_path, "\n".join(lines) + "\n"), tmp_path, f"{abspath(tmp_path)}, line 10: expected 3 fields like the header, saw 2")


def test_short_row_found_across_read_blocks(tmp_path):
    from nnclf.data.reading import find_short_row

    text = "a,b,c\n" + "1,2,3\r\n" * 50 + "\r\n" + "4,5\n" + "6,7,8\n"
    (tmp_path / "s.csv").write_text(text, newline="")
    for block in (3, 7, 64, 1 << 20):
        assert find_short_row(tmp_path / "s.csv", ",", 3, "utf-8", block_size=block) == (53, 2)
    # declared utf-8-sig (the BOM is not part of the delimiter's byte): found too, was missed
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert find_short_row(tmp_path / "bom.csv", ",", 3, "utf-8-sig") == (53, 2)
    assert find_short_row(tmp_path / "bom.csv", ",", 3, "utf-16") is None  # not scanned
    quoted = 'a,b,c\n"x\ny",2,3\n'  # a quoted newline is not a short row
    (tmp_path / "q.csv").write_text(quoted)
    assert find_short_row(tmp_path / "q.csv", ",", 3, "utf-8") is None


def test_duplicate_column_names(cli, tmp_path):
    text = "a,b,a,label\n" + "".join(f"{i},{i},{i},{i % 2}\n" for i in range(10))
    fails(train(cli, tmp_path, text), tmp_path, f"{abspath(tmp_path)}, line 1: duplicate column name 'a' (columns 1 and 3)")


def test_missing_target_suggests_close_name(cli, tmp_path):
    r = train(cli, tmp_path, rows_text(), target="lable")
    fails(r, tmp_path, f"{abspath(tmp_path)}: target column 'lable' not found (did you mean 'label'?); columns: a, b, label")


def test_missing_target_without_close_name(cli, tmp_path):
    fails(train(cli, tmp_path, rows_text(), target="species"), tmp_path,
          f"{abspath(tmp_path)}: target column 'species' not found; columns: a, b, label")


@pytest.mark.parametrize("sep, word, shown", [(";", "semicolons", ";"), ("\t", "tabs", "\t")])
def test_missing_target_hints_at_the_delimiter(cli, tmp_path, sep, word, shown):
    # the delimiter is forced to ',' so the whole header is one column
    r = train(cli, tmp_path, rows_text(sep=sep), data_extra="  delimiter: ','\n")
    header = sep.join(["a", "b", "label"])
    fails(r, tmp_path,
          f"{abspath(tmp_path)}: target column 'label' not found (did you mean '{header}'?) "
          f"(the header looks separated by {word}: set data.delimiter: '{shown}'); columns: {header}")


def test_stray_string_in_numeric_column(cli, tmp_path):
    lines = rows_text(30).splitlines()
    lines[12] = "3,oops,1"  # line 13 of the file
    fails(train(cli, tmp_path, "\n".join(lines) + "\n"), tmp_path,
          f"{abspath(tmp_path)}, line 13: column 'b': non-numeric value 'oops' in a numeric column "
          f"(fix it, or list 'b' in data.categorical)")


def test_stray_string_column_listed_as_categorical_trains(cli, tmp_path):
    lines = rows_text(30).splitlines()
    lines[12] = "3,oops,1"
    r = train(cli, tmp_path, "\n".join(lines) + "\n", data_extra="  categorical: [b]\n")
    assert r.exit_code == 0, r.stderr
    assert column(tmp_path, "b")["kind"] == "categorical"


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_value_names_column_and_line(cli, tmp_path, value):
    lines = rows_text(30).splitlines()
    lines[5] = f"{value},1.0,1"  # line 6
    fails(train(cli, tmp_path, "\n".join(lines) + "\n"), tmp_path,
          f"{abspath(tmp_path)}, line 6: column 'a': infinite value {float(value)} "
          f"(nnclf does not guess a number for inf; fix or remove it)")


def test_target_with_one_class(cli, tmp_path):
    text = "a,b,label\n" + "".join(f"{i},{i * 2},yes\n" for i in range(20))
    fails(train(cli, tmp_path, text), tmp_path,
          f"{abspath(tmp_path)}: target column 'label' has 1 class (only 'yes'); classification needs at least 2")


def test_too_few_rows_for_the_splits(cli, tmp_path):
    text = "a,b,label\n1,2,0\n2,3,1\n"  # 20% of 2 rows rounds to none
    fails(train(cli, tmp_path, text), tmp_path,
          f"{abspath(tmp_path)}: 2 rows are too few for data.test_split=0.2: the split would be empty")
    text = "a,b,label\n1,2,0\n2,3,1\n3,3,0\n4,4,1\n5,5,0\n"  # 1 test row; 10% of the other 4 is none
    fails(train(cli, tmp_path, text), tmp_path,
          f"{abspath(tmp_path)}: 4 rows are too few for data.val_split=0.1: the split would be empty")


def test_splits_hold_out_the_requested_fraction_with_many_small_classes(cli, tmp_path):
    """10 classes of 4 rows: 10% is 4 test rows even though 10% of each class rounds to 0."""
    text = "a,b,label\n" + "".join(f"{i % 7},{i % 3},k{i % 10}\n" for i in range(40))
    r = train(cli, tmp_path, text, data_extra="  test_split: 0.1\n  val_split: 0.1\n")
    assert r.exit_code == 0, r.stderr
    assert summary(tmp_path)["rows"] == {"train": 32, "val": 4, "test": 4}  # 4 = 10% of 40, then of 36
    with np.load(tmp_path / "runs" / "r" / "splits.npz", allow_pickle=False) as s:
        test_classes = {i % 10 for i in s["test"].tolist()}
        train_classes = {i % 10 for i in s["train"].tolist()}
    assert len(test_classes) == 4  # stratified: no class gives two test rows
    assert train_classes == set(range(10))  # every class keeps training rows


def test_undecodable_bytes_name_file_line_and_fix(cli, tmp_path):
    text = rows_text(20).replace("\n1,", "\n1\xe9,", 1)  # first data row starting with 1 is line 3
    data = text.encode("latin-1")
    line = data.split(b"\n").index(next(l for l in data.split(b"\n") if b"\xe9" in l)) + 1
    fails(train(cli, tmp_path, data, data_extra="  categorical: [a]\n"), tmp_path,
          f"{abspath(tmp_path)}, line {line}: bytes that are not valid utf-8; set data.encoding to the file's encoding "
          f"(e.g. latin-1 or cp1252)")
    assert line == 3


def test_latin1_file_reads_with_data_encoding(cli, tmp_path):
    text = "city,b,label\n" + "".join(f"{['Köln', 'Zürich', 'Graz'][i % 3]},{i},{i % 2}\n" for i in range(30))
    r = train(cli, tmp_path, text.encode("latin-1"), data_extra="  encoding: latin-1\n")
    assert r.exit_code == 0, r.stderr
    assert column(tmp_path, "city")["categories"] == ["Graz", "Köln", "Zürich"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_wide_encoding_without_its_byte_order_mark_is_one_line(cli, tmp_path, encoding):
    # the decoder's "UTF-16 stream does not start with BOM" is a UnicodeError that errors="replace"
    # does not cover: it was a traceback, at training and at predict time
    r = train(cli, tmp_path, rows_text(20), data_extra=f"  encoding: {encoding}\n")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == (f"error: {abspath(tmp_path)}: not {encoding} text ({encoding.upper()} stream does not start with BOM); "
                        "set data.encoding to the file's encoding (e.g. utf-8 or latin-1)\n")
    assert not (tmp_path / "runs").exists()
    assert train(cli, tmp_path, rows_text(20).encode(encoding), data_extra=f"  encoding: {encoding}\n").exit_code == 0
    (tmp_path / "new.csv").write_text(rows_text(5))  # utf-8: no byte-order mark
    for command in ("predict", "evaluate"):
        r = cli(f"{command} runs/r new.csv")
        assert (r.exit_code, r.stderr) == (1, f"error: new.csv: not {encoding} text ({encoding.upper()} stream does not start "
                                              "with BOM); set data.encoding to the file's encoding (e.g. utf-8 or latin-1)\n")


# -- real-world files that must just work -----------------------------------------------------
def _expected_numeric(tmp_path, text_rows: list[list[str]], name_index: int):
    """Mean of a column over the run's training rows, computed from the raw rows."""
    with np.load(tmp_path / "runs" / "r" / "splits.npz", allow_pickle=False) as s:
        train_rows = s["train"]
    return float(np.mean([float(text_rows[i][name_index].replace(",", ".")) for i in train_rows]))


def test_bom_and_windows_line_endings(cli, tmp_path):
    text = rows_text(30)
    r = train(cli, tmp_path, b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert r.exit_code == 0, r.stderr
    sch = schema(tmp_path)
    assert sch["features"] == ["a", "b"]  # not '\ufeffa'
    assert [c["kind"] for c in sch["columns"]] == ["numeric", "numeric"]
    assert summary(tmp_path)["classes"] == [0, 1]  # not '0\r'


def test_semicolon_delimiter_detected(cli, tmp_path):
    r = train(cli, tmp_path, rows_text(30, sep=";"))
    assert r.exit_code == 0, r.stderr
    assert schema(tmp_path)["features"] == ["a", "b"]
    assert [c["kind"] for c in schema(tmp_path)["columns"]] == ["numeric", "numeric"]


def test_tab_delimiter_detected(cli, tmp_path):
    r = train(cli, tmp_path, rows_text(30, sep="\t"), file="d.tsv")
    assert r.exit_code == 0, r.stderr
    assert schema(tmp_path)["features"] == ["a", "b"]


def test_semicolon_file_with_decimal_commas_reads_numbers(cli, tmp_path):
    """European spreadsheets write 3,5 for 3.5 when the delimiter is ';'. Those must stay numbers
    (not be one-hot encoded as text)."""
    text = rows_text(30, sep=";")
    lines = [l.replace(".", ",") for l in text.splitlines()]
    r = train(cli, tmp_path, "\n".join(lines) + "\n")
    assert r.exit_code == 0, r.stderr
    b = column(tmp_path, "b")
    assert b["kind"] == "numeric"
    rows = [l.split(";") for l in lines[1:]]
    assert b["center"] == pytest.approx(_expected_numeric(tmp_path, rows, 1))


def test_semicolon_file_with_decimal_points_is_unchanged(cli, tmp_path):
    text = rows_text(30, sep=";")
    r = train(cli, tmp_path, text)
    assert r.exit_code == 0, r.stderr
    rows = [l.split(";") for l in text.splitlines()[1:]]
    assert column(tmp_path, "b")["center"] == pytest.approx(_expected_numeric(tmp_path, rows, 1))


def test_gzipped_csv(cli, tmp_path):
    text = rows_text(30)
    r = train(cli, tmp_path, gzip.compress(text.encode()), file="d.csv.gz")
    assert r.exit_code == 0, r.stderr
    rows = [l.split(",") for l in text.splitlines()[1:]]
    assert column(tmp_path, "b")["center"] == pytest.approx(_expected_numeric(tmp_path, rows, 1))


# -- labels -----------------------------------------------------------------------------------
def test_rows_with_missing_labels_are_dropped_with_a_count(cli, tmp_path):
    lines = rows_text(30).splitlines()
    for i in (3, 8, 20):
        lines[i] = lines[i].rsplit(",", 1)[0] + ","
    r = train(cli, tmp_path, "\n".join(lines) + "\n")
    assert r.exit_code == 0, r.stderr
    assert f"warning: {abspath(tmp_path)}: 3 row(s) with a missing 'label' label dropped" in r.stderr.splitlines()
    rows = summary(tmp_path)["rows"]
    assert rows["train"] + rows["val"] + rows["test"] == 27
    with np.load(tmp_path / "runs" / "r" / "splits.npz", allow_pickle=False) as s:
        used = np.concatenate([s[k] for k in s.files])
    assert not {2, 7, 19} & set(used.tolist())  # data rows (0-based) of file lines 4, 9, 21
    # integer labels with blanks (a float column in pandas) stay integers
    assert summary(tmp_path)["classes"] == [0, 1]


# -- preprocessing decisions ------------------------------------------------------------------
def _mixed_rows(n: int = 40):
    colors = ["red", "green", "blue", "blue", "red", "teal", "red", "green", "blue", "red"]
    rows = []
    for i in range(n):
        a = "" if i % 9 == 4 else str(i % 7)
        c = "" if i % 11 == 3 else colors[i % 10]
        rows.append([a, c, f"id{i}", str(i % 2)])
    return rows


def _mixed_text(rows) -> str:
    return "a,color,uid,label\n" + "".join(",".join(r) + "\n" for r in rows)


NO_SPLITS = "  test_split: 0\n  val_split: 0\n"


def test_categorical_columns_are_one_hot_encoded_and_recorded(cli, tmp_path):
    rows = _mixed_rows()
    r = train(cli, tmp_path, _mixed_text(rows), data_extra=NO_SPLITS + "  ignore: [uid]\n")
    assert r.exit_code == 0, r.stderr
    color = column(tmp_path, "color")
    assert color["kind"] == "categorical"
    present = sorted({row[1] for row in rows if row[1]})
    n_missing = sum(1 for row in rows if not row[1])
    # the missing cells (JSON null) are a category of their own, last
    assert color["categories"] == [*present, None]
    assert color["missing_in_training"] == n_missing
    assert color["reason"] == f"text values, {len(present)} categories, {n_missing} missing kept as their own category"
    # inputs: one numeric column + one column per category
    assert summary(tmp_path)["features"] == {"columns": 2, "inputs": 1 + len(present) + 1}


def test_max_categories_folds_the_rarest(cli, tmp_path):
    rows = _mixed_rows()
    r = train(cli, tmp_path, _mixed_text(rows), data_extra=NO_SPLITS + "  ignore: [uid]\n  max_categories: 3\n")
    assert r.exit_code == 0, r.stderr
    counts = {}
    for row in rows:
        if row[1]:
            counts[row[1]] = counts.get(row[1], 0) + 1
    kept = sorted(sorted(counts, key=lambda k: (-counts[k], k))[:2])  # 3 = two named + other
    color = column(tmp_path, "color")
    assert color["categories"] == [*kept, "__other__", None]
    assert f"{len(counts) - 2} rarest folded into '__other__'" in color["reason"]


def test_identifier_like_column_warns(cli, tmp_path):
    r = train(cli, tmp_path, _mixed_text(_mixed_rows()), data_extra=NO_SPLITS)
    assert r.exit_code == 0, r.stderr
    assert ("warning: column 'uid' looks like an identifier (40 distinct values in 40 rows); one-hot encoding it "
            "will not generalise; consider data.ignore: [uid]") in r.stderr.splitlines()
    r = train(cli, tmp_path, _mixed_text(_mixed_rows()), data_extra=NO_SPLITS + "  ignore: [uid]\n", args="--name r2")
    assert "identifier" not in r.stderr


def test_missing_numbers_imputed_with_training_median(cli, tmp_path):
    rows = _mixed_rows()
    r = train(cli, tmp_path, _mixed_text(rows), data_extra="  ignore: [uid]\n")
    assert r.exit_code == 0, r.stderr
    with np.load(tmp_path / "runs" / "r" / "splits.npz", allow_pickle=False) as s:
        train_rows = s["train"].tolist()
    present = [float(rows[i][0]) for i in train_rows if rows[i][0]]
    a = column(tmp_path, "a")
    assert a["kind"] == "numeric"
    assert a["fill"] == statistics.median(present)  # the median of the training rows only
    assert a["missing_in_training"] == sum(1 for i in train_rows if not rows[i][0])
    assert a["indicator"] is False
    filled = [float(rows[i][0]) if rows[i][0] else a["fill"] for i in train_rows]
    assert a["center"] == pytest.approx(statistics.fmean(filled))
    assert a["scale"] == pytest.approx(statistics.pstdev(filled))


def test_missing_indicators_add_columns(cli, tmp_path):
    rows = _mixed_rows()
    extra = NO_SPLITS + "  ignore: [uid]\n"
    assert train(cli, tmp_path, _mixed_text(rows), data_extra=extra).exit_code == 0
    without = summary(tmp_path)["features"]["inputs"]
    r = train(cli, tmp_path, _mixed_text(rows), data_extra=extra + "  missing_indicators: true\n", args="--name r2")
    assert r.exit_code == 0, r.stderr
    assert column(tmp_path, "a", "r2")["indicator"] is True
    # one extra input: 'a' has blanks; 'color' keeps its blanks as a category instead
    assert summary(tmp_path, "r2")["features"]["inputs"] == without + 1
    assert column(tmp_path, "color", "r2")["indicator"] is False


def test_numeric_column_without_blanks_gets_no_indicator(cli, tmp_path):
    r = train(cli, tmp_path, rows_text(30), data_extra="  missing_indicators: true\n")
    assert r.exit_code == 0, r.stderr
    assert [c["indicator"] for c in schema(tmp_path)["columns"]] == [False, False]
    assert summary(tmp_path)["features"]["inputs"] == 2


def test_separate_val_and_test_files_with_blank_text_cells(cli, tmp_path):
    """With data.val/data.test the training frame is used whole; encoding its text column must
    not write into it (pandas' string columns share their buffer)."""
    rows = _mixed_rows()
    (tmp_path / "v.csv").write_text(_mixed_text(rows[:12]))
    (tmp_path / "t.csv").write_text(_mixed_text(rows[12:24]))
    r = train(cli, tmp_path, _mixed_text(rows), data_extra="  val: v.csv\n  test: t.csv\n  ignore: [uid]\n")
    assert r.exit_code == 0, r.stderr
    assert summary(tmp_path)["rows"] == {"train": 40, "val": 12, "test": 12}
    assert column(tmp_path, "color")["missing_in_training"] == sum(1 for row in rows if not row[1])


# -- reading in chunks: the whole file is parsed in pieces and joined ------------------------------
@pytest.fixture
def small_read_chunks(monkeypatch):
    import nnclf.data.reading as reading

    monkeypatch.setattr(reading, "READ_CHUNK_ROWS", 7)


def test_chunked_reading_equals_one_piece(small_read_chunks, tmp_path):
    import pandas as pd

    from nnclf.data.reading import read_table

    text = rows_text(50)
    (tmp_path / "d.csv").write_text(text)
    frame = read_table(tmp_path / "d.csv")
    pd.testing.assert_frame_equal(frame, pd.read_csv(tmp_path / "d.csv"))


def test_stray_string_in_a_later_chunk_names_its_line(cli, tmp_path, small_read_chunks):
    lines = rows_text(40).splitlines()
    lines[30] = "3,oops,1"  # line 31 of the file, in the fifth chunk of 7 rows
    fails(
        train(cli, tmp_path, "\n".join(lines) + "\n"),
        tmp_path,
        f"{abspath(tmp_path)}, line 31: column 'b': non-numeric value 'oops' in a numeric column "
        f"(fix it, or list 'b' in data.categorical)",
    )


def test_true_false_column_with_a_gap_is_categorical(cli, tmp_path, small_read_chunks):
    rows = [f"{i % 5},{'True' if i % 3 else 'False'},{i % 2}" for i in range(40)]
    rows[20] = "1,,0"  # a gap in a later chunk: that chunk reads as objects, the first as bools
    r = train(cli, tmp_path, "a,flag,label\n" + "\n".join(rows) + "\n", data_extra="  test_split: 0.0\n  val_split: 0.0\n")
    assert r.exit_code == 0, r.stderr
    flag = next(c for c in schema(tmp_path)["columns"] if c["name"] == "flag")
    assert flag["kind"] == "categorical"
    assert flag["categories"] == ["false", "true", None]
    assert flag["reason"].startswith("boolean values")
