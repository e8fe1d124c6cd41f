"""Hostile CSVs: generated files with random column types, missing cells, stray strings, ragged
rows, odd encodings, delimiters and line ends, 0/1/2 rows, one column, thousands of columns.

Through `nnclf train` (and `predict`/`evaluate` on what trained): a result, or exit 1 with ONE
line starting "error:"; never a traceback, never a run folder for rejected data, never NaN in
an output file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st

from conftest import run_cli
from nnclf.checkpoint import load_checkpoint

# numpy noise ("RuntimeWarning: overflow ...", two lines with a source line) is not a one-line
# message: every overflow must be handled (errstate) and reported, so make it fail here
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_csv")


def event(text: str) -> None:
    """Tally outcomes (pytest --hypothesis-show-statistics); a no-op outside a hypothesis test."""
    try:
        hypothesis_event(text)
    except InvalidArgument:
        pass


def check_failure(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (not JSON, and a lie in a metrics file)."""

    def refuse(token):
        raise AssertionError(f"{token} in JSON output")

    return json.loads(text, parse_constant=refuse)


def assert_no_nan_predictions(text: str, n_rows: int, n_classes: int) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "prediction" and len(rows[0]) == 1 + n_classes
    assert len(rows) == 1 + n_rows
    for row in rows[1:]:
        probabilities = [float(p) for p in row[1:]]
        assert all(math.isfinite(p) and 0 <= p <= 1 for p in probabilities), row
        assert abs(sum(probabilities) - 1) < 1e-4, row


# -- generated files ---------------------------------------------------------------------------
CELLS = {
    "int": st.integers(-1000, 1000).map(str),
    "float": st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
    "extreme": st.sampled_from(["1e30", "-1e30", "1e-310", "0", "3.4e38", "-1.7e308", "1e300", "5e-324"]),
    "text": st.sampled_from(["red", "green", "blue", "caf\u00e9", "\u65e5\u672c", "a b", "", "NA", "null", "'q'"]),
    "bool": st.sampled_from(["true", "false", "True", "FALSE"]),
    "stray": st.one_of(st.integers(0, 9).map(str), st.sampled_from(["oops", "1,5", "--", "1e", "inf", "-inf", "nan"])),
    "constant": st.just("7"),
    "missing": st.just(""),
    "anything": st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=6),
}
LABELS = {
    "two strings": ["yes", "no"],
    "three ints": ["0", "1", "2"],
    "floats": ["1.5", "2.5"],
    "bools": ["true", "false"],
    "one class": ["only"],
    "with gaps": ["a", "b", ""],
    "unicode": ["\u00e9t\u00e9", "hiver"],
}


def rarely(draw, one_in: int = 8) -> bool:
    return draw(st.integers(1, one_in)) == 1


@st.composite
def csv_files(draw):
    """(bytes, declared encoding, declared delimiter, data rows, classes). Each kind of mess is
    rare on its own, so that a good share of the files train and the rest fail in varied ways."""
    n_features = 0 if rarely(draw, 12) else draw(st.integers(1, 4))
    plain = ["int", "float", "text", "bool", "constant", "int", "float"]
    kinds = [draw(st.sampled_from(sorted(CELLS) if rarely(draw, 4) else plain)) for _ in range(n_features)]
    names = [draw(st.sampled_from([f"c{i}", f"c{i}", f"col {i}", f"\u00e7{i}"])) for i in range(n_features)]
    if n_features >= 2 and rarely(draw, 20):
        names[1] = names[0]  # a duplicate header
    if n_features and rarely(draw, 20):
        names[0] = ""  # an empty header cell
    labels = LABELS[draw(st.sampled_from(sorted(LABELS)))] if rarely(draw, 3) else LABELS["two strings"]
    n_rows = draw(st.sampled_from([0, 1, 2, 3])) if rarely(draw, 6) else draw(st.sampled_from([6, 12, 24, 40]))
    missing = draw(st.sampled_from([0.1, 0.5])) if rarely(draw, 4) else 0.0
    rows = []
    for r in range(n_rows):
        row = []
        for kind in kinds:
            cell = "" if draw(st.floats(0, 1)) < missing else draw(CELLS[kind])
            row.append(cell)
        row.append(labels[r % len(labels)])
        rows.append(row)
    if rows and rarely(draw, 10):  # a ragged row
        victim = draw(st.integers(0, len(rows) - 1))
        rows[victim] = rows[victim] + ["extra"] if draw(st.booleans()) else rows[victim][:-1]
    delimiter = draw(st.sampled_from([";", "\t", "|"])) if rarely(draw, 3) else ","
    newline = draw(st.sampled_from(["\r\n", "\r"])) if rarely(draw, 3) else "\n"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONNUMERIC, csv.QUOTE_ALL])) if n_rows < 30 else csv.QUOTE_MINIMAL)
    writer.writerow([*names, "label"])
    writer.writerows(rows)
    text = out.getvalue()
    encoding = draw(st.sampled_from(["utf-8-sig", "latin-1", "cp1252"])) if rarely(draw, 3) else "utf-8"
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
        encoding = "utf-8"
    declared = draw(st.sampled_from(["utf-8", "latin-1"])) if rarely(draw, 5) else encoding
    declared_delimiter = draw(st.sampled_from([delimiter, ","])) if rarely(draw, 4) else None
    return raw, declared, declared_delimiter, n_rows, len(set(l for l in labels if l))


def write_config(folder: Path, encoding: str, delimiter, splits: tuple[float, float]) -> None:
    data = {"train": "d.csv", "target": "label", "encoding": encoding, "delimiter": delimiter,
            "test_split": splits[0], "val_split": splits[1]}
    (folder / "c.yaml").write_text(
        json.dumps({"seed": 1, "data": data, "model": {"hidden": [2]}, "training": {"epochs": 2, "batch_size": 8}}) + "\n"
    )


def train_and_use(folder: Path, n_rows: int, n_classes: int) -> None:
    """Train; on success predict and evaluate must work and write no NaN; on failure one line."""
    result = run_cli("train c.yaml --quiet", folder)
    runs = folder / "runs"
    folders = sorted(runs.iterdir()) if runs.exists() else []
    if result.exit_code != 0:
        line = check_failure(result)
        event("train: " + line.split(": ", 2)[-1][:30])  # see --hypothesis-show-statistics
        if "training diverged" in line:
            assert strict_json((folders[0] / "summary.json").read_text())["status"] == "diverged"
        else:
            assert folders == [], line
        return
    (run,) = folders
    event("train: trained")
    summary = strict_json((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    for name in ("best.npz", "last.npz"):
        params, _, arrays = load_checkpoint(run / "checkpoints" / name)
        assert all(np.all(np.isfinite(a)) for a in [params, *arrays.values()] if a.dtype.kind == "f")
    r = run_cli(["predict", run, "d.csv", "-o", "p.csv"], folder)
    if r.exit_code == 0:
        assert_no_nan_predictions((folder / "p.csv").read_text(), n_rows, max(n_classes, 2) if n_classes != 2 else 2)
    else:  # e.g. a value beyond float32 once scaled: a clear error, and no file
        check_failure(r)
        assert not (folder / "p.csv").exists()
    # predict cuts a plain file into blocks parsed by threads, and reads a compressed one as one
    # stream: both readers must give the same predictions, or the same error
    (folder / "d.csv.gz").write_bytes(gzip.compress((folder / "d.csv").read_bytes()))
    r_stream = run_cli(["predict", run, "d.csv.gz", "-o", "p_stream.csv"], folder)
    assert r_stream.exit_code == r.exit_code, (r.stderr, r_stream.stderr)
    if r.exit_code == 0:
        assert (folder / "p_stream.csv").read_bytes() == (folder / "p.csv").read_bytes()
    else:
        assert check_failure(r_stream).replace("d.csv.gz", "d.csv") == check_failure(r)
    if summary["rows"]["test"]:
        r = run_cli(["evaluate", run, "--json"], folder)
        if r.exit_code == 0:
            report = strict_json(r.stdout)
            assert 0 <= report["accuracy"] <= 1
        else:
            check_failure(r)


@FUZZ
@given(
    case=csv_files(),
    splits=st.sampled_from([(0.2, 0.1), (0.0, 0.0), (0.3, 0.0), (0.0, 0.25)]),
)
def test_train_on_generated_csvs_gives_a_result_or_one_line(base, case, splits):
    raw, encoding, delimiter, n_rows, n_classes = case
    folder = Path(tempfile.mkdtemp(dir=base))
    (folder / "d.csv").write_bytes(raw)
    write_config(folder, encoding, delimiter, splits)
    train_and_use(folder, n_rows, n_classes)


# -- named hostile files -----------------------------------------------------------------------
def _rows(n: int, line: str = "{i},{label}") -> str:
    return "".join(line.format(i=i, label="xy"[i % 2]) + "\n" for i in range(n))


HOSTILE = {
    "empty file": (b"", "the file is empty"),
    "only a newline": (b"\n", None),
    "header only": (b"a,label\n", "no data rows"),
    "one row": (b"a,label\n1,x\n", "training needs at least 2"),
    "two rows": (b"a,label\n1,x\n2,y\n", "too few"),
    "one column": (("label\n" + "x\ny\n" * 10).encode(), "no feature columns"),
    "one class": (("a,label\n" + "".join(f"{i},x\n" for i in range(10))).encode(), "classification needs at least 2"),
    "all labels missing": (("a,label\n" + "".join(f"{i},\n" for i in range(10))).encode(), "training needs at least 2"),
    "a column of only gaps": (("a,b,label\n" + "".join(f",{i},{'xy'[i % 2]}\n" for i in range(10))).encode(), None),  # dropped, warned
    "ragged: too many fields": (("a,label\n" + _rows(5) + "1,x,extra\n" + _rows(5)).encode(), "line 7: expected 2 fields like the header, saw 3"),
    "ragged: too few fields": (("a,b,label\n" + _rows(6, "{i},{i},{label}") + "1\n").encode(), None),
    "unclosed quote": (b'a,label\n"1,x\n2,y\n3,x\n', None),
    "NUL bytes": (("a,label\n" + _rows(10, "{i}\x00,{label}")).encode(), None),
    "old-Mac CR line ends": (("a,label\r" + _rows(10).replace("\n", "\r")).encode(), None),
    "CRLF line ends": (("a,label\r\n" + _rows(10).replace("\n", "\r\n")).encode(), None),
    "BOM": (b"\xef\xbb\xbf" + ("a,label\n" + _rows(10)).encode(), None),
    "UTF-16": (("a,label\n" + _rows(10)).encode("utf-16"), "the file is UTF-16 text (it starts with a UTF-16 byte-order mark); set data.encoding: utf-16"),
    "latin-1 bytes read as utf-8": (("a,t,label\n" + _rows(10, "{i},caf\u00e9,{label}")).encode("latin-1"), "set data.encoding"),
    "semicolons and decimal commas": (("a;b;label\n" + _rows(10, "{i},5;{i};{label}")).encode(), None),
    "tabs": (("a\tlabel\n" + _rows(10, "{i}\t{label}")).encode(), None),
    "pipes": (("a|label\n" + _rows(10, "{i}|{label}")).encode(), None),
    "a stray string": (("a,label\n" + _rows(30) + "oops,x\n").encode(), "line 32: column 'a': non-numeric value 'oops'"),
    "inf": (("a,label\n" + _rows(5) + "inf,x\n").encode(), "infinite value"),
    "1e400": (("a,label\n" + _rows(5) + "1e400,x\n").encode(), "infinite value"),
    "1e300 (std overflows)": (("a,label\n" + _rows(10, "1e300,{label}").replace("1e300,y", "-1e300,y")).encode(), "values too large to scale"),
    "duplicate header": (b"a,a,label\n1,2,x\n3,4,y\n", "duplicate column name 'a'"),
    "newline in a quoted header": (('"a\nb",label\n' + _rows(10)).encode(), None),
    "newline in a quoted header, no target": (('"a\nb","lab\rel"\n' + _rows(10)).encode(), "; columns: a\\nb, lab\\rel"),
    "markup in a header": (("[/],label\n" + _rows(10)).encode(), None),
    "comment line": (("# made by a tool\na,label\n" + _rows(10)).encode(), "line 2: expected 1 fields like the header, saw 2; is the first line a title or a comment"),
    "hex numbers": (("a,label\n" + _rows(10, "0x{i},{label}")).encode(), None),
    "huge integers": (("a,label\n" + _rows(10, "1234567890123456789012345678{i},{label}")).encode(), None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_named_hostile_csvs(base, name):
    raw, message = HOSTILE[name]
    folder = Path(tempfile.mkdtemp(dir=base))
    (folder / "d.csv").write_bytes(raw)
    write_config(folder, "utf-8", None, (0.2, 0.1))
    if message is None:  # a result, or one line
        data_rows = len(raw.splitlines()) - (2 if name == "newline in a quoted header" else 1)
        train_and_use(folder, data_rows, 2)
    else:
        result = run_cli("train c.yaml --quiet", folder)
        assert message in check_failure(result)
        assert not (folder / "runs").exists() or not any((folder / "runs").iterdir())


def test_two_thousand_columns(base):
    folder = Path(tempfile.mkdtemp(dir=base))
    rng = np.random.default_rng(0)
    n_rows, n_cols = 30, 2000
    x = rng.integers(0, 5, size=(n_rows, n_cols))
    lines = [",".join([*(f"f{j}" for j in range(n_cols)), "label"])]
    lines += [",".join([*map(str, x[i]), "xy"[int(x[i, 0] > 2)]]) for i in range(n_rows)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    write_config(folder, "utf-8", None, (0.2, 0.1))
    result = run_cli("train c.yaml --quiet", folder)
    assert result.exit_code == 0, result.stderr
    run = folder / result.stdout.strip()
    assert strict_json((run / "summary.json").read_text())["features"]["inputs"] == n_cols
    r = run_cli(["predict", run, "d.csv", "-o", "p.csv"], folder)
    assert r.exit_code == 0, r.stderr
    assert_no_nan_predictions((folder / "p.csv").read_text(), n_rows, 2)


# -- predict on hostile files with a trained model ---------------------------------------------
TRAIN = "a,tone,b,label\n" + "".join(
    f"{(i * 7) % 11 / 3:.3f},{['red', 'green', 'blue'][i % 3]},{(i * 5) % 13 - 6},{'yes' if (i * 7) % 11 > 5 else 'no'}\n"
    for i in range(60)
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_predict")
    (folder / "d.csv").write_text(TRAIN)
    (folder / "c.yaml").write_text("data: {train: d.csv, target: label}\nmodel: {hidden: [4, 4]}\ntraining: {epochs: 5}\n")
    r = run_cli("train c.yaml --name m --quiet", folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / "m"


@st.composite
def prediction_files(draw):
    columns = draw(st.permutations(["a", "tone", "b", "label", "extra"]))
    if rarely(draw, 5):
        columns.remove(draw(st.sampled_from(columns)))
    normal = {
        "a": st.floats(-5, 5).map(lambda v: f"{v:.3f}"),
        "b": st.integers(-10, 10).map(str),
        "tone": st.sampled_from(["red", "green", "blue"]),
        "label": st.sampled_from(["yes", "no"]),
        "extra": CELLS["anything"],
    }
    hostile = {
        "a": st.one_of(CELLS["extreme"], st.sampled_from(["", "oops", "inf", "1e400"])),
        "b": st.one_of(CELLS["extreme"], st.just("")),
        "tone": st.one_of(CELLS["text"], CELLS["anything"]),
        "label": st.sampled_from(["", "maybe"]),
        "extra": CELLS["anything"],
    }
    hostility = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))  # the share of hostile cells
    n = draw(st.integers(1, 25))
    rows = [[draw(hostile[c] if draw(st.floats(0, 1)) < hostility else normal[c]) for c in columns] for _ in range(n)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode(draw(st.sampled_from(["utf-8", "utf-8-sig"]))), n, columns


@settings(FUZZ, max_examples=120)
@given(case=prediction_files(), chunk=st.sampled_from(["1", "3", "100000"]))
def test_predict_on_generated_csvs_gives_a_complete_file_or_one_line(base, model, case, chunk):
    raw, n, columns = case
    folder = Path(tempfile.mkdtemp(dir=base))
    (folder / "new.csv").write_bytes(raw)
    r = run_cli(["predict", model, "new.csv", "-o", "p.csv", "--chunk-rows", chunk], folder)
    event("predict: " + ("written" if r.exit_code == 0 else r.stderr.split(": ", 2)[-1][:30]))
    if r.exit_code == 0:
        assert {"a", "tone", "b"} <= set(columns)
        assert_no_nan_predictions((folder / "p.csv").read_text(), n, 2)
    else:
        check_failure(r)
        assert sorted(p.name for p in folder.iterdir()) == ["new.csv"]  # no output, no temp file
