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
    names = [name.strip() for name in row]
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


READ_CHUNK_ROWS = 65_536


def read_table(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None, usecols=None, dtype=None):
    """The whole table as a pandas DataFrame with the header's column names.

    A CSV is parsed in chunks and concatenated: pandas' tokenizer holds about the file's size
    in buffers while it parses, so one-piece parsing peaks near 2.5x the file size, chunks
    near the size of the result (measured: 391 MB vs 245 MB for a 155 MB CSV, same speed).
    """
    import pandas as pd

    frames = list(iter_table(path, encoding, delimiter, usecols=usecols, dtype=dtype, chunk_rows=READ_CHUNK_ROWS))
    if len(frames) == 1:
        return frames[0]
    frame = pd.concat(frames)
    frames.clear()
    return frame


def iter_table(
    path: str | Path,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    usecols=None,
    dtype=None,
    chunk_rows: int | None = None,
) -> Iterator:
    """DataFrames of at most ``chunk_rows`` rows (the whole file when None), in file order."""
    import pandas as pd

    path = Path(path)
    check_file(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise NnclfError(f"{path}: unknown text encoding '{encoding}' (data.encoding)") from None
    if is_parquet(path):
        yield from _iter_parquet(path, usecols, chunk_rows)
        return
    try:
        sep = delimiter or sniff_delimiter(path, encoding)
        names = header_columns(path, encoding, sep)
        decimal = sniff_decimal(path, encoding, sep)
    except UnicodeDecodeError as e:  # pragma: no cover - decode errors are replaced while sniffing
        raise _decode_error(path, encoding, e) from None

    def reject_short_rows():
        short = find_short_row(path, sep, len(names), encoding)
        if short is not None:
            line, fields = short
            raise NnclfError(f"{path}, line {line}: expected {len(names)} fields like the header, saw {fields}")

    if usecols is not None:  # the last column may not be read, so it cannot give short rows away
        reject_short_rows()
    scanned = usecols is not None
    kwargs = dict(
        sep=sep,
        decimal=decimal,
        encoding="utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding,
        usecols=usecols,
        dtype=dtype,
        skipinitialspace=True,
        low_memory=False,
    )
    if chunk_rows is None:
        frames = [_read(pd, path, encoding, kwargs)]
    else:
        frames = _read(pd, path, encoding, {**kwargs, "chunksize": chunk_rows})
    first = True
    try:
        for frame in frames:
            frame.columns = [str(c).strip() for c in frame.columns]
            if first and len(frame) == 0 and usecols is None:
                raise NnclfError(f"{path}: has a header row ({len(names)} columns) but no data rows")
            # pandas pads a short row with missing values, so only a gap in the last column can
            # mean one; then (once per file) the raw lines are scanned to tell it from an empty cell
            if not scanned and len(frame.columns) and frame.iloc[:, -1].isna().any():
                reject_short_rows()
                scanned = True
            first = False
            yield frame
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from None
    except pd.errors.ParserError as e:
        raise _parser_error(path, e) from None
    if first:
        raise NnclfError(f"{path}: has a header row but no data rows")


def find_short_row(path: Path, sep: str, n_fields: int, encoding: str, block_size: int = 1 << 20):
    """(line, fields) of the first non-blank line with fewer fields than the header, or None.

    pandas pads short rows with missing values silently (it only rejects long ones), so this
    counts delimiters per line on the raw bytes, vectorised, one block at a time. Blocks that
    contain a quote character are skipped (a quoted field may hold the delimiter or a newline),
    as are multi-byte encodings and multi-character delimiters.
    """
    import codecs

    import numpy as np
    from pandas.io.common import get_handle

    if n_fields < 2 or len(sep) != 1 or len(sep.encode(encoding)) != 1:
        return None
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return None
    sep_byte = sep.encode(encoding)[0]
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
            raw = np.frombuffer(chunk, dtype=np.uint8)
            newlines = np.flatnonzero(raw == 10)
            if b'"' not in chunk:
                starts = np.r_[0, newlines[:-1] + 1]
                # delimiters per line: one pass over the bytes, no index arrays
                counts = np.add.reduceat((raw == sep_byte).view(np.uint8), starts, dtype=np.int64)
                lengths = np.diff(newlines, prepend=-1) - 1
                ends_cr = raw[np.maximum(newlines - 1, 0)] == 13
                blank = (lengths == 0) | ((lengths == 1) & ends_cr)
                short = np.flatnonzero((counts < n_fields - 1) & ~blank)
                if short.size:
                    return lines_done + int(short[0]) + 1, int(counts[short[0]]) + 1
            lines_done += len(newlines)
            if not block:
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
    except ValueError as e:
        if "Usecols" in str(e) or "columns expected but not found" in str(e):
            raise NnclfError(f"{path}: {e}") from None
        raise


def _parser_error(path: Path, error: Exception) -> NnclfError:
    import re

    text = str(error)
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = match.groups()
        return NnclfError(f"{path}, line {line}: expected {expected} fields like the header, saw {saw}")
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


def _iter_parquet(path: Path, usecols, chunk_rows):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NnclfError(f"{path}: reading Parquet needs pyarrow: pip install 'nnclf[parquet]'") from None
    try:
        table = pq.ParquetFile(path)
        batches = table.iter_batches(batch_size=chunk_rows or 1 << 62, columns=usecols)
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
