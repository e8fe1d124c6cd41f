"""Using a trained model: evaluate on labelled data, predict a CSV in chunks."""

from __future__ import annotations

import csv
import io
import stat
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import NnclfError, Warn
from .data.preprocess import TransformNotes, file_line
from .metrics import classification_report
from .model import TrainedModel

CHECKPOINTS = ("auto", "best", "last", "calibrated", "refit")


def checkpoint_path(run: str | Path, which: str) -> Path:
    """A checkpoint file as given, or RUN/checkpoints/{best,last,calibrated,refit}.npz; ``auto``
    is refit.npz when training.refit made one, else best.npz."""
    run = Path(run)
    if which not in CHECKPOINTS:
        raise NnclfError(f"--checkpoint: expected auto, best, last, calibrated or refit, got {which!r}")
    if run.is_file():
        return run
    if not run.exists():
        raise NnclfError(f"{run}: no such run folder or checkpoint file")
    if not run.is_dir():  # a FIFO, a device: no checkpoint to validate before reading its arrays
        kind = "a pipe (FIFO or process substitution)" if stat.S_ISFIFO(run.stat().st_mode) else "not a regular file"
        raise NnclfError(f"{run}: is {kind}; expected a run folder or a checkpoint file")
    if which == "auto":
        which = "refit" if (run / "checkpoints" / "refit.npz").is_file() else "best"
    path = run / "checkpoints" / f"{which}.npz"
    if not path.is_file():
        if which == "best" and (run / "checkpoints" / "last.npz").is_file():
            return run / "checkpoints" / "last.npz"
        if which == "calibrated" and (run / "checkpoints").is_dir():
            raise NnclfError(f"{run}: no checkpoints/calibrated.npz; make it with: nnclf calibrate {run}")
        if which == "refit" and (run / "checkpoints").is_dir():
            raise NnclfError(f"{run}: no checkpoints/{which}.npz; the run was trained without training.refit: true")
        status = _status(run)
        if status is not None:  # a run folder, e.g. one that diverged in its first epoch
            raise NnclfError(f"{run}: no checkpoints/{which}.npz; the run (status {status}) saved no checkpoint")
        raise NnclfError(f"{run}: no checkpoints/{which}.npz (is it a run folder?)")
    return path


def _status(run: Path) -> Optional[str]:
    """The status in RUN/summary.json, or None when there is no readable one."""
    from .runfolder import RunFolder

    try:
        status = (RunFolder(run).read_summary() or {}).get("status")
    except NnclfError:
        return None
    return status if isinstance(status, str) else None


def read_options(model: TrainedModel):
    """How the run read its files: encoding, delimiter, ``data.na_values``, the target as text."""
    from .data.reading import ReadOptions

    target = model.target if isinstance(model.target, str) else None
    return ReadOptions.of(model.meta["config"]["data"], target=target)


def _source(data) -> str:
    return "stdin" if str(data) == "-" else str(data)


def held_out_rows(model: TrainedModel, run: Path, split: str = "test"):
    """The run's test (or validation) rows: data.test (data.val) if given, else the rows listed
    in splits.npz of the training file, which must hold the bytes the run was trained on: the
    SHA-256 of what is read is compared with the recorded one, so a file replaced meanwhile is
    refused. Returns (frame, source description)."""
    from .data.reading import read_table_hashed

    data = model.meta["config"]["data"]
    options = read_options(model)
    name = {"test": "test", "val": "validation"}[split]
    give = f"give a labelled CSV to {'evaluate' if split == 'test' else 'calibrate'} on"
    recorded = model.meta.get("data_files", {})
    if data.get(split):
        frame, seen = read_table_hashed(data[split], options=options)
        _same_file(data[split], recorded.get(split), seen, {"test": "test", "val": "validation"}[split], name, give)
        return frame, data[split]
    from .runfolder import RunFolder

    splits = RunFolder(run if run.is_dir() else run.parent.parent).read_splits(give)
    if split not in splits:
        raise NnclfError(f"{run}: the run held out no {name} rows (data.{split}_split = 0); {give}")
    rows = splits[split]
    if not Path(data["train"]).is_file():
        raise NnclfError(f"{data['train']}: the training file is gone, so the run's held-out {name} rows cannot be recovered; {give}")
    frame, seen = read_table_hashed(data["train"], options=options)
    _same_file(data["train"], recorded.get("train"), seen, "training", name, give)
    if len(rows) and (rows.max() >= len(frame) or rows.min() < 0):
        raise NnclfError(
            f"{data['train']}: has {len(frame)} data rows but the run's {name} split lists row {int(rows.max()) + 1}; "
            f"the file changed since training ({give})"
        )
    return frame.loc[rows], f"{data['train']} ({name} split)"


def _same_file(path, recorded, seen, role: str, name: str, give: str) -> None:
    if recorded is not None and seen is not None and recorded.get("sha256") != seen["sha256"]:
        raise NnclfError(
            f"{path}: the {role} file changed since the run (its SHA-256 differs), so the run's held-out "
            f"{name} rows cannot be recovered; {give}"
        )


def labelled_rows(model: TrainedModel, frame, source: str, warn: Warn, command: str = "evaluate"):
    """(frame without unlabelled rows, class indices y (n,), -1 for labels training never saw).
    ``command`` (evaluate, calibrate) is what the messages say needs the labels."""
    target = model.target
    if target not in frame.columns:
        raise NnclfError(f"{source}: target column '{target}' not found; {command} needs labels (use predict for unlabelled data)")
    labelled = frame[target].notna().to_numpy()
    if not labelled.all():
        warn(f"{source}: {int((~labelled).sum())} row(s) with a missing '{target}' label skipped")
        frame = frame[labelled]
    if len(frame) == 0:
        raise NnclfError(f"{source}: no labelled rows to {command}")
    y = model.labels.encode(frame[target])
    unknown = y < 0
    if unknown.any():
        values = frame[target][unknown].astype(str).value_counts()
        from .data.reading import quote_cell

        shown = ", ".join(f"{quote_cell(v)} ({c})" for v, c in values.head(5).items())
        fate = "scored as wrong" if command == "evaluate" else "left out"
        warn(f"{source}: {int(unknown.sum())} row(s) have labels never seen in training: {shown}; {fate}")
    return frame, y


def evaluate(run: str | Path, data: Optional[str | Path], which: str = "auto", warn: Warn = lambda m: None, details: bool = False) -> dict:
    """Scores of a checkpoint on labelled data (default: the run's held-out test rows). With
    ``details`` the report also carries the rows' labels, probabilities and predictions (``y``,
    ``proba``, ``classes`` arrays, and ``proba_uncalibrated`` for a calibrated checkpoint; for the
    HTML report's plots, not JSON)."""
    from .data.reading import read_table

    path = checkpoint_path(run, which)
    model = TrainedModel.load(path)
    if data is None:
        frame, source = held_out_rows(model, Path(run), "test")
    else:
        frame, source = read_table(data, options=read_options(model)), _source(data)
    return evaluate_frame(model, frame, source, path, warn, details)


def evaluate_frame(model: TrainedModel, frame, source: str, path, warn: Warn = lambda m: None, details: bool = False) -> dict:
    """The ``evaluate --json`` report of ``model`` (loaded from ``path``) on the labelled
    DataFrame ``frame`` (``details``: see ``evaluate``)."""
    if model.task != "classification":
        return _evaluate_real(model, path, frame, source, warn, details)
    frame, y = labelled_rows(model, frame, source, warn)
    x = model.features(frame, source, warn)
    classes, proba = _finite_predict(model, x, frame, source)
    report = classification_report(y, proba, model.labels.values, classes)
    report["checkpoint"] = str(path)
    report["data"] = source
    report["temperature"] = model.temperature if "calibration" in model.meta else None
    report = _undefined_as_none(report)
    if details:
        report["y"], report["proba"], report["classes"] = y, proba, classes
        if model.temperature != 1.0:  # the same rows before temperature scaling, for the reliability diagram
            with np.errstate(over="ignore", invalid="ignore"):
                report["proba_uncalibrated"] = model.loss.predict_proba(model.net.logits(x))
    return report


def _evaluate_real(model: TrainedModel, path: Path, frame, source: str, warn: Warn, details: bool = False) -> dict:
    """Regression: n, rmse, mae, r2 (means over targets), per_target and residual quantiles, in
    the targets' units. Reconstruction: n, mse (mean over rows and input columns in the
    preprocessed space), per_feature (one-hot groups summed per original column) and pca_mse.
    With ``details`` (for the HTML report, not JSON): regression's ``y_true`` and ``y_pred``
    arrays (n, m)."""
    from .data.targets import column_groups, drop_missing_targets, per_feature_error, target_values

    if model.task == "regression":
        names = model.target_names
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise NnclfError(f"{source}: target column '{missing[0]}' not found; evaluate needs targets (use predict for data without them)")
        values = target_values(frame, names, source)
        frame, values, _ = drop_missing_targets(frame, values, names, source, warn)
        if len(frame) == 0:
            raise NnclfError(f"{source}: no rows with target values to evaluate")
        from .metrics import regression_report

        predicted = _finite_outputs(model, model.features(frame, source, warn), frame, source)
        report = regression_report(values, predicted, names)
        arrays = {"y_true": values, "y_pred": predicted} if details else {}
    else:
        if len(frame) == 0:
            raise NnclfError(f"{source}: no rows to evaluate")
        x = model.features(frame, source, warn)
        squared = np.square(_finite_outputs(model, x, frame, source) - x, dtype=np.float64)
        report = {
            "n": int(len(frame)),
            "mse": float(squared.mean()),
            "per_feature": per_feature_error(squared, column_groups(model.preprocessor)),
            "pca_mse": float(np.square(model.pca.reconstruct(x) - x).mean()) if model.pca is not None else None,
            "code_units": int(model.net.sizes[int(model.meta["code_layer"]) + 1]),
        }
        arrays = {}
    report.update(task=model.task, checkpoint=str(path), data=source)
    return {**_undefined_as_none(report), **arrays}


def _finite_outputs(model: TrainedModel, x: np.ndarray, frame, source: str) -> np.ndarray:
    """``model.outputs(x)``, with an overflowing row an error naming its line (see ``_finite_predict``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = model.outputs(x)
    _refuse_overflow(out, frame, source)
    return out


def _refuse_overflow(values: np.ndarray, frame, source: str) -> None:
    """An error naming the line of the first row of ``values`` (n, m) that is not finite."""
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise NnclfError(
            f"{source}, line {file_line(frame, row)}: the model's output for this row overflows to NaN "
            f"(feature values far outside the training range?); fix or remove the row"
        )


def _undefined_as_none(value):
    """NaN (e.g. ROC AUC when the data holds one class) becomes None: JSON has no NaN."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _undefined_as_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_undefined_as_none(v) for v in value]
    return value


def predict_csv(
    run: str | Path,
    data: str | Path,
    output: Optional[str | Path],
    which: str = "auto",
    chunk_rows: int = 100_000,
    overwrite: bool = False,
    warn: Warn = lambda m: None,
    stdout=None,
) -> int:
    """Write, for each input row in input order: classification ``prediction`` and
    ``proba_<label>``; regression ``prediction`` (one target) or ``prediction_<target>`` (several),
    in the targets' units; reconstruction ``reconstruction_error`` (the row's mean squared
    error over the preprocessed input columns, an anomaly score).

    The input is read ``chunk_rows`` at a time, so memory stays bounded whatever its size.
    With ``output`` a regular file appears only when complete (temporary file, then rename);
    ``-``, a FIFO or a device is written into (``nnclf.files``); an input as output is refused.
    """
    model = TrainedModel.load(checkpoint_path(run, which))
    if model.task == "classification":
        header = ["prediction", *(f"proba_{_label_text(label)}" for label in model.labels.values)]

        def render(text, frame, x, source):
            classes, proba = _finite_predict(model, x, frame, source)
            _write_rows(text, proba, model.labels.decode(classes), digits=6)
    elif model.task == "regression":
        names = model.target_names
        header = ["prediction"] if len(names) == 1 else [f"prediction_{n}" for n in names]

        def render(text, frame, x, source):
            _write_rows(text, _finite_outputs(model, x, frame, source))
    else:
        header = ["reconstruction_error"]

        def render(text, frame, x, source):
            error = np.square(_finite_outputs(model, x, frame, source) - x, dtype=np.float64).mean(axis=1)
            _write_rows(text, error[:, None])
    return stream_csv(model, data, output, header, render, chunk_rows, overwrite, warn, stdout)


def encode_csv(run, data, output, which: str = "best", chunk_rows: int = 100_000, overwrite: bool = False,
               warn: Warn = lambda m: None, stdout=None) -> int:
    """Write the code layer's activations ``code_0 .. code_{k-1}`` for each row of ``data``
    (a reconstruction model), streamed and atomic like ``predict_csv``."""
    path = checkpoint_path(run, which)
    model = TrainedModel.load(path)
    if model.task != "reconstruction":
        raise NnclfError(f"{path}: encode needs a reconstruction model (task: reconstruction); this one is task: {model.task}")
    k = model.net.sizes[int(model.meta["code_layer"]) + 1]

    def render(text, frame, x, source):
        with np.errstate(over="ignore", invalid="ignore"):
            codes = model.encode(x)
        _write_rows(text, codes)

    return stream_csv(model, data, output, [f"code_{j}" for j in range(k)], render, chunk_rows, overwrite, warn, stdout)


def stream_csv(model: TrainedModel, data, output, header: list[str], render, chunk_rows: int, overwrite: bool, warn: Warn, stdout=None) -> int:
    """Read ``data`` in chunks, preprocess each, and let ``render(text, frame, x, source)``
    write its rows under ``header``: to ``output`` atomically, or to stdout. Returns the rows."""
    import sys

    from .data.reading import iter_table

    from .files import STDOUT, check_not_input

    path = model.path  # the checkpoint: an input too
    options, source = read_options(model), _source(data)
    if output is not None and str(output) != STDOUT:
        output = Path(output)
        check_not_input(output, [data, path])
        if output.is_file() and not overwrite:
            raise NnclfError(f"{output}: already exists; pass --overwrite to replace it (nothing was written)")
        if not output.parent.is_dir():
            raise NnclfError(f"{output}: folder {output.parent} does not exist")
    # one warning per column for the whole file, whatever the chunk size
    notes = TransformNotes()

    def write_all(f) -> int:
        from threadpoolctl import threadpool_limits

        text = io.TextIOWrapper(f, encoding="utf-8", newline="") if not isinstance(f, io.TextIOBase) else f
        writer = csv.writer(text, lineterminator="\n")
        n = 0
        # the reader parses in threads on every core: a one-thread BLAS does not fight them for
        # the cores (benchmarks/RESULTS.md, "Figures that were in code comments")
        with threadpool_limits(limits=1, user_api="blas"):
            for frame in iter_table(data, chunk_rows=chunk_rows, options=options):
                x = model.features(frame, source, warn, notes)
                if n == 0:  # the header only once the first chunk is known to be readable
                    # (render writes nothing until its numbers are checked, so a bad first chunk leaves no header)
                    block = io.StringIO()
                    render(block, frame, x, source)
                    writer.writerow(header)
                    text.write(block.getvalue())
                else:
                    render(text, frame, x, source)
                n += len(frame)
        notes.emit(warn, source)
        text.flush()
        if text is not f:
            text.detach()
        return n

    if output is None or str(output) == STDOUT:
        if (stdout or sys.stdout) is None:  # started with stdout closed (`>&-`)
            raise NnclfError("stdout is closed; give an output file with -o FILE (nothing was written)")
        return write_all(stdout or sys.stdout)
    count = 0

    def write(f):
        nonlocal count
        count = write_all(f)

    from .files import write_file

    # a regular file appears only when complete; a FIFO, a device or '-' is written into
    write_file(output, write, inputs=[data, path])
    return count


def _finite_predict(model: TrainedModel, x: np.ndarray, frame, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, class probabilities); a row whose output overflows (features far outside
    the training range) is an error naming its line, so no NaN ever reaches a prediction file
    or a report."""
    with np.errstate(over="ignore", invalid="ignore"):
        classes, proba = model.predict(x)
    _refuse_overflow(proba, frame, source)
    return classes, proba


def _write_rows(text, values: np.ndarray, labels: Optional[np.ndarray] = None, digits: int = 8) -> None:
    """CSV rows of ``values`` (n, m) with ``digits`` significant digits, after a label column
    when ``labels`` (n,) is given ('label,p1,...,pK').

    One ``%`` format per row over Python floats is the fastest pure-Python CSV writer measured
    here (benchmarks/RESULTS.md, "After the data-layer changes"); labels are escaped once per
    distinct value.
    """
    cell = f",%.{digits}g"
    columns = [values[:, k].tolist() for k in range(values.shape[1])]
    if labels is None:
        row = (cell * values.shape[1])[1:] + "\n"
        text.write("".join([row % v for v in zip(*columns)]))
        return
    escaped: dict = {}
    shown = [escaped[v] if v in escaped else escaped.setdefault(v, _csv_field(v)) for v in labels.tolist()]
    row = "%s" + cell * values.shape[1] + "\n"
    text.write("".join([row % v for v in zip(shown, *columns)]))


def _label_text(value) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _csv_field(value) -> str:
    s = _label_text(value)
    if any(ch in s for ch in ',"\n\r') or s != s.strip():  # quoted, a reader keeps the spaces
        s = '"' + s.replace('"', '""') + '"'
    return s
