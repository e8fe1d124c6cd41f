"""Input files checked before they are parsed, and read failures as one-line errors.

What the readers (pandas, gzip, bz2, lzma, zipfile, zstandard) raise for a file that is not what
its name says, is truncated, or cannot be opened is a dozen exception types with messages about
their internals; here each becomes an NnclfError naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator

from .errors import NnclfError

# pandas' compression="infer" by suffix -> (the magic bytes a real file starts with, module, package)
COMPRESSION = {
    ".gz": ("gzip", (b"\x1f\x8b",), "gzip", None),
    ".bz2": ("bzip2", (b"BZh",), "bz2", None),
    ".xz": ("xz", (b"\xfd7zXZ\x00",), "lzma", None),
    ".zip": ("zip", (b"PK\x03\x04", b"PK\x05\x06"), "zipfile", None),
    ".zst": ("zstandard", (b"\x28\xb5\x2f\xfd",), "zstandard", "zstandard"),
    ".tar": ("tar", (), "tarfile", None),
}


# pandas' compression="infer": the first of these suffixes the lower-cased name ends with
# (pandas.io.common.extension_to_compression, the same in pandas 2.x and 3.x; a test compares)
COMPRESSION_BY_SUFFIX = {".tar": "tar", ".tar.gz": "tar", ".tar.bz2": "tar", ".tar.xz": "tar", ".gz": "gzip",
                         ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd"}


def inferred_compression(path) -> str | None:
    """What ``pandas.io.common.infer_compression(str(path), "infer")`` answers, without
    importing pandas (about a quarter of a second): the sizing of a file before anything reads
    it (``nnclf.data.cache``) must not load the CSV reader for a suffix check. (pandas 3 judges
    a string with ``::``, a chained fsspec URL, by its part before the first ``::``; pandas 2
    and this function by the whole name: nnclf reads local files, where ``::`` is part of a
    name, and only estimates sizes with this.)"""
    name = os.fspath(path).lower()
    for suffix, compression in COMPRESSION_BY_SUFFIX.items():
        if name.endswith(suffix):
            return compression
    return None


def compression_of(path: Path) -> str | None:
    """The suffix pandas infers a compression from ('.tar.gz' counts as '.gz'), or None."""
    suffix = path.suffix.lower()
    return suffix if suffix in COMPRESSION else None


def check_input(path: Path, what: str = "data file") -> None:
    """A readable regular file whose bytes match its compression suffix; else an NnclfError.

    Not a regular file (a FIFO, ``<(...)`` process substitution, a device): nnclf reads a data
    file more than once (sniffing, then parsing; hashing), which a pipe cannot give."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NnclfError(f"{path}: {what} not found") from None
    except PermissionError:
        raise NnclfError(f"{path}: cannot read the {what} (permission denied on a folder of its path)") from None
    except OSError as e:
        raise NnclfError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NnclfError(f"{path}: is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a pipe (FIFO or process substitution)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise NnclfError(f"{path}: is {kind}; nnclf reads a {what} more than once, so save it to a file first")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except PermissionError:
        raise NnclfError(f"{path}: cannot read the {what} (permission denied)") from None
    except OSError as e:
        raise NnclfError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    suffix = compression_of(path)
    if suffix is None or not head:
        return
    name, magics, module, package = COMPRESSION[suffix]
    if magics and not head.startswith(magics):
        raise NnclfError(f"{path}: the name says {name}-compressed but the file is not {name} data; rename it or compress it")
    try:
        __import__(module)
    except ImportError:
        install = f"pip install {package}" if package else f"a Python built with the {module} module"
        raise NnclfError(f"{path}: reading {name}-compressed files needs {install}") from None
    if suffix == ".zip":
        _check_zip(path)


def _check_zip(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise NnclfError(f"{path}: not a valid zip file ({e}); truncated or corrupted?") from None
    if len(names) != 1:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise NnclfError(f"{path}: a zip file must hold exactly one CSV, this one holds {len(names)}" + (f" ({shown})" if names else ""))


@contextlib.contextmanager
def read_errors(path: Path, what: str = "data file") -> Iterator[None]:
    """Decompression and OS failures while reading ``path`` as one line naming it."""
    import lzma
    import zlib

    try:
        yield
    except NnclfError:
        raise
    except (EOFError, zlib.error, lzma.LZMAError) as e:
        raise NnclfError(f"{path}: the compressed {what} is truncated or corrupted ({_text(e)})") from None
    except PermissionError:
        raise NnclfError(f"{path}: cannot read the {what} (permission denied)") from None
    except OSError as e:  # gzip.BadGzipFile, bz2's "Invalid data stream", an I/O error
        if e.errno is None:
            raise NnclfError(f"{path}: the compressed {what} is truncated or corrupted ({_text(e)})") from None
        raise NnclfError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    except ImportError as e:
        raise NnclfError(f"{path}: reading this file needs a package that is not installed ({_text(e)})") from None
    except ValueError as e:
        text = str(e)
        if "ZIP" in text or "zip" in text:
            raise NnclfError(f"{path}: {_text(e)}") from None
        raise


def _text(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
