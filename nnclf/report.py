"""``nnclf report RUN``: one self-contained HTML page about a run (RUN/report.html), readable
offline: every plot is a PNG inlined as base64, the styles are in the page, nothing is fetched.

Sections: the run at a glance (task, data files and row counts, column schema, resolved config,
training time), headline metrics on the held-out test rows, learning curves with the best epoch
marked and the learning rate, the confusion matrix (counts and row-normalised), ROC and
precision-recall curves, the reliability diagram (before and after temperature scaling when
calibrated), a per-class table, and the epoch table (collapsed). Plots need matplotlib
(``nnclf[plot]``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np

from .files import write_text
from .errors import NnclfError
from .runfolder import RunFolder

INSTALL_HINT = 'nnclf report needs matplotlib: pip install ".[plot]" (from a clone) or pip install "nnclf[plot]"'
BLUE, ORANGE, GREEN, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f"


def read_metrics(run: Path) -> list[dict[str, float]]:
    """metrics.csv through its one reader (``RunFolder.read_metrics``); at least one epoch."""
    rows = RunFolder(run).read_metrics()
    if not rows:
        raise NnclfError(f"{run / RunFolder.METRICS}: no finished epochs yet")
    return rows


def text_chart(values: dict[str, list[float]], width: int = 60, height: int = 10) -> str:
    """A terminal line chart: one letter per series ('t' train, 'v' val), epochs left to right."""
    series = {k: v for k, v in values.items() if v}
    everything = [x for v in series.values() for x in v]
    lo, hi = min(everything), max(everything)
    span = hi - lo or 1.0
    grid = [[" "] * width for _ in range(height)]
    for mark, ys in series.items():
        n = len(ys)
        for col in range(width):
            y = ys[min(n - 1, round(col * (n - 1) / max(1, width - 1)))]
            row = height - 1 - round((y - lo) / span * (height - 1))
            grid[row][col] = mark if grid[row][col] in (" ", mark) else "*"
    lines = [f"{hi:9.4f} |" + "".join(grid[0])]
    lines += ["          |" + "".join(r) for r in grid[1:-1]]
    lines += [f"{lo:9.4f} |" + "".join(grid[-1]), "          +" + "-" * width]
    return "\n".join(lines)


# -- gathering -----------------------------------------------------------------------------------
def _load(run: Path, which: str, warn):
    """(summary, metrics, checkpoint meta, evaluation details or None, why not)."""
    from .model import TrainedModel
    from .predict import checkpoint_path, evaluate

    metrics = read_metrics(run)
    summary = RunFolder(run).read_summary() or {}
    model = TrainedModel.load(checkpoint_path(run, which))
    evaluation, missing = None, ""
    try:
        evaluation = evaluate(run, None, which, warn, details=True)
    except NnclfError as e:
        missing = str(e)
    return summary, metrics, model, evaluation, missing


def make_report(run: str | Path, warn: Callable[[str], None] = lambda m: None, which: str = "best") -> dict:
    """Write RUN/report.html; returns its path and a terminal chart of the loss."""
    run = Path(run)
    if not run.is_dir():
        raise NnclfError(f"{run}: no such run folder")
    read_metrics(run)  # a folder without epochs fails before matplotlib is needed
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        raise NnclfError(INSTALL_HINT) from None
    summary, metrics, model, evaluation, missing = _load(run, which, warn)
    if evaluation is None:
        warn(f"report without test metrics: {missing}")
    page = _page(run, summary, metrics, model, evaluation, missing)
    # a symlink report.html is kept and the file it names replaced: never one the report read
    recorded = [info.get("path") for info in model.meta.get("data_files", {}).values() if isinstance(info, dict)]
    read = [model.path, *(p for p in run.iterdir() if p.name != "report.html"), *(run / "checkpoints").glob("*.npz")]
    write_text(run / "report.html", page, inputs=[*read, *(p for p in recorded if isinstance(p, str))])
    chart = {"t": [m["train_loss"] for m in metrics]}
    if "val_loss" in metrics[0]:
        chart["v"] = [m["val_loss"] for m in metrics]
    return {"html": run / "report.html", "chart": text_chart(chart)}


# -- plots -----------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width=5.2, height=3.4):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _curve_plot(metrics, keys, ylabel, best_epoch, log=False) -> str | None:
    present = [key for key in keys if all(key[0] in m for m in metrics)]
    if not present:
        return None
    fig, ax = _figure()
    epochs = [m["epoch"] for m in metrics]
    for k, label, color, *style in present:
        ax.plot(epochs, [m[k] for m in metrics], label=label, color=color, lw=1.6, ls=style[0] if style else "-")
    if best_epoch:
        ax.axvline(best_epoch, color=GREY, ls="--", lw=1)
        ax.annotate(f"best epoch {best_epoch}", (best_epoch, 1), xycoords=("data", "axes fraction"), xytext=(4, -12),
                    textcoords="offset points", fontsize=8, color=GREY)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def _lr_plot(metrics) -> str:
    fig, ax = _figure(5.2, 2.6)
    lr = [m["lr"] for m in metrics]
    ax.plot([m["epoch"] for m in metrics], lr, color=GREEN, lw=1.6)
    ax.set_ylim(0, max(lr) * 1.15 or 1)  # from 0, so a constant rate reads as one
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    return _png(fig)


def _confusion_plot(cm: np.ndarray, labels: list, normalised: bool) -> str:
    import matplotlib.pyplot as plt

    k = len(labels)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = cm / cm.sum(axis=1, keepdims=True) if normalised else cm.astype(np.float64)
    shown = np.nan_to_num(shown)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalised else max(1, shown.max()))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = [_label(v) for v in labels]
    ax.set_xticks(range(k), names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("row-normalised (recall on the diagonal)" if normalised else "counts", fontsize=9)
    if k <= 15:
        top = shown.max() or 1
        for i in range(k):
            for j in range(k):
                if k > 5 and cm[i, j] == 0:
                    continue  # a large matrix reads better with its empty cells empty
                text = f"{shown[i, j]:.2f}" if normalised else str(int(cm[i, j]))
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if k > 8 else 8,
                        color="white" if shown[i, j] > top / 2 else "black")
    return _png(fig)


def _one_vs_rest(y, proba, labels):
    """(name, binary labels, score) per curve: the positive class for two classes, else each class."""
    classes = [1] if len(labels) == 2 else range(len(labels))
    for k in classes:
        yield _label(labels[k]), np.where(y < 0, -1, (y == k).astype(np.int64)), proba[:, k]


def _roc_plot(y, proba, labels) -> str:
    from .metrics import roc_auc, roc_curve

    fig, ax = _figure(5.2, 4.4)
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1)
    for name, binary, score in _one_vs_rest(y, proba, labels):
        if (binary == 1).any() and (binary == 0).any():
            fpr, tpr = roc_curve(binary, score)
            ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {roc_auc(binary, score):.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC" + (" (one-vs-rest)" if len(labels) > 2 else f" (positive: {_label(labels[1])})"), fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    return _png(fig)


def _pr_plot(y, proba, labels) -> str:
    from .metrics import precision_recall_curve

    fig, ax = _figure(5.2, 4.4)
    for name, binary, score in _one_vs_rest(y, proba, labels):
        if (binary == 1).any():
            precision, recall, ap = precision_recall_curve(binary, score)
            full = int(np.argmax(recall >= 1.0)) + 1  # lower thresholds only add false positives
            ax.step(recall[:full], precision[:full], where="post", lw=1.5, label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_title("precision-recall" + (" (one-vs-rest)" if len(labels) > 2 else f" (positive: {_label(labels[1])})"), fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return _png(fig)


def _reliability_plot(y, curves: list[tuple[str, np.ndarray, np.ndarray, str]]) -> str:
    """Accuracy per confidence bin against the diagonal, with the rows per bin below."""
    import matplotlib.pyplot as plt

    from .metrics import calibration_errors, reliability_bins

    fig, (ax, bars) = plt.subplots(2, 1, figsize=(5.2, 4.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for axis in (ax, bars):
        for side in ("top", "right"):
            axis.spines[side].set_visible(False)
    edges = np.linspace(0, 1, 16)
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="perfectly calibrated")
    width = 1 / 15 / len(curves)
    for i, (name, proba, classes, color) in enumerate(curves):
        count, accuracy, confidence = reliability_bins(y, proba, 15, classes)
        ece = calibration_errors(y, proba, 15, classes)[0]
        filled = count > 0
        ax.plot(confidence[filled], accuracy[filled], lw=1.2, color=color, alpha=0.8, label=f"{name} (ECE {ece:.3f})")
        # marker area grows with the bin's rows: a bin of two rows should not look like a bin of 200
        ax.scatter(confidence[filled], accuracy[filled], s=12 + 120 * np.sqrt(count[filled] / count.sum()), color=color, zorder=3)
        bars.bar(edges[:-1] + i * width, count, width=width, align="edge", color=color, alpha=0.7)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0))
    ax.grid(alpha=0.3)
    bars.set_xlabel("confidence (top-label probability), 15 bins")
    bars.set_ylabel("rows")
    bars.grid(alpha=0.3)
    return _png(fig)


# -- the page ------------------------------------------------------------------------------------
def _label(value) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, digits=4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    return _e(value)


def _table(header, rows, cls="") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(data: str | None, alt: str) -> str:
    if data is None:
        return ""
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"><figcaption>{_e(alt)}</figcaption></figure>'


def _size(n) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _glance(run: Path, summary: dict, model, metrics) -> str:
    import yaml

    meta = model.meta
    cfg = meta.get("config", {})
    seconds = summary.get("seconds", {})
    facts = [
        ("task", cfg.get("task", "classification")),
        ("status", summary.get("status", "no summary.json (training did not finish)") + (" (early stop)" if summary.get("stopped_early") else "")),
        ("config", meta.get("config_name", "–")),
        ("network", " → ".join(str(s) for s in meta["network"]["sizes"]) + f" ({meta['network']['activation']}, {meta['loss']['name']})"),
        ("optimizer", f"{cfg.get('optimizer', {}).get('name', '–')}, lr {cfg.get('optimizer', {}).get('lr', '–')}"),
        ("epochs", f"{summary.get('epochs_run', len(metrics))} (best {summary.get('best_epoch', '–')} by {summary.get('monitor', '–')})"),
        ("training time", f"{seconds['train']:.2f} s training, {seconds['wall']:.2f} s wall" if seconds else "–"),
        ("seed", cfg.get("seed", "–")),
        ("finished", summary.get("finished_at", "–")),
        ("versions", ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items()) or "–"),
    ]
    if model.temperature != 1.0 or "calibration" in meta:
        c = meta.get("calibration", {})
        facts.append(("calibration", f"temperature {model.temperature:.4g}, fitted on {c.get('fitted_on', '?')} ({c.get('rows', '?')} rows): "
                                     f"NLL {c.get('nll_before', float('nan')):.4f} → {c.get('nll_after', float('nan')):.4f}"))
    glance = _table(["", ""], [(f"<b>{_e(k)}</b>", _e(v)) for k, v in facts], "facts")
    rows = summary.get("rows", {})
    data_cfg = cfg.get("data", {})
    files = []
    for role, info in meta.get("data_files", {}).items():
        # the training file also holds the validation and test rows unless they have their own files
        parts = [r for r in ("train", "val", "test") if r == role or (role == "train" and not data_cfg.get(r))]
        used = [f"{r} {rows[r]}" for r in parts if rows.get(r)]
        count = f"{sum(rows.get(r, 0) for r in parts)} ({', '.join(used)})" if used else "–"
        files.append((_e(role), f"<code>{_e(info.get('path', '?'))}</code>", _size(info.get("bytes", 0)), f"<code class=\"nw\">{_e(str(info.get('sha256', ''))[:12])}</code>", _e(count)))
    data = _table(["file", "path", "size", "sha256", "labelled rows used"], files)
    columns = []
    for c in model.preprocessor.columns:
        if c.kind == "numeric":
            detail = f"median {c.fill:.4g}; centre {c.center:.4g}, scale {c.scale:.4g}" + ("; indicator column" if c.indicator else "")
        else:
            shown = [_label("(missing)" if k is None else k) for k in c.categories]
            detail = ", ".join(shown[:10]) + (f" … (+{len(shown) - 10})" if len(shown) > 10 else "")
        columns.append((f"<code>{_e(c.name)}</code>", _e(c.kind), _e(c.missing_in_training), _e(detail), _e(c.reason)))
    schema = _table(["column", "kind", "missing in training", "categories / fitted values", "why"], columns, "schema")
    kinds: dict[str, int] = {}
    for c in model.preprocessor.columns:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    counted = ", ".join(f"{n} {k}" for k, n in kinds.items())
    # a long schema (64 pixel columns) is folded away; a short one is shown
    schema = f'<details{" open" if len(columns) <= 12 else ""}><summary>column schema: {_e(counted)}</summary>{schema}</details>'
    config = f"<details><summary>resolved config</summary><pre>{_e(yaml.safe_dump(cfg, sort_keys=False))}</pre></details>"
    return (f'<section id="glance"><h2>The run at a glance</h2><div class="pair"><div>{glance}</div><div><h3>Data</h3>{data}</div></div>'
            f"<h3>Columns ({len(columns)} features, {_targets_text(model)})</h3>{schema}{config}</section>")


def _targets_text(model) -> str:
    names = model.target_names if model.task != "reconstruction" else []
    if not names:
        return "no target: the inputs are reconstructed"
    return ("target " if len(names) == 1 else "targets ") + ", ".join(f"<code>{_e(n)}</code>" for n in names)


def _headline(evaluation: dict | None, missing: str) -> str:
    if evaluation is None:
        return f'<section id="metrics"><h2>Test metrics</h2><p class="note">No test metrics: {_e(missing)}</p></section>'
    auc = evaluation.get("roc_auc", evaluation.get("roc_auc_ovr"))
    cards = [
        ("accuracy", evaluation["accuracy"]), ("macro F1", evaluation["macro_f1"]), ("log loss", evaluation["log_loss"]),
        ("ROC AUC" + (" (one-vs-rest)" if "roc_auc_ovr" in evaluation else ""), auc), ("ECE", evaluation["ece"]),
        ("MCE", evaluation["mce"]), ("Brier", evaluation["brier"]),
    ]
    html_cards = "".join(f'<div class="card"><div class="value">{_num(v)}</div><div class="name">{_e(k)}</div></div>' for k, v in cards)
    temperature = f", temperature {evaluation['temperature']:.4g} applied" if evaluation.get("temperature") else ""
    return (f'<section id="metrics"><h2>Test metrics</h2><p class="note">{_e(evaluation["data"])}: {evaluation["n"]} rows, '
            f"checkpoint <code>{_e(Path(evaluation['checkpoint']).name)}</code>{_e(temperature)}</p><div class=\"cards\">{html_cards}</div></section>")


def _curves(metrics, summary) -> str:
    best = summary.get("best_epoch")
    loss = _curve_plot(metrics, [("train_loss", "train", BLUE), ("val_loss", "validation", ORANGE)], "loss", best)
    accuracy = _curve_plot(metrics, [("train_accuracy", "train accuracy", BLUE), ("val_accuracy", "validation accuracy", ORANGE),
                                     ("val_f1", "validation macro F1", GREEN, "--")], "accuracy / F1", best)
    return (f'<section id="curves"><h2>Learning curves</h2><div class="grid">{_img(loss, "loss per epoch (dashed: best epoch)")}'
            f'{_img(accuracy, "accuracy per epoch (dashed: best epoch)")}{_img(_lr_plot(metrics), "learning rate per epoch")}</div></section>')


def _classification_plots(evaluation: dict | None) -> str:
    if evaluation is None:
        return ""
    labels, y, proba = evaluation["labels"], evaluation["y"], evaluation["proba"]
    cm = np.array(evaluation["confusion_matrix"])
    confusion = (f'<section id="confusion"><h2>Confusion matrix</h2><div class="grid">{_img(_confusion_plot(cm, labels, False), "confusion matrix, counts (rows: true label)")}'
                 f'{_img(_confusion_plot(cm, labels, True), "confusion matrix, each row divided by its total")}</div></section>')
    curves = (f'<section id="roc"><h2>ROC and precision-recall curves</h2><div class="grid">{_img(_roc_plot(y, proba, labels), "ROC curves")}'
              f'{_img(_pr_plot(y, proba, labels), "precision-recall curves")}</div></section>')
    classes = evaluation.get("classes")
    reliability = [("as predicted" if "proba_uncalibrated" not in evaluation else "after temperature scaling", proba, classes, BLUE)]
    if "proba_uncalibrated" in evaluation:
        reliability.insert(0, ("before temperature scaling", evaluation["proba_uncalibrated"], classes, ORANGE))
    from .metrics import calibration_errors

    eces = ", ".join(f"{name}: ECE {calibration_errors(y, p, 15, classes)[0]:.4f}" for name, p, _, _ in reliability)
    caption = f"accuracy against confidence (top-label probability), 15 equal-width bins; {eces}"
    calibration = (f'<section id="reliability"><h2>Reliability diagram</h2><div class="grid">'
                   f'{_img(_reliability_plot(y, reliability), caption)}{_bins_table(y, proba, classes)}</div>'
                   f'<p class="note">A well calibrated model\'s points lie on the diagonal: among rows predicted with confidence p, '
                   f'a fraction p is right. ECE weighs each bin\'s gap by its rows; MCE is the largest gap.</p></section>')
    return confusion + curves + calibration


# -- regression and reconstruction ---------------------------------------------------------------
def _real_headline(evaluation: dict | None, missing: str) -> str:
    """Test metric cards of a regression (rmse, mae, r2) or reconstruction (mse, pca_mse) run."""
    if evaluation is None:
        return f'<section id="metrics"><h2>Test metrics</h2><p class="note">No test metrics: {_e(missing)}</p></section>'
    keys = ("rmse", "mae", "r2") if evaluation["task"] == "regression" else ("mse", "pca_mse")
    names = {"pca_mse": f"PCA mse ({evaluation.get('code_units')} components)"}
    cards = "".join(f'<div class="card"><div class="value">{_num(evaluation.get(k))}</div><div class="name">{_e(names.get(k, k))}</div></div>' for k in keys)
    return (f'<section id="metrics"><h2>Test metrics</h2><p class="note">{_e(evaluation["data"])}: {evaluation["n"]} rows, '
            f"checkpoint <code>{_e(Path(evaluation['checkpoint']).name)}</code></p><div class=\"cards\">{cards}</div></section>")


def _real_curves(metrics, summary) -> str:
    best = summary.get("best_epoch")
    loss = _curve_plot(metrics, [("train_loss", "train", BLUE), ("val_loss", "validation", ORANGE)], "loss", best)
    keys = [("val_rmse", "validation RMSE", BLUE), ("val_mae", "validation MAE", ORANGE, "--"), ("val_mse", "validation mse", BLUE)]
    error = _curve_plot(metrics, [k for k in keys if k[0] in metrics[0]], "error (target units)" if "val_rmse" in metrics[0] else "mse", best)
    return (f'<section id="curves"><h2>Learning curves</h2><div class="grid">{_img(loss, "loss per epoch (dashed: best epoch)")}'
            f'{_img(error, "validation error per epoch")}{_img(_lr_plot(metrics), "learning rate per epoch")}</div></section>')


def _regression_plots(evaluation: dict | None) -> str:
    """Predicted against true (one panel per target, with the diagonal) and the residuals."""
    if evaluation is None or "y_true" not in evaluation:
        return ""
    y, p = evaluation["y_true"], evaluation["y_pred"]
    figures = []
    for j, name in enumerate(evaluation["per_target"]):
        fig, ax = _figure(4.6, 4.0)
        ax.scatter(y[:, j], p[:, j], s=10, alpha=0.6, color=BLUE)
        lo, hi = float(min(y[:, j].min(), p[:, j].min())), float(max(y[:, j].max(), p[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color=GREY, ls="--", lw=1)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        figures.append(_img(_png(fig), f"{name}: predicted against true (dashed: perfect prediction)"))
        fig, ax = _figure(4.6, 4.0)
        residual = y[:, j] - p[:, j]
        ax.scatter(p[:, j], residual, s=10, alpha=0.6, color=ORANGE)
        ax.axhline(0, color=GREY, ls="--", lw=1)
        ax.set_xlabel(f"predicted {name}")
        ax.set_ylabel("residual (true - predicted)")
        figures.append(_img(_png(fig), f"{name}: residuals against the prediction"))
    rows = [(f"<b>{_e(n)}</b>", _num(t["rmse"]), _num(t["mae"]), _num(t["r2"])) for n, t in evaluation["per_target"].items()]
    table = _table(["target", "RMSE", "MAE", "R²"], rows, "numbers")
    return f'<section id="regression"><h2>Predictions</h2><div class="grid">{"".join(figures)}</div><h3>Per target</h3>{table}</section>'


def _reconstruction_plots(evaluation: dict | None) -> str:
    """Squared reconstruction error per original input column (one-hot groups summed)."""
    if evaluation is None:
        return ""
    per = evaluation["per_feature"]
    names = list(per)
    fig, ax = _figure(max(5.2, min(14.0, 0.16 * len(names) + 2)), 3.4)
    ax.bar(range(len(names)), [per[n] for n in names], color=BLUE)
    if len(names) <= 30:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("input column (in the order of the schema)")
    ax.set_ylabel("mean squared error")
    worst = sorted(per.items(), key=lambda kv: -kv[1])[:10]
    table = _table(["column", "mse"], [(f"<code>{_e(n)}</code>", _num(v)) for n, v in worst], "numbers")
    return (f'<section id="reconstruction"><h2>Reconstruction error per column</h2><div class="grid">'
            f'{_img(_png(fig), "mean squared error of each input column on the test rows, in the preprocessed space")}'
            f'<div class="side"><h3>Largest errors</h3>{table}</div></div></section>')


def _bins_table(y, proba, classes) -> str:
    """The non-empty confidence bins of the reported probabilities: rows, accuracy, confidence, gap."""
    from .metrics import reliability_bins

    count, accuracy, confidence = reliability_bins(y, proba, 15, classes)
    rows = [(f"({b / 15:.3f}, {(b + 1) / 15:.3f}]", _e(int(count[b])), _num(float(accuracy[b])), _num(float(confidence[b])),
             _num(float(abs(accuracy[b] - confidence[b])))) for b in range(15) if count[b]]
    return f'<div class="side"><h3>Bins (as reported)</h3>{_table(["confidence", "rows", "accuracy", "mean confidence", "gap"], rows, "numbers")}</div>'


def _per_class(evaluation: dict | None) -> str:
    if evaluation is None:
        return ""
    binary = len(evaluation["labels"]) == 2
    rows = [(f"<b>{_e(_label(c['label']))}</b>", _num(c["precision"]), _num(c["recall"]), _num(c["f1"]), _e(c["support"]),
             _num(c.get("roc_auc", evaluation.get("roc_auc") if binary else None)))
            for c in evaluation["per_class"]]
    note = "ROC AUC per class: that class against the rest" if not binary else "ROC AUC of the two-class problem"
    return f'<section id="per-class"><h2>Per class</h2>{_table(["label", "precision", "recall", "F1", "support", "ROC AUC"], rows, "numbers")}<p class="note">{note}</p></section>'


def _epochs(metrics, summary) -> str:
    columns = [c for c in ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1",
                           "val_rmse", "val_mae", "val_r2", "val_mse", "seconds") if c in metrics[0]]
    best = summary.get("best_epoch")

    def cell(c, v):
        if c == "epoch":
            return str(int(v))
        if c == "lr":
            return f"{v:.3g}"
        if c == "seconds":
            return f"{v:.3f}"
        return f"{v:.4f}"

    body = "".join(f'<tr class="{"best" if best and int(m["epoch"]) == best else ""}">' + "".join(f"<td>{cell(c, m[c]) if c in m else '–'}</td>" for c in columns) + "</tr>" for m in metrics)
    head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
    return (f'<section id="epochs"><h2>Epochs</h2><details><summary>{len(metrics)} epochs (best epoch highlighted)</summary>'
            f'<table class="numbers"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details></section>')


STYLE = """
:root{--ink:#1d2330;--muted:#5b6475;--line:#e3e6ec;--accent:#1f77b4;--soft:#f5f7fa}
*{box-sizing:border-box}
body{font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);max-width:1120px;margin:0 auto;padding:28px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 12px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:18px 0 8px;color:var(--muted)}
.sub{color:var(--muted);margin:0 0 8px}.note{color:var(--muted);font-size:13px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;border-radius:3px;word-break:break-all}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13.5px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--soft);font-weight:600}
table.numbers td,table.numbers th{text-align:right}table.numbers td:first-child,table.numbers th:first-child{text-align:left}
table.numbers{font-variant-numeric:tabular-nums}
code.nw{white-space:nowrap;word-break:normal}table.facts td:first-child{width:150px;white-space:nowrap}table.facts thead{display:none}
tr.best td{background:#fff4d6;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:12px}
.card{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .value{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}.card .name{color:var(--muted);font-size:13px}
.pair{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}.pair>div{flex:1 1 420px;min-width:0}.pair h3{margin-top:0}
.grid{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;flex:0 1 calc(50% - 9px);min-width:360px}.side{flex:0 1 calc(50% - 9px);min-width:360px}.side h3{margin-top:0}figure img{width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
details{margin:8px 0}summary{cursor:pointer;color:var(--accent);font-weight:600}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto;font-size:12.5px;max-height:520px}
nav{margin:10px 0 0;font-size:13.5px}nav a{color:var(--accent);margin-right:14px;text-decoration:none}
@media print{details{display:block}}
"""


def _page(run: Path, summary, metrics, model, evaluation, missing) -> str:
    task = model.meta.get("config", {}).get("task", "classification")
    status = summary.get("status", "unfinished")
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("glance", "at a glance"), ("metrics", "metrics"), ("curves", "curves"),
                                                          ("confusion", "confusion"), ("roc", "ROC / PR"), ("reliability", "calibration"),
                                                          ("per-class", "per class"), ("epochs", "epochs")))
    if task == "classification":
        body = (_glance(run, summary, model, metrics) + _headline(evaluation, missing) + _curves(metrics, summary)
                + _classification_plots(evaluation) + _per_class(evaluation) + _epochs(metrics, summary))
    else:
        nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("glance", "at a glance"), ("metrics", "metrics"), ("curves", "curves"),
                                                              ("regression" if task == "regression" else "reconstruction", "errors"), ("epochs", "epochs")))
        plots = _regression_plots(evaluation) if task == "regression" else _reconstruction_plots(evaluation)
        body = (_glance(run, summary, model, metrics) + _real_headline(evaluation, missing) + _real_curves(metrics, summary)
                + plots + _epochs(metrics, summary))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>nnclf run {_e(run.name)}</title><style>{STYLE}</style></head>
<body><h1>nnclf run <code>{_e(run.name)}</code></h1>
<p class="sub">{_e(task)} · {_e(status)} · {_e(summary.get("finished_at", ""))}</p><nav>{nav}</nav>
{body}
<p class="note">Written by nnclf report from the files in {_e(run)}; self-contained (no network needed).</p>
</body></html>
"""
