"""Temperature scaling (Guo et al. 2017): one number T > 0 that divides the logits,

    p(x) = output(z(x) / T)      (softmax, or the loss's own output: sigmoid for binary CE)

fitted after training by minimising the negative log-likelihood of held-out labelled rows:

    T* = argmin_T  -1/n sum_i log p(x_i)_{y_i}

For a softmax output, NLL(beta) with beta = 1/T is a log-sum-exp of functions linear in beta
minus a linear term, hence convex; a 1-D bounded search (scipy's ``minimize_scalar``, Brent)
over log T finds the minimum. T never changes a prediction: z / T keeps the order of the
logits (and the sign of the one binary logit), so argmax and the predicted label stay.

The temperature lives in the checkpoint's JSON ``meta`` under ``calibration``:
``{"method": "temperature", "temperature": T, "fitted_on": ..., "rows": n, "nll_before": ...,
"nll_after": ...}``; ``TrainedModel`` applies it in predict, evaluate and export.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import NnclfError
from .threads import on_one_thread

# the search range of T: far outside it the validation set is degenerate (perfectly separated,
# or the model carries no information); the bound reached is reported in the checkpoint
T_MIN, T_MAX = 0.01, 100.0


def nll(logits: np.ndarray, y: np.ndarray, predict_proba: Callable[[np.ndarray], np.ndarray], temperature: float) -> float:
    """-1/n sum_i log p_{i, y_i} with p = predict_proba(logits / T), in float64.

    logits (n, K_out) float, y (n,) class indices in [0, K); rows with y < 0 are left out."""
    known = y >= 0
    z = np.asarray(logits, dtype=np.float64)[known] / temperature
    p = predict_proba(z)[np.arange(int(known.sum())), y[known]]
    return float(-np.mean(np.log(np.clip(p, 1e-300, 1.0))))


def fit_temperature(logits: np.ndarray, y: np.ndarray, predict_proba: Callable[[np.ndarray], np.ndarray]) -> dict:
    """T minimising ``nll`` on (logits, y) over [T_MIN, T_MAX]; returns T and the NLL before/after."""
    from scipy.optimize import minimize_scalar

    if not (y >= 0).any():
        raise NnclfError("no rows with a label known to the model to fit a temperature on")

    def objective(log_t: float) -> float:
        return nll(logits, y, predict_proba, math.exp(log_t))

    result = minimize_scalar(objective, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-7})
    temperature = float(math.exp(result.x))
    before = nll(logits, y, predict_proba, 1.0)
    after = float(result.fun)
    if after > before:  # (cannot happen for the convex case; T = 1 is inside the range)
        temperature, after = 1.0, before
    return {"method": "temperature", "temperature": temperature, "nll_before": before, "nll_after": after}


def bound_warning(entry: dict, source: str) -> str | None:
    """A warning when T ended at an end of [T_MIN, T_MAX]: e.g. every fitting row is classified
    correctly, so the NLL keeps falling as T -> 0 and the fitted model is overconfident."""
    t = entry["temperature"]
    if t <= T_MIN * 1.01 or t >= T_MAX / 1.01:
        return (
            f"{source}: the fitted temperature {t:.3g} is at the end of the search range [{T_MIN:g}, {T_MAX:g}] "
            f"({entry['rows']} rows; e.g. every row is classified correctly); the calibrated probabilities are "
            f"unreliable; fit on more labelled rows with nnclf calibrate RUN DATA.csv"
        )
    return None


def calibration_of(meta: dict, path) -> float:
    """The temperature stored in a checkpoint's meta (1.0 when uncalibrated); a damaged entry
    is an NnclfError naming the file."""
    entry = meta.get("calibration")
    if entry is None:
        return 1.0
    t = entry.get("temperature") if isinstance(entry, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise NnclfError(f"{path}: not a valid checkpoint (calibration temperature {t!r} is not a positive number)")
    return float(t)


def _needs_classes(model, path) -> None:
    """A regression or reconstruction model has no class probabilities to rescale."""
    task = getattr(model, "task", "classification")
    if task != "classification":
        raise NnclfError(
            f"{path}: calibrate needs a classification model (temperature scaling rescales class "
            f"probabilities); this one is task: {task}"
        )


def calibrate_checkpoint(path: Path, x: np.ndarray, y: np.ndarray, fitted_on: str, output: Optional[Path] = None) -> dict:
    """Fit T for the weights in checkpoint ``path`` on features x (n, d) and labels y (n,), and
    write the checkpoint with ``calibration`` in its meta to ``output`` (default: in place).
    Every array (weights, optimizer state) is kept as it was."""
    from .checkpoint import load_checkpoint, save_checkpoint
    from .model import TrainedModel

    model = TrainedModel.load(path)
    _needs_classes(model, path)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = on_one_thread(model.net.logits, x)
        entry = fit_temperature(logits, y, model.loss.predict_proba)
    entry.update(fitted_on=fitted_on, rows=int((y >= 0).sum()))
    params, meta, arrays = load_checkpoint(path)
    meta["calibration"] = entry
    save_checkpoint(output or path, params, meta, arrays)
    return entry


def calibrate_run(
    run: str | Path,
    data: Optional[str | Path],
    which: str = "best",
    output: Optional[str | Path] = None,
    overwrite: bool = False,
    warn: Callable[[str], None] = lambda m: None,
) -> dict:
    """``nnclf calibrate``: fit T for a checkpoint on DATA (labelled) or the run's validation
    rows, into a new checkpoint file (default RUN/checkpoints/calibrated.npz); the original
    file is never changed."""
    from .files import check_not_input
    from .model import TrainedModel
    from .predict import checkpoint_path, held_out_rows, labelled_rows

    source_path = checkpoint_path(run, which)
    if output is None:
        output = source_path.with_name("calibrated.npz") if Path(run).is_dir() else source_path.with_name(f"{source_path.stem}-calibrated.npz")
    output = Path(output)
    if output.exists() and output.resolve() == source_path.resolve():
        raise NnclfError(f"{output}: is the checkpoint being calibrated; choose another -o (the original is kept)")
    check_not_input(output, [source_path, data])  # --overwrite never replaces an input (a hard link too)
    if output.exists() and not overwrite:
        raise NnclfError(f"{output}: already exists; pass --overwrite to replace it (nothing was written)")
    if output.exists() and not output.is_file():
        raise NnclfError(f"{output}: not a regular file; nothing was written")
    if not output.parent.is_dir():
        raise NnclfError(f"{output}: folder {output.parent} does not exist")
    model = TrainedModel.load(source_path)
    _needs_classes(model, source_path)  # before any data is read
    if data is None:
        frame, source = held_out_rows(model, Path(run), "val")
    else:
        from .data.reading import read_table

        cfg = model.meta["config"]["data"]
        frame, source = read_table(data, cfg["encoding"], cfg.get("delimiter")), str(data)
    frame, y = labelled_rows(model, frame, source, warn, "calibrate")
    if not (y >= 0).any():
        raise NnclfError(f"{source}: no rows with a label known to the model to fit a temperature on")
    x = model.features(frame, source, warn)
    entry = calibrate_checkpoint(source_path, x, y, source, output)
    if bound_warning(entry, source):
        warn(bound_warning(entry, source))
    with np.errstate(over="ignore", invalid="ignore"):
        logits = on_one_thread(model.net.logits, x).astype(np.float64)
    from .metrics import calibration_errors

    entry["ece_before"] = calibration_errors(y, model.loss.predict_proba(logits))[0]
    entry["ece_after"] = calibration_errors(y, model.loss.predict_proba(logits / entry["temperature"]))[0]
    entry["checkpoint"] = str(source_path)
    entry["output"] = str(output)
    return entry
