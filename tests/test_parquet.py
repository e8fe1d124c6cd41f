"""Parquet input (the optional pyarrow extra, installed with the test extra)."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from conftest import DATA, write_config

pytest.importorskip("pyarrow")


def test_train_evaluate_predict_on_parquet_match_csv(cli, tmp_path):
    frame = pd.read_csv(DATA / "penguins.csv")
    frame.to_parquet(tmp_path / "penguins.parquet")
    body = "target: species}}\nmodel: {{hidden: [16]}}\ntraining: {{epochs: 20}}\n"
    csv_cfg = write_config(tmp_path, f"data: {{train: {DATA / 'penguins.csv'}, " + body.format(), "csv.yaml")
    pq_cfg = write_config(tmp_path, f"data: {{train: {tmp_path / 'penguins.parquet'}, " + body.format(), "pq.yaml")
    runs = []
    for cfg in (csv_cfg, pq_cfg):
        result = cli(["train", cfg, "--quiet"])
        assert result.exit_code == 0, result.stderr
        runs.append(tmp_path / result.stdout.strip())
    # same rows, same types, same preprocessing: the two runs learn the same model
    schemas = [json.loads((r / "schema.json").read_text()) for r in runs]
    assert schemas[0]["columns"] == schemas[1]["columns"]
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    assert summaries[0]["test"]["accuracy"] == summaries[1]["test"]["accuracy"]
    predictions = [cli(["predict", r, tmp_path / "penguins.parquet"]).stdout for r in runs]
    assert predictions[0] == predictions[1]
    assert len(predictions[0].splitlines()) == 1 + len(frame)


def test_parquet_without_pyarrow_says_how_to_install(cli, tmp_path, monkeypatch):
    pd.read_csv(DATA / "iris.csv").to_parquet(tmp_path / "iris.parquet")
    cfg = write_config(tmp_path, f"data: {{train: {tmp_path / 'iris.parquet'}, target: species}}\n")
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    result = cli(["train", cfg])
    assert result.exit_code == 1
    assert result.stderr == f'error: {tmp_path / "iris.parquet"}: reading Parquet needs pyarrow: pip install ".[parquet]" (from a clone) or pip install "nnclf[parquet]"\n'
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
