"""nnclf lr-find: the schedule, the smoothing and the suggestion against hand-worked values, and
the command on shipped data (its suggestion trains faster than the range's low end)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import DATA, write_config
from nnclf.lrfind import lr_schedule, range_test, smooth, suggest


def test_schedule_grows_geometrically_from_min_to_max():
    lrs = lr_schedule(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10.0)


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = [1.0, 3.0, 2.0]
    beta = 0.5
    # by hand: avg 0.5, 1.75, 1.875; corrections 1-0.5, 1-0.25, 1-0.125
    assert smooth(losses, beta) == pytest.approx([1.0, 1.75 / 0.75, 1.875 / 0.875])
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # a constant stays itself


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    # s(log lr) falls like a logistic step centred at lr = 1e-3, then blows up past 1e-1
    lrs = lr_schedule(1e-7, 10.0, 400)
    x = np.log10(lrs)
    s = 1.0 - 0.8 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -1, (x + 1) ** 2, 0.0)
    steepest, at_min = suggest(list(lrs), list(s))
    assert math.log10(steepest) == pytest.approx(-3, abs=0.05)
    assert at_min == pytest.approx(lrs[int(np.argmin(s))])
    # a curve that only rises has no suggestion
    assert suggest(list(lrs), list(np.linspace(1, 2, 400)))[0] is None


def test_range_test_stops_at_divergence():
    # the "loss" is lr itself times 100 after lr 0.01: it passes 4 x its minimum and stops
    lrs = lr_schedule(1e-4, 10.0, 200)
    x, y = np.zeros((64, 1)), np.zeros(64, dtype=np.int64)
    used, losses, smoothed, diverged = range_test(lambda xs, ys, lr: 1.0 if lr < 0.01 else 100 * lr, x, y, 8, lrs, np.random.default_rng(0))
    assert diverged is not None and 0.01 <= diverged < 10.0
    assert len(used) == len(losses) == len(smoothed) < 200


CONFIG = f"""
data:
  train: {DATA / 'breast_cancer.csv'}
  target: diagnosis
model:
  hidden: [16]
optimizer:
  name: sgd
  lr: 0.01
training:
  epochs: 3
  batch_size: 32
"""


def test_lr_find_command_suggests_an_lr_that_trains(cli, tmp_path):
    pytest.importorskip("matplotlib")
    path = write_config(tmp_path, CONFIG)
    result = cli(f"lr-find {path} --steps 150 --min-lr 1e-6 --max-lr 100 --json --plot {tmp_path / 'lr.png'}")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    lrs = np.array(out["lrs"])
    assert np.allclose(lrs[1:] / lrs[:-1], (100 / 1e-6) ** (1 / 149))
    assert out["diverged_at"] is not None  # sgd at lr 100 blows up
    suggestion = out["suggestion"]
    assert 1e-6 < suggestion < out["diverged_at"]
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    # three epochs at the suggested lr reach a lower training loss than at the range's low end
    finals = {}
    for name, lr in (("low", 1e-5), ("suggested", suggestion)):
        r = cli(f"train {path} --set optimizer.lr={lr} --name {name} -q")
        assert r.exit_code == 0, r.stderr
        finals[name] = json.loads((tmp_path / "runs" / name / "summary.json").read_text())["final"]["train_loss"]
    assert finals["suggested"] < finals["low"] - 0.1
    text = cli(f"lr-find {path} --steps 150 --min-lr 1e-6 --max-lr 100")
    assert f"suggested lr (steepest descent): {suggestion:.3g}" in text.stdout


def test_lr_find_bad_range(cli, tmp_path):
    path = write_config(tmp_path, CONFIG)
    result = cli(f"lr-find {path} --min-lr 1 --max-lr 0.1")
    assert result.exit_code == 1
    assert "error: --min-lr 1 and --max-lr 0.1: need 0 < min < max" in result.stderr


@pytest.mark.parametrize("task, target", [("regression", "progression"), ("reconstruction", "progression")])
def test_lr_find_trains_the_configs_task(cli, tmp_path, task, target):
    # lr-find prepared every config as a classification: a regression target became 214
    # classes (with a warning to set task: regression) and an autoencoder a classifier
    text = (f"task: {task}\ndata: {{train: {DATA / 'diabetes.csv'}, target: {target}}}\nmodel: {{hidden: [8]}}\n"
            "optimizer: {name: sgd, lr: 1.0e-7}\ntraining: {epochs: 1, batch_size: full}\n")
    path = write_config(tmp_path, text)
    result = cli(f"lr-find {path} --steps 10 --min-lr 1e-7 --max-lr 1e-6 --json")
    assert result.exit_code == 0, result.stderr
    assert "classes" not in result.stderr
    first = json.loads(result.stdout)["losses"][0]
    # one full batch at the first lr: the loss before that step is training's first epoch loss
    assert cli(f"train {path} --name r -q").exit_code == 0
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert first == pytest.approx(summary["final"]["train_loss"], rel=1e-6)


@pytest.mark.parametrize("name", ["lbfgs", "cg", "newton_cg"])
def test_lr_find_refuses_a_full_batch_method_in_one_line(cli, tmp_path, name):
    path = write_config(tmp_path, CONFIG)
    result = cli(f"lr-find {path} --set optimizer.name={name} --set training.batch_size=full")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: optimizer.name: {name} is a full-batch method that chooses its own step sizes "
                                     "(a line search); it has no learning rate to find. The range test needs a mini-batch "
                                     "optimizer (--set optimizer.name=adam)")
