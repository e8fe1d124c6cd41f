"""Records in raw CSV bytes, and the parallel block parser built on them.

nnclf reads one CSV dialect, pandas' (and Python's ``csv`` module's) default: a field that
*starts* with a quote (after the delimiter, the line start, or the spaces ``skipinitialspace``
skips) is quoted until a quote that is not doubled; a quote anywhere else (``12" screen``) is a
literal character. Every check on raw bytes (where records end, how many fields each has)
follows that rule through ``scan_records``, so the training reader (one pandas stream) and the
predict reader (blocks parsed in threads) cut and check a file the same way.

Why bytes and NumPy instead of ``csv.reader`` everywhere: cutting an 8 MB block and counting its
fields is a few vectorised passes over the bytes; ``csv.reader`` builds a Python list per row.
The exact reader is used only for a block whose quotes are not all at field edges.
"""

from __future__ import annotations

import csv
import io
from typing import Iterator, NamedTuple

import numpy as np

from ..errors import NnclfError

QUOTE, NEWLINE, CR = 34, 10, 13
# parse threads at most: each holds a block of up to reading.MAX_BLOCK_BYTES (and one more waits), so
# memory grows with the count, while the caller's work on each chunk bounds what more would win
MAX_PARSE_THREADS = 4


class Records(NamedTuple):
    """The complete records of a block of bytes that starts at a record start."""

    ends: np.ndarray  # (r,) offset of the newline that ends each record
    fields: np.ndarray  # (r,) fields in each record
    blank: np.ndarray  # (r,) True for an empty line (pandas skips those)


def scan_records(data: bytes, sep: str, skipinitialspace: bool = True) -> Records | None:
    """Every complete record of ``data`` (which holds whole lines of an ASCII-compatible
    encoding and starts outside quotes); a record ends at a newline outside quotes. None when
    the block cannot be scanned (a multi-character or non-ASCII delimiter)."""
    if len(sep) != 1 or ord(sep) > 127:
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    if QUOTE not in raw:  # the common case: every newline ends a record
        return _unquoted(raw, ord(sep))
    quick = _quoted_at_edges(raw, ord(sep))
    return quick if quick is not None else _exact(data, sep, skipinitialspace)


def _unquoted(raw: np.ndarray, sep: int) -> Records:
    newlines = np.flatnonzero(raw == NEWLINE)
    if not newlines.size:
        return Records(newlines, newlines, newlines.astype(bool))
    starts = np.r_[0, newlines[:-1] + 1]
    # delimiters per line: one pass over the bytes, no index arrays
    counts = np.add.reduceat((raw[: newlines[-1] + 1] == sep).view(np.uint8), starts, dtype=np.int64)
    return Records(newlines, counts + 1, _blank(raw, starts, newlines))


def _blank(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    lengths = ends - starts
    return (lengths == 0) | ((lengths == 1) & (raw[np.maximum(ends - 1, 0)] == CR))


def _quoted_at_edges(raw: np.ndarray, sep: int) -> Records | None:
    """Records by quote parity, when every run of quotes that opens a field follows a field
    edge (delimiter, line start) and every one that closes it precedes one; else None.

    A run of an even number of quotes changes nothing (an escaped quote, an empty field, or
    literal quotes in an unquoted field); runs of odd length alternately open and close."""
    quotes = np.flatnonzero(raw == QUOTE)
    first = np.r_[True, np.diff(quotes) != 1]
    run_starts = quotes[first]
    run_lengths = np.diff(np.r_[np.flatnonzero(first), quotes.size])
    odd = run_lengths % 2 == 1
    flips, flip_ends = run_starts[odd], (run_starts + run_lengths - 1)[odd]
    openers, closers = flips[0::2], flip_ends[1::2]
    edges = np.array([sep, NEWLINE, CR], dtype=np.uint8)
    if not np.all((openers == 0) | np.isin(raw[np.maximum(openers - 1, 0)], edges)):
        return None
    last = len(raw) - 1
    if not np.all((closers == last) | np.isin(raw[np.minimum(closers + 1, last)], edges)):
        return None

    def outside(positions):  # an even number of flips before a position: outside quotes
        return np.searchsorted(flips, positions) % 2 == 0

    newlines = np.flatnonzero(raw == NEWLINE)
    ends = newlines[outside(newlines)]
    if not ends.size:
        return Records(ends, ends, ends.astype(bool))
    seps = np.flatnonzero(raw[: ends[-1] + 1] == sep)
    seps = seps[outside(seps)]
    starts = np.r_[0, ends[:-1] + 1]
    fields = np.diff(np.r_[0, np.searchsorted(seps, ends)]) + 1
    return Records(ends, fields, _blank(raw, starts, ends))


def _exact(data: bytes, sep: str, skipinitialspace: bool) -> Records | None:
    """Records by Python's csv module (the same quoting rules as pandas' tokenizer), for a
    block with a quote in the middle of a field. Decoded as latin-1, one character per byte,
    so offsets are byte offsets (the delimiter, quote and newline are ASCII in every encoding
    this is used for)."""
    end = data.rfind(b"\n")
    if end < 0:
        return Records(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, bool)))
    text = data[: end + 1].decode("latin-1").replace("\x00", " ")  # Python 3.10's csv refuses NUL
    line_ends = np.flatnonzero(np.frombuffer(data[: end + 1], dtype=np.uint8) == NEWLINE)
    starts = np.r_[0, line_ends[:-1] + 1]
    lines = [text[s : e + 1] for s, e in zip(starts.tolist(), line_ends.tolist())]
    n = len(lines)
    # a sentinel line closes a quoted field left open at the end (or opens one that never ends):
    # either way the record it belongs to ends after line n, so it is not complete
    reader = csv.reader([*lines, '"\n'], delimiter=sep, skipinitialspace=skipinitialspace)
    ends, fields, blank = [], [], []
    try:
        for row in reader:
            if reader.line_num > n:
                break
            ends.append(line_ends[reader.line_num - 1])
            fields.append(max(len(row), 1))
            blank.append(not row)
    except csv.Error:
        return None
    return Records(np.array(ends, dtype=np.int64), np.array(fields, dtype=np.int64), np.array(blank, dtype=bool))


def record_end(data: bytes, sep: str) -> int:
    """Offset of the last newline of ``data`` that ends a record, or -1 (``data`` starts at a
    record start)."""
    cut = data.rfind(b"\n")
    if cut < 0 or b'"' not in data:
        return cut
    records = scan_records(data, sep)
    if records is None:
        return cut
    return int(records.ends[-1]) if records.ends.size else -1


def record_blocks(f, block_bytes: int, sep: str) -> Iterator[tuple[int, bytes]]:
    """(offset, block) pairs of about ``block_bytes`` read from ``f`` (positioned at a record
    start, offsets counted from there), each ending after a whole record; the last takes what
    is left. A record longer than a block makes its block longer, never a cut inside it."""
    offset, carry = 0, b""
    while True:
        # the partial record carried over counts towards the block's size
        more = f.read(block_bytes - len(carry) if len(carry) < block_bytes // 2 else block_bytes)
        data = carry + more if carry else more
        if not more:
            if data:
                yield offset, data
            return
        # the quick scan of data already searched is repeated as it grows: grow geometrically
        cut = record_end(data, sep)
        if cut < 0:
            carry = data
            block_bytes = max(block_bytes, len(data))
            continue
        yield offset, data[: cut + 1]
        offset += cut + 1
        carry = data[cut + 1 :]


STRAY_CR = -1  # the field count reported for a line that a carriage return cuts (see ``stray_cr``)


def stray_cr(data: bytes, sep: str) -> tuple[int, int] | None:
    """(line within ``data``, STRAY_CR) of the first carriage return outside quotes that does
    not end a line, or None. pandas ends a row at such a CR (old Mac line endings), while the
    records here end at newlines; in a file of newline-ended lines (mixed endings, a stray CR)
    the two would disagree on where rows are, so the readers refuse it instead of guessing."""
    if b"\r" not in data:
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    crs = np.flatnonzero(raw == CR)
    follows = raw[np.minimum(crs + 1, len(raw) - 1)]
    bare = crs[(follows != NEWLINE) & (crs + 1 < len(raw))]
    if not bare.size or NEWLINE not in raw:  # none, or a file of CR-only lines: pandas reads those
        return None
    records = scan_records(data if data.endswith(b"\n") else data + b"\n", sep)
    quoted = QUOTE in raw
    for p in bare.tolist():
        if quoted and records is not None:
            i = int(np.searchsorted(records.ends, p))  # the record holding it
            start = int(records.ends[i - 1]) + 1 if i else 0
            end = int(records.ends[i]) if i < len(records.ends) else len(data)
            try:  # csv refuses a CR in an unquoted field, and keeps one inside quotes
                list(csv.reader([data[start:end].decode("latin-1")], delimiter=sep, skipinitialspace=True))
                continue
            except csv.Error:
                pass
        line = int(np.count_nonzero(raw[:p] == NEWLINE)) + 1
        return line, STRAY_CR
    return None


def short_or_long_row(data: bytes, sep: str, n_fields: int, long: bool = True) -> tuple[int, int] | None:
    """(line within ``data``, 1-based; fields) of the first non-blank record of ``data`` with
    fewer fields than ``n_fields`` (or more, with ``long``), or a stray carriage return's
    (line, STRAY_CR), whichever comes first; or None. Also None when the block cannot be
    scanned (see ``scan_records``)."""
    cr = stray_cr(data, sep)
    found = _short_or_long_row(data, sep, n_fields, long)
    if cr is not None and (found is None or cr[0] <= found[0]):
        return cr
    return found


def _short_or_long_row(data: bytes, sep: str, n_fields: int, long: bool) -> tuple[int, int] | None:
    if n_fields < 2 and not long:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    records = scan_records(data, sep)
    if records is None:
        return None
    wrong = (records.fields < n_fields) if n_fields >= 2 else np.zeros(len(records.fields), bool)
    if long:
        wrong |= records.fields > n_fields
    bad = np.flatnonzero(wrong & ~records.blank)
    if not bad.size:
        return None
    i = int(bad[0])
    start = int(records.ends[i - 1]) + 1 if i else 0
    line = int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8)[:start] == NEWLINE)) + 1
    return line, int(records.fields[i])


def long_first_record(data: bytes, sep: str, n_fields: int, skip: int = 0) -> tuple[int, int] | None:
    """(line, fields) of the first non-blank record of ``data`` (after ``skip`` of them) when
    it has more fields than ``n_fields``: pandas would quietly take the extra leading fields as
    an index and shift every column (a trailing delimiter does that too)."""
    size = 1 << 16
    while True:
        head = data[:size]
        if size >= len(data) and not head.endswith(b"\n"):
            head += b"\n"  # the end of the file ends its last record
        records = scan_records(head[: head.rfind(b"\n") + 1], sep)
        if records is None:
            return None
        rows = np.flatnonzero(~records.blank)
        if rows.size > skip or size >= len(data):
            break
        size *= 4
    if rows.size <= skip:
        return None
    i = int(rows[skip])
    if records.fields[i] <= n_fields:
        return None
    start = int(records.ends[i - 1]) + 1 if i else 0
    return data.count(b"\n", 0, start) + 1, int(records.fields[i])


def newlines_before(path, offset: int) -> int:
    """Newline bytes in the file before ``offset``: the line number of the line before it."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            data = f.read(min(offset, 1 << 24))
            if not data:
                break
            count += data.count(b"\n")
            offset -= len(data)
    return count


def parse_workers() -> int:
    """Threads for parsing: the CPUs this process may use, at most ``MAX_PARSE_THREADS``."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_PARSE_THREADS)


def iter_blocks(path, f, data_start: int, names: list[str], options: dict, block_bytes: int, workers: int, errors) -> Iterator:
    """Parse blocks of whole records of the open binary file ``f`` (from ``data_start``) in
    ``workers`` threads (pandas' tokenizer releases the GIL); yield their frames in file order,
    indexed by row position in the file.

    At most ``workers + 1`` blocks are in flight, so memory stays bounded whatever the file's
    size. ``options``: pandas ``read_csv`` arguments (header=None, names given); ``errors``: the
    reader's error makers (``parser(error, line_offset)``, ``decode(error)``, ``row(line, fields)``).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    n_fields, sep = len(names), options["sep"]
    plain = {**options, "skipinitialspace": False}

    def parse(block: bytes):
        """(frame, None) or (None, error). Parsing without skipinitialspace is faster (the
        figure is in benchmarks/RESULTS.md) and reads numbers the same; a block whose text cells start with a space (or that fails:
        a space before a quote) is parsed again with it, so the result never differs."""
        try:
            try:
                frame = pd.read_csv(io.BytesIO(block), **plain)
                if not text_starts_with_space(frame):
                    return frame, None
            except pd.errors.ParserError:
                pass
            return pd.read_csv(io.BytesIO(block), **options), None
        except pd.errors.EmptyDataError:  # a block of blank lines
            return pd.DataFrame(columns=names), None
        except (UnicodeDecodeError, pd.errors.ParserError) as e:
            return None, e

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnclf-csv")
    pending: list = []
    try:
        f.seek(data_start)
        blocks = record_blocks(f, block_bytes, sep)
        rows = 0  # rows yielded so far
        while True:
            while len(pending) <= workers:
                item = next(blocks, None)
                if item is None:
                    break
                pending.append((*item, pool.submit(parse, item[1])))
            if not pending:
                return
            offset, block, future = pending.pop(0)
            offset += data_start
            frame, error = future.result()
            if isinstance(error, UnicodeDecodeError):
                raise errors.decode(error)
            if error is not None:
                raise errors.parser(error, newlines_before(path, offset))
            # pandas rejects a long record except the first of a block (it would become the
            # index); it pads short ones: both are found on the block's bytes
            first = long_first_record(block, sep, n_fields)
            if first is None and last_column_has_gaps(frame):
                first = short_or_long_row(block, sep, n_fields, long=False)
            elif first is not None:
                cr = stray_cr(block, sep)  # the likelier cause of a long first record
                first = cr if cr is not None and cr[0] <= first[0] else first
            if first is not None:
                raise errors.row(newlines_before(path, offset) + first[0], first[1])
            del block
            frame.index = pd.RangeIndex(rows, rows + len(frame))
            rows += len(frame)
            yield frame
    finally:
        for *_, future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def last_column_has_gaps(frame) -> bool:
    return len(frame.columns) > 0 and bool(frame.iloc[:, -1].isna().any())


def text_starts_with_space(frame) -> bool:
    """Whether a cell of a non-numeric column starts with a space or tab."""
    import pandas as pd

    for name, dtype in frame.dtypes.items():
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            column = frame[name]
            try:
                starts = column.str.startswith((" ", "\t"))
            except AttributeError:  # an object column of Python bools and blanks has no .str
                starts = column.astype(str).str.startswith((" ", "\t"))
            if starts.any():
                return True
    return False


__all__ = ["Records", "scan_records", "record_end", "record_blocks", "short_or_long_row", "iter_blocks", "NnclfError"]
