"""The linear model in a search space: ``model.hidden: []`` (no hidden layer, i.e. multinomial
logistic regression / linear regression with L2 weight decay) as a ``model.hidden`` choice. Every
shipped configs/tune/*.yaml validates with it added (the shipped spaces leave it out: on the
validation side it loses to the hidden-layer networks on all six data sets, benchmarks/RESULTS.md
"Search spaces with the linear model, fourth pass"); a study from a shipped config draws it and
trains a linear trial through the CLI, whose predictions are softmax(x W + b) worked by hand from
its checkpoint; a study whose best trial is linear gives a best.yaml and a final model that
train, evaluate and predict; dropout, searched alongside, does nothing to a network without
hidden units (the same bits)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DATA

pytest.importorskip("optuna")

TUNE_CONFIGS = sorted((DATA.parent / "configs" / "tune").glob("*.yaml"))


def shipped(name: str, tmp_path: Path, **tune) -> Path:
    """configs/tune/NAME.yaml with its data path resolved and ``tune`` keys replaced."""
    cfg = yaml.safe_load((DATA.parent / "configs" / "tune" / f"{name}.yaml").read_text())
    cfg["data"]["train"] = str(DATA / f"{name}.csv")
    cfg["tune"].update(tune)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def table(folder: Path) -> list[dict]:
    with (folder / "trials.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_space_validates_with_the_linear_model_added(path, tmp_path):
    from nnclf.tune.study import load_study_config

    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["train"] = str(DATA / Path(cfg["data"]["train"]).name)
    values = [v for v in cfg["tune"]["space"]["model.hidden"]["values"] if v != []]
    cfg["tune"]["space"]["model.hidden"]["values"] = [[], *values]
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(cfg, sort_keys=False))
    raw, spec, _ = load_study_config(copy, [])
    assert spec.space["model.hidden"].values == ([], *values)
    assert ("model.dropout" in spec.space) == (path.stem != "diabetes")  # dropout searched beside it


def test_a_shipped_study_trains_a_linear_trial_through_the_cli(cli, tmp_path):
    """The shipped iris study (cv 5, refit) cut to a 2-point grid over model.hidden {[], [8]}:
    both trials complete; the linear one's network is 4 -> 3 and `nnclf predict` gives
    softmax(x W + b) from its checkpoint's parameters (scaling off, so x is the raw CSV)."""
    path = shipped("iris", tmp_path, trials=2, sampler="grid", pruner="none",
                   space={"model.hidden": {"type": "choice", "values": [[], [8]]}})
    result = cli(f"tune {path} --study s --set training.epochs=8 --set data.scaling=none -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    rows = table(folder)
    assert sorted(r["model.hidden"] for r in rows) == ["[8]", "[]"] and {r["state"] for r in rows} == {"complete"}
    linear = next(r for r in rows if r["model.hidden"] == "[]")
    assert len(json.loads(linear["fold_values"])) == 5
    run = folder / f"trial-{int(linear['number']):04d}"
    with np.load(run / "checkpoints" / "best.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        params = z["params"].astype(np.float64)
    assert meta["network"]["sizes"] == [4, 3] and params.shape == (4 * 3 + 3,)
    w, b = params[:12].reshape(4, 3), params[12:]
    frame = pd.read_csv(DATA / "iris.csv")
    x = frame.drop(columns=["species"]).to_numpy(np.float64)
    z = x @ w + b
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    r = cli(f"predict {run} {DATA / 'iris.csv'} --checkpoint best --output {tmp_path / 'p.csv'}")
    assert r.exit_code == 0, r.stderr
    out = pd.read_csv(tmp_path / "p.csv")
    got = out[[f"proba_{c}" for c in meta["labels"]]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)  # float32 network, 6-digit CSV
    assert (out["prediction"] == np.array(meta["labels"])[expected.argmax(axis=1)]).mean() > 0.98  # ties at 6 digits aside


def test_a_linear_best_trial_gives_best_yaml_and_a_final_model(cli, tmp_path):
    """Only the linear model in the space (dropout still searched): best.yaml has hidden [] and
    repeats the trial bit for bit; final-NNNN/ holds the refit model, which evaluate and predict
    use."""
    path = shipped("wine", tmp_path, trials=2, sampler="random", pruner="none",
                   space={"model.hidden": {"type": "choice", "values": [[]]},
                          "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3}})
    result = cli(f"tune {path} --study s --set training.epochs=6 -q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["model"]["hidden"] == [] and best["training"]["refit"] is True
    number = int((folder / "best.yaml").read_text().split("best trial ")[1].split()[0])
    final = folder / f"final-{number:04d}"
    with np.load(final / "checkpoints" / "refit.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["network"]["sizes"] == [13, 3]
    with np.load(folder / f"trial-{number:04d}" / "checkpoints" / "best.npz", allow_pickle=False) as a, \
            np.load(final / "checkpoints" / "best.npz", allow_pickle=False) as c:
        assert a["params"].tobytes() == c["params"].tobytes()
    summary = json.loads((final / "summary.json").read_text())
    r = cli(f"evaluate {final} {DATA / 'wine.csv'} --json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["checkpoint"].endswith("refit.npz")
    assert 0.0 < summary["test"]["accuracy"] <= 1.0
    r = cli(f"predict {final} {DATA / 'wine.csv'} --output {tmp_path / 'p.csv'}")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(pd.read_csv(DATA / "wine.csv"))


def test_dropout_does_nothing_without_hidden_layers(cli, tmp_path):
    """The searched dropout is inert for the linear model: the same bits with 0 and 0.3."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"seed: 4\ndata: {{train: {DATA / 'iris.csv'}, target: species}}\nmodel: {{hidden: []}}\n"
                   "training: {epochs: 5, batch_size: 16}\n")
    got = []
    for p in (0.0, 0.3):
        r = cli(f"train {cfg} --set model.dropout={p} --name r{p}")
        assert r.exit_code == 0, r.stderr
        with np.load(tmp_path / "runs" / f"r{p}" / "checkpoints" / "last.npz", allow_pickle=False) as z:
            got.append(z["params"].tobytes())
    assert got[0] == got[1]
