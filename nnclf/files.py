"""Writing files without destroying anything: the one helper every nnclf write goes through.

The rules (README, "Files nnclf writes"):

- A regular file is replaced atomically: the bytes go to a temporary file in the same folder,
  which is renamed over the target, so a crash leaves the old file or the new one, never a
  partial one. The replacement keeps the old file's permission bits (and owner, when allowed).
  A file with other hard links is replaced under this name only; the other names keep the old
  bytes (a rename cannot write through a link; writing in place would lose atomicity).
- A new file gets the permissions any program's new file gets: ``0o666`` minus the umask
  (``mkstemp`` alone would leave every prediction and report readable by its owner only).
- A target that exists but is not a regular file (a FIFO, a character device such as
  ``/dev/null``, a terminal, a socket) is written into, never replaced: renaming over
  ``/dev/null`` as root would replace the machine's ``/dev/null``. ``-`` means stdout.
- A target that is one of the command's input files (same device and inode, so hard links and
  symlinks count) is refused before anything is written.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import NnclfError

STDOUT = "-"


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)  # follows symlinks: a link to a file replaces the file it names
    except FileNotFoundError:
        return None
    except OSError as e:
        raise write_error(path, e) from None


def check_not_input(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output that is one of the inputs (same device and inode)."""
    if str(path) == STDOUT:
        return
    out = _stat(Path(path))
    if out is None:
        return
    for source in inputs:
        if source is None or str(source) == STDOUT:
            continue
        try:
            st = os.stat(source)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            same = "" if os.path.abspath(source) == os.path.abspath(path) else f" (the same file as {source})"
            raise NnclfError(f"{path}: is an input of this command{same}; refusing to overwrite it (nothing was written)")


def write_file(
    path: str | Path,
    write: Callable,
    durable: bool = True,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = True,
) -> None:
    """Write via ``write(binary_fileobj)`` to ``path`` following the module's rules.

    ``durable`` also forces the file and the rename to disk (fsync; its cost: benchmarks/RESULTS.md, "Figures that were in code comments"), which
    survives power loss. ``overwrite=False`` refuses an existing regular file. Failures (disk
    full, permission denied) are an NnclfError naming ``path``; no temporary file is left.
    """
    if str(path) == STDOUT:
        _write_into(Path(STDOUT), write, sys.stdout.buffer)
        return
    path = Path(path)
    check_not_input(path, inputs)
    st = _stat(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise NnclfError(f"{path}: is a folder, expected a file name (nothing was written)")
        try:
            # no O_TRUNC games: a FIFO or a device is written into as it is
            with open(path, "wb", buffering=0) as f:
                _write_into(path, write, f)
        except OSError as e:
            raise write_error(path, e) from None
        return
    if st is not None and not overwrite:
        raise NnclfError(f"{path}: already exists; pass --overwrite to replace it (nothing was written)")
    target = Path(os.path.realpath(path)) if st is not None else path  # keep a symlink, replace its file
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except OSError:  # only root may give a file away; the mode is what matters
                pass
        else:
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:  # also KeyboardInterrupt / a termination signal: no .tmp left
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    if durable:
        fsync_path(target.parent)  # make the rename itself durable


def _write_into(path: Path, write: Callable, f) -> None:
    try:
        write(f)
        f.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise write_error(path, e) from None


def write_text(path: str | Path, text: str, durable: bool = True, **kwargs) -> None:
    write_file(path, lambda f: f.write(text.encode("utf-8")), durable, **kwargs)


def write_error(path: Path, error: OSError) -> NnclfError:
    where = "stdout" if str(path) == STDOUT else str(path)
    try:
        exists = str(path) != STDOUT and os.path.lexists(path)
    except OSError:
        exists = False
    kept = "the previous file is unchanged" if exists else "nothing was written"
    return NnclfError(f"{where}: could not write ({error.strerror or error}); {kept}")


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
