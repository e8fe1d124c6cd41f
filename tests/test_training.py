"""Training features through the real CLI and the trainer: schedules, early stopping,
resume, SIGINT, kill -9, divergence, class weights and runs listing (the report: test_report.py)."""

from __future__ import annotations

import csv
import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DATA, merged, write_config
from nnclf.checkpoint import load_checkpoint
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.schedules import SCHEDULES
from nnclf.model import TrainedModel
from nnclf.trainer import EarlyStopper, Trainer

IRIS = f"""
seed: 0
data: {{train: {DATA / 'iris.csv'}, target: species}}
model: {{hidden: [8]}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 10, batch_size: 16}}
"""


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def train_quiet(cli, config: Path, *args) -> Path:
    result = cli(["train", config, "--quiet", *args])
    assert result.exit_code == 0, result.stderr
    return config.parent / result.stdout.strip()  # printed relative to the cwd, tmp_path


# -- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule, formula",
    [
        ("{name: step, step_size: 3, gamma: 0.5}", lambda e: 0.01 * 0.5 ** (e // 3)),
        ("{name: exponential, gamma: 0.8}", lambda e: 0.01 * 0.8**e),
        ("{name: cosine, min_lr: 0.001}", lambda e: 0.001 + 0.009 * (1 + math.cos(math.pi * e / 9)) / 2),
        (
            "{name: step, step_size: 2, gamma: 0.1, warmup_epochs: 3}",
            lambda e: 0.01 * (e + 1) / 4 if e < 3 else 0.01 * 0.1 ** ((e - 3) // 2),
        ),
    ],
)
def test_lr_of_every_epoch_in_metrics_follows_the_formula(cli, tmp_path, schedule, formula):
    cfg = write_config(tmp_path, IRIS + f"schedule: {schedule}\n")
    run = train_quiet(cli, cfg)
    lrs = [float(r["lr"]) for r in metrics_rows(run)]
    assert len(lrs) == 10
    assert lrs == pytest.approx([formula(e) for e in range(10)], rel=1e-12)


def test_reduce_on_plateau_lowers_lr_after_patience_epochs_without_improvement():
    sched = SCHEDULES.get("reduce_on_plateau")(1.0, 20, monitor="val_loss", factor=0.5, patience=2)
    seen = []
    for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5, 0.6, 0.7]:
        seen.append(sched.lr(len(seen)))
        sched.observe({"val_loss": loss})
    # improvement at epochs 1,2,7; bad epochs 3,4 -> halve; bad 5,6 -> halve; then 0.5 improves
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]


# -- early stopping ----------------------------------------------------------------------------
class ScriptedTrainer(Trainer):
    """A trainer whose validation metrics come from a fixed script, to test the stopping rule."""

    def __init__(self, script, **kwargs):
        super().__init__(**kwargs)
        self.script = list(script)

    def evaluate(self, x, y, chunk=8192):
        value = self.script[len(self.history)]
        return {"loss": value, "accuracy": 1 - value, "f1": 1 - value}


def _tiny_trainer(script, stopper, epochs=50):
    net = MLP([2, 2], "relu")
    net.initialize("auto", np.random.default_rng(0))
    return ScriptedTrainer(
        script,
        net=net,
        loss=LOSSES.get("nll")(2),
        optimizer=OPTIMIZERS.get("sgd")(net.params.size),
        schedule=SCHEDULES.get("constant")(0.01, epochs),
        epochs=epochs,
        batch_size=4,
        rng=np.random.default_rng(0),
        early_stopping=stopper,
    )


@pytest.mark.parametrize(
    "monitor, script, patience, min_delta, stop_epoch, best_epoch",
    [
        ("val_loss", [1.0, 0.8, 0.7, 0.75, 0.71, 0.72, 0.1], 3, 0.0, 6, 3),
        ("val_loss", [1.0, 0.8, 0.79, 0.78, 0.9], 2, 0.05, 4, 2),  # 0.79/0.78 are not 0.05 better
        # accuracy = 1 - script: 0, .2, .3, .25, .29 -> max mode, best epoch 3, two bad epochs
        ("val_accuracy", [1.0, 0.8, 0.7, 0.75, 0.71, 0.72, 0.1], 2, 0.0, 5, 3),
        # f1 = 1 - script: .5, .6, .55, .7, .8, .4, .4, .3, .2 -> best epoch 5, four bad epochs
        ("val_f1", [0.5, 0.4, 0.45, 0.3, 0.2, 0.6, 0.6, 0.7, 0.8, 0.0], 4, 0.0, 9, 5),
    ],
)
def test_early_stopping_stops_at_the_right_epoch(monitor, script, patience, min_delta, stop_epoch, best_epoch):
    x = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    y = np.array([0, 1] * 4)
    trainer = _tiny_trainer(script, EarlyStopper(monitor, patience, min_delta))
    history = trainer.fit(x, y, x, y)
    assert len(history) == stop_epoch
    assert trainer.best_epoch == best_epoch
    assert trainer.stopped_early


def test_best_checkpoint_holds_the_best_epochs_weights(cli, tmp_path):
    cfg = write_config(tmp_path, merged(IRIS, "training: {epochs: 30, batch_size: 16, early_stopping: {monitor: val_loss, patience: 3}}"))
    run = train_quiet(cli, cfg)
    rows = metrics_rows(run)
    losses = [float(r["val_loss"]) for r in rows]
    best_epoch = int(np.argmin(losses)) + 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == best_epoch
    _, meta, _ = load_checkpoint(run / "checkpoints" / "best.npz")
    assert meta["trainer"]["epoch"] == best_epoch
    # the best weights reproduce the best epoch's validation loss, on the rows splits.npz names
    model = TrainedModel.load(run / "checkpoints" / "best.npz")
    val_rows = np.load(run / "splits.npz")["val"]
    frame = pd.read_csv(DATA / "iris.csv").iloc[val_rows]
    logits = model.net.logits(model.features(frame, "iris.csv", lambda m: None))
    val_loss = model.loss.forward(logits, model.labels.encode(frame["species"]))
    assert val_loss == pytest.approx(losses[best_epoch - 1], rel=1e-5)
    assert val_loss < max(losses)  # a different epoch's weights would not give it
    if summary["stopped_early"]:
        assert len(rows) == best_epoch + 3


def test_early_stopping_on_a_validation_metric_needs_validation_data(cli, tmp_path):
    cfg = write_config(tmp_path, merged(IRIS, "training: {early_stopping: {monitor: val_loss}}"))
    result = cli(["train", cfg, "--set", "data.val_split=0"])
    assert result.exit_code == 1
    assert "training.early_stopping.monitor: 'val_loss' needs validation data" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- resume and interrupts ---------------------------------------------------------------------
DIGITS = f"""
seed: 5
data: {{train: {DATA / 'digits.csv'}, target: digit}}
model: {{hidden: [32], dropout: 0.1}}
optimizer: {{name: adam, lr: 0.002}}
schedule: {{name: cosine, warmup_epochs: 2}}
training: {{epochs: 400, batch_size: 64}}
"""


def _nnclf(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "nnclf", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_epochs(run: Path, n: int, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "metrics.csv").exists() and len(metrics_rows(run)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


def test_sigint_saves_a_checkpoint_and_resume_is_bit_identical(cli, tmp_path):
    cfg = write_config(tmp_path, DIGITS)
    reference = train_quiet(cli, cfg, "--name", "reference")

    proc = _nnclf("train", cfg, "--name", "interrupted", cwd=tmp_path)
    run = tmp_path / "runs" / "interrupted"
    _wait_for_epochs(run, 3, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"Resume with: nnclf train --resume {Path('runs') / 'interrupted'}" in stderr
    params, meta, _ = load_checkpoint(run / "checkpoints" / "last.npz")
    stopped_at = meta["trainer"]["epoch"]
    assert 3 <= stopped_at < 400

    resumed = cli(["train", "--resume", run, "--quiet"])
    assert resumed.exit_code == 0, resumed.stderr
    for name in ("last.npz", "best.npz"):
        a = np.load(reference / "checkpoints" / name)["params"]
        b = np.load(run / "checkpoints" / name)["params"]
        assert np.array_equal(a, b), name
    ref_rows, res_rows = metrics_rows(reference), metrics_rows(run)
    assert len(res_rows) == 400
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(ref_rows) == strip(res_rows)


def test_resume_of_a_finished_run_with_more_epochs_continues(cli, tmp_path):
    cfg = write_config(tmp_path, IRIS)
    run = train_quiet(cli, cfg, "--name", "short")
    result = cli(["train", "--resume", run, "--set", "training.epochs=15", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert [int(r["epoch"]) for r in metrics_rows(run)] == list(range(1, 16))


def test_resume_refuses_a_folder_without_checkpoint(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli(["train", "--resume", tmp_path / "empty"])
    assert result.exit_code == 1
    assert "no checkpoints/last.npz to resume from" in result.stderr


def test_kill_9_at_random_moments_never_leaves_a_broken_checkpoint(cli, tmp_path):
    cfg = write_config(
        tmp_path,
        IRIS.replace("epochs: 10", "epochs: 100000").replace("batch_size: 16", "batch_size: 4"),
    )
    rng = random.Random(0)
    loaded = 0
    for attempt in range(20):
        proc = _nnclf("train", cfg, "--name", f"k{attempt}", "--quiet", cwd=tmp_path)
        run = tmp_path / "runs" / f"k{attempt}"
        if attempt % 2:  # half of the kills wait for a checkpoint first, then land at a random moment
            _wait_for_epochs(run, 1, proc)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        for name in ("last.npz", "best.npz"):
            path = run / "checkpoints" / name
            if path.exists():
                model = TrainedModel.load(path)  # raises on a truncated or corrupt file
                proba = model.predict_proba(np.zeros((2, model.net.sizes[0]), dtype=np.float32))
                assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
                loaded += 1
    assert loaded >= 20  # at least the runs that waited for a checkpoint left loadable ones
    resumed = cli(["train", "--resume", tmp_path / "runs" / "k19", "--set", "training.epochs=1", "--quiet"])
    # epochs=1 is below what was already trained: resume stops at once and keeps the checkpoint
    assert resumed.exit_code == 0, resumed.stderr


# -- divergence, class weights -----------------------------------------------------------------
def test_divergence_is_reported_and_no_nan_is_saved(cli, tmp_path):
    cfg = write_config(tmp_path, merged(IRIS, "optimizer: {name: sgd, lr: 1.0e+30}\nmodel: {hidden: [8], activation: identity}"))
    result = cli(["train", cfg, "--name", "boom"])
    assert result.exit_code == 1
    assert "training diverged:" in result.stderr and "lower optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr
    run = tmp_path / "runs" / "boom"
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    for path in (run / "checkpoints").glob("*.npz"):
        params, _, _ = load_checkpoint(path)
        assert np.all(np.isfinite(params))


def test_balanced_class_weights_are_n_over_k_times_class_count(cli, tmp_path):
    from nnclf.build import class_weight_vector
    from nnclf.config import validate

    cfg = validate({"data": {"train": "x.csv", "target": "y"}, "loss": {"class_weights": "balanced"}})
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    assert class_weight_vector(cfg, [0, 1, 2], y) == pytest.approx([9 / 18, 9 / 6, 9 / 3])
    cfg = validate({"data": {"train": "x.csv", "target": "y"}, "loss": {"class_weights": {"b": 3.0}}})
    assert class_weight_vector(cfg, ["a", "b"], y) == pytest.approx([1.0, 3.0])


def test_class_weights_for_an_unknown_label_are_an_error(cli, tmp_path):
    cfg = write_config(tmp_path, IRIS + "loss: {class_weights: {setosa: 2.0, rose: 1.0}}\n")
    result = cli(["train", cfg])
    assert result.exit_code == 1
    assert "loss.class_weights: label 'rose' is not a class of the training data" in result.stderr


# -- seeing the run ----------------------------------------------------------------------------
def test_runs_lists_newest_first_with_test_accuracy(cli, tmp_path):
    cfg = write_config(tmp_path, IRIS, name="flowers.yaml")
    train_quiet(cli, cfg, "--name", "first")
    time.sleep(0.05)
    train_quiet(cli, cfg, "--name", "second")
    result = cli(["runs", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == ["second", "first"]
    summary = json.loads((tmp_path / "runs" / "first" / "summary.json").read_text())
    assert rows[1]["config"] == "flowers"
    assert rows[1]["epochs"] == 10
    assert rows[1]["test_accuracy"] == summary["test"]["accuracy"]
    table = cli(["runs"])
    assert "second" in table.stdout and "flowers" in table.stdout


def test_gd_defaults_to_full_batch_unless_batch_size_is_given(cli, tmp_path):
    cfg = write_config(tmp_path, f"data: {{train: {DATA / 'iris.csv'}, target: species}}\noptimizer: {{name: gd, lr: 0.1}}\n")
    shown = cli(["config", cfg])
    assert "  batch_size: full\n" in shown.stdout
    explicit = cli(["config", cfg, "--set", "training.batch_size=8"])
    assert "  batch_size: 8\n" in explicit.stdout
    other = cli(["config", cfg, "--set", "optimizer.name=sgd"])
    assert "  batch_size: 64\n" in other.stdout


def test_evaluate_without_data_refuses_a_changed_training_file(cli, tmp_path):
    csv_path = tmp_path / "iris.csv"
    csv_path.write_bytes((DATA / "iris.csv").read_bytes())
    cfg = write_config(tmp_path, IRIS.replace(str(DATA / "iris.csv"), str(csv_path)))
    run = train_quiet(cli, cfg, "--name", "r")
    assert cli(["evaluate", run, "--json"]).exit_code == 0
    lines = csv_path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # same size, same rows, different order
    csv_path.write_text("\n".join(lines) + "\n")
    result = cli(["evaluate", run])
    assert result.exit_code == 1
    assert "the training file changed since the run" in result.stderr
    _, meta, _ = load_checkpoint(run / "checkpoints" / "best.npz")
    assert meta["data_files"]["train"]["bytes"] == csv_path.stat().st_size


def test_resume_checks_an_overridden_monitor_before_training(cli, tmp_path):
    cfg = write_config(tmp_path, IRIS)
    run = train_quiet(cli, cfg, "--name", "r")
    before = (run / "checkpoints" / "last.npz").read_bytes()
    result = cli(["train", "--resume", run, "--set", "training.epochs=12", "--set", "training.early_stopping.monitor=val_los"])
    assert result.exit_code == 1
    assert "training.early_stopping.monitor: metric 'val_los' is not logged (did you mean 'val_loss'?)" in result.stderr
    assert (run / "checkpoints" / "last.npz").read_bytes() == before
