"""The on-disk cache of prepared training data (``data.cache: mmap``): float matrices larger than
memory, memory-mapped.

The training CSV is parsed once, chunk by chunk. Each parsed chunk is *spilled*: its columns go
to disk as they were parsed (``SpillTable``), so fitting the preprocessing can join one column
at a time exactly as the in-memory path joins it (``ChunkedTable``), with the same functions
and therefore the same fitted numbers. Then every chunk is read back, transformed and its rows
appended to the split it belongs to. What is left on disk, in ``CACHE_DIR/<key>/``:

    manifest.json                 the key material, fitted preprocessing, labels, shapes, warnings
    train.x.f32  train.y.i64  train.rows.i64      (and val.*, test.* when there are such rows)

``*.f32``/``*.f64`` are C-order float matrices (n, d), ``*.i64`` int64 vectors, all raw
little-endian bytes whose shapes the manifest gives (``numpy.memmap(path, dtype, "r", shape=...)``
opens them). Training receives ``numpy.memmap`` arrays: batches are gathered from the page cache,
so anonymous memory stays at the batch and chunk buffers whatever the data size.

The key is the SHA-256 of: the training (and val/test) file's size, modification time and
SHA-256 (its content), the whole ``data`` section except the cache keys, the seed (it draws the
splits), the dtype, and nnclf's version (the preprocessing code). A changed file gets a new key,
so it is never read from a stale cache. The fitted preprocessing is stored in the manifest and
handed back as the prepared data's preprocessing, so a checkpoint records it like any other run.

An entry is built in a temporary folder next to it and renamed into place once complete, so a
killed build leaves no half-written entry; two runs building the same entry at once both finish
and one rename wins.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import NnclfError, Warn

CACHE_FORMAT = "nnclf-data-cache"
CACHE_VERSION = 1
# data.cache: auto picks the disk cache when the in-memory preparation would take more than this
# share of the memory available: it peaks near 3x the float32 matrix (the parsed columns, about
# 8 bytes a number, plus the matrix)
AUTO_SHARE = 0.5
PEAK_PER_MATRIX_BYTE = 3.0


# -- choosing --------------------------------------------------------------------------------
def available_memory() -> Optional[int]:
    """MemAvailable from /proc/meminfo in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimated_matrix_bytes(path: str, data, dtype: str = "float32") -> int:
    """A lower estimate of the float training matrix's size: rows (file size over the mean line
    length of the head; compressed files counted as 5x their size) x feature columns x itemsize.
    One-hot columns only make the real matrix larger."""
    from .reading import is_parquet, sniff_file

    p = Path(path)
    size = p.stat().st_size
    if is_parquet(p):
        return size * 2  # no cheap line count; parquet is typically 2-4x smaller than its floats
    try:
        sniffed = sniff_file(p, data.encoding, data.delimiter)
    except Exception:  # noqa: BLE001 (an estimate: the reader itself then reports what is wrong with the file)
        return 0
    lines = sniffed.head.splitlines()
    if len(lines) < 2:
        return 0
    from ..inputs import inferred_compression

    text_bytes = size * (5 if inferred_compression(str(p)) is not None else 1)
    body = lines[1:-1] or lines[1:]
    line_bytes = max(1.0, sum(len(line) + 1 for line in body) / len(body))
    rows = text_bytes / line_bytes
    columns = max(1, len(sniffed.names) - 1 - len(data.ignore or []))
    if data.features is not None:
        columns = len(data.features)
    return int(rows * columns * np.dtype(dtype).itemsize)


def _at_most_one_number_a_byte(path: str, dtype: str) -> float:
    """An upper bound of the matrix's bytes for a plain CSV (a cell takes at least one byte with
    its delimiter), before one-hot columns; inf where the file's size bounds nothing (compressed,
    Parquet)."""
    from ..inputs import inferred_compression
    from .reading import is_parquet

    if is_parquet(Path(path)) or inferred_compression(str(path)) is not None:
        return math.inf
    return Path(path).stat().st_size * np.dtype(dtype).itemsize


def resolve_mode(data, dtype: str = "float32", warn: Warn = lambda m: None) -> str:
    """'memory' or 'mmap' for ``data.cache`` (auto: see ``AUTO_SHARE``)."""
    mode = getattr(data, "cache", "memory")
    if mode != "auto":
        return mode
    available = available_memory()
    if available is None or not Path(data.train).is_file():
        return "memory"
    if _at_most_one_number_a_byte(data.train, dtype) * PEAK_PER_MATRIX_BYTE <= AUTO_SHARE * available:
        return "memory"  # fits even if every byte of text were a cell: no need to look inside the file
    estimate = estimated_matrix_bytes(data.train, data, dtype)
    if estimate * PEAK_PER_MATRIX_BYTE > AUTO_SHARE * available:
        warn(
            f"{data.train}: the {dtype} training matrix (about {estimate / 2**30:.1f} GiB) would not fit comfortably in the "
            f"{available / 2**30:.1f} GiB of memory available; training from a memory-mapped cache on disk (data.cache: mmap)"
        )
        return "mmap"
    return "memory"


# -- the key ---------------------------------------------------------------------------------
def file_identity(path: str) -> dict:
    """{"path", "bytes", "mtime_ns", "sha256"} of a file."""
    from .reading import fingerprint

    stat = Path(path).stat()
    return {**fingerprint(path), "mtime_ns": stat.st_mtime_ns}


def key_material(data, seed: int, dtype: str, identities: dict[str, dict]) -> dict[str, Any]:
    from .. import __version__

    section = data.model_dump(mode="json")
    for k in ("cache", "cache_dir", "train", "val", "test"):
        section.pop(k, None)
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "nnclf": __version__,
        "files": identities,
        "data": section,
        "seed": seed,
        "dtype": dtype,
    }


def digest(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


# -- spilled chunks --------------------------------------------------------------------------
_STR, _NAN, _TRUE, _FALSE, _INT, _FLOAT, _NONE, _NA = range(8)


class SpillTable:
    """``ChunkedTable``'s interface (``columns``, ``len``, ``table[name]``, ``index``,
    ``rows(keep)``) over parsed chunks kept on disk, one file per column, so the parsed file
    never has to fit in memory: ``table[name]`` reads that column's pieces back and joins them
    by the rules ``ChunkedTable`` uses (a NumPy concatenation when every piece has the same NumPy
    dtype, else ``pd.concat``), so what the preprocessing sees is the same Series, bit for bit.

    A piece with a NumPy dtype is stored as its raw bytes; any other column (object, pandas'
    string dtype) element by element: a tag per cell (text, NaN, None, NA, True, False, int,
    float), the text as UTF-8 with offsets, numbers as 8 bytes; it is rebuilt with its dtype.
    """

    def __init__(self, folder: Path, names: list[str], pieces: list[dict], index: list, masks: list):
        self.folder, self._names, self.pieces, self._index_parts, self.masks = folder, names, pieces, index, masks
        self._index = None

    @classmethod
    def spill(cls, chunks, folder: Path) -> "SpillTable":
        """Write every chunk of the iterable ``chunks`` (DataFrames, same columns) to ``folder``."""
        from .dataset import release_freed_memory

        folder.mkdir(parents=True, exist_ok=True)
        files: list = []
        names: list[str] = []
        pieces: list[dict] = []
        index: list = []
        try:
            for chunk in chunks:
                if not files:
                    names = [str(c) for c in chunk.columns]
                    files = [open(folder / f"col{j}.bin", "wb") for j in range(len(names))]
                pieces.append({name: _write_piece(files[j], chunk.iloc[:, j]) for j, name in enumerate(names)})
                index.append(_index_part(chunk.index))
                del chunk
                release_freed_memory()
        finally:
            for f in files:
                f.close()
        return cls(folder, names, pieces, index, [None] * len(pieces))

    @property
    def columns(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return sum(self._length(i) for i in range(len(self.pieces)))

    @property
    def n_chunks(self) -> int:
        return len(self.pieces)

    def _length(self, i: int) -> int:
        mask = self.masks[i]
        return int(mask.sum()) if mask is not None else next(iter(self.pieces[i].values()))["n"]

    def _part(self, i: int, name: str, f=None):
        import pandas as pd

        piece = self.pieces[i][name]
        j = self._names.index(name)
        own = f is None
        if own:
            f = open(self.folder / f"col{j}.bin", "rb")
        try:
            values = _read_piece(f, piece)
        finally:
            if own:
                f.close()
        series = pd.Series(values, index=_index_of(self._index_parts[i]), name=name, copy=False)
        mask = self.masks[i]
        return series if mask is None else series[mask]

    def __getitem__(self, name: str):
        from .reading import concat_series

        if name not in self._names:
            raise KeyError(name)
        j = self._names.index(name)
        with open(self.folder / f"col{j}.bin", "rb") as f:
            parts = [self._part(i, name, f) for i in range(len(self.pieces))]
        return concat_series(parts, self.index if len(parts) > 1 else None, name)

    @property
    def index(self):
        if self._index is None:
            parts = [_index_of(part) for part in self._index_parts]
            parts = [part if mask is None else part[mask] for part, mask in zip(parts, self.masks)]
            self._index = parts[0].append(parts[1:]) if len(parts) > 1 else parts[0]
        return self._index

    def rows(self, keep) -> "SpillTable":
        """The rows where the boolean array ``keep`` (one entry per row of the table) is true."""
        masks, start = [], 0
        for i, mask in enumerate(self.masks):
            n = self._length(i)
            part = np.asarray(keep[start : start + n], dtype=bool)
            start += n
            if mask is None:
                masks.append(None if part.all() else part)
            else:
                combined = mask.copy()
                combined[np.flatnonzero(mask)] = part
                masks.append(combined)
        return SpillTable(self.folder, self._names, self.pieces, self._index_parts, masks)

    def chunk(self, i: int, names: list[str]):
        """Chunk ``i`` (its kept rows) as a DataFrame of the columns ``names``, as parsed."""
        import pandas as pd

        return pd.DataFrame({name: self._part(i, name) for name in names})

    def chunk_lengths(self) -> list[int]:
        return [self._length(i) for i in range(len(self.pieces))]


def _index_part(index):
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        return ("range", index.start, index.stop, index.step)
    return ("array", index.to_numpy(dtype=np.int64).copy())


def _index_of(part):
    import pandas as pd

    if part[0] == "range":
        return pd.RangeIndex(part[1], part[2], part[3])
    return pd.Index(part[1])


def _write_piece(f, series) -> dict:
    """Append one chunk's column to ``f``; returns how to read it back."""
    offset = f.tell()
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        series.to_numpy().tofile(f)
        return {"kind": "raw", "dtype": dtype, "n": len(series), "offset": offset}
    values = series.to_numpy(dtype=object)
    n = len(values)
    tags = np.empty(n, dtype=np.uint8)
    numbers = np.zeros(n, dtype=np.float64)
    ints = np.zeros(n, dtype=np.int64)
    texts = []
    import pandas as pd

    for k, v in enumerate(values):
        t = type(v)
        if t is str:
            tags[k] = _STR
            texts.append(v)
        elif v is None:
            tags[k] = _NONE
        elif v is pd.NA:
            tags[k] = _NA
        elif t is bool or t is np.bool_:
            tags[k] = _TRUE if v else _FALSE
        elif isinstance(v, (int, np.integer)):
            tags[k], ints[k] = _INT, int(v)
        elif isinstance(v, (float, np.floating)):
            if v != v:
                tags[k] = _NAN
            else:
                tags[k], numbers[k] = _FLOAT, float(v)
        else:
            tags[k] = _STR
            texts.append(str(v))
    encoded = [s.encode("utf-8", "surrogatepass") for s in texts]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    blob = b"".join(encoded)
    tags.tofile(f)
    numbers.tofile(f)
    ints.tofile(f)
    lengths.tofile(f)
    f.write(blob)
    return {"kind": "cells", "dtype": dtype, "n": n, "offset": offset, "texts": len(encoded), "blob": len(blob)}


def _read_piece(f, piece: dict) -> Any:
    import pandas as pd

    f.seek(piece["offset"])
    n = piece["n"]
    if piece["kind"] == "raw":
        return np.fromfile(f, dtype=piece["dtype"], count=n)
    tags = np.fromfile(f, dtype=np.uint8, count=n)
    numbers = np.fromfile(f, dtype=np.float64, count=n)
    ints = np.fromfile(f, dtype=np.int64, count=n)
    lengths = np.fromfile(f, dtype=np.int64, count=piece["texts"])
    blob = f.read(piece["blob"])
    values = np.empty(n, dtype=object)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    text_at = np.flatnonzero(tags == _STR)
    values[text_at] = [blob[s:e].decode("utf-8", "surrogatepass") for s, e in zip(starts.tolist(), ends.tolist())]
    values[tags == _NAN] = np.nan
    values[tags == _NONE] = None
    values[tags == _NA] = pd.NA
    values[tags == _TRUE] = True
    values[tags == _FALSE] = False
    at = np.flatnonzero(tags == _INT)
    values[at] = [int(v) for v in ints[at]]
    at = np.flatnonzero(tags == _FLOAT)
    values[at] = [float(v) for v in numbers[at]]
    dtype = piece["dtype"]
    if isinstance(dtype, np.dtype) and dtype == object:
        return values
    return pd.array(values, dtype=dtype)


# -- the cache -------------------------------------------------------------------------------
class _Appender:
    """Rows appended to a raw array file; ``shape`` follows."""

    def __init__(self, path: Path, width: Optional[int], dtype):
        self.path, self.width, self.dtype, self.rows = path, width, np.dtype(dtype), 0
        self.file = open(path, "wb")

    def append(self, values: np.ndarray) -> None:
        np.ascontiguousarray(values, dtype=self.dtype).tofile(self.file)
        self.rows += len(values)

    def close(self) -> list[int]:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return [self.rows] if self.width is None else [self.rows, self.width]


SUFFIX = {"float32": "f32", "float64": "f64", "int64": "i64"}


def _open_array(path: Path, dtype: str, shape: list[int]):
    """The raw file mapped read-only; a ValueError unless its size is exactly that of ``shape``."""
    if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ValueError(f"{path}: bad shape {shape!r}")
    if path.stat().st_size != int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise ValueError(f"{path}: the file's size does not match the shape {shape}")
    if int(np.prod(shape)) == 0:  # an empty file cannot be mapped
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=tuple(shape))


class DiskCache:
    """One cache entry, found or built in ``root`` for the data section ``data``."""

    def __init__(self, root: str | Path, data, seed: int, dtype: str):
        self.root, self.data, self.seed, self.dtype = Path(root), data, seed, dtype
        self.identities = {role: file_identity(getattr(data, role)) for role in ("train", "val", "test") if getattr(data, role)}
        self.material = key_material(data, seed, dtype, self.identities)
        self.key = digest(self.material)
        self.folder = self.root / self.key
        self.hit = False
        self._building: Optional[Path] = None
        self.warnings: list[str] = []  # given while building: repeated when the entry is read

    def recording(self, warn: Warn) -> Warn:
        def note(message: str) -> None:
            self.warnings.append(message)
            warn(message)

        return note

    @property
    def files(self) -> dict[str, dict]:
        """role -> {"path", "bytes", "sha256"}: the fingerprints ``prepare`` records."""
        return {role: {k: v for k, v in ident.items() if k != "mtime_ns"} for role, ident in self.identities.items()}

    # -- reading an entry -----------------------------------------------------------------------
    def load(self, warn: Warn):
        """The prepared data from an existing entry (its warnings repeated), or None."""
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            return None
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: built again (into a fresh folder, renamed over nothing)
        if meta.get("material") != self.material:
            return None
        try:
            prepared = self._prepared(meta, self.folder)
        except (KeyError, TypeError, ValueError, OSError, NnclfError):
            return None  # a damaged entry (its preprocessor state, splits or arrays): built again
        for message in meta.get("warnings", []):
            warn(message)
        self.hit = True
        return prepared

    def _prepared(self, meta: dict, folder: Path):
        from .dataset import Prepared, Split
        from .labels import Labels
        from .preprocess import Preprocessor

        pre = Preprocessor.from_json(meta["preprocessor"])
        splits = {}
        for role, info in meta["splits"].items():
            x = _open_array(folder / f"{role}.x.{SUFFIX[self.dtype]}", self.dtype, info["x"])
            y = _open_array(folder / f"{role}.y.i64", "int64", info["y"])
            rows = _open_array(folder / f"{role}.rows.i64", "int64", info["y"])
            if x.ndim != 2 or x.shape[1] != pre.n_outputs or y.shape != (len(x),):
                raise ValueError(f"{folder}: the {role} arrays do not match the preprocessing")
            splits[role] = Split(x, y, rows, info["source"])
        return Prepared(pre, Labels(meta["labels"]), splits["train"], splits.get("val"), splits.get("test"), self.files)

    # -- building an entry ----------------------------------------------------------------------
    def read_train(self, data, options=None):
        """The training file parsed once, in the chunks ``read_chunks`` makes, spilled to disk."""
        from .reading import TableReader, _options

        self.root.mkdir(parents=True, exist_ok=True)
        self._building = self.root / f".building-{self.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.mkdir(self._building)
        chunks = TableReader(data.train, _options(data.encoding, data.delimiter, options), chunk_rows=None, threads=False).frames()
        try:
            return SpillTable.spill(chunks, self._building / "spill")
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        if self._building is not None:
            shutil.rmtree(self._building, ignore_errors=True)
            self._building = None

    def build(self, pre, labels, frame: SpillTable, y_all, positions: dict[str, np.ndarray], dropped: dict, warn: Warn):
        """Transform ``frame`` chunk by chunk into the splits' files (``positions``: role ->
        sorted row positions in ``frame``), add separate val/test files, write the manifest,
        rename the entry into place. Returns the prepared data, memory-mapped."""
        from .dataset import release_freed_memory
        from .preprocess import TransformNotes

        note = warn  # (``prepare`` passes the recording one)
        folder = self._building
        try:
            out = {role: self._appenders(folder, role, pre.n_outputs) for role in positions}
            rows_all = frame.index.to_numpy()
            notes, start = TransformNotes(), 0
            features = pre.features
            for i, n in enumerate(frame.chunk_lengths()):
                if n == 0:
                    continue
                chunk = frame.chunk(i, features)
                x = pre.transform(chunk, frame_source(self.data), self.dtype, warn, notes=notes)
                del chunk
                for role, pos in positions.items():
                    lo, hi = np.searchsorted(pos, [start, start + n])
                    if hi > lo:
                        local = pos[lo:hi] - start
                        x_app, y_app, r_app = out[role]
                        x_app.append(x[local])
                        y_app.append(y_all[pos[lo:hi]])
                        r_app.append(rows_all[pos[lo:hi]])
                start += n
                del x
                release_freed_memory()
            notes.emit(note, frame_source(self.data))
            shapes = {}
            for role, (x_app, y_app, r_app) in out.items():
                shapes[role] = {"x": x_app.close(), "y": y_app.close(), "source": self.data.train}
                r_app.close()
            shutil.rmtree(folder / "spill")
            for role in ("val", "test"):
                path = getattr(self.data, role)
                if path:
                    shapes[role] = self._separate(folder, role, path, pre, labels, note)
            meta = {
                "material": self.material,
                "preprocessor": pre.state,
                "labels": labels.values,
                "dropped": dropped,
                "splits": shapes,
                "warnings": self.warnings,
            }
            with open(folder / "manifest.json", "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            final = self._publish(folder)
        except BaseException:
            self.abandon()
            raise
        self._building = None
        self._remove_stale()
        return self._prepared(meta, final)

    def _appenders(self, folder: Path, role: str, width: int):
        return (
            _Appender(folder / f"{role}.x.{SUFFIX[self.dtype]}", width, self.dtype),
            _Appender(folder / f"{role}.y.i64", None, np.int64),
            _Appender(folder / f"{role}.rows.i64", None, np.int64),
        )

    def _separate(self, folder: Path, role: str, path: str, pre, labels, note: Warn) -> dict:
        """A validation or test CSV given by path, transformed chunk by chunk (``_separate``'s
        checks and warnings, counted over the whole file)."""
        from ..registry import did_you_mean
        from .preprocess import TransformNotes
        from .reading import TableReader, ReadOptions

        target = self.data.target
        x_app, y_app, r_app = self._appenders(folder, role, pre.n_outputs)
        notes, missing, unknown, example = TransformNotes(), 0, 0, None
        for chunk in TableReader(path, ReadOptions.of(self.data), chunk_rows=None, threads=False).frames():
            if target not in chunk.columns:
                raise NnclfError(f"{path}: target column '{target}' not found{did_you_mean(target, list(chunk.columns))}")
            gap = chunk[target].isna().to_numpy()
            missing += int(gap.sum())
            chunk = chunk[~gap]
            y = labels.encode(chunk[target])
            bad = y < 0
            if bad.any():
                unknown += int(bad.sum())
                example = chunk[target][bad].iloc[0] if example is None else example
                continue
            if unknown:
                continue
            x_app.append(pre.transform(chunk, path, self.dtype, note, notes=notes))
            y_app.append(y)
            r_app.append(chunk.index.to_numpy())
        if missing:
            note(f"{path}: {missing} row(s) with a missing '{target}' label dropped")
        if unknown:
            raise NnclfError(f"{path}: {unknown} row(s) have labels never seen in training, e.g. {example!r}")
        notes.emit(note, path)
        r_app.close()
        return {"x": x_app.close(), "y": y_app.close(), "source": path}

    def _publish(self, folder: Path) -> Path:
        """Rename the built folder into place; if another run published the same entry first,
        keep that one."""
        try:
            os.rename(folder, self.folder)
        except OSError:
            if not (self.folder / "manifest.json").is_file():
                raise
            shutil.rmtree(folder, ignore_errors=True)
        try:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        return self.folder

    def _remove_stale(self) -> None:
        """Entries built from an earlier version of the same training file can never be read
        again (their key holds its old SHA-256): delete them."""
        me = self.identities["train"]
        for entry in self.root.iterdir():
            if entry == self.folder or entry.name.startswith("."):
                continue
            try:
                old = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))["material"]["files"]["train"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if old.get("path") == me["path"] and old.get("sha256") != me["sha256"]:
                shutil.rmtree(entry, ignore_errors=True)


def frame_source(data) -> str:
    return data.train
