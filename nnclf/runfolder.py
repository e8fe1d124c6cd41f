"""A run folder, the product's on-disk record of one training (README, "Run folder"):

    RUN/config.yaml            the fully resolved config
    RUN/schema.json            column typing decisions and fitted preprocessing
    RUN/splits.npz             0-based data-row numbers of train / val / test rows
    RUN/metrics.csv            one row per finished epoch
    RUN/checkpoints/last.npz   the newest state (weights, optimizer, trainer, RNG)
    RUN/checkpoints/best.npz   the weights at the best monitored epoch
    RUN/summary.json           status, final and best metrics, test metrics, timings, versions

``RunFolder`` is the one place that creates the folder (and checks its name), writes and reads
``metrics.csv`` and ``summary.json``, forces the files to disk, locks the folder while a process
trains in it, and lists the runs of a runs folder.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .errors import NnclfError
import numpy as np

from .files import fsync_path, write_file, write_text

# evaluations / products: function-and-gradient evaluations and curvature products of a
# full-batch method's iteration (empty for mini-batch optimizers)
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "evaluations", "products", "seconds"]
INTEGER_COLUMNS = ("epoch", "evaluations", "products")
# every column any task writes (regression: val_rmse, val_mae, val_r2; reconstruction: val_mse)
KNOWN_COLUMNS = {*METRIC_COLUMNS, "val_rmse", "val_mae", "val_r2", "val_mse"}
METRICS_HEADER = ",".join(METRIC_COLUMNS) + "\n"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# summary.json entries `nnclf runs` shows, with the JSON types they must have
_SUMMARY_TYPES = {
    "status": str, "config_name": str, "started_at": str, "finished_at": str, "monitor": str,
    "epochs_run": int, "best_value": float,
}


def check_run_name(name: str, where: str = "--name", what: str = "a run name") -> str:
    """Run names are one path component: letters, digits, '.', '_', '-'; no '..'. ``where``
    and ``what`` name, in the message, the option or file the name came from and what it names.

    ``fullmatch``: ``re.match(...$)`` would let a trailing newline through."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise NnclfError(
            f"{where} {name!r}: {what} may use letters, digits, '.', '_' and '-' "
            f"(at most 128, starting with a letter or digit, no '..')"
        )
    return name


def now_iso() -> str:
    """UTC time to the millisecond: runs started in the same second still sort by start."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def json_safe(value):
    """NaN and infinities become None (JSON has neither); numpy scalars become Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class RunFolder:
    CONFIG, SCHEMA, SPLITS, METRICS, SUMMARY = "config.yaml", "schema.json", "splits.npz", "metrics.csv", "summary.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._metric_lines: list[str] = []
        self.columns = METRIC_COLUMNS  # the task's metrics.csv columns (runs.metric_columns)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- creating ------------------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, name: Optional[str], stem: str) -> "RunFolder":
        """Make a new run folder atomically (never reuse an existing one) and lock it.

        With ``name`` the folder is exactly that (an error if it exists); otherwise
        ``STEM-YYYYmmdd-HHMMSS`` in UTC, with ``-2``, ``-3``... when trainings start together.
        """
        runs_dir = Path(runs_dir)
        _make_runs_dir(runs_dir)
        if name is not None:
            folder = runs_dir / check_run_name(name)
            try:
                folder.mkdir()
            except FileExistsError:
                raise NnclfError(f"{folder}: run folder already exists; choose another --name (nothing was overwritten)") from None
            except OSError as e:
                raise NnclfError(f"{runs_dir}: cannot create a run folder in it ({e.strerror})") from None
        else:
            base = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".-_") or "run"
            base = f"{base[:100]}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
            for attempt in range(1, 1000):
                folder = runs_dir / (base if attempt == 1 else f"{base}-{attempt}")
                try:
                    folder.mkdir()
                    break
                except FileExistsError:
                    continue
                except OSError as e:
                    raise NnclfError(f"{runs_dir}: cannot create a run folder in it ({e.strerror})") from None
            else:
                raise NnclfError(f"{runs_dir}: could not find a free run folder name for {base}")
        run = cls(folder)
        run.lock()
        (folder / "checkpoints").mkdir(exist_ok=True)
        return run

    def checkpoint(self, which: str) -> Path:
        return self.path / "checkpoints" / f"{which}.npz"

    # -- locking -------------------------------------------------------------------------------
    def lock(self) -> None:
        """An exclusive ``flock`` on the folder for as long as this process trains in it (the
        kernel drops it when the process dies, however it dies). A second trainer is refused."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise NnclfError(f"{self.path}: cannot open the run folder ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = lock_holder(fd)
            os.close(fd)
            who = "another nnclf process" if holder is None else f"another nnclf process (pid {holder})"
            raise NnclfError(
                f"{self.path}: {who} is training in this run folder; wait for it to finish "
                f"or stop it first (nothing was changed)"
            ) from None
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def is_busy(self) -> bool:
        """Whether some process holds the training lock (tested without taking it for long)."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    # -- metrics.csv ---------------------------------------------------------------------------
    def write_metrics(self, history: list[dict], durable: bool = True) -> None:
        """Rewrite metrics.csv atomically; each row is formatted once and kept."""
        del self._metric_lines[len(history):]
        self._metric_lines.extend(metrics_line(r, self.columns) for r in history[len(self._metric_lines):])
        write_text(self.path / self.METRICS, ",".join(self.columns) + "\n" + "".join(self._metric_lines), durable)

    def read_metrics(self, epochs: Optional[int] = None) -> list[dict[str, float]]:
        """metrics.csv rows (``epoch`` an int, the rest floats; an empty cell is left out).

        With ``epochs``, exactly the first ``epochs`` rows (the file may hold more than the
        checkpoint: it is written first, and the process may die, or a checkpoint write fail,
        after it). Floats were written with repr,
        so they read back exactly (resume relies on it)."""
        path = self.path / self.METRICS
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                lines = list(reader)
        except FileNotFoundError:
            raise NnclfError(f"{self.path}: no metrics.csv (is it a run folder?)") from None
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise NnclfError(f"{path}: cannot read the metrics ({getattr(e, 'strerror', None) or e})") from None
        if header is None or not set(header) <= KNOWN_COLUMNS or header[:1] != ["epoch"]:
            raise NnclfError(f"{path}, line 1: not an nnclf metrics header (expected {METRICS_HEADER.strip()})")
        rows = []
        for number, values in enumerate(lines if epochs is None else lines[:epochs], start=2):
            if len(values) != len(header):
                raise NnclfError(f"{path}, line {number}: expected {len(header)} fields like the header, saw {len(values)}; the run folder is damaged")
            try:
                row = {k: (int(v) if k in INTEGER_COLUMNS else float(v)) for k, v in zip(header, values) if v != ""}
            except ValueError:
                raise NnclfError(f"{path}, line {number}: a value is not a number; the run folder is damaged") from None
            if row.get("epoch") != number - 1:
                raise NnclfError(f"{path}, line {number}: expected epoch {number - 1}; the run folder is damaged")
            rows.append(row)
        if epochs is not None and len(rows) < epochs:
            raise NnclfError(f"{path}: has {len(rows)} epochs but the checkpoint is at epoch {epochs}; the run folder is damaged")
        if epochs is not None:
            self.columns = header
            self._metric_lines = [metrics_line(r, header) for r in rows]
        return rows

    # -- summary.json --------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any], durable: bool = True) -> None:
        """The one writer of summary.json: valid JSON always (NaN and infinities as null)."""
        write_text(self.path / self.SUMMARY, json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n", durable)

    def read_summary(self) -> Optional[dict[str, Any]]:
        """summary.json as a dict, None when there is none; damage is an NnclfError naming the
        entry. The entries ``nnclf runs`` shows are type-checked."""
        path = self.path / self.SUMMARY
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise NnclfError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        summary = parse_json(text, path)
        if not isinstance(summary, dict):
            raise NnclfError(f"{path}: expected a JSON object, found {_json_type(summary)}")
        for key, kind in _SUMMARY_TYPES.items():
            value = summary.get(key)
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
                                   isinstance(value, kind) and not isinstance(value, bool))
            if not ok:
                raise NnclfError(f"{path}: '{key}' should be a {kind.__name__}, found {_json_type(value)}")
        test = summary.get("test")
        if test is not None and not (isinstance(test, dict) and _is_number_or_none(test.get("accuracy"))):
            raise NnclfError(f"{path}: 'test' should be an object with a numeric 'accuracy'")
        return summary

    # -- splits.npz ----------------------------------------------------------------------------
    def read_splits(self, give: str = "give a labelled CSV to evaluate on") -> dict[str, np.ndarray]:
        """{"train", "val", "test"} -> 0-based data-row numbers, checked from the headers
        (1-D integers, nothing else) before they are read, and non-negative after."""
        from .checkpoint import npz_members, open_npz, read_member

        path = self.path / self.SPLITS
        if not path.exists():
            raise NnclfError(f"{self.path}: no splits.npz; {give}")
        what = "splits file"
        with open_npz(path, what) as zf:
            members = npz_members(path, zf, what)
            for name, m in members.items():
                if name not in ("train", "val", "test"):
                    raise NnclfError(f"{path}: not a valid {what} (unexpected array '{name}'; expected train, val, test)")
                if len(m.shape) != 1 or m.dtype.kind not in "iu":
                    raise NnclfError(f"{path}: not a valid {what} ('{name}' should be a vector of row numbers, "
                                     f"found shape {m.shape} of {m.dtype})")
            splits = {name: read_member(path, zf, m, what) for name, m in members.items()}
        for name, rows in splits.items():
            if rows.size and rows.min() < 0:
                raise NnclfError(f"{path}: not a valid {what} ('{name}' lists a negative row number)")
        return splits

    # -- other files ---------------------------------------------------------------------------
    def write_text(self, name: str, text: str, durable: bool = True) -> None:
        write_text(self.path / name, text, durable)

    def write_bytes(self, name: str, write, durable: bool = True) -> None:
        write_file(self.path / name, write, durable)

    def sync(self) -> None:
        """Force every file of the run to disk (the end of training)."""
        for path in [self.path / self.METRICS, *(self.path / "checkpoints").glob("*.npz")]:
            fsync_path(path)
        fsync_path(self.path / "checkpoints")
        fsync_path(self.path)


def metrics_line(record: dict[str, float], columns: list[str] = METRIC_COLUMNS) -> str:
    """One metrics.csv row; floats in repr form so they read back exactly (resume relies on it)."""
    values = (record.get(c) for c in columns)
    return ",".join("" if v is None else repr(v) if isinstance(v, float) else str(v) for v in values) + "\n"


def parse_json(text: str, path: Path):
    """``json.loads`` with every failure (syntax, NaN, nesting too deep) as one line."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise NnclfError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    except ValueError as e:
        raise NnclfError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise NnclfError(f"{path}: not valid JSON (nested too deeply)") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _is_number_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _make_runs_dir(runs_dir: Path) -> None:
    if runs_dir.exists() and not runs_dir.is_dir():
        raise NnclfError(f"--runs-dir {runs_dir}: is a file, expected a folder for run folders")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NnclfError(f"--runs-dir {runs_dir}: a part of the path is a file, expected folders") from None
    except OSError as e:
        raise NnclfError(f"--runs-dir {runs_dir}: cannot create it ({e.strerror})") from None
    if not _writable(runs_dir):
        raise NnclfError(f"--runs-dir {runs_dir}: not writable (permission denied); choose another --runs-dir")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


# -- listing -------------------------------------------------------------------------------------
def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run folder, newest start first: run, path, config, started (also as
    ``date``), finished,
    epochs, monitor, best, test_accuracy, status. A run without summary.json (killed, or still
    training) is described from its last checkpoint's metadata; a damaged run is listed with
    status ``damaged (why)`` and the others as usual. Every value is JSON-safe (no NaN)."""
    from .checkpoint import read_checkpoint_meta

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise NnclfError(f"{runs_dir}: {'is a file, not a runs folder' if runs_dir.exists() else 'no such runs folder'}")
    try:
        folders = sorted(runs_dir.iterdir())
    except OSError as e:
        raise NnclfError(f"{runs_dir}: cannot list it ({e.strerror})") from None
    rows = []
    for folder in folders:
        try:
            if not folder.is_dir() or not ((folder / "checkpoints").is_dir() or (folder / RunFolder.CONFIG).is_file()):
                continue
        except OSError:
            continue
        run = RunFolder(folder)
        row: dict[str, Any] = {"run": folder.name, "path": str(folder), "config": None, "started": None, "finished": None,
                               "epochs": None, "monitor": None, "best": None, "test_accuracy": None,
                               "task": None, "headline": None}
        try:
            summary = run.read_summary()
            busy = run.is_busy()
            if summary is not None and not busy:
                status = summary.get("status") or "unknown"
                if status == "abandoned":
                    status += " (resumable)" if run.checkpoint("last").is_file() else " (no checkpoint)"
                headline = summary.get("headline")
                if not (isinstance(headline, dict) and isinstance(headline.get("metric"), str) and _is_number_or_none(headline.get("value"))):
                    headline = {"metric": "test_accuracy", "value": (summary.get("test") or {}).get("accuracy")}
                task = summary.get("task", "classification")
                row.update(
                    config=summary.get("config_name"), started=summary.get("started_at"), finished=summary.get("finished_at"),
                    epochs=summary.get("epochs_run"), monitor=summary.get("monitor"), best=summary.get("best_value"),
                    test_accuracy=(summary.get("test") or {}).get("accuracy"), status=status,
                    task=task if isinstance(task, str) else None, headline=headline,
                )
            elif run.checkpoint("last").is_file():
                meta = read_checkpoint_meta(run.checkpoint("last"))
                trainer = meta.get("trainer") if isinstance(meta.get("trainer"), dict) else {}
                row.update(
                    config=_str_or_none(meta.get("config_name")), started=_str_or_none(meta.get("started_at")),
                    epochs=trainer.get("epoch") if isinstance(trainer.get("epoch"), int) else None,
                    best=trainer.get("best_value") if _is_number_or_none(trainer.get("best_value")) else None,
                    status="training" if busy else "incomplete (killed; resumable)",
                    task=_str_or_none(meta.get("task", "classification")),
                )
            else:
                row["status"] = "training" if busy else "no checkpoint (stopped before its first one)"
        except NnclfError as e:
            row["status"] = f"damaged ({e})"
        except OSError as e:
            row["status"] = f"damaged ({e.strerror or e})"
        if row["started"] is None:
            row["started"] = _folder_time(folder)
        row["date"] = row["started"]  # the name older scripts read
        rows.append(json_safe(row))
    rows.sort(key=lambda r: (str(r["started"]), r["run"]), reverse=True)
    return rows


def _str_or_none(value):
    return value if isinstance(value, str) else None


def _folder_time(folder: Path) -> Optional[str]:
    """For runs from before ``started_at`` was recorded: when the folder got its first files
    (schema.json and splits.npz are written once, at the start)."""
    for name in (RunFolder.SCHEMA, RunFolder.SPLITS, RunFolder.CONFIG):
        try:
            mtime = (folder / name).stat().st_mtime
        except OSError:
            continue
        return datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="milliseconds")
    return None


def lock_holder(fd: int, locks: str = "/proc/locks") -> Optional[int]:
    """The pid holding an flock on the file open as ``fd``, from Linux's /proc/locks (lines like
    ``1: FLOCK  ADVISORY  WRITE 27475 fe:00:3091507 0 EOF``: pid, then device major:minor in hex
    and the inode); None where the kernel does not say or the holder is not listed."""
    st = os.fstat(fd)
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open(locks, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return int(fields[4])
        except ValueError:
            continue
    return None
