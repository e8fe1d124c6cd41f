"""``nnclf report DIR/STUDY``: the study's report.html, one self-contained page in the study folder:

- history: the metric of every trial by trial number (pruned trials at their last
  reported value), with the best so far as a step line;
- importances: Optuna's fANOVA parameter importances over the complete trials (the
  share of the metric's variance each parameter explains, summing to 1);
- one plot per parameter: the metric against each parameter (log axis for loguniform ranges).

Reads study.json and trials.csv only, so the report works on any machine that has the study
folder, without the storage. Needs matplotlib (``nnclf[plot]``); the importances need Optuna.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from pathlib import Path
from typing import Callable

from ..files import write_text as atomic_write_text
from ..errors import NnclfError

PLOT_HINT = 'nnclf report needs matplotlib: pip install ".[plot]" in a clone, or pip install "nnclf[plot]"'


def is_study_folder(path: Path) -> bool:
    return (path / "study.json").is_file()


def read_study(folder: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((folder / "study.json").read_text())
    path = folder / "trials.csv"
    if not path.is_file():
        raise NnclfError(f"{folder}: no trials.csv yet (no trial has finished)")
    with path.open(newline="") as f:
        raw = list(csv.DictReader(f))
    metric, keys = meta["metric"], list(meta["space"])
    rows = []
    for r in raw:
        rows.append({
            "number": int(r["number"]), "state": r["state"],
            "value": float(r[metric]) if r.get(metric) else None,
            "params": {k: json.loads(r[k]) for k in keys if r.get(k)},
            "test_accuracy": float(r["test_accuracy"]) if r.get("test_accuracy") else None,
            "epochs": r.get("epochs"), "seconds": r.get("seconds"),
        })
    return meta, rows


def importances(meta: dict, rows: list[dict]) -> dict[str, float] | None:
    """fANOVA importances (Optuna's default evaluator) over the complete trials, or None when
    there are fewer than 2 or Optuna is missing."""
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None and len(r["params"]) == len(meta["space"])]
    if len(complete) < 2:
        return None
    try:
        import optuna
    except ImportError:
        return None
    from .study import encode_choices, encoded

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = {}
    for key, p in meta["space"].items():
        if p["type"] == "choice":
            dists[key] = optuna.distributions.CategoricalDistribution(encode_choices(p["values"]))
        elif p["type"] == "int":
            dists[key] = optuna.distributions.IntDistribution(p["low"], p["high"], step=p.get("step") or 1)
        else:
            dists[key] = optuna.distributions.FloatDistribution(p["low"], p["high"], log=p["type"] == "loguniform")
    study = optuna.create_study(direction=meta["direction"])
    # a choice with a list or mapping among its values was given to Optuna as JSON texts, every
    # value of it (a string such as 'balanced' too): the same texts here
    as_json = {key for key, p in meta["space"].items() if p["type"] == "choice" and encoded(p["values"])}
    for r in complete:
        params = {key: json.dumps(value) if key in as_json else value for key, value in r["params"].items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=r["value"]))
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except (RuntimeError, ValueError):  # every value equal, or one parameter never varied
        return None


def make_study_report(folder: str | Path, warn: Callable[[str], None] = lambda m: None) -> dict:
    folder = Path(folder)
    meta, rows = read_study(folder)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnclfError(PLOT_HINT) from None
    metric, maximize = meta["metric"], meta["direction"] == "maximize"
    images: dict[str, bytes] = {}  # embedded in the page, as the run report does

    def save(fig, name: str) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        images[name] = buffer.getvalue()

    scored = [r for r in rows if r["value"] is not None and r["state"] in ("complete", "pruned")]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
        pts = [r for r in scored if r["state"] == state]
        ax.scatter([r["number"] for r in pts], [r["value"] for r in pts], marker=marker, color=color, label=state, s=22)
    best, xs, ys = None, [], []
    for r in sorted((r for r in scored if r["state"] == "complete"), key=lambda r: r["number"]):
        if best is None or (r["value"] > best if maximize else r["value"] < best):
            best = r["value"]
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    # with tune.cv a complete trial's value is its folds' mean, a pruned one's fold 0's last epoch
    ax.set_ylabel(f"{metric} (complete: mean of {meta['cv']} folds; pruned: fold 0)" if meta.get("cv") else metric)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "history.png")

    imp = importances(meta, rows)
    if imp:
        keys = sorted(imp, key=imp.get)
        fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(keys)))
        ax.barh(keys, [imp[k] for k in keys], color="tab:blue")
        ax.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
        save(fig, "importances.png")
    else:
        warn(f"{folder}: no parameter importances (they need 2 complete trials with different values, and Optuna)")

    complete = [r for r in scored if r["state"] == "complete"]
    for key, p in meta["space"].items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        pts = [r for r in complete if key in r["params"]]
        if p["type"] == "choice":
            labels = [json.dumps(v) for v in p["values"]]
            ax.scatter([labels.index(json.dumps(r["params"][key])) for r in pts], [r["value"] for r in pts], s=22)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        else:
            ax.scatter([r["params"][key] for r in pts], [r["value"] for r in pts], s=22)
            if p["type"] == "loguniform":
                ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        save(fig, f"param_{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.png")

    # a symlink report.html is kept and the file it names replaced: never a file of the study,
    # its trials' run folders, or the data and config the study was made from
    inputs = [p for p in folder.rglob("*") if p.name != "report.html" or p.parent != folder]
    inputs += [Path(meta["config"])] if isinstance(meta.get("config"), str) else []
    inputs += _data_files(folder / "study.yaml")
    atomic_write_text(folder / "report.html", _html(meta, rows, imp, images), inputs=inputs)
    return {"html": folder / "report.html", "images": images, "importances": imp}


def _data_files(study_yaml: Path) -> list[Path]:
    """The data files study.yaml names (absolute paths: the study writes them resolved)."""
    import yaml

    try:
        data = (yaml.safe_load(study_yaml.read_text()) or {}).get("data") or {}
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return []
    return [Path(data[role]) for role in ("train", "val", "test") if isinstance(data.get(role), str)]


def _html(meta, rows, imp, images) -> str:
    def img(name):
        data = base64.b64encode(images[name]).decode("ascii")
        return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    metric, keys = meta["metric"], list(meta["space"])
    maximize = meta["direction"] == "maximize"
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    complete.sort(key=lambda r: (-r["value"] if maximize else r["value"], r["number"]))
    counts = {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})}
    facts = [("study", meta["name"]), ("metric", f"{metric} ({meta['direction']})"), ("sampler", meta["sampler"]),
             ("pruner", meta["pruner"]), ("trials", ", ".join(f"{n} {s}" for s, n in counts.items()))]
    if complete:
        facts.append(("best", f"trial {complete[0]['number']}: {complete[0]['value']:.6g}"))
    table = "<table>" + row(["trial", metric, "test accuracy", *keys], "th") + "".join(
        row([r["number"], f"{r['value']:.6g}", "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}",
             *(json.dumps(r["params"].get(k)) for k in keys)]) for r in complete[:30]) + "</table>"
    imp_html = img("importances.png") + "<table>" + "".join(row([k, f"{v:.3f}"]) for k, v in imp.items()) + "</table>" if imp else "<p>not available (fewer than two complete trials that differ)</p>"
    params = "".join(img(n) for n in images if n.startswith("param_"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nnclf study {html.escape(meta['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>nnclf study {html.escape(meta['name'])}</h1>
<table>{''.join(row(f) for f in facts)}</table>
<h2>Optimisation history</h2>{img('history.png')}
<h2>Parameter importances</h2>{imp_html}
<h2>{html.escape(metric)} against each parameter (complete trials)</h2>{params}
<h2>Complete trials, best first</h2>{table}
</body></html>
"""
