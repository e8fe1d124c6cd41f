"""Reading tables (CSV, compressed CSV, Parquet) with errors that name the file and line."""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..errors import NnclfError

DELIMITERS = ",;\t|"


DEFAULT_NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # pandas' default list, written out so a pandas release cannot change what a file means
HEAD_BYTES = 1 << 18  # read for sniffing, after the header record
MAX_HEADER_BYTES = 64 << 20  # a header record longer than this is refused, not read forever
HEAD_GROWTH = 4  # a header longer than the head read so far: read 4x as much (few reads even for 50,000 columns)
CELL_QUOTE_CHARS = 40  # at most this much of a cell is quoted in a message


def concat_series(parts: list, index, name: str):
    """The column made of consecutive pieces, on ``index``: with one NumPy dtype throughout, what
    pd.concat gives, without its per-call index work."""
    import numpy as np
    import pandas as pd

    if len(parts) == 1:
        return parts[0]
    dtype = parts[0].dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf" and all(part.dtype == dtype for part in parts):
        return pd.Series(np.concatenate([part.to_numpy() for part in parts]), index=index, name=name, copy=False)
    return pd.concat(parts)


def quote_cell(value) -> str:
    """``repr`` of a cell for a message, cut to ``CELL_QUOTE_CHARS`` characters: a 200 MB cell
    must not make a 200 MB warning."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= CELL_QUOTE_CHARS:
        return repr(value)
    return f"{text[:CELL_QUOTE_CHARS]!r}... ({len(text):,} characters)"


@dataclass(frozen=True)
class ReadOptions:
    """How to read a table: ``data.encoding``, ``data.delimiter`` (None: detected),
    ``data.na_values`` (cells that mean "missing" in feature columns) and the target column,
    which is read as text exactly as written: only an empty cell is a missing label."""

    encoding: str = "utf-8"
    delimiter: Optional[str] = None
    na_values: tuple = DEFAULT_NA_VALUES
    target: Optional[str] = None

    @classmethod
    def of(cls, data, target: Optional[str] = None) -> "ReadOptions":
        """From a DataConfig or the ``data`` mapping saved in a checkpoint (which may predate
        ``na_values``)."""
        get = data.get if isinstance(data, dict) else lambda key, default=None: getattr(data, key, default)
        na = get("na_values", None)
        return cls(get("encoding", "utf-8") or "utf-8", get("delimiter", None),
                   DEFAULT_NA_VALUES if na is None else tuple(na), target if target is not None else get("target", None))

    def pandas(self, names: list[str]) -> dict:
        """read_csv arguments: na_values in every column but the target, which is text."""
        kwargs = dict(keep_default_na=False)
        if self.target is not None and self.target in names:
            kwargs["na_values"] = {name: ([""] if name == self.target else list(self.na_values)) for name in names}
            kwargs["dtype"] = {self.target: str}
        else:
            kwargs["na_values"] = list(self.na_values)
        return kwargs


def _options(encoding, delimiter, options: Optional[ReadOptions]) -> ReadOptions:
    if options is not None:
        return options
    return ReadOptions(encoding=encoding, delimiter=delimiter)


def fingerprint(path: str | Path) -> dict:
    """{"path", "bytes", "sha256"} of a file, to tell later whether it is still the same data."""
    import hashlib

    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"path": str(path), "bytes": size, "sha256": digest.hexdigest()}


class _HashingReader(io.RawIOBase):
    """A binary stream that hashes (SHA-256) every byte read through it: the fingerprint of
    what was parsed, not of whatever the path holds afterwards."""

    def __init__(self, raw, prefix: bytes = b""):
        import hashlib

        self.raw, self.prefix = raw, prefix
        self.digest, self.size = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n], self.prefix = self.prefix[:n], self.prefix[n:]
        else:
            data = self.raw.read(len(buffer))
            n = len(data)
            buffer[:n] = data
            self.digest.update(data)
            self.size += n
        return n

    def drain(self) -> None:
        self.prefix = b""
        for block in iter(lambda: self.raw.read(1 << 20), b""):
            self.digest.update(block)
            self.size += len(block)


def check_file(path: Path, what: str = "data file") -> None:
    if str(path) == "-":
        return
    if not path.exists() and not path.is_symlink():  # a symlink loop "does not exist": check_input names it
        raise NnclfError(f"{path}: {what} not found{_similar_file(path)}")
    from ..inputs import check_input  # readable, a regular file, bytes matching the suffix

    check_input(path, what)
    if path.is_file() and path.stat().st_size == 0:
        raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)")


def _similar_file(path: Path) -> str:
    """`` (did you mean 'iris.csv'?)`` for a file of the same folder with a close name."""
    import difflib

    try:
        names = [p.name for p in path.parent.iterdir() if p.is_file()] if path.parent.is_dir() else []
    except OSError:
        return ""
    lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(path.name.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean '{path.parent / lower[close[0]]}'?)" if close else ""


@dataclass
class Sniffed:
    """What one look at a file's head decides: the delimiter, the decimal mark, the header's
    column names, and where the data starts (for cutting a plain file into blocks)."""

    sep: str
    decimal: str
    names: list
    head: str  # the decoded head: the header record and about HEAD_BYTES after it
    complete: bool  # the head is the whole file
    data_start: Optional[int]  # byte offset of the first data record, when blocks can be cut
    line_bytes: int  # mean bytes per line of the head


def sniff(path: Path, head: bytes, text: str, complete: bool, encoding: str, delimiter: Optional[str], cuttable: bool) -> Sniffed:
    """Decide everything from ``head`` (the first bytes of the decompressed file, through the
    header record) and ``text``, the same bytes decoded (``_read_head`` decodes them once)."""
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not wide:
        # read as utf-8 it would fail later with a misleading "expected N fields" on some line
        raise NnclfError(f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); set data.encoding: utf-16")
    text = text.lstrip("\ufeff")
    if not complete and not wide:
        text = text[: len(text) - 1]  # the last character may be cut mid-sequence
    if not text.strip():
        raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)")
    # newline="": '\r' (old Mac) line ends are line ends too, and a quoted '\r' stays one
    lines = io.StringIO(text, newline="")
    first = next((line for line in lines if line.strip()), "")
    sep = delimiter or _sniff_delimiter(first)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        row = next((r for r in reader if r), [])
    except csv.Error as e:
        raise NnclfError(f"{path}, line 1: cannot parse the header row as CSV ({e})") from None
    # an empty name (a pandas index column written with to_csv, say) gets the name pandas'
    # own header parsing gives it, so both readers name every column alike
    names = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(row)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise NnclfError(f"{path}, line 1: duplicate column name {quote_cell(name)} (columns {seen[name] + 1} and {i + 1})")
        seen[name] = i
    data_start = _data_start(head, sep) if cuttable else None
    newlines = head.count(b"\n")
    return Sniffed(sep, _sniff_decimal(text, sep, complete), names, text, complete, data_start,
                   max(1, len(head) // max(newlines, 1)))


def sniff_file(path: str | Path, encoding: str = "utf-8", delimiter: Optional[str] = None) -> Sniffed:
    """The head of a (possibly compressed) file sniffed by the reader's own rules, for a look
    taken before the file is read (``cache.estimated_matrix_bytes``)."""
    from pandas.io.common import get_handle

    path = Path(path)
    with get_handle(str(path), "rb", compression="infer", is_text=False) as handles:
        head, text, complete = _read_head(path, handles.handle, encoding)
    return sniff(path, head, text, complete, encoding, delimiter, cuttable=False)


def _sniff_delimiter(first_line: str) -> str:
    """Comma unless the header line clearly uses ';', tab or '|' instead."""
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _header_complete(text: str) -> bool:
    """Whether ``text`` (the decoded head) holds the whole header record (and a line end after it)."""
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if row:
                break
    except csv.Error:
        return True  # the header parse reports it
    translated = text.replace("\r\n", "\n").replace("\r", "\n")
    return translated.count("\n") >= reader.line_num


_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_POINT_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")


def _sniff_decimal(text: str, delimiter: str, complete: bool) -> str:
    """',' for a file whose delimiter is not a comma and whose numbers are written like 3,14
    (spreadsheets in many European locales export that), and never like 3.14; else '.'.

    Without this, every such number would read as text and the column would be one-hot encoded.
    """
    if delimiter == ",":
        return "."
    lines = text.splitlines()[1:]
    if lines and not complete:
        lines = lines[:-1]  # the last line may be cut off mid-number
    comma = point = 0
    try:
        for row in csv.reader(lines, delimiter=delimiter):
            for field in row:
                field = field.strip()
                if _COMMA_DECIMAL.fullmatch(field):
                    comma += 1
                elif _POINT_DECIMAL.fullmatch(field):
                    point += 1
    except csv.Error:
        pass
    return "," if comma and not point else "."


def _data_start(head: bytes, sep: str) -> Optional[int]:
    """Byte offset of the first data record when the header is the file's first line, ends
    with a newline outside quotes, and the file uses LF or CRLF line ends; else None (the file
    is then parsed as one stream)."""
    from .blocks import scan_records

    start = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    if head[start : start + 1] in (b"\n", b"\r", b""):
        return None  # blank first line: pandas looks further for the header
    line = head.find(b"\n", start)
    if line < 0:
        return None  # no newline: old-Mac '\r' line ends
    if b'"' in head[start:line]:  # a quoted header name may hold a newline
        records = scan_records(head[start : head.rfind(b"\n") + 1], sep)
        if records is None or not records.ends.size:
            return None
        return start + int(records.ends[0]) + 1
    return line + 1


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


READ_CHUNK_ROWS = 65_536  # when the file's head cannot tell how long its lines are
# the most text parsed at a time (by one parse thread, or per chunk of the single reader):
# the trade between time and peak memory is measured in benchmarks/RESULTS.md
MAX_BLOCK_BYTES = 8 << 20
# a block (or chunk) of very long lines still holds this many rows, and a block of short ones
# this many bytes: below that each pandas call costs more in set-up than in parsing
MIN_CHUNK_ROWS = 1024
MIN_BLOCK_BYTES = 1 << 16


def read_table(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None, options: ReadOptions | None = None):
    """The whole table as a pandas DataFrame with the header's column names.

    A CSV is parsed in chunks of about ``MAX_BLOCK_BYTES`` of text and concatenated: pandas'
    tokenizer holds a few times the text it parses in buffers, so one-piece parsing peaks near
    2.5x the file size. It is parsed in this thread (parse threads keep their malloc arenas
    after parsing). Training data is not joined at all (``read_chunks``).
    """
    return read_table_hashed(path, options=_options(encoding, delimiter, options))[0]


def read_table_hashed(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None,
                      options: ReadOptions | None = None):
    """(DataFrame, fingerprint of the bytes parsed): see ``read_table``."""
    import pandas as pd

    table = read_chunks(path, options=_options(encoding, delimiter, options))
    frames = table.chunks
    frame = frames[0] if len(frames) == 1 else pd.concat(frames)
    frames.clear()
    return frame, table.fingerprint


def read_chunks(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None,
                options: ReadOptions | None = None) -> "ChunkedTable":
    """The whole table as chunks of about ``MAX_BLOCK_BYTES`` of text, not joined (see
    ``ChunkedTable``); ``.fingerprint`` is the path, size and SHA-256 of the bytes parsed."""
    reader = TableReader(path, _options(encoding, delimiter, options), chunk_rows=None, threads=False)
    table = ChunkedTable(list(reader.frames()))
    table.fingerprint = reader.fingerprint
    return table


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
        self.fingerprint: Optional[dict] = None

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
        return concat_series([chunk[name] for chunk in self.chunks], self.index, name)

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
        table = ChunkedTable(kept)
        table.fingerprint = self.fingerprint
        return table


def iter_table(
    path: str | Path,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    chunk_rows: int = READ_CHUNK_ROWS,
    threads: bool = True,
    options: ReadOptions | None = None,
) -> Iterator:
    """DataFrames of at most about ``chunk_rows`` rows, in file order, each indexed by its rows'
    positions in the file (see ``TableReader``). ``path`` "-" reads standard input."""
    yield from TableReader(path, _options(encoding, delimiter, options), chunk_rows, threads).frames()


# codec names (codecs.lookup(...).name) of encodings in which byte 10 only ever means a newline
_CUTTABLE = {"utf-8", "utf-8-sig", "ascii", "iso8859-1", "iso8859-15", "cp1250", "cp1251", "cp1252"}


class TableReader:
    """One read of a table: the file is opened once, its head sniffed once (``Sniffed``), and
    every byte parsed is read through that one open file, so the fingerprint is of what was read.

    With ``threads``, a plain CSV is cut into blocks of whole records parsed by a small pool of
    threads (``blocks.iter_blocks``), so parsing uses every core while the caller works on the
    previous chunk. Otherwise, and for compressed files, standard input and encodings whose
    bytes cannot be cut at newlines (UTF-16/32), one pandas reader parses the stream in this
    thread, chunk after chunk. Either way records are cut and checked by ``blocks`` rules.
    """

    def __init__(self, path, options: ReadOptions, chunk_rows: Optional[int] = READ_CHUNK_ROWS, threads: bool = True):
        self.path = Path(path)
        self.stdin = str(path) == "-"
        self.options, self.chunk_rows, self.threads = options, chunk_rows, threads
        self.fingerprint: Optional[dict] = None

    def frames(self) -> Iterator:
        """The chunks; decompression and OS failures become one line naming the file."""
        from ..inputs import read_errors

        with read_errors(Path(self.path)):
            yield from self._frames()

    def _frames(self) -> Iterator:
        path, options = self.path, self.options
        check_file(path)
        try:
            codecs.lookup(options.encoding)
        except LookupError:
            raise NnclfError(f"{path}: unknown text encoding '{options.encoding}' (data.encoding)") from None
        if is_parquet(path) and not self.stdin:
            yield from self._parquet()
            return
        try:
            raw = sys.stdin.buffer if self.stdin else open(path, "rb")
        except OSError as e:
            raise NnclfError(f"{path}: cannot read the data file ({e.strerror})") from None
        try:
            yield from self._csv(raw)
        finally:
            if not self.stdin:
                raw.close()

    def _csv(self, raw) -> Iterator:
        from pandas.io.common import infer_compression

        path, options = self.path, self.options
        compression = None if self.stdin else infer_compression(str(path), "infer")
        codec = codecs.lookup(options.encoding).name
        seekable_only = compression in ("zip", "tar")
        digest = None
        if seekable_only:  # zip and tar read their directory first: hash the file, then read it
            digest = fingerprint(path)
            source = raw
        else:
            source = hashing = _HashingReader(raw)
        stream = _decompress(path, source, compression)
        head, text, complete = _read_head(path, stream, options.encoding)
        cuttable = self.threads and compression is None and not self.stdin and codec in _CUTTABLE
        sniffed = sniff(path, head, text, complete, options.encoding, options.delimiter, cuttable)
        kwargs = dict(sep=sniffed.sep, decimal=sniffed.decimal, skipinitialspace=True, low_memory=False,
                      **_exact_floats(), **options.pandas(sniffed.names))
        chunk_rows = self.chunk_rows or max(MIN_CHUNK_ROWS, MAX_BLOCK_BYTES // sniffed.line_bytes)
        if sniffed.data_start is not None:
            from .blocks import iter_blocks, parse_workers

            block_bytes = min(max(MIN_BLOCK_BYTES, chunk_rows * sniffed.line_bytes), MAX_BLOCK_BYTES)
            frames = iter_blocks(path, raw, sniffed.data_start, sniffed.names,
                                 {**kwargs, "encoding": options.encoding, "header": None, "names": sniffed.names},
                                 block_bytes, parse_workers(), _Errors(path, options.encoding, len(sniffed.names)))
        else:
            text = _Prefixed(head, stream)
            if self.stdin and _ascii_fields(sniffed.sep, options.encoding):
                # stdin cannot be read twice to find a short row after the fact: check as it streams
                text = _ShortRowGuard(text, sniffed.sep, len(sniffed.names), _Errors(path, options.encoding, len(sniffed.names)))
            frames = self._stream(text, sniffed, kwargs, chunk_rows)
        empty = True
        for frame in frames:
            if len(frame):
                empty = False
                yield frame
        if empty:
            raise NnclfError(f"{path}: has a header row ({len(sniffed.names)} columns) but no data rows")
        if digest is None and sniffed.data_start is None:
            hashing.drain()
            digest = {"path": str(path), "bytes": hashing.size, "sha256": hashing.digest.hexdigest()}
        self.fingerprint = digest

    def _stream(self, stream, sniffed: Sniffed, kwargs: dict, chunk_rows: int) -> Iterator:
        """One pandas reader over the (decompressed) stream, ``chunk_rows`` at a time."""
        import pandas as pd

        from .blocks import last_column_has_gaps

        path, names = self.path, sniffed.names
        encoding = "utf-8-sig" if codecs.lookup(self.options.encoding).name in ("utf-8", "utf-8-sig") else self.options.encoding
        kwargs = {**kwargs, "encoding": encoding, "chunksize": chunk_rows, "header": 0, "names": names}
        errors = _Errors(path, self.options.encoding, len(names))
        scanned, first = False, True
        try:
            for frame in pd.read_csv(stream, **kwargs):
                if first:
                    _reject_long_first_record(path, sniffed.head, sniffed.sep, len(names))
                    first = False
                # pandas pads a short row with missing values, so only a gap in the last column can
                # mean one; then (once per file) the raw lines are scanned to tell it from an empty cell
                if not scanned and last_column_has_gaps(frame):
                    short = None if self.stdin else find_short_row(path, sniffed.sep, len(names), self.options.encoding)
                    if short is not None:
                        raise errors.row(*short)
                    scanned = True
                yield frame
        except UnicodeDecodeError as e:
            raise errors.decode(e) from None
        except pd.errors.EmptyDataError:
            raise NnclfError(f"{path}: the file is empty (expected a header row and data rows)") from None
        except pd.errors.ParserError as e:
            raise errors.parser(e) from None

    def _parquet(self) -> Iterator:
        path = self.path
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise NnclfError(f"{path}: reading Parquet needs pyarrow: pip install \".[parquet]\" (from a clone) or pip install \"nnclf[parquet]\"") from None
        try:
            with open(path, "rb") as f:  # one open file: hashed, then read
                import hashlib

                digest, size = hashlib.sha256(), 0
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
                f.seek(0)
                table = pq.ParquetFile(f)
                start = 0
                for batch in table.iter_batches(batch_size=self.chunk_rows or READ_CHUNK_ROWS):
                    frame = batch.to_pandas()
                    frame.index += start  # keep file row numbers as the index, like the CSV reader
                    start += len(frame)
                    yield frame
            self.fingerprint = {"path": str(path), "bytes": size, "sha256": digest.hexdigest()}
        except NnclfError:
            raise
        except Exception as e:  # pyarrow raises many types for corrupt files
            raise NnclfError(f"{path}: cannot read Parquet file: {e}") from None


class _Prefixed(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of the stream."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ShortRowGuard(io.RawIOBase):
    """A stream passed through in whole-record blocks, each checked for a row with fewer fields
    than the header first (pandas pads such a row with missing values without a word). For
    input that cannot be re-read to look for one later: standard input."""

    def __init__(self, stream, sep: str, n_fields: int, errors: "_Errors"):
        from .blocks import record_blocks

        self.sep, self.n_fields, self.errors = sep, n_fields, errors
        self._blocks = record_blocks(stream, 1 << 20, sep)
        self._pending, self._lines = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        from .blocks import short_or_long_row

        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            data = block[1]
            short = short_or_long_row(data, self.sep, self.n_fields, long=False)
            if short is not None:
                raise self.errors.row(self._lines + short[0], short[1])
            self._lines += data.count(b"\n")
            self._pending = data
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n


def _exact_floats() -> dict:
    """read_csv's option for correctly rounded numbers. pandas before 3 parses floats with its own
    fast routine, which keeps the first 17 digits of a number, leading zeros included, and drops
    the rest: "0.0009039603161619703" reads as 0.0009039603161619, "0.00000000012345678901234567"
    as 1.234567e-10. Its ``round_trip`` parser (the C library's, as Python's float()) reads every
    number as written, at about 3x pandas' time for a file of floats (nnclf's whole read about 2x:
    benchmarks/RESULTS.md, "Exact floats on pandas 2"); pandas 3 parses exactly by default and
    deprecates the option."""
    import pandas as pd

    return {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def _ascii_fields(sep: str, encoding: str) -> bool:
    """Whether records can be cut and fields counted on the raw bytes (the delimiter and the
    newline are their ASCII bytes in this encoding)."""
    codec = codecs.lookup(encoding).name.replace("utf-8-sig", "utf-8")
    try:
        return sep.encode(codec) == sep.encode("ascii") and "\n".encode(codec) == b"\n"
    except UnicodeError:
        return False


def _decompress(path: Path, source, compression: Optional[str]):
    """A binary stream of the decompressed bytes of ``source`` (itself when not compressed)."""
    if compression is None:
        return source
    from pandas.io.common import get_handle

    try:
        return get_handle(source, "rb", compression=compression, is_text=False).handle
    except ImportError as e:
        raise NnclfError(f"{path}: reading {compression} files needs a module that is not installed ({e})") from None


def _read_head(path: Path, stream, encoding: str) -> tuple[bytes, str, bool]:
    """(the first bytes of ``stream``: the whole header record and ``HEAD_BYTES`` more, those
    bytes decoded, whether that is the whole stream). Each byte is decoded once, as it is read:
    the text is what ``head.decode(encoding, errors="replace")`` gives."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")

    def decode(data: bytes, final: bool = False) -> str:
        try:
            return decoder.decode(data, final)
        except UnicodeError as e:  # not replaceable: utf-16/32 without a BOM ("does not start with BOM")
            raise NnclfError(f"{path}: not {encoding} text ({e}); set data.encoding to the file's encoding (e.g. utf-8 or latin-1)") from None

    head, text = b"", ""
    size = HEAD_BYTES
    while True:
        more = stream.read(size - len(head))
        head += more
        text += decode(more)
        if len(head) < size and more:
            continue  # a short read (a pipe): read on
        if not more or len(head) < size:
            return head, text + decode(b"", final=True), True
        if _header_complete(text):
            more = stream.read(HEAD_BYTES)
            return head + more, text + decode(more, final=True), False
        if size >= MAX_HEADER_BYTES:
            raise NnclfError(f"{path}: the header record is longer than {MAX_HEADER_BYTES >> 20} MB; is this a CSV file?")
        size *= HEAD_GROWTH


class _Errors:
    """One-line errors naming the file and line, for both readers."""

    def __init__(self, path: Path, encoding: str, n_fields: int):
        self.path, self.encoding, self.n_fields = path, encoding, n_fields

    def row(self, line: int, fields: int) -> NnclfError:
        from .blocks import STRAY_CR

        if fields == STRAY_CR:
            return NnclfError(f"{self.path}, line {line}: a carriage return (\\r) inside the line, outside quotes: mixed "
                              f"line endings? It would cut the row in two; give the file one kind of line ending")
        hint = "; is the first line a title or a comment instead of the header?" if self.n_fields == 1 and fields > 1 else ""
        return NnclfError(f"{self.path}, line {line}: expected {self.n_fields} fields like the header, saw {fields}{hint}")

    def parser(self, error: Exception, line_offset: int = 0) -> NnclfError:
        return _parser_error(self.path, error, line_offset)

    def decode(self, error: UnicodeDecodeError) -> NnclfError:
        return _decode_error(self.path, self.encoding, error)


def _reject_long_first_record(path: Path, head: str, sep: str, n_fields: int) -> None:
    """An error when the first data record of the head has more fields than the header: pandas
    would quietly take the extra leading fields as an index and shift every column."""
    reader = csv.reader(io.StringIO(head.replace("\x00", ""), newline=None), delimiter=sep, skipinitialspace=True)
    seen, start = 0, 1
    try:
        for row in reader:
            if row:
                seen += 1
                if seen == 2:
                    if len(row) > n_fields:
                        raise _Errors(path, "", n_fields).row(start, len(row))
                    return
            start = reader.line_num + 1
    except csv.Error:
        return


def find_short_row(path: Path, sep: str, n_fields: int, encoding: str, block_size: int = 1 << 20):
    """(line, fields) of the first non-blank record with fewer fields than the header, or None.

    pandas pads short rows with missing values silently (it only rejects long ones), so this
    counts fields per record on the raw bytes, one block of whole records at a time, by the
    rules of ``blocks.scan_records``. Multi-byte encodings are not scanned.
    """
    from pandas.io.common import get_handle

    from .blocks import record_blocks, short_or_long_row

    if not _ascii_fields(sep, encoding):
        return None  # the delimiter or newline is not its ASCII byte (UTF-16/32, EBCDIC, ...)
    lines_done = 0
    with get_handle(str(path), "rb", compression="infer", is_text=False) as handles:
        for _, block in record_blocks(handles.handle, block_size, sep):
            short = short_or_long_row(block, sep, n_fields, long=False)
            if short is not None:
                return lines_done + short[0], short[1]
            lines_done += block.count(b"\n")
    return None


def _parser_error(path: Path, error: Exception, line_offset: int = 0) -> NnclfError:
    """A one-line error from pandas' ParserError; ``line_offset``: file lines before the text parsed."""
    text = str(error)
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = match.groups()
        return NnclfError(f"{path}, line {int(line) + line_offset}: expected {expected} fields like the header, saw {saw}")
    return NnclfError(f"{path}: cannot parse as CSV: {text.strip().splitlines()[-1][:200]}")


def _decode_error(path: Path, encoding: str, error: UnicodeDecodeError) -> NnclfError:
    line = _first_undecodable_line(path, encoding) if Path(path).is_file() else None
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
