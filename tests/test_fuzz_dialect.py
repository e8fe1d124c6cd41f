"""The CSV dialect, generated: any text a label or a category can hold (delimiters, quotes, line
breaks, unicode), written by Python's csv module, reads back as written through every reading
path (the whole-table reader, the streamed reader and the parallel block reader, in blocks small
enough to cut records many times). The one rule on top of csv's: spaces right after a delimiter,
before an unquoted field, are skipped (``skipinitialspace``, so "1, 2, 3" reads as numbers), and
numbers come back within an ulp of the decimal written, whatever their number of digits (pandas
before 3 drops the digits after the 17th with its default parser, so nnclf asks it for its exact
one: reading._exact_floats; the cases of that below read back exactly)."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnclf.data.reading import ReadOptions, iter_table, read_table

cell_text = st.text(alphabet=st.sampled_from(list('ab,"\n\r ;\t\'é漢x1.-')), min_size=1, max_size=8).filter(
    lambda s: s.strip(" ") != "")
category_text = cell_text.filter(lambda s: any(c.isalpha() for c in s))  # (a feature of numbers is read as numbers)


def written(value: str) -> str:
    """What the reader should give for ``value`` written by csv.writer (QUOTE_MINIMAL)."""
    out = io.StringIO()
    csv.writer(out).writerow([value, "x"])
    field = out.getvalue()[: -len(",x\r\n")]
    return value if field.startswith('"') else value.lstrip(" ")


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(labels=st.lists(cell_text, min_size=2, max_size=12), categories=st.lists(category_text, min_size=2, max_size=12),
       numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=2, max_size=12),
       repeat=st.sampled_from([1, 700]))
def test_cells_read_back_as_written_on_every_path(tmp_path, labels, categories, numbers, repeat):
    n = min(len(labels), len(numbers), len(categories))
    rows = [(numbers[i], categories[i], labels[i]) for i in range(n)] * repeat  # 700 copies: blocks are cut
    out = io.StringIO()
    writer = csv.writer(out)  # csv's default \r\n endings (and so a \r in a cell is quoted)
    writer.writerow(["num", "cat", "label"])
    writer.writerows([(repr(x), c, y) for x, c, y in rows])
    path = tmp_path / "d.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))
    options = ReadOptions(target="label", delimiter=",")
    want_labels = [written(y) for _, _, y in rows]
    want_cats = [written(c) for _, c, _ in rows]
    want_numbers = np.array([x for x, _, _ in rows])
    frames = {
        "whole": [read_table(path, options=options)],
        "streamed": list(iter_table(path, chunk_rows=64, threads=False, options=options)),
        "blocks": list(iter_table(path, chunk_rows=64, threads=True, options=options)),
    }
    for how, parts in frames.items():
        got_labels = [v for f in parts for v in f["label"].tolist()]
        got_cats = [v for f in parts for v in f["cat"].astype(object).tolist()]
        got_numbers = np.concatenate([f["num"].to_numpy(dtype=np.float64) for f in parts])
        assert got_labels == want_labels, how
        assert got_cats == want_cats, how
        # pandas' C float parser ("high" precision) is within an ulp, not always correctly
        # rounded (1.8222505073030234e+19 came back one ulp off on pandas 2.3)
        np.testing.assert_allclose(got_numbers, want_numbers, rtol=2 * np.finfo(np.float64).eps, atol=0, err_msg=how)
        assert [i for f in parts for i in f.index] == list(range(len(rows))), how  # file row order kept


def test_numbers_with_more_than_17_digits_read_back_exactly_on_every_path(tmp_path):
    # pandas before 3 keeps 17 digits, leading zeros included, with its default parser: these
    # read as 0.0009039603161619 and 1.234567e-10 there (CI found the first on Python 3.10)
    written_numbers = ["0.0009039603161619703", "0.00000000012345678901234567", "1.8222505073030234e+19",
                       "123456789012345678901.5", "-0.000000000000000000001234567890123456789", "0.1"]
    path = tmp_path / "d.csv"
    path.write_text("num,label\n" + "".join(f"{v},a\n" for v in written_numbers) * 300)  # 1800 rows: blocks are cut
    want = np.array([float(v) for v in written_numbers] * 300)
    options = ReadOptions(target="label", delimiter=",")
    for how, parts in {
        "whole": [read_table(path, options=options)],
        "streamed": list(iter_table(path, chunk_rows=64, threads=False, options=options)),
        "blocks": list(iter_table(path, chunk_rows=64, threads=True, options=options)),
    }.items():
        got = np.concatenate([f["num"].to_numpy(dtype=np.float64) for f in parts])
        assert got.tobytes() == want.tobytes(), how


def test_a_decimal_comma_number_with_many_digits_reads_back_exactly(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("num;label\n" + "0,0009039603161619703;a\n1,5;b\n" * 50)
    frame = read_table(path, options=ReadOptions(target="label"))
    assert frame["num"].to_numpy(dtype=np.float64).tolist() == [0.0009039603161619703, 1.5] * 50
