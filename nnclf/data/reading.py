"""Reading tables (CSV, compressed CSV, Parquet) with errors that name the file and line."""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path
from typing import Iterator

from ..errors import NnclfError

DELIMITERS = ",;\t|"


def _open_text_head(path: Path, encoding: str, size: int = 65536) -> str:
    """The first ``size`` characters of the (possibly compressed) file, for sniffing."""
    import pandas as pd  # noqa: F401  (pandas brings the compression readers)
    from pandas.io.common import get_handle

    with get_handle(str(path), "rb", compression="infer", is_text=False) as handles:
        raw = handles.handle.read(size * 4)
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not wide:
        # read as utf-8 it would fail later with a misleading "expected N fields" on some line
        raise NnclfError(f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); set data.encoding: utf-16")
    text = raw.decode(encoding, errors="replace")
    return text[:size].lstrip("\ufeff")


def fingerprint(path: str | Path) -> dict:
    """{"path", "bytes", "sha256"} of a file, to tell later whether it is still the same data."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def check_file(path: Path, what: str = "data file") -> None:
    if not path.exists():
        raise NnclfError(f"{path}: {what} not found")
    if path.is_dir():
        raise NnclfError(f"{path}: is a folder, expected a {what}")
    if path.stat().st_size == 0:
        raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)")


def sniff_delimiter(path: Path, encoding: str) -> str:
    """Comma unless the header line clearly uses ';', tab or '|' instead."""
    head = _open_text_head(path, encoding)
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_POINT_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")


def sniff_decimal(path: Path, encoding: str, delimiter: str) -> str:
    """',' for a file whose delimiter is not a comma and whose numbers are written like 3,14
    (spreadsheets in many European locales export that), and never like 3.14; else '.'.

    Without this, every such number would read as text and the column would be one-hot encoded.
    """
    if delimiter == ",":
        return "."
    head = _open_text_head(path, encoding)
    lines = head.splitlines()[1:]
    if lines and not head.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut off mid-number
    comma = point = 0
    for row in csv.reader(lines, delimiter=delimiter):
        for field in row:
            field = field.strip()
            if _COMMA_DECIMAL.fullmatch(field):
                comma += 1
            elif _POINT_DECIMAL.fullmatch(field):
                point += 1
    return "," if comma and not point else "."


def header_columns(path: Path, encoding: str, delimiter: str) -> list[str]:
    """Column names from the header row; duplicate names are an error naming both positions."""
    head = _open_text_head(path, encoding)
    if not head.strip():
        raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)")
    try:  # newline=None: a file with old-Mac '\r' line ends has a header line too
        row = next(csv.reader(io.StringIO(head, newline=None), delimiter=delimiter))
    except csv.Error as e:
        raise NnclfError(f"{path}, line 1: cannot parse the header row as CSV ({e})") from None
    # an empty name (a pandas index column written with to_csv, say) gets the name pandas'
    # own header parsing gives it, so both readers name every column alike
    names = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(row)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise NnclfError(
                f"{path}, line 1: duplicate column name '{name}' (columns {seen[name] + 1} and {i + 1})"
            )
        seen[name] = i
    return names


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


READ_CHUNK_ROWS = 65_536  # when the file's head cannot tell how long its lines are
# the most text parsed at a time (by one parse thread, or per chunk of the single reader): on 2
# cores, 8 MB blocks predicted 200,000 x 100 rows in 1.7 s and 280 MB, 2 MB blocks in 2.2 s and
# 165 MB, 32 MB blocks in 1.7 s and 485 MB
MAX_BLOCK_BYTES = 8 << 20


def read_table(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None):
    """The whole table as a pandas DataFrame with the header's column names.

    A CSV is parsed in chunks of about ``MAX_BLOCK_BYTES`` of text and concatenated: pandas'
    tokenizer holds a few times the text it parses in buffers, so one-piece parsing peaks near
    2.5x the file size (measured: 391 MB vs 245 MB in 65,536-row chunks for a 155 MB CSV).
    It is parsed in this thread: parse threads cut the time (0.73 -> 0.48 s for that file)
    but raised the peak by ~40 MB, which their malloc arenas keep after parsing; joining the
    chunks column by column instead of ``pd.concat`` raised it by ~20 MB (heap fragments).
    Training data is not joined at all (``read_chunks``).
    """
    import pandas as pd

    frames = read_chunks(path, encoding, delimiter).chunks
    if len(frames) == 1:
        return frames[0]
    frame = pd.concat(frames)
    frames.clear()
    return frame


def read_chunks(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None) -> "ChunkedTable":
    """The whole table as chunks of about ``MAX_BLOCK_BYTES`` of text, not joined (see
    ``ChunkedTable``)."""
    return ChunkedTable(list(iter_table(path, encoding, delimiter, chunk_rows=_chunk_rows(path, encoding), threads=False)))


def _chunk_rows(path: str | Path, encoding: str) -> int:
    """Rows in about ``MAX_BLOCK_BYTES`` of the file's text, by the mean line length of its head:
    the tokenizer's buffers while parsing a chunk are a few times the chunk's text."""
    try:
        head = _open_text_head(Path(path), encoding)
    except (OSError, UnicodeError, NnclfError):
        return READ_CHUNK_ROWS  # the reader reports the problem
    line = max(1, len(head) // max(1, head.count("\n")))
    return max(1024, MAX_BLOCK_BYTES // line)


class ChunkedTable:
    """A table kept as the chunks it was read in, standing in for ``pd.concat(chunks)`` where
    whole columns are all that is needed (fitting and transforming training data): the chunks
    are never joined whole, so the parsed data is held once instead of twice at the peak.

    ``table[name]`` joins one column, indexed by file row like every chunk, with the dtype the
    joined DataFrame would give it (Series and DataFrame concatenation share their dtype rules;
    ``tests/test_reading_blocks.py`` checks mixed chunks).
    """

    def __init__(self, chunks: list):
        self.chunks = chunks
        self._index = None

    @property
    def columns(self) -> list[str]:
        return list(self.chunks[0].columns)

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __getitem__(self, name: str):
        import numpy as np
        import pandas as pd

        if len(self.chunks) == 1:
            return self.chunks[0][name]
        parts = [chunk[name] for chunk in self.chunks]
        dtype = parts[0].dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf" and all(part.dtype == dtype for part in parts):
            # one NumPy dtype throughout: what pd.concat gives, without its per-call index work
            return pd.Series(np.concatenate([part.to_numpy() for part in parts]), index=self.index, name=name, copy=False)
        return pd.concat(parts)

    @property
    def index(self):
        if self._index is None:
            self._index = self.chunks[0].index.append([chunk.index for chunk in self.chunks[1:]])
        return self._index

    def rows(self, keep) -> "ChunkedTable":
        """The rows where the boolean array ``keep`` (one entry per row of the table) is true."""
        kept, start = [], 0
        for chunk in self.chunks:
            part = keep[start : start + len(chunk)]
            start += len(chunk)
            kept.append(chunk if part.all() else chunk[part])
        return ChunkedTable(kept)


def iter_table(
    path: str | Path,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    chunk_rows: int = READ_CHUNK_ROWS,
    threads: bool = True,
) -> Iterator:
    """DataFrames of at most about ``chunk_rows`` rows, in file order, each indexed by its rows'
    positions in the file.

    With ``threads``, a plain CSV is cut into blocks of whole records and the blocks are parsed
    by a small pool of threads (pandas' tokenizer releases the GIL), so parsing uses every core
    while the caller works on the previous chunk. Otherwise, and for compressed files and
    encodings whose bytes cannot be cut at newlines (UTF-16/32), one reader parses the file in
    this thread, chunk after chunk.
    """

    path = Path(path)
    check_file(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise NnclfError(f"{path}: unknown text encoding '{encoding}' (data.encoding)") from None
    if is_parquet(path):
        yield from _iter_parquet(path, chunk_rows)
        return
    try:
        sep = delimiter or sniff_delimiter(path, encoding)
        names = header_columns(path, encoding, sep)
        decimal = sniff_decimal(path, encoding, sep)
    except UnicodeDecodeError as e:  # pragma: no cover - decode errors are replaced while sniffing
        raise _decode_error(path, encoding, e) from None
    kwargs = dict(sep=sep, decimal=decimal, skipinitialspace=True, low_memory=False)
    split = _data_start(path, encoding) if threads else None
    if split is not None:
        frames = _iter_blocks(path, encoding, names, kwargs, split, chunk_rows, _parse_workers())
    else:
        frames = _iter_stream(path, encoding, names, kwargs, chunk_rows)
    empty = True
    for frame in frames:
        if len(frame):
            empty = False
            yield frame
    if empty:
        raise NnclfError(f"{path}: has a header row ({len(names)} columns) but no data rows")


def _iter_stream(path: Path, encoding: str, names: list[str], kwargs: dict, chunk_rows: int) -> Iterator:
    """One pandas reader over the whole (possibly compressed) file, ``chunk_rows`` at a time."""
    import pandas as pd

    kwargs = {**kwargs, "encoding": "utf-8-sig" if _is_utf8(encoding) else encoding, "chunksize": chunk_rows}
    frames = _read(pd, path, encoding, kwargs)
    scanned, first = False, True
    try:
        for frame in frames:
            if first:
                _reject_long_first_record(path, _open_text_head(path, encoding), kwargs["sep"], len(names), 0, skip=1)
                first = False
            frame.columns = [str(c).strip() for c in frame.columns]
            # pandas pads a short row with missing values, so only a gap in the last column can
            # mean one; then (once per file) the raw lines are scanned to tell it from an empty cell
            if not scanned and _last_column_has_gaps(frame):
                _reject_short_row(path, find_short_row(path, kwargs["sep"], len(names), encoding), len(names))
                scanned = True
            yield frame
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from None
    except pd.errors.ParserError as e:
        raise _parser_error(path, e) from None


def _iter_blocks(path: Path, encoding: str, names: list[str], kwargs: dict, split: tuple[int, int],
                 chunk_rows: int, workers: int) -> Iterator:
    """Parse blocks of whole records in ``workers`` threads; yield their frames in file order.

    A block holds about ``chunk_rows`` lines (by the mean line length of the file's head) and
    at most ``MAX_BLOCK_BYTES``; at most ``workers + 1`` blocks are in flight, so memory stays
    bounded whatever the file's size.
    """
    import io
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    data_start, line_bytes = split
    block_bytes = min(max(1 << 16, chunk_rows * line_bytes), MAX_BLOCK_BYTES)
    n_fields, sep = len(names), kwargs["sep"]
    options = {**kwargs, "encoding": encoding, "header": None, "names": names}
    plain = {**options, "skipinitialspace": False}

    def parse(block: bytes):
        """(frame, None) or (None, error). Parsing without skipinitialspace is ~20% faster and
        reads numbers the same; a block whose text cells start with a space (or that fails:
        a space before a quote) is parsed again with it, so the result never differs."""
        try:
            try:
                frame = pd.read_csv(io.BytesIO(block), **plain)
                if not _text_starts_with_space(frame):
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
        with open(path, "rb") as f:
            f.seek(data_start)
            blocks = _record_blocks(f, block_bytes)
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
                frame, error = future.result()
                if isinstance(error, UnicodeDecodeError):
                    raise _decode_error(path, encoding, error)
                if error is not None:
                    raise _parser_error(path, error, line_offset=_newlines_before(path, offset))
                _reject_long_first_record(path, block[: 1 << 16].decode(encoding, errors="replace"), sep, n_fields,
                                          lambda: _newlines_before(path, offset))
                if _last_column_has_gaps(frame):
                    short = _short_row_in(block, sep, n_fields)
                    if short is not None:
                        _reject_short_row(path, (_newlines_before(path, offset) + short[0], short[1]), n_fields)
                del block
                frame.index = pd.RangeIndex(rows, rows + len(frame))
                rows += len(frame)
                yield frame
    finally:
        for *_, future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def _reject_long_first_record(path: Path, text: str, sep: str, n_fields: int, lines_before, skip: int = 0) -> None:
    """An error when the first record of ``text`` (after ``skip`` records) has more fields than the
    header: pandas would quietly take the extra leading fields as an index and shift every column
    of the chunk (a trailing delimiter does that too). ``lines_before``: file lines before
    ``text``, or a function giving them (called only for the error)."""
    line, fields = _first_record(text, sep, skip)
    if fields > n_fields:
        line += lines_before() if callable(lines_before) else lines_before
        hint = "; is the first line a title or a comment instead of the header?" if n_fields == 1 else ""
        raise NnclfError(f"{path}, line {line}: expected {n_fields} fields like the header, saw {fields}{hint}")


def _first_record(text: str, sep: str, skip: int = 0) -> tuple[int, int]:
    """(line where it starts, 1-based; fields) of the first non-blank record of ``text`` after
    ``skip`` non-blank records."""
    # NUL bytes: no delimiter, so they change no count; Python 3.10's csv module refuses them
    reader = csv.reader(io.StringIO(text.replace("\x00", ""), newline=None), delimiter=sep, skipinitialspace=True)
    start = 1
    for row in reader:
        if row and skip == 0:
            return start, len(row)
        if row:
            skip -= 1
        start = reader.line_num + 1
    return start, 0


def _text_starts_with_space(frame) -> bool:
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


def _parse_workers() -> int:
    """Threads for parsing: the CPUs this process may use, at most 4."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 4)


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


# codec names (codecs.lookup(...).name) of encodings in which byte 10 only ever means a newline
_CUTTABLE = {"utf-8", "utf-8-sig", "ascii", "iso8859-1", "iso8859-15", "cp1250", "cp1251", "cp1252"}


def _data_start(path: Path, encoding: str) -> tuple[int, int] | None:
    """(byte offset of the first data record, mean bytes per line) when the file can be cut
    into blocks at newlines: uncompressed, in an encoding where a newline byte is always a
    newline, with LF or CRLF line ends and the header on its first line. None otherwise (the
    caller then parses it as one stream)."""
    from pandas.io.common import infer_compression

    if codecs.lookup(encoding).name not in _CUTTABLE or infer_compression(str(path), "infer") is not None:
        return None
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    head_start = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    if head[head_start:head_start + 1] in (b"\n", b"\r", b""):
        return None  # blank first line: pandas looks further for the header
    end = _record_end(head, head.find(b"\n"))
    if end < 0:
        return None  # no newline in the head: one huge header, or old-Mac '\r' line ends
    newlines = head.count(b"\n")
    line_bytes = max(1, len(head) // max(newlines, 1))
    return end + 1, line_bytes


def _record_end(data: bytes, cut: int) -> int:
    """The last newline at or before ``cut`` that is outside quotes (quotes before it come in
    pairs: an escaped quote is written twice), or -1. ``data`` starts outside quotes."""
    if b'"' not in data:
        return cut
    quotes = data.count(b'"', 0, cut)
    while cut >= 0 and quotes % 2:  # inside a quoted field: step back a line, uncounting its quotes
        previous = data.rfind(b"\n", 0, cut)
        quotes -= data.count(b'"', max(previous, 0), cut)
        cut = previous
    return cut


def _record_blocks(f, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(file offset, block) pairs of about ``block_bytes`` from the file's position on, each
    block ending after a whole record (a newline outside quotes); the last takes what is left."""
    while True:
        offset = f.tell()
        data = f.read(block_bytes)
        if not data:
            return
        cut = _record_end(data, data.rfind(b"\n"))
        while cut < 0:  # no whole record yet: read on
            more = f.read(block_bytes)
            if not more:
                break
            data += more
            cut = _record_end(data, data.rfind(b"\n"))
        if 0 <= cut < len(data) - 1:
            f.seek(offset + cut + 1)  # the partial record starts the next block
            data = data[: cut + 1]
        yield offset, data


def _newlines_before(path: Path, offset: int) -> int:
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


def _last_column_has_gaps(frame) -> bool:
    return len(frame.columns) > 0 and bool(frame.iloc[:, -1].isna().any())


def _reject_short_row(path: Path, short: tuple[int, int] | None, n_fields: int) -> None:
    if short is not None:
        line, fields = short
        raise NnclfError(f"{path}, line {line}: expected {n_fields} fields like the header, saw {fields}")


def find_short_row(path: Path, sep: str, n_fields: int, encoding: str, block_size: int = 1 << 20):
    """(line, fields) of the first non-blank line with fewer fields than the header, or None.

    pandas pads short rows with missing values silently (it only rejects long ones), so this
    counts delimiters per line on the raw bytes, one block at a time (see ``_short_row_in``).
    Multi-byte encodings and multi-character delimiters are not scanned.
    """
    from pandas.io.common import get_handle

    codec = codecs.lookup(encoding).name.replace("utf-8-sig", "utf-8")  # ("utf-8-sig" encodes a BOM first)
    try:
        if sep.encode(codec) != sep.encode("ascii") or "\n".encode(codec) != b"\n":
            return None  # the delimiter or newline is not its ASCII byte (UTF-16/32, EBCDIC, ...)
    except UnicodeError:
        return None
    lines_done = 0
    carry = b""
    with get_handle(str(path), "rb", compression="infer", is_text=False) as handles:
        while True:
            block = handles.handle.read(block_size)
            data = carry + block
            if not block:
                if not data:
                    return None
                data += b"\n"
            end = data.rfind(b"\n")
            if end < 0:
                carry = data
                continue
            chunk, carry = data[: end + 1], data[end + 1 :]
            short = _short_row_in(chunk, sep, n_fields)
            if short is not None:
                return lines_done + short[0], short[1]
            lines_done += chunk.count(b"\n")
            if not block:
                return None


def _short_row_in(chunk: bytes, sep: str, n_fields: int) -> tuple[int, int] | None:
    """(line within ``chunk``, 1-based; fields) of its first non-blank line with fewer than
    ``n_fields`` fields, or None. ``chunk`` holds whole lines in an ASCII-compatible encoding;
    one with a quote character is not scanned (a quoted field may hold the delimiter or a
    newline), nor is a multi-character delimiter."""
    import numpy as np

    if n_fields < 2 or len(sep) != 1 or ord(sep) > 127 or b'"' in chunk:
        return None
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    raw = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    starts = np.r_[0, newlines[:-1] + 1]
    # delimiters per line: one pass over the bytes, no index arrays
    counts = np.add.reduceat((raw == ord(sep)).view(np.uint8), starts, dtype=np.int64)
    lengths = np.diff(newlines, prepend=-1) - 1
    ends_cr = raw[np.maximum(newlines - 1, 0)] == 13
    blank = (lengths == 0) | ((lengths == 1) & ends_cr)
    short = np.flatnonzero((counts < n_fields - 1) & ~blank)
    if short.size:
        return int(short[0]) + 1, int(counts[short[0]]) + 1
    return None


def _read(pd, path, encoding, kwargs):
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from None
    except LookupError:
        raise NnclfError(f"{path}: unknown text encoding '{encoding}' (data.encoding)") from None
    except pd.errors.EmptyDataError:
        raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)") from None
    except pd.errors.ParserError as e:
        raise _parser_error(path, e) from None


def _parser_error(path: Path, error: Exception, line_offset: int = 0) -> NnclfError:
    """A one-line error from pandas' ParserError; ``line_offset``: file lines before the text parsed."""
    text = str(error)
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = match.groups()
        return NnclfError(f"{path}, line {int(line) + line_offset}: expected {expected} fields like the header, saw {saw}")
    return NnclfError(f"{path}: cannot parse as CSV: {text.strip().splitlines()[-1]}")


def _decode_error(path: Path, encoding: str, error: UnicodeDecodeError) -> NnclfError:
    line = _first_undecodable_line(path, encoding)
    where = f", line {line}" if line else ""
    return NnclfError(
        f"{path}{where}: bytes that are not valid {encoding}; set data.encoding to the file's encoding (e.g. latin-1 or cp1252)"
    )


def _first_undecodable_line(path: Path, encoding: str) -> int | None:
    from pandas.io.common import get_handle

    with get_handle(str(path), "rb", compression="infer", is_text=False) as handles:
        for number, raw in enumerate(handles.handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None


def _iter_parquet(path: Path, chunk_rows):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NnclfError(f"{path}: reading Parquet needs pyarrow: pip install 'nnclf[parquet]'") from None
    try:
        table = pq.ParquetFile(path)
        batches = table.iter_batches(batch_size=chunk_rows)
        start = 0
        for batch in batches:
            frame = batch.to_pandas()
            frame.index += start  # keep file row numbers as the index, like the CSV reader
            start += len(frame)
            yield frame
    except NnclfError:
        raise
    except Exception as e:  # pyarrow raises many types for corrupt files
        raise NnclfError(f"{path}: cannot read Parquet file: {e}") from None
