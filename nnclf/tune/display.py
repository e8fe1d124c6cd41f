"""The study on the terminal: a live table of trials with the best so far (rich, on stderr),
or one plain line per finished trial when stderr is not a terminal."""

from __future__ import annotations

import json
import sys

import numpy as np
from typing import Optional

from rich.console import Console
from rich.table import Table

err = Console(stderr=True, highlight=False)
SHOWN_ROWS = 15  # the newest trials in the live table (the best one is always shown)


def _value(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v


def study_table(rows: list[dict], metric: str, direction: str, keys: list[str], title: str, cv: int | None = None) -> Table:
    """With ``cv`` the metric column is the mean of the trial's folds, followed by their
    standard deviation (the spread says how far apart two trials must be to differ)."""
    from .study import best_row

    best = best_row(rows, direction)
    table = Table(title=title, title_justify="left")
    spread = ["± sd"] if cv else []
    for col in ("trial", "state", f"{metric} (mean of {cv} folds)" if cv else metric, *spread, "epochs", *keys, "seconds"):
        table.add_column(col, justify="left" if col in ("state",) else "right")
    shown = rows[-SHOWN_ROWS:]
    if best is not None and best not in shown:
        shown = [best, *shown]
    for r in shown:
        value = r["value"] if r["value"] is not None else r.get("last_value")
        mark = r is best or (best is not None and r["number"] == best["number"])
        cells = [str(r["number"]), r["state"] + (" (best)" if mark else ""), _value(value) + (" (last)" if r["value"] is None and value is not None else ""),
                 *([_value(float(np.std(r["cv"]["values"]))) if r.get("cv") else "-"] if cv else []),
                 _value(r["epochs"]), *(_value(r["params"].get(k)) for k in keys), "-" if r["seconds"] is None else f"{r['seconds']:.2f}"]
        table.add_row(*cells, style="bold green" if mark else None)
    done = sum(r["state"] in ("complete", "pruned") for r in rows)
    if best is not None:
        table.caption = f"{done} done; best so far: trial {best['number']}, {metric} {best['value']:.6g}" + (f" (mean of {cv} folds)" if cv else "")
    return table


class StudyDisplay:
    def __init__(self, setup, quiet: bool = False):
        self.setup, self.quiet = setup, quiet
        self.live = None
        self.printed: set[int] = set()
        self.keys = list(setup.spec.space)

    def __enter__(self):
        return self

    def _start(self, rows) -> None:
        """The live display starts with the first update, so its refresh thread does not exist
        yet when --jobs forks the workers (a fork copies no threads, but their locks)."""
        from rich.live import Live

        self.live = Live(self._table(rows), console=err, refresh_per_second=4, transient=False)
        self.live.start()

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
        return False

    def _table(self, rows):
        s = self.setup
        cv = f", {s.spec.cv}-fold cv" if s.spec.cv else ""
        return study_table(rows, s.spec.metric, s.spec.direction, self.keys, f"study {s.name} ({s.spec.sampler} sampler, {s.spec.pruner} pruner, {s.trials} trials{cv})", s.spec.cv)

    def update(self, rows: list[dict]) -> None:
        if self.quiet:
            return
        if self.live is None and sys.stderr.isatty():
            self._start(rows)
        if self.live is not None:
            self.live.update(self._table(rows))
            return
        from .study import best_row

        best = best_row(rows, self.setup.spec.direction)
        for r in rows:
            if r["number"] in self.printed or r["state"] in ("running", "waiting"):
                continue
            self.printed.add(r["number"])
            value = r["value"] if r["value"] is not None else r.get("last_value")
            params = " ".join(f"{k}={_value(v)}" for k, v in r["params"].items())
            best_text = f" (best {best['value']:.6g}, trial {best['number']})" if best is not None else ""
            secs = f" {r['seconds']:.2f}s" if r["seconds"] is not None else ""
            print(f"trial {r['number']:>4} {r['state']:<11} {self.setup.spec.metric} {_value(value)}{best_text}  {params}{secs}", file=sys.stderr, flush=True)


def render_result(result) -> None:
    s = result.setup
    out = Console(highlight=False, soft_wrap=True)
    done = sum(r["state"] in ("complete", "pruned") for r in result.rows)
    pruned = sum(r["state"] == "pruned" for r in result.rows)
    failed = sum(r["state"] in ("failed", "interrupted") for r in result.rows)
    diverged = sum(r["state"] == "diverged" for r in result.rows)
    out.print(f"study {s.name}: {done} trials done ({pruned} pruned), {diverged} diverged, {failed} failed or interrupted, {result.ran} run by this command")
    if result.ran == 0 and done + diverged >= s.trials:
        out.print(f"the study already holds {s.trials} trials; raise --trials to run more")
    if result.best is None:
        out.print("no trial completed yet")
        return
    b = result.best
    out.print(f"best trial {b['number']}: {s.spec.metric} {b['value']:.6g}" + (f" (mean of {s.spec.cv} folds)" if s.spec.cv else "") + (f", test accuracy {b['test_accuracy']:.4f}" if b.get("test_accuracy") is not None else ""))
    for k, v in b["params"].items():
        out.print(f"  {k}: {_value(v)}")
    out.print(f"run folder: {s.trial_folder(b['number'])}")
    out.print(f"best config: {result.best_yaml}  (nnclf train {result.best_yaml} repeats the trial)")
    if getattr(result, "final", None) is not None:
        out.print(f"final model: {result.final} (the best trial's settings trained on every training-pool row: checkpoints/refit.npz)")
        try:
            headline = json.loads((result.final / "summary.json").read_text()).get("headline") or {}
        except (OSError, ValueError):
            headline = {}
        if headline.get("value") is not None:
            out.print(f"  final model's {headline['metric']}: {headline['value']:.4f}")
