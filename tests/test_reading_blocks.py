"""The threaded block reader: a CSV cut into blocks of whole records and parsed in parallel
reads exactly like pandas reading the whole file, and its errors name the right file line."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from nnclf.data.blocks import record_blocks, record_end
from nnclf.data.reading import iter_table, read_table
from nnclf.errors import NnclfError


def _tricky_csv(rows: int) -> str:
    """Quoted fields holding delimiters, doubled quotes and newlines; blank lines; CRLF rows."""
    rng = np.random.default_rng(0)
    lines = ["x,name,note,label"]
    for i in range(rows):
        note = ['plain', '"a, b"', '"two\nlines"', '"say ""hi"""', '"x\n""y"",\nz"', '""'][i % 6]
        end = "\r" if i % 7 == 0 else ""
        lines.append(f"{rng.normal():.6f},n{i % 13},{note},{i % 3}{end}")
        if i % 997 == 0:
            lines.append("")
    return "\n".join(lines) + "\n"


def _frames_equal_whole_read(path, chunk_rows, min_frames=4, **read_kwargs):
    frames = list(iter_table(path, chunk_rows=chunk_rows))
    assert len(frames) >= min_frames  # really cut into blocks
    got = pd.concat(frames)
    want = pd.read_csv(path, skipinitialspace=True, **read_kwargs)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_index_type=False)
    assert list(got.index) == list(range(len(want)))  # row positions in the file, across blocks


def test_blocks_end_at_record_boundaries_outside_quotes():
    text = _tricky_csv(3000).encode()
    for size in (7, 64, 1000, 1 << 16):
        f = io.BytesIO(text)
        blocks = list(record_blocks(f, size, ","))
        assert b"".join(block for _, block in blocks) == text
        assert [offset for offset, _ in blocks] == list(np.cumsum([0] + [len(b) for _, b in blocks[:-1]]))
        for _, block in blocks[:-1]:
            assert block.endswith(b"\n") and block.count(b'"') % 2 == 0


def test_record_end_is_the_last_newline_outside_quotes():
    data = b'a,"x\ny"\nb,""""\nd,"e\nf\ng'
    assert record_end(data, ",") == data.index(b"\nd")  # the two newlines after it are quoted
    assert record_end(b"1,2\n3,4\n", ",") == 7
    assert record_end(b'"a\nb\nc', ",") == -1  # no record ends in a block inside one field


def test_block_reader_matches_one_piece_read_with_quotes_and_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(_tricky_csv(20_000).encode())
    _frames_equal_whole_read(path, chunk_rows=100)


def test_block_reader_reparses_text_with_leading_spaces(tmp_path):
    # the fast parse skips skipinitialspace; a block whose text starts with a space is parsed again
    rows = [f"{i}, {'red' if i % 2 else 'blue'}, {i % 3}" if i > 15_000 else f"{i},{'red' if i % 2 else 'blue'},{i % 3}"
            for i in range(20_000)]
    rows[18_000] = '18000, "a, b", 0'  # a space before a quote: the fast parse fails this block
    path = tmp_path / "s.csv"
    path.write_text("id,colour,label\n" + "\n".join(rows) + "\n")
    _frames_equal_whole_read(path, chunk_rows=100)
    assert set(read_table(path)["colour"]) == {"red", "blue", "a, b"}


def test_an_empty_header_name_is_named_as_pandas_names_it_by_both_readers(tmp_path):
    # found by the fuzz test: the block reader named the column '', the stream reader (used for
    # training) 'Unnamed: 0', so predicting a plain file said the feature column was missing
    import gzip

    text = "".join(f"{i},{i % 7}, {i % 3}\n" for i in range(20_000))
    path = tmp_path / "u.csv"
    path.write_text(",a,\n" + text)
    (tmp_path / "u.csv.gz").write_bytes(gzip.compress(path.read_bytes()))
    _frames_equal_whole_read(path, chunk_rows=100)
    for name in ("u.csv", "u.csv.gz"):
        assert list(read_table(tmp_path / name).columns) == ["Unnamed: 0", "a", "Unnamed: 2"]


def test_block_reader_latin1(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes(("x,ville,label\n" + "".join(f"{i},{'Orléans' if i % 2 else 'Besançon'},{i % 2}\n" for i in range(30_000))).encode("latin-1"))
    frames = list(iter_table(path, encoding="latin-1", chunk_rows=100))
    assert len(frames) > 3
    assert set(pd.concat(frames)["ville"]) == {"Orléans", "Besançon"}


def _big_rows(n: int) -> list[str]:
    return [f"{i},{i * 0.5},{i % 2}" for i in range(n)]


@pytest.mark.parametrize("line", [5, 40_000])
def test_long_row_in_a_later_block_names_its_file_line(tmp_path, line):
    rows = _big_rows(50_000)
    rows[line - 2] += ",9"  # file line `line` (the header is line 1)
    path = tmp_path / "long.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(NnclfError) as e:
        list(iter_table(path, chunk_rows=1000))
    assert str(e.value) == f"{path}, line {line}: expected 3 fields like the header, saw 4"


def test_short_row_in_a_later_block_names_its_file_line(tmp_path):
    rows = _big_rows(50_000)
    rows[30_000] = "1,2"  # file line 30,002; blank lines before it still count as lines
    rows.insert(100, "")
    rows.insert(20_000, "")
    path = tmp_path / "short.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(NnclfError) as e:
        list(iter_table(path, chunk_rows=1000))
    assert str(e.value) == f"{path}, line 30004: expected 3 fields like the header, saw 2"


def test_undecodable_bytes_in_a_later_block_name_the_line(tmp_path):
    rows = [r.encode() for r in _big_rows(50_000)]
    rows[45_000] = b"1,\xff\xfe,0"  # file line 45,002
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b,label\n" + b"\n".join(rows) + b"\n")
    with pytest.raises(NnclfError) as e:
        list(iter_table(path, chunk_rows=1000))
    assert str(e.value).startswith(f"{path}, line 45002: bytes that are not valid utf-8")


def test_stopping_early_leaves_no_parse_threads(tmp_path):
    import threading

    path = tmp_path / "b.csv"
    path.write_text("a,b,label\n" + "\n".join(_big_rows(100_000)) + "\n")
    frames = iter_table(path, chunk_rows=1000)
    next(frames)
    frames.close()  # e.g. predict failing on the first chunk
    assert not [t for t in threading.enumerate() if t.name.startswith("nnclf-csv")]


@pytest.mark.parametrize("line", [2, 3, 40_000])
@pytest.mark.parametrize("threads", [True, False])
def test_a_record_longer_than_the_header_is_an_error_wherever_it_is(tmp_path, line, threads):
    # pandas alone takes a long first record as a sign that the first column is an index and
    # shifts every column by one, silently; as the first record of any block that would hit
    # whole blocks of a file, so this is checked for the file's first row and every block's
    rows = _big_rows(50_000)
    rows[line - 2] += ","  # a trailing delimiter: one empty field too many
    path = tmp_path / "long.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(NnclfError) as e:
        if threads:
            list(iter_table(path, chunk_rows=1000))
        else:
            read_table(path)
    assert str(e.value) == f"{path}, line {line}: expected 3 fields like the header, saw 4"


def test_a_long_first_record_of_a_later_block_is_an_error(tmp_path):
    rows = _big_rows(50_000)
    path = tmp_path / "b.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    starts = [offset for offset, _ in record_blocks(open(path, "rb"), 1 << 16, ",")]
    assert len(starts) > 5
    text = path.read_bytes()
    line = text.count(b"\n", 0, starts[3]) + 1  # the first line of the fourth block
    rows[line - 2] += ",7"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(NnclfError) as e:
        list(iter_table(path, chunk_rows=1))  # 64 KB blocks, as cut above
    assert str(e.value) == f"{path}, line {line}: expected 3 fields like the header, saw 4"


def test_a_quoted_field_longer_than_a_block(tmp_path):
    # one record holds 20,000 quoted lines (~200 KB, several 64 KB blocks): no cut inside it
    long_text = '"' + "\n".join(f"line {i}, with a comma" for i in range(20_000)) + '"'
    rows = [f"{i},{long_text if i == 700 else 'short'},{i % 2}" for i in range(30_000)]
    path = tmp_path / "q.csv"
    path.write_text("id,text,label\n" + "\n".join(rows) + "\n")
    _frames_equal_whole_read(path, chunk_rows=100, min_frames=3)
    assert read_table(path)["text"].str.count("\n").max() == 19_999


def test_chunked_table_columns_equal_the_joined_frame(tmp_path, monkeypatch):
    # chunks that disagree on a column's type: ints then floats with gaps, numbers then text,
    # an all-missing stretch, booleans then blanks
    n = 30_000
    rows = []
    for i in range(n):
        late = i > 20_000
        rows.append(",".join([
            str(i) if not late else ("" if i % 3 else f"{i}.5"),
            str(i % 7) if not late else "seven",
            "" if 10_000 < i < 15_000 else str(i % 2),
            "true" if i % 2 and not late else ("" if late else "false"),
            "xy"[i % 2],
        ]))
    path = tmp_path / "mixed.csv"
    path.write_text("n,code,gap,flag,label\n" + "\n".join(rows) + "\n")
    from nnclf.data import reading

    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", 1 << 16)  # chunks of ~3,000 rows
    table = reading.read_chunks(path)
    assert len(table.chunks) > 3 and len(table) == n
    joined = read_table(path)
    assert table.columns == list(joined.columns)
    for name in table.columns:
        pd.testing.assert_series_equal(table[name], joined[name], check_index_type=False)
    np.testing.assert_array_equal(table.index.to_numpy(), joined.index.to_numpy())
    keep = np.arange(n) % 5 != 0
    pd.testing.assert_series_equal(table.rows(keep)["n"], joined[keep]["n"], check_index_type=False)


def test_a_value_is_one_category_whichever_chunk_it_comes_from(cli, tmp_path, monkeypatch):
    # 'size' reads as numbers with gaps (floats) in the early chunks and as text once 'XL' shows
    # up; joined, the column holds Python floats and strings: 3.0 must still be the category '3'
    from nnclf.data import reading
    from nnclf.model import TrainedModel
    from conftest import write_config

    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", 1 << 14)  # chunks of ~1,000 rows
    rows = []
    for i in range(6000):
        size = "" if i % 10 == 0 else ("XL" if i > 4000 and i % 7 == 0 else str(1 + i % 3))
        rows.append(f"{i % 11},{size},{'ab'[(i // 3) % 2]}")
    data = tmp_path / "sizes.csv"
    data.write_text("x,size,label\n" + "\n".join(rows) + "\n")
    cfg = write_config(tmp_path, f"data: {{train: {data}, target: label, categorical: [size]}}\nmodel: {{hidden: [4]}}\ntraining: {{epochs: 1}}\n")
    result = cli(["train", cfg, "--quiet"])
    assert result.exit_code == 0, result.stderr
    run = tmp_path / result.stdout.strip()
    columns = TrainedModel.load(run / "checkpoints" / "best.npz").preprocessor.state["columns"]
    (size,) = [c for c in columns if c["name"] == "size"]
    assert sorted(k for k in size["categories"] if k is not None) == ["1", "2", "3", "XL"]
    predicted = cli(["predict", run, data, "-o", tmp_path / "p.csv"])
    assert predicted.exit_code == 0 and "never seen" not in predicted.stderr, predicted.stderr
