"""``nnclf report RUN``: learning curves, lr schedule and confusion matrix as PNGs, and one
self-contained report.html (images embedded as base64). Needs matplotlib (``nnclf[plot]``)."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Callable

from .checkpoint import atomic_write_bytes, atomic_write_text
from .errors import NnclfError

INSTALL_HINT = "nnclf report needs matplotlib: pip install 'nnclf[plot]' (or pip install matplotlib)"


def read_metrics(run: Path) -> list[dict[str, float]]:
    path = run / "metrics.csv"
    if not path.is_file():
        raise NnclfError(f"{run}: no metrics.csv (is it a run folder?)")
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    if not rows:
        raise NnclfError(f"{path}: no finished epochs yet")
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


def make_report(run: str | Path, warn: Callable[[str], None] = lambda m: None) -> dict:
    """Write the PNGs and report.html into RUN; returns their paths and the loss chart text."""
    run = Path(run)
    if not run.is_dir():
        raise NnclfError(f"{run}: no such run folder")
    metrics = read_metrics(run)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnclfError(INSTALL_HINT) from None
    epochs = [m["epoch"] for m in metrics]
    images: dict[str, Path] = {}

    def save(fig, name: str) -> None:
        path = run / name
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(path, lambda f: f.write(buffer.getvalue()))
        images[name] = path

    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(epochs, [m[f"train_{metric}"] for m in metrics], label=f"train {metric}")
        if f"val_{metric}" in metrics[0]:
            ax.plot(epochs, [m[f"val_{metric}"] for m in metrics], label=f"val {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, f"{metric}.png")
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.plot(epochs, [m["lr"] for m in metrics])
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    save(fig, "lr.png")

    report = None
    try:
        from .predict import evaluate

        report = evaluate(run, None, "best", warn)
    except NnclfError as e:
        warn(f"no confusion matrix: {e}")
    if report is not None:
        labels, cm = report["labels"], report["confusion_matrix"]
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), [str(v) for v in labels], rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), [str(v) for v in labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        top = max(max(r) for r in cm) or 1
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
        save(fig, "confusion_matrix.png")

    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    page = _html(run.name, summary, metrics, report, images)
    atomic_write_text(run / "report.html", page)
    chart = {"t": [m["train_loss"] for m in metrics]}
    if "val_loss" in metrics[0]:
        chart["v"] = [m["val_loss"] for m in metrics]
    return {"html": run / "report.html", "images": images, "chart": text_chart(chart)}


def _html(name, summary, metrics, report, images) -> str:
    def img(key):
        if key not in images:
            return ""
        data = base64.b64encode(images[key].read_bytes()).decode("ascii")
        return f'<img alt="{key}" src="data:image/png;base64,{data}">'

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    facts = [("status", summary.get("status", "-")), ("epochs", summary.get("epochs_run", len(metrics))),
             ("best epoch", summary.get("best_epoch", "-")), ("monitor", summary.get("monitor", "-"))]
    if summary.get("test"):
        facts += [("test accuracy", f"{summary['test']['accuracy']:.4f}"), ("test macro F1", f"{summary['test']['macro_f1']:.4f}")]
    per_class = ""
    if report:
        per_class = "<h2>Per class (held-out test, best checkpoint)</h2><table>" + row(
            ["label", "precision", "recall", "f1", "support"], "th"
        ) + "".join(row([c["label"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"]]) for c in report["per_class"]) + "</table>"
    cols = list(metrics[0])
    table = "<table>" + row(cols, "th") + "".join(row([f"{m.get(c, ''):.6g}" if c in m else "" for c in cols]) for m in metrics) + "</table>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nnclf run {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>nnclf run {html.escape(name)}</h1>
<table>{''.join(row(f) for f in facts)}</table>
<h2>Learning curves</h2>{img('loss.png')}{img('accuracy.png')}
<h2>Learning rate</h2>{img('lr.png')}
<h2>Confusion matrix</h2>{img('confusion_matrix.png') or '<p>no held-out test data</p>'}
{per_class}
<h2>Metrics per epoch</h2>{table}
</body></html>
"""
