"""`nnclf report`: one self-contained HTML page with every section, its numbers equal to
`nnclf evaluate`'s, readable offline."""

from __future__ import annotations

import base64
import json
import re
import sys
from html.parser import HTMLParser

import pytest

from conftest import run_cli

pytest.importorskip("matplotlib")

SECTIONS = ["glance", "metrics", "curves", "confusion", "roc", "reliability", "per-class", "epochs"]


class Page(HTMLParser):
    """Section ids, images, links and the open/close balance of a page."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self, text):
        super().__init__()
        self.ids, self.images, self.external, self.stack, self.unbalanced = [], [], [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            if key in attrs and re.match(r"(https?:)?//", attrs[key] or ""):
                self.external.append(attrs[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)


def _data(folder, n=240, labels=("cat", "dog", "eel")):
    import numpy as np

    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = np.array(["red", "blue"])[rng.integers(0, 2, n)]
    score = x1 + 0.7 * x2 + rng.normal(scale=0.6, size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1]))
    lines = ["x1,x2,colour,label"] + [f"{x1[i]:.4f},{x2[i]:.4f},{colour[i]},{labels[y[i]]}" for i in range(n)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    (folder / "c.yaml").write_text("data:\n  train: d.csv\n  target: label\n  val_split: 0.2\nmodel:\n  hidden: [8]\n"
                                   "optimizer:\n  lr: 0.02\ntraining:\n  epochs: 30\n  batch_size: 32\n")


def _train(folder, *overrides, name="r"):
    args = ["train", "c.yaml", "--name", name, "--quiet"]
    for o in overrides:
        args += ["--set", o]
    r = run_cli(args, folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / name


def _report(folder, run):
    r = run_cli(["report", run], folder)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.endswith(f"wrote {run / 'report.html'}\n") and "t = train" in r.stdout
    text = (run / "report.html").read_text()
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and page.unbalanced == [] and page.stack == []
    assert page.external == [] and "url(" not in text and "@import" not in text  # nothing fetched
    for image in page.images:
        assert base64.b64decode(image["src"].removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    return text, page


def test_classification_report_has_every_section_with_evaluate_numbers(tmp_path):
    _data(tmp_path)
    run = _train(tmp_path, "training.calibration=temperature")
    text, page = _report(tmp_path, run)
    assert [i for i in page.ids if i in SECTIONS] == SECTIONS
    alts = [i["alt"] for i in page.images]
    assert len(alts) == 8  # loss, accuracy, lr, confusion x2, ROC, PR, reliability
    assert any("row divided" in a for a in alts) and any("counts" in a for a in alts)
    reliability = next(a for a in alts if a.startswith("accuracy against confidence"))
    assert "before temperature scaling: ECE" in reliability and "after temperature scaling: ECE" in reliability
    # headline numbers are evaluate's, on the same test rows, formatted to 4 decimals
    ev = json.loads(run_cli(["evaluate", run, "--json"], tmp_path).stdout)
    for name, key in (("accuracy", "accuracy"), ("macro F1", "macro_f1"), ("log loss", "log_loss"), ("ECE", "ece"),
                      ("MCE", "mce"), ("Brier", "brier"), ("ROC AUC (one-vs-rest)", "roc_auc_ovr")):
        assert f'<div class="value">{ev[key]:.4f}</div><div class="name">{name}</div>' in text, name
    for row in ev["per_class"]:
        assert f"<td><b>{row['label']}</b></td><td>{row['precision']:.4f}</td><td>{row['recall']:.4f}</td>" in text
    assert f"temperature {ev['temperature']:.4g} applied" in text
    # at a glance: data file with its rows, every column, the resolved config folded away, time
    summary = json.loads((run / "summary.json").read_text())
    rows = summary["rows"]
    assert f"{rows['train'] + rows['val'] + rows['test']} (train {rows['train']}, val {rows['val']}, test {rows['test']})" in text
    for column in ("x1", "x2", "colour"):
        assert f"<code>{column}</code>" in text
    assert "<details><summary>resolved config</summary><pre>seed: 0" in text
    assert f"{summary['seconds']['train']:.2f} s training" in text
    # the epoch table: folded, one row per epoch, rounded, the best epoch marked
    epochs = text[text.index('<section id="epochs">'):]
    assert epochs.count("<tr class=") == summary["epochs_run"] == 30
    assert re.search(r"<details><summary>30 epochs", epochs)
    assert not re.search(r"\d\.\d{6,}", epochs)  # no unrounded floats
    assert epochs.count('<tr class="best">') == 1
    assert f'<tr class="best"><td>{summary["best_epoch"]}</td>' in epochs


def test_binary_report_uses_the_two_class_auc(tmp_path):
    _data(tmp_path, labels=("no", "yes"))
    run = _train(tmp_path)
    text, page = _report(tmp_path, run)
    ev = json.loads(run_cli(["evaluate", run, "--json"], tmp_path).stdout)
    assert f'<div class="value">{ev["roc_auc"]:.4f}</div><div class="name">ROC AUC</div>' in text
    assert len(page.images) == 8
    assert "ROC AUC of the two-class problem" in text
    assert "before temperature scaling" not in text  # not calibrated


def test_report_without_test_rows_keeps_the_rest(tmp_path):
    _data(tmp_path)
    run = _train(tmp_path, "data.test_split=0")
    r = run_cli(["report", run], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert "warning: report without test metrics:" in r.stderr and "held out no test rows" in r.stderr
    text = (run / "report.html").read_text()
    page = Page(text)
    assert {"glance", "metrics", "curves", "epochs"} <= set(page.ids) and "confusion" not in page.ids
    assert "No test metrics" in text and len(page.images) == 3


def test_report_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    _data(tmp_path)
    run = _train(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = run_cli(["report", run], tmp_path)
    assert (r.exit_code, r.stderr) == (1, 'error: nnclf report needs matplotlib: pip install ".[plot]" (from a clone) or pip install "nnclf[plot]"\n')
    assert not (run / "report.html").exists()


@pytest.mark.parametrize("target", ["d.csv", "runs/r/metrics.csv", "runs/r/checkpoints/best.npz"])
def test_a_report_html_link_to_what_the_report_reads_is_refused(tmp_path, target):
    # RUN/report.html as a symlink is kept and the file it names replaced: that file must not be
    # the training data, a run-folder file or the checkpoint the report was made from
    _data(tmp_path)
    run = _train(tmp_path, "training.epochs=2")
    (run / "report.html").symlink_to(tmp_path / target)
    before = (tmp_path / target).read_bytes()
    r = run_cli(["report", run], tmp_path)
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == (f"error: {run / 'report.html'}: is an input of this command (the same file as {tmp_path / target}); "
                        "refusing to overwrite it (nothing was written)\n")
    assert (tmp_path / target).read_bytes() == before


def test_report_names_a_folder_that_is_not_a_run(tmp_path):
    r = run_cli(["report", tmp_path], tmp_path)
    assert (r.exit_code, r.stderr) == (1, f"error: {tmp_path}: no metrics.csv (is it a run folder?)\n")
