"""Terminal rendering with rich: the live training display and result tables.

Progress goes to stderr (a live bar on a terminal, one plain line per epoch otherwise);
results go to stdout.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class TrainingDisplay:
    """A trainer callback. On a terminal: a "loading data" spinner until training starts, then one bar
    per epoch with the running mean loss, elapsed time and ETA, which disappears when training
    ends or is interrupted (nothing stale is left). Epoch lines go above it, or alone when
    stderr is not a terminal, every ``log_every`` epochs (0: about 50 lines per run) plus the
    first and the last; a * marks an epoch that improved on the best."""

    def __init__(self, quiet: bool = False, log_every: int = 0):
        self.quiet, self.log_every = quiet, int(log_every)
        self.live = not quiet and err.is_terminal
        self.progress = None
        self._last_refresh = 0.0
        self._started: float | None = None  # time.monotonic() of the first step of this process
        self._first_epoch = 0

    def __enter__(self):
        if self.quiet:
            return self
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("loading data", total=None, info="")
        # not on a terminal: no "loading" line, so that a bad input's error stays the one line printed
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()  # transient: the bar goes, the epoch lines above it stay
            self.progress = None
        return False

    def _print(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_train_start(self, trainer, folder) -> None:
        if self.quiet:
            return
        self._first_epoch = trainer.epoch
        self._print(f"training into {folder} ({trainer.epochs} epochs)")

    def on_batch_end(self, trainer, epoch: int, batch: int, n_batches: int, loss: float) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if self.progress is None or (now - self._last_refresh < 0.1 and batch + 1 < n_batches):
            return
        self._last_refresh = now
        self.progress.update(
            self.task,
            description=f"epoch {epoch + 1}/{trainer.epochs}",
            total=n_batches,
            completed=batch + 1,
            info=self._info(trainer, epoch + (batch + 1) / n_batches, now),
        )

    def _info(self, trainer, position: float, now: float) -> str:
        """lr, the epoch's running mean loss (and accuracy), the last validation, elapsed and ETA."""
        parts = [f"lr {trainer.lr:.3g}"]
        if trainer.seen:
            parts.append(f"loss {trainer.loss_sum / trainer.seen:.4f}")
            if trainer.loss.classifies:
                parts.append(f"acc {trainer.correct / trainer.seen:.3f}")
        if trainer.history and "val_loss" in trainer.history[-1]:
            parts.append(_val_text(trainer.history[-1], 3))
        elapsed = now - (self._started or now)
        done = position - self._first_epoch
        parts.append(f"{_duration(elapsed)} elapsed")
        if done > 0:
            parts.append(f"ETA {_duration(elapsed / done * (trainer.epochs - position))}")
        return "  ".join(parts)

    def on_epoch_end(self, trainer, record: dict, improved: bool) -> None:
        if self.quiet:
            return
        every = self.log_every or max(1, trainer.epochs // 50)
        epoch = record["epoch"]
        if not (epoch % every == 0 or epoch == trainer.epochs or trainer.stopped_early or epoch == 1):
            return
        parts = [f"epoch {epoch:>4}/{trainer.epochs}", f"lr {record['lr']:.3g}"]
        parts.append(f"loss {record['train_loss']:.4f}" + (f" acc {record['train_accuracy']:.4f}" if "train_accuracy" in record else ""))
        if "val_loss" in record:
            parts.append(_val_text(record, 4))
        parts.append(f"{record['seconds']:.2f}s" + (" *" if improved else ""))
        self._print("  ".join(parts))


def _duration(seconds: float) -> str:
    """3.2s, 4m05s, 1h02m."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _val_text(record: dict, digits: int) -> str:
    """'val_loss 0.1234 val_acc 0.950' (classification) or every val_ metric of the task."""
    if "val_accuracy" in record:
        return f"val_loss {record['val_loss']:.4f} val_acc {record['val_accuracy']:.{digits}f}"
    return " ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith("val_"))


def render_summary(result) -> None:
    s = result.summary
    table = Table(title=f"run {result.folder}", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("status", s["status"] + (" (early stop)" if s["stopped_early"] else ""))
    table.add_row("epochs", str(s["epochs_run"]))
    table.add_row("columns", describe_columns(s.get("columns", [])))
    table.add_row("rows train/val/test", f"{s['rows']['train']}/{s['rows']['val']}/{s['rows']['test']}")
    table.add_row(f"best epoch (by {s['monitor']})", f"{s['best_epoch']}  ({_fmt(s['best_value'])})")
    task = s.get("task", "classification")
    if task != "classification":
        table.add_row("task", task + (f" ({', '.join(s['targets'])})" if s.get("targets") else ""))
    if s["final"] and task != "classification":
        final = s["final"]
        table.add_row("final train loss", _fmt(final["train_loss"]))
        for key in ("val_loss", "val_rmse", "val_mae", "val_r2", "val_mse"):
            if key in final:
                table.add_row(f"final {key.replace('_', ' ')}", _fmt(final[key]))
    elif s["final"]:
        final = s["final"]
        table.add_row("final train loss / acc", f"{_fmt(final['train_loss'])} / {_fmt(final['train_accuracy'])}")
        if "val_loss" in final:
            table.add_row("final val loss / acc", f"{_fmt(final['val_loss'])} / {_fmt(final['val_accuracy'])}")
    if "test" in s and task != "classification":
        t = s["test"]
        for key in ("rmse", "mae", "r2", "mse", "pca_mse"):
            if key in t:
                table.add_row(f"test {key} ({t['checkpoint']})", _fmt(t[key]))
    elif "test" in s:
        t = s["test"]
        table.add_row(f"test accuracy ({t['checkpoint']})", _fmt(t["accuracy"]))
        table.add_row("test macro F1", _fmt(t["macro_f1"]))
        table.add_row("test log loss", _fmt(t["log_loss"]))
        if "ece" in t:
            table.add_row("test ECE (15 bins)", _fmt(t["ece"]))
    if s.get("temperature") is not None:
        table.add_row("temperature (calibration)", f"{s['temperature']:.4g}")
    table.add_row("train time", f"{s['seconds']['train']:.2f}s")
    out.print(table)


SUMMARY_NAMES = 4  # column names shown per line of the training summary; schema.json has them all


def describe_columns(columns: list[dict]) -> str:
    """At most three lines whatever the width of the file: '4 numeric, 2 categorical', then the
    categorical columns and the columns with missing values imputed, a few named and counted
    (the full list with every decision is in RUN/schema.json)."""
    if not columns:
        return "-"
    kinds: dict[str, int] = {}
    for c in columns:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    lines = [", ".join(f"{n} {kind}" for kind, n in kinds.items())]

    def named(label: str, names: list[str]) -> None:
        if names:
            shown = ", ".join(names[:SUMMARY_NAMES]) + (f" and {len(names) - SUMMARY_NAMES} more" if len(names) > SUMMARY_NAMES else "")
            lines.append(f"{label}: {shown}")

    named("categorical", [c["name"] for c in columns if c["kind"] == "categorical"])
    named("missing values imputed", [c["name"] for c in columns if c["kind"] != "categorical" and c["reason"] != "numbers"])
    if len(lines) > 1:
        lines.append("(every column's treatment: RUN/schema.json)")
    return "\n".join(lines)


def render_real_report(report: dict) -> None:
    """evaluate for regression (means, per target, residual quantiles) and reconstruction."""
    out.print(f"[bold]{report['data']}[/]  ({report['n']} rows, {report['task']}, checkpoint {report['checkpoint']})")
    head = Table(show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    for key in ("rmse", "mae", "r2", "mse", "pca_mse"):
        if key in report:
            label = f"pca_mse ({report['code_units']} components)" if key == "pca_mse" else key
            head.add_row(label, _fmt(report[key]))
    out.print(head)
    if "per_target" in report:
        per = Table(title="per target", title_justify="left")
        for col in ("target", "rmse", "mae", "r2"):
            per.add_column(col, justify="right")
        for name, row in report["per_target"].items():
            per.add_row(name, _fmt(row["rmse"]), _fmt(row["mae"]), _fmt(row["r2"]))
        out.print(per)
        q = report["residual_quantiles"]
        res = Table(title="residuals (true - predicted), quantiles", title_justify="left")
        for key in q:
            res.add_column(key.replace("q", "") + "%", justify="right")
        res.add_row(*(_fmt(v) for v in q.values()))
        out.print(res)
    if "per_feature" in report:
        per = Table(title="squared error per input column (largest first)", title_justify="left")
        per.add_column("column")
        per.add_column("mse", justify="right")
        for name, value in sorted(report["per_feature"].items(), key=lambda kv: -kv[1])[:20]:
            per.add_row(name, _fmt(value))
        out.print(per)


def render_report(report: dict) -> None:
    if report.get("task", "classification") != "classification":
        return render_real_report(report)
    out.print(f"[bold]{report['data']}[/]  ({report['n']} rows, checkpoint {report['checkpoint']})")
    head = Table(show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    names = {"roc_auc_ovr": "roc_auc (one-vs-rest, macro)", "ece": "ece (15 bins, top label)", "mce": "mce (15 bins)"}
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss", "roc_auc", "roc_auc_ovr", "ece", "mce", "brier"):
        if key in report:
            head.add_row(names.get(key, key), _fmt(report[key]))
    if report.get("temperature") is not None:
        head.add_row("temperature", f"{report['temperature']:.4g} (calibrated)")
    out.print(head)
    per = Table(title="per class", title_justify="left")
    for col in ("label", "precision", "recall", "f1", "support"):
        per.add_column(col, justify="right")
    for row in report["per_class"]:
        per.add_row(str(row["label"]), _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"]))
    out.print(per)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("")
    for label in report["labels"]:
        cm.add_column(str(label), justify="right")
    for label, row in zip(report["labels"], report["confusion_matrix"]):
        cm.add_row(str(label), *(str(v) for v in row))
    out.print(cm)


def render_gradcheck(checks, tolerance: float, note: str) -> None:
    table = Table(title="gradient check: backprop vs central differences (float64)", title_justify="left")
    for col in ("tensor", "size", "max abs error", "relative error", ""):
        table.add_column(col, justify="right")
    for c in checks:
        ok = c.relative_error <= tolerance
        table.add_row(c.name, str(c.size), f"{c.max_abs_error:.3g}", f"{c.relative_error:.3g}", "ok" if ok else "[red]FAIL[/]")
    out.print(table)
    if note:
        out.print(f"note: {note}")


def render_landscape(fn, lr: float, steps: int, tol: float, traces) -> None:
    table = Table(title=f"{fn.formula} from {fn.start}: steps to f - f* <= {tol:g} (first-order lr {lr:g})", title_justify="left")
    for col in ("optimizer", "steps", "evaluations", "final x"):
        table.add_column(col, justify="left" if col == "optimizer" else "right")
    for t in traces:
        if t.diverged_at:
            result = f"[red]diverged[/] (step {t.diverged_at})"
        elif t.converged_at:
            result = str(t.converged_at)
        else:
            result = f"not in {len(t.path) - 1}" if len(t.path) - 1 < steps else f"> {steps}"
        table.add_row(t.optimizer, result, str(t.evaluations), f"({t.final[0]:.4g}, {t.final[1]:.4g})")
    if any(t.optimizer == "cg" for t in traces):
        # why cg may show more than 2 steps on the 2-D quadratic: its theory assumes exact line searches
        from .engine.optimizers import OPTIMIZERS

        c2 = OPTIMIZERS.get("cg").hyper["c2"]
        table.caption = (f"lbfgs, cg, newton_cg: outer iterations, each with an inexact strong-Wolfe line search (cg: c2 {c2:g}); "
                         "CG's 'at most n steps on an n-dimensional quadratic' holds for exact line searches")
        table.caption_justify = "left"
    out.print(table)


def render_runs(rows: list[dict], runs_dir) -> None:
    if not rows:
        out.print(f"no runs in {runs_dir}")
        return
    table = Table(title=f"runs in {runs_dir} (newest start first)", title_justify="left")
    for col in ("run", "config", "task", "started", "epochs", "best", "test", "status"):
        table.add_column(col, justify="right" if col in ("epochs", "best", "test") else "left")
    # the run name is what a user copies: never cut or wrapped (the other columns give way)
    table.columns[0].no_wrap, table.columns[0].min_width = True, max(len(str(r["run"])) for r in rows)
    for r in rows:
        best = "-" if r["best"] is None else f"{r['best']:.4f}" + (f" ({r['monitor']})" if r.get("monitor") else "")
        headline = r.get("headline") or {}
        test = "-" if headline.get("value") is None else f"{_fmt(headline['value'])} ({headline['metric'].removeprefix('test_')})"
        table.add_row(
            r["run"], r["config"] or "-", r.get("task") or "-", (r.get("started") or "-")[:19].replace("T", " "), _fmt(r["epochs"]), best,
            test, r["status"],
        )
    # wider than the terminal if need be (the terminal wraps the line; the name stays whole)
    need = max(len(str(r["run"])) for r in rows) + 70
    (out if need <= out.width else Console(highlight=False, width=need)).print(table)
