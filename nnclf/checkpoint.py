"""Checkpoints: one ``.npz`` of plain arrays plus a JSON document; never pickle.

Arrays: ``params`` (the flat parameter vector), ``optimizer.<name>`` (optimizer state),
``trainer.permutation`` (only for a run interrupted mid-epoch), and ``meta``: a 0-d unicode
array holding JSON with the architecture, loss, labels, preprocessing state, resolved config,
trainer state and metrics. ``numpy.load(path, allow_pickle=False)`` reads it all.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .engine.network import parameter_count
from .errors import NnclfError
from .memory import available_memory, size_text as _gb
from .files import write_file

FORMAT = "nnclf-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, params: np.ndarray, meta: dict[str, Any], arrays: dict[str, np.ndarray] = {}, durable: bool = True) -> None:
    """Atomically write params, extra arrays and the JSON ``meta``. Refuses non-finite weights."""
    if not np.all(np.isfinite(params)):
        raise NnclfError(f"{path}: refusing to save a checkpoint with NaN or infinite weights")
    document = json.dumps({"format": FORMAT, "version": VERSION, **meta}, allow_nan=False, default=_json_default)
    payload = {"params": params, "meta": np.array(document), **arrays}
    write_file(path, lambda f: np.savez(f, **payload), durable)  # atomic: nnclf/files.py


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


MAX_META_BYTES = 256 << 20  # the JSON document; even 100,000 categories take a few MB
MAX_MEMBERS = 64


class _Member:
    """One ``.npy`` inside the archive, known from its zip entry and header only."""

    def __init__(self, info: zipfile.ZipInfo, shape, dtype, header_bytes: int):
        self.info, self.shape, self.dtype = info, shape, dtype
        self.nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize if dtype.itemsize else 0
        self.header_bytes = header_bytes


def _inspect(path: Path, zf: zipfile.ZipFile) -> dict[str, _Member]:
    members = npz_members(path, zf)
    for required in ("params", "meta"):
        if required not in members:
            raise NnclfError(f"{path}: not a valid checkpoint (no '{required}' array)")
    for name in members:
        if name not in ("params", "meta", "trainer.permutation", "pca.mean", "pca.components") and not name.startswith("optimizer."):
            raise NnclfError(f"{path}: not a valid checkpoint (unexpected array '{name}')")
    return members


def npz_members(path: Path, zf: zipfile.ZipFile, what: str = "checkpoint") -> dict[str, _Member]:
    """Names, shapes and dtypes of every array from the zip directory and the .npy headers,
    reading no array data: an archive whose arrays would inflate far beyond its size is
    refused here, before any allocation."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise NnclfError(f"{path}: not a valid {what} ({len(infos)} entries; nnclf writes a handful)")
    members: dict[str, _Member] = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise NnclfError(f"{path}: not a valid {what} (unexpected entry {info.filename!r})")
        name = info.filename[:-4]
        if name in members:
            raise NnclfError(f"{path}: not a valid {what} (entry {info.filename!r} appears twice)")
        try:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f, max_header_size=10000) if _has_max_header() else read_header(f)
                header_bytes = f.tell()
        except ValueError as e:
            if "pickle" in str(e) or "object" in str(e).lower():
                raise NnclfError(f"{path}: refusing to load: the {what} contains pickled objects") from None
            raise NnclfError(f"{path}: not a valid {what} (array '{name}': {e})") from None
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
            raise NnclfError(f"{path}: not a valid {what} (truncated or corrupted: {e})") from None
        except Exception as e:  # a header numpy cannot parse raises several types
            raise NnclfError(f"{path}: not a valid {what} (array '{name}' has a malformed header: {e})") from None
        if dtype.hasobject:
            raise NnclfError(f"{path}: refusing to load: the {what} contains pickled objects")
        member = _Member(info, shape, dtype, header_bytes)
        if info.file_size != header_bytes + member.nbytes:
            raise NnclfError(
                f"{path}: not a valid {what} (array '{name}' declares {member.nbytes} bytes of data "
                f"but its entry holds {info.file_size - header_bytes})"
            )
        members[name] = member
    return members


def _has_max_header() -> bool:
    import inspect

    return "max_header_size" in inspect.signature(np.lib.format.read_array_header_1_0).parameters


def read_member(path: Path, zf: zipfile.ZipFile, member: _Member, what: str = "checkpoint") -> np.ndarray:
    try:
        with zf.open(member.info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise NnclfError(f"{path}: refusing to load: the {what} contains pickled objects") from None
        raise NnclfError(f"{path}: not a valid {what} ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:  # RuntimeError: a bad CRC ... or zlib
        raise NnclfError(f"{path}: not a valid {what} (truncated or corrupted: {e})") from None
    except Exception as e:  # zlib.error and friends
        raise NnclfError(f"{path}: not a valid {what} (truncated or corrupted: {e})") from None


def open_npz(path: Path, what: str = "checkpoint") -> zipfile.ZipFile:
    path = Path(path)
    try:
        if path.is_dir():
            raise NnclfError(f"{path}: is a folder, expected a {what} .npz")
        if not path.exists():
            raise NnclfError(f"{path}: {what} not found")
        # np.load treats anything that is neither .npz nor .npy as a pickle (refused, with a
        # misleading "pickled data" message) and a .npy as a bare array: only a zip archive
        if not zipfile.is_zipfile(path):
            raise NnclfError(f"{path}: not a valid {what} (not an .npz archive; truncated or corrupted?)")
        return zipfile.ZipFile(path)
    except PermissionError:
        raise NnclfError(f"{path}: cannot read the {what} (permission denied)") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise NnclfError(f"{path}: not a valid {what} (truncated or corrupted: {e})") from None
    except OSError as e:
        raise NnclfError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def _read_meta(path: Path, zf: zipfile.ZipFile, members: dict[str, _Member]) -> dict[str, Any]:
    m = members["meta"]
    if m.dtype.kind != "U" or m.shape != ():
        raise NnclfError(f"{path}: not a valid checkpoint ('meta' is not a JSON string)")
    if m.nbytes > MAX_META_BYTES:
        raise NnclfError(f"{path}: not a valid checkpoint ('meta' is {_gb(m.nbytes)}; at most {_gb(MAX_META_BYTES)} is accepted)")
    try:
        meta = json.loads(str(read_member(path, zf, m)), parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise NnclfError(f"{path}: not a valid checkpoint (meta JSON: {e})") from None
    except RecursionError:
        raise NnclfError(f"{path}: not a valid checkpoint (meta JSON nested too deeply)") from None
    except ValueError as e:
        raise NnclfError(f"{path}: not a valid checkpoint (meta JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NnclfError(f"{path}: not an nnclf checkpoint")
    if meta.get("version") != VERSION:
        raise NnclfError(f"{path}: checkpoint format version {meta.get('version')} is not supported (this nnclf reads {VERSION})")
    for key, kind in META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            raise NnclfError(f"{path}: not a valid checkpoint (malformed metadata: '{key}' is {_json_type(meta[key])}, expected {_json_type(kind())})")
    return meta


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


# top-level metadata entries and the JSON types they must have (their contents are checked
# where they are used: model.py, runs.resume)
META_TYPES = {"network": dict, "loss": dict, "labels": list, "preprocessor": dict, "config": dict, "trainer": dict,
              "schedule": dict, "optimizer": dict, "data_files": dict, "config_name": str, "started_at": str, "rows": dict}


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _check_against_meta(path: Path, meta: dict[str, Any], members: dict[str, _Member]) -> int:
    """Shapes and dtypes implied by ``meta``, checked on the headers; returns the bytes the
    arrays take in memory."""
    sizes = meta.get("network", {}).get("sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 2**31 for s in sizes)):
        raise NnclfError(f"{path}: not a valid checkpoint (bad network sizes {_short(sizes)})")
    expected = parameter_count(sizes)
    params = members["params"]
    if params.dtype.kind != "f":
        raise NnclfError(f"{path}: not a valid checkpoint (params has dtype {params.dtype}, expected floats)")
    if params.shape != (expected,):
        raise NnclfError(f"{path}: not a valid checkpoint (params has shape {params.shape}, the network needs ({expected},))")
    for name, m in members.items():
        if name.startswith("optimizer."):
            # a number, a few numbers (a full-batch method's last two losses), a vector aligned
            # with params, or a short history of such vectors (L-BFGS pairs)
            numeric = m.dtype.kind in "iuf"
            small = len(m.shape) <= 1 and int(np.prod(m.shape)) <= 16
            aligned = len(m.shape) in (1, 2) and m.shape[-1] == expected and (len(m.shape) == 1 or m.shape[0] <= 10_000)
            if not (numeric and (small or aligned)):
                raise NnclfError(f"{path}: not a valid checkpoint (optimizer state '{name[10:]}' has shape {m.shape} of {m.dtype}, "
                                 f"expected ({expected},) or a number)")
        elif name.startswith("pca."):  # reconstruction's baseline, in the preprocessed input space
            if m.dtype.kind != "f" or len(m.shape) not in (1, 2) or m.shape[-1] != sizes[0] or int(np.prod(m.shape)) > sizes[0] ** 2:
                raise NnclfError(f"{path}: not a valid checkpoint ('{name}' has shape {m.shape}, expected (..., {sizes[0]}))")
        elif name == "trainer.permutation":
            if len(m.shape) != 1 or m.dtype.kind not in "iu":
                raise NnclfError(f"{path}: not a valid checkpoint (trainer.permutation should be a vector of row numbers)")
            rows = meta.get("rows", {}).get("train") if isinstance(meta.get("rows"), dict) else None
            if isinstance(rows, int) and m.shape != (rows,):
                raise NnclfError(f"{path}: not a valid checkpoint (trainer.permutation has {m.shape[0]} entries, "
                                 f"the run trained on {rows} rows)")
    total = sum(m.nbytes for m in members.values())
    available = available_memory()
    if available is not None and total > available:
        raise NnclfError(f"{path}: the checkpoint's arrays need {_gb(total)} of memory but only {_gb(available)} are available; "
                         f"nothing was read")
    return total


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata, after the archive's structure is checked; no array data is read."""
    path = Path(path)
    with open_npz(path) as zf:
        members = _inspect(path, zf)
        meta = _read_meta(path, zf, members)
        _check_against_meta(path, meta, members)
    return meta


def load_checkpoint(path: str | Path, state: bool = True) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """(params, meta, other arrays). Any damage is an NnclfError naming the file. With
    ``state=False`` (using a model, not resuming it) the optimizer state and the row order are
    checked but not read (the third item holds only what the model needs, e.g. ``pca.*``).

    Order matters for hostile files: the zip directory and every ``.npy`` header are checked
    first (names, shapes, dtypes, sizes consistent with each other and with ``meta``, and the
    total against available memory); only then are arrays read, with ``allow_pickle=False``."""
    path = Path(path)
    with open_npz(path) as zf:
        members = _inspect(path, zf)
        meta = _read_meta(path, zf, members)
        _check_against_meta(path, meta, members)
        params = read_member(path, zf, members["params"])
        arrays = {name: read_member(path, zf, m) for name, m in members.items() if name not in ("params", "meta")
                  and (state or not (name.startswith("optimizer.") or name == "trainer.permutation"))}
    if not np.all(np.isfinite(params)):
        raise NnclfError(f"{path}: the checkpoint holds NaN or infinite weights")
    return params, meta, arrays
