"""Checkpoints: one ``.npz`` of plain arrays plus a JSON document; never pickle.

Arrays: ``params`` (the flat parameter vector), ``optimizer.<name>`` (optimizer state),
``trainer.permutation`` (only for a run interrupted mid-epoch), and ``meta``: a 0-d unicode
array holding JSON with the architecture, loss, labels, preprocessing state, resolved config,
trainer state and metrics. ``numpy.load(path, allow_pickle=False)`` reads it all.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .engine.network import parameter_count
from .errors import NnclfError

FORMAT = "nnclf-checkpoint"
VERSION = 1


def atomic_write_bytes(path: Path, write, durable: bool = True) -> None:
    """Write via ``write(fileobj)`` to a temporary file in the same folder, then rename it over
    ``path``: a crash of the process at any moment leaves the old file or the new one, never
    a partial file. With ``durable`` the file and the rename are also forced to disk (fsync),
    which survives power loss but costs ~10 ms here; training uses it only every few seconds.
    A failure (disk full, permission denied) is an NnclfError naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    if not durable:
        return
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _write_error(path: Path, error: OSError) -> NnclfError:
    kept = "the previous file is unchanged" if path.exists() else "nothing was written"
    return NnclfError(f"{path}: could not write ({error.strerror or error}); {kept}")


def fsync_path(path: Path) -> None:
    """Force a file's (or a folder's entries') data to disk; missing paths are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")), durable)


def save_checkpoint(path: Path, params: np.ndarray, meta: dict[str, Any], arrays: dict[str, np.ndarray] = {}, durable: bool = True) -> None:
    """Atomically write params, extra arrays and the JSON ``meta``. Refuses non-finite weights."""
    if not np.all(np.isfinite(params)):
        raise NnclfError(f"{path}: refusing to save a checkpoint with NaN or infinite weights")
    document = json.dumps({"format": FORMAT, "version": VERSION, **meta}, allow_nan=False, default=_json_default)
    payload = {"params": params, "meta": np.array(document), **arrays}
    atomic_write_bytes(path, lambda f: np.savez(f, **payload), durable)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_checkpoint(path: str | Path) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """(params, meta, other arrays). Any damage is an NnclfError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise NnclfError(f"{path}: checkpoint not found")
    # np.load treats anything that is neither .npz nor .npy as a pickle (refused, with a
    # misleading "pickled data" message) and a .npy as a bare array: only accept a zip archive
    if not zipfile.is_zipfile(path):
        raise NnclfError(f"{path}: not a valid checkpoint (not an .npz archive; truncated or corrupted?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise NnclfError(f"{path}: refusing to load: the checkpoint contains pickled objects") from None
        raise NnclfError(f"{path}: not a valid checkpoint ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise NnclfError(f"{path}: not a valid checkpoint (truncated or corrupted: {e})") from None
    for required in ("params", "meta"):
        if required not in arrays:
            raise NnclfError(f"{path}: not a valid checkpoint (no '{required}' array)")
    meta_array = arrays.pop("meta")
    if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise NnclfError(f"{path}: not a valid checkpoint ('meta' is not a JSON string)")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as e:
        raise NnclfError(f"{path}: not a valid checkpoint (meta JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NnclfError(f"{path}: not an nnclf checkpoint")
    if meta.get("version") != VERSION:
        raise NnclfError(f"{path}: checkpoint format version {meta.get('version')} is not supported (this nnclf reads {VERSION})")
    params = arrays.pop("params")
    sizes = meta.get("network", {}).get("sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise NnclfError(f"{path}: not a valid checkpoint (bad network sizes {sizes!r})")
    expected = parameter_count(sizes)
    if params.dtype.kind != "f":
        raise NnclfError(f"{path}: not a valid checkpoint (params has dtype {params.dtype}, expected floats)")
    if params.ndim != 1 or params.size != expected:
        raise NnclfError(f"{path}: not a valid checkpoint (params has shape {params.shape}, the network needs ({expected},))")
    if not np.all(np.isfinite(params)):
        raise NnclfError(f"{path}: the checkpoint holds NaN or infinite weights")
    return params, meta, arrays
