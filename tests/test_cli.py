"""Training end to end through the real CLI: the run folder, names, --quiet, determinism,
gradcheck, and --help for every command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import typer.main
import yaml

from conftest import CONFIGS, DATA, write_config
from nnclf.cli import app

EPOCHS = 4
CONFIG = f"""\
seed: 7
data:
  train: d.csv
  target: label
model:
  hidden: [6]
optimizer:
  name: adam
  lr: 0.05
training:
  epochs: {EPOCHS}
  batch_size: 8
"""


def write_data(folder, n: int = 60) -> None:
    """Three classes split along x1, a noise column and a text column."""
    rng = np.random.default_rng(11)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.digitize(x1, [-0.4, 0.4])
    tone = np.array(["dark", "light"])[rng.integers(0, 2, n)]
    lines = ["x1,x2,tone,label"] + [f"{x1[i]:.5f},{x2[i]:.5f},{tone[i]},{y[i]}" for i in range(n)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def setup(tmp_path):
    write_data(tmp_path)
    write_config(tmp_path, CONFIG, "c.yaml")
    return tmp_path


def load_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -- help -------------------------------------------------------------------------------------
def test_every_command_has_help(cli):
    commands = typer.main.get_command(app).commands
    assert {"train", "evaluate", "predict", "gradcheck", "config"} <= set(commands)
    for name in commands:
        r = cli([name, "--help"])
        assert r.exit_code == 0, name
        assert "Usage:" in r.stdout and name in r.stdout
    r = cli("--help")
    assert r.exit_code == 0
    for name in commands:
        assert name in r.stdout


# -- a run, end to end ------------------------------------------------------------------------
def test_train_writes_a_complete_run_folder(cli, setup):
    r = cli("train c.yaml --name r")
    assert r.exit_code == 0, r.stderr
    run = setup / "runs" / "r"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.yaml", "metrics.csv", "schema.json", "splits.npz", "summary.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.npz", "last.npz"]

    # config.yaml: the resolved config, loadable, with the file's values
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed"] == 7 and saved["model"]["hidden"] == [6] and saved["optimizer"]["lr"] == 0.05
    assert saved["data"]["train"] == str((setup / "d.csv").resolve())

    # metrics.csv: the documented header, one row per epoch
    rows = list(csv.reader(io.StringIO((run / "metrics.csv").read_text())))
    assert rows[0] == ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "evaluations", "products", "seconds"]
    assert [int(row[0]) for row in rows[1:]] == list(range(1, EPOCHS + 1))
    for row in rows[1:]:
        assert row[7:9] == ["", ""]  # evaluations / products: full-batch methods only
        values = [float(v) for v in row[:7] + row[9:]]
        assert values[1] == 0.05  # constant schedule
        assert 0 <= values[3] <= 1 and 0 <= values[5] <= 1 and 0 <= values[6] <= 1

    # checkpoints: plain arrays + JSON, never pickle
    for which in ("best", "last"):
        arrays = load_npz(run / "checkpoints" / f"{which}.npz")
        meta = json.loads(str(arrays["meta"]))
        assert meta["format"] == "nnclf-checkpoint"
        sizes = meta["network"]["sizes"]
        assert sizes[1:] == [6, 3]
        assert arrays["params"].shape == (sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:])),)
        assert np.all(np.isfinite(arrays["params"]))
        assert meta["labels"] == [0, 1, 2]
    assert json.loads(str(load_npz(run / "checkpoints" / "last.npz")["meta"]))["trainer"]["epoch"] == EPOCHS

    # splits.npz: disjoint row numbers covering every data row
    splits = load_npz(run / "splits.npz")
    assert set(splits) == {"train", "val", "test"}
    everything = np.concatenate(list(splits.values()))
    assert sorted(everything.tolist()) == list(range(60))

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["epochs_run"] == EPOCHS
    assert summary["rows"] == {k: len(v) for k, v in splits.items()}
    assert summary["classes"] == [0, 1, 2]

    schema = json.loads((run / "schema.json").read_text())
    assert schema["features"] == ["x1", "x2", "tone"]
    assert [c["kind"] for c in schema["columns"]] == ["numeric", "numeric", "categorical"]


def test_training_learns_the_synthetic_problem(cli, setup):
    r = cli(["train", "c.yaml", "--name", "r", "--set", "training.epochs=60", "--quiet"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads((setup / "runs" / "r" / "summary.json").read_text())
    # classes are thresholds on x1: far above the 1/3 of guessing
    assert summary["final"]["train_accuracy"] > 0.8


def test_quiet_prints_only_the_run_path(cli, setup):
    r = cli("train c.yaml --name r --quiet")
    assert r.exit_code == 0
    assert r.stdout == "runs/r\n"
    assert r.stderr == ""


def test_default_name_is_config_stem_and_time(cli, setup):
    r = cli("train c.yaml --quiet")
    assert r.exit_code == 0, r.stderr
    folder = r.stdout.strip()
    assert folder.startswith("runs/c-")
    assert (setup / folder / "summary.json").is_file()


def test_existing_name_is_an_error_and_nothing_is_overwritten(cli, setup):
    assert cli("train c.yaml --name r --quiet").exit_code == 0
    run = setup / "runs" / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    r = cli(["train", "c.yaml", "--name", "r", "--set", "seed=99"])
    assert r.exit_code == 1
    assert r.stderr == "error: runs/r: run folder already exists; choose another --name (nothing was overwritten)\n"
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("name", ["../x", "a/b", "/tmp/absolute-run", "..", ".hidden", ""])
def test_bad_run_names_are_rejected(cli, setup, name):
    r = cli(["train", "c.yaml", "--name", name])
    assert r.exit_code == 1
    assert r.stderr == (
        f"error: --name {name!r}: a run name may use letters, digits, '.', '_' and '-' "
        f"(at most 128, starting with a letter or digit, no '..')\n"
    )
    assert not (setup / "runs").exists()
    assert not (setup.parent / "x").exists()


def test_train_needs_config_or_resume(cli, setup):
    r = cli("train")
    assert (r.exit_code, r.stderr) == (1, "error: give either CONFIG or --resume RUN (not both)\n")


# -- determinism ------------------------------------------------------------------------------
def test_same_config_and_seed_give_identical_checkpoints_and_predictions(cli, setup):
    for name in ("a", "b"):
        assert cli(f"train c.yaml --name {name} --quiet").exit_code == 0
    for which in ("best", "last"):
        a = load_npz(setup / "runs" / "a" / "checkpoints" / f"{which}.npz")
        b = load_npz(setup / "runs" / "b" / "checkpoints" / f"{which}.npz")
        assert set(a) == set(b)
        for key in a:
            if key != "meta":
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
                assert a[key].dtype == b[key].dtype
    np.testing.assert_array_equal(load_npz(setup / "runs" / "a" / "splits.npz")["test"],
                                  load_npz(setup / "runs" / "b" / "splits.npz")["test"])
    pa, pb = cli("predict runs/a d.csv"), cli("predict runs/b d.csv")
    assert pa.exit_code == pb.exit_code == 0
    assert pa.stdout == pb.stdout and pa.stdout.count("\n") == 61


def test_a_different_seed_gives_different_weights(cli, setup):
    """The determinism test above would pass trivially if the seed were ignored."""
    assert cli("train c.yaml --name a --quiet").exit_code == 0
    assert cli(["train", "c.yaml", "--name", "b", "--quiet", "--set", "seed=8"]).exit_code == 0
    a = load_npz(setup / "runs" / "a" / "checkpoints" / "last.npz")["params"]
    b = load_npz(setup / "runs" / "b" / "checkpoints" / "last.npz")["params"]
    assert not np.array_equal(a, b)


# -- gradcheck --------------------------------------------------------------------------------
def test_gradcheck_passes_on_a_shipped_config(cli):
    config = CONFIGS / "iris.yaml"
    hidden = yaml.safe_load(config.read_text())["model"]["hidden"]
    r = cli(["gradcheck", config])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    for layer in range(1, len(hidden) + 2):
        for tensor in (f"W{layer}", f"b{layer}"):
            row = next((line for line in lines if f" {tensor} " in line), None)
            assert row is not None, tensor
            assert "ok" in row
            # a relative error in scientific notation, far below the 1e-6 tolerance
            errors = [float(tok) for tok in row.replace("│", " ").split() if "e-" in tok]
            assert errors and max(errors) < 1e-6


def test_gradcheck_reports_failure_above_tolerance(cli):
    r = cli(["gradcheck", CONFIGS / "iris.yaml", "--tolerance", "0"])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: gradient check failed: worst relative error ")
    assert r.stderr.endswith(" > tolerance 0\n")


def test_predict_into_a_closed_pipe_exits_quietly(cli, tmp_path):
    import subprocess
    import sys

    from conftest import DATA

    cfg = write_config(tmp_path, f"data: {{train: {DATA / 'iris.csv'}, target: species}}\ntraining: {{epochs: 1}}\n")
    run = tmp_path / cli(["train", cfg, "--quiet"]).stdout.strip()
    rows = (DATA / "iris.csv").read_text().splitlines()
    (tmp_path / "many.csv").write_text("\n".join([rows[0]] + rows[1:] * 2000) + "\n")  # 300,000 rows
    proc = subprocess.Popen([sys.executable, "-m", "nnclf", "predict", run, tmp_path / "many.csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"prediction,")
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert stderr == b""


def test_progress_says_loading_names_the_folder_and_log_every_thins_epoch_lines(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(f"data: {{train: {DATA / 'iris.csv'}, target: species}}\ntraining: {{epochs: 30}}\n")
    r = cli("train c.yaml --name p --log-every 10")
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"training into {Path('runs') / 'p'} (30 epochs)"
    epochs = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")]
    assert epochs == [1, 10, 20, 30]
    r = cli("train c.yaml --name q")  # default: about 50 lines, so all 30 here
    assert [line for line in r.stderr.splitlines() if line.startswith("epoch ")][-1].startswith("epoch   30/30")
    assert len([line for line in r.stderr.splitlines() if line.startswith("epoch ")]) == 30
