"""training.refit: after early stopping chose the epoch count, a fresh network trained on training +
validation rows for that many epochs; checked against an independent run on those rows as a CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from conftest import DATA, write_config

CONFIG = f"""
seed: 5
data:
  train: {{train}}
  target: species
  scaling: none
  val_split: {{val_split}}
  test_split: {{test_split}}
model:
  hidden: [8]
optimizer:
  lr: 0.01
training:
  epochs: {{epochs}}
  batch_size: 16
  early_stopping: {{early}}
  refit: {{refit}}
"""


def text(train=DATA / "iris.csv", val_split=0.2, test_split=0.2, epochs=200, early="{patience: 5}", refit="true"):
    return CONFIG.format(train=train, val_split=val_split, test_split=test_split, epochs=epochs, early=early, refit=refit)


def test_refit_trains_on_train_and_val_for_the_best_epoch_count(cli, tmp_path):
    path = write_config(tmp_path, text())
    r = cli(f"train {path} --name r -q")
    assert r.exit_code == 0, r.stderr
    run = tmp_path / "runs" / "r"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.npz", "last.npz", "refit.npz"]
    summary = json.loads((run / "summary.json").read_text())
    best_epoch = summary["best_epoch"]
    assert summary["stopped_early"] and 1 <= best_epoch < summary["epochs_run"]
    assert summary["refit"]["epochs"] == best_epoch
    assert summary["refit"]["rows"] == summary["rows"]["train"] + summary["rows"]["val"]
    assert summary["test"]["checkpoint"] == "refit" and summary["test_before_refit"]["checkpoint"] == "best"

    # the reference: the same rows (training then validation, as refit concatenates them) as a
    # CSV of their own, trained for best_epoch epochs with nothing held out
    frame = pd.read_csv(DATA / "iris.csv")
    with np.load(run / "splits.npz") as splits:
        rows = np.concatenate([splits["train"], splits["val"]])
    frame.iloc[rows].to_csv(tmp_path / "both.csv", index=False)
    ref = write_config(tmp_path, text(tmp_path / "both.csv", 0, 0, best_epoch, "null", "false"), "ref.yaml")
    r = cli(f"train {ref} --name ref -q")
    assert r.exit_code == 0, r.stderr
    refit = np.load(run / "checkpoints" / "refit.npz", allow_pickle=False)["params"]
    reference = np.load(tmp_path / "runs" / "ref" / "checkpoints" / "last.npz", allow_pickle=False)["params"]
    assert refit.tobytes() == reference.tobytes()
    # its metadata names the rows it was trained on (training + validation), as the reference's does
    with np.load(run / "checkpoints" / "refit.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["rows"] == {"train": len(rows)}

    # evaluate and predict use refit.npz unless told otherwise
    auto = json.loads(cli(f"evaluate {run} --json").stdout)
    assert auto["checkpoint"].endswith("refit.npz")
    assert auto["accuracy"] == summary["test"]["accuracy"]
    best = json.loads(cli(f"evaluate {run} --json --checkpoint best").stdout)
    assert best["checkpoint"].endswith("best.npz") and best["accuracy"] == summary["test_before_refit"]["accuracy"]


def test_refit_without_validation_rows_keeps_best_only(cli, tmp_path):
    path = write_config(tmp_path, text(val_split=0, early="null", epochs=5))
    r = cli(f"train {path} --name r -q")
    assert r.exit_code == 0, r.stderr
    assert "warning: training.refit: no validation rows, so nothing to add; the run keeps best.npz only" in r.stderr
    assert not (tmp_path / "runs" / "r" / "checkpoints" / "refit.npz").exists()


def test_refit_is_off_by_default(cli, tmp_path):
    path = write_config(tmp_path, text().replace("  refit: true\n", ""))
    assert cli(f"train {path} --name r -q").exit_code == 0
    assert not (tmp_path / "runs" / "r" / "checkpoints" / "refit.npz").exists()
    assert "refit" not in json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
