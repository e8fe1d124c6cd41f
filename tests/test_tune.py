"""nnclf tune: the search space checked against the schema, tiny studies with every sampler and
pruner, continuing, Ctrl-C, worker processes sharing a study, and best.yaml repeating a trial."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import DATA, ROOT, merged, write_config

pytest.importorskip("optuna")

BASE = f"""
seed: 3
data:
  train: {DATA / 'iris.csv'}
  target: species
model:
  hidden: [8]
training:
  epochs: 6
  batch_size: 16
"""

TUNE = """
tune:
  metric: val_accuracy
  trials: 4
  sampler: random
  space:
    optimizer.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
    model.hidden: {type: choice, values: [[8], [16, 8]]}
"""


def config(tmp_path: Path, *extra: str, name: str = "study.yaml") -> Path:
    return write_config(tmp_path, merged(BASE, TUNE, *extra), name)


def rows(folder: Path) -> list[dict]:
    with (folder / "trials.csv").open(newline="") as f:
        return list(csv.DictReader(f))


# -- the search space -----------------------------------------------------------------------------
SPACE_ERRORS = [
    (
        "    optimizer.lrr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}\n",
        "line 5: tune.space.optimizer.lrr: unknown config key (did you mean 'optimizer.lr'?); "
        "a dimension is a dotted key such as optimizer.lr or model.hidden",
    ),
    (
        "    optimizer.lr: {type: logunifrom, low: 1.0e-3, high: 1.0e-1}\n",
        "line 5: tune.space.optimizer.lr.type: unknown type 'logunifrom' (did you mean 'loguniform'?); "
        "valid: uniform, loguniform, int, choice",
    ),
    (
        "    model.dropout: {type: uniform, low: 0.0, high: 1.5}\n",
        "line 5: tune.space.model.dropout: high 1.5 would be refused by the config schema: "
        "model.dropout: must be a number in [0, 1), got 1.5",
    ),
    (
        "    training.epochs: {type: uniform, low: 5, high: 20}\n",
        "line 5: tune.space.training.epochs: the value 10.7295 inside the range would be refused by the config schema: "
        "training.epochs: input should be a valid integer, got a number with a fractional part, got 10.7295",
    ),
    (
        "    model.activation: {type: choice, values: [relu, tanhh]}\n",
        "line 5: tune.space.model.activation: value 'tanhh' would be refused by the config schema: "
        "model.activation: unknown activation 'tanhh' (did you mean 'tanh'?); valid:",
    ),
    (
        "    optimizer.momentum: {type: uniform, low: 0.5, high: 0.9}\n",
        "line 5: tune.space.optimizer.momentum: low 0.5 would be refused by the config schema: "
        "optimizer.momentum: unknown key for optimizer 'adam'",
    ),
    (
        "    optimizer.lr: {type: loguniform, low: 0.0, high: 1.0e-1}\n",
        "line 5: tune.space.optimizer.lr.low: a loguniform range needs low > 0, got 0.0",
    ),
    (
        "    optimizer.lr: {type: uniform, low: 1.0e-3, hihg: 1.0e-1}\n",
        "line 5: tune.space.optimizer.lr.hihg: unknown key for type uniform (did you mean 'high'?); valid keys: type, low, high",
    ),
    (
        "    training.batch_size: {type: int, low: 8, high: 30, step: 8}\n",
        "line 5: tune.space.training.batch_size.step: high - low (22) must be a multiple of step 8",
    ),
    (
        "    seed: {type: int, low: 0, high: 9}\n",
        "line 5: tune.space.seed: cannot be searched: each trial's seed is derived from the config's seed and the trial number",
    ),
]


@pytest.mark.parametrize("line, message", SPACE_ERRORS)
def test_search_space_errors_name_file_line_and_key(cli, tmp_path, line, message):
    text = "tune:\n  metric: val_loss\n  trials: 2\n  space:\n" + line
    path = write_config(tmp_path, BASE + text.replace("tune:", "tune:", 1))
    # the tune section starts after BASE's lines
    offset = BASE.count("\n")
    result = cli(f"tune {path}")
    assert result.exit_code == 1
    expected_line = int(message.split(":")[0].split()[1]) + offset
    expected = f"error: {path}, line {expected_line}:{message.split(':', 1)[1]}"
    assert result.stderr.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("trial-*"))


def test_values_refused_only_together_are_refused_before_any_trial(cli, tmp_path):
    # each value passes the schema alone; together they were refused when a trial drew them,
    # and that trial's error ended the study
    text = merged(BASE, "training: {batch_size: full}", "tune: {metric: val_loss, trials: 4, space: {optimizer.name: "
                  "{type: choice, values: [adam, lbfgs]}, training.batch_size: {type: int, low: 16, high: 32, step: 16}}}")
    path = write_config(tmp_path, text)
    result = cli(f"tune {path}")
    assert result.exit_code == 1
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.strip().startswith("training.batch_size:"))
    assert result.stderr.strip() == (
        f"error: {path}, line {line}: tune.space.training.batch_size: low 16 with optimizer.name value 'lbfgs' would be "
        "refused by the config schema: training.batch_size: optimizer 'lbfgs' is a full-batch method (every step uses "
        "all training rows); batch_size must be 'full', got 16")
    assert not (tmp_path / "runs").exists()
    ae = merged(BASE, "task: reconstruction", "model: {hidden: [16, 4, 16]}", "tune: {metric: val_loss, trials: 2, space: {model.hidden: {type: choice, "
                "values: [[8], [16, 4, 16]]}, model.code_layer: {type: choice, values: [null, 1]}}}")
    result = cli(["tune", write_config(tmp_path, ae, "ae.yaml")])
    assert result.exit_code == 1
    assert ("tune.space.model.code_layer: value 1 with model.hidden value [8] would be refused by the config schema: "
            "model.code_layer: 1 is not an index of model.hidden [8] (0 to 0)") in result.stderr


def test_a_huge_int_range_is_checked_at_its_ends_without_listing_it(cli, tmp_path):
    # the probes listed range(low, high + 1): 10^20 values raised OverflowError (a traceback),
    # 10^8 took gigabytes before the first trial
    from nnclf.tune.study import load_study_config

    huge = 10**20
    path = write_config(tmp_path, merged(BASE, f"tune: {{metric: val_loss, space: {{training.epochs: {{type: int, low: 1, high: {huge + 1}, step: 10}}}}}}"))
    started = time.perf_counter()
    _, spec, _ = load_study_config(path, [])
    assert time.perf_counter() - started < 5
    assert spec.space["training.epochs"].probes() == [("low 1", 1), (f"high {huge + 1}", huge + 1)]
    assert spec.grid_size() == huge // 10 + 1
    result = cli(f"tune {path} --set tune.sampler=grid")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: --set tune.sampler: the grid of tune.space has {huge // 10 + 1:,} points, more than "
                                     "the grid sampler lists (1,000,000); use fewer values or a larger int step, or sampler tpe or random")


def test_a_range_written_like_1e_4_is_a_number_as_in_the_config(cli, tmp_path):
    # YAML reads 1e-4 (no '.') as text: the config schema takes optimizer.lr: 1e-3, the space
    # refused low: 1e-4 ("must be a number, got '1e-4'")
    path = write_config(tmp_path, merged(BASE, "tune: {metric: val_loss, trials: 2}") +
                        "  space:\n    optimizer.lr: {type: loguniform, low: 1e-4, high: 1e-1}\n")
    result = cli(f"tune {path} --study s")
    assert result.exit_code == 0, result.stderr
    lrs = [float(r["optimizer.lr"]) for r in rows(tmp_path / "runs" / "s")]
    assert len(lrs) == 2 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    assert json.loads((tmp_path / "runs" / "s" / "study.json").read_text())["space"]["optimizer.lr"]["low"] == 1e-4


def test_set_reaches_a_search_dimension_and_its_errors_name_set(cli, tmp_path):
    """A dimension's name is a dotted key itself: --set tune.space.model.hidden=... sets one
    dimension, --set tune.space.optimizer.lr.high=... a field of an existing one; a bad value
    given by --set is reported as --set's, not at a line of the file."""
    path = config(tmp_path)  # its space: optimizer.lr in [1e-3, 1e-1] and model.hidden
    result = cli(f"tune {path} --study s -q --set 'tune.space.model.hidden={{type: choice, values: [[3], [5]]}}' "
                 "--set tune.space.optimizer.lr.high=0.002 --set tune.trials=3")
    assert result.exit_code == 0, result.stderr
    table = rows(tmp_path / "runs" / "s")
    assert len(table) == 3
    assert {r["model.hidden"] for r in table} <= {"[3]", "[5]"}
    assert all(1e-3 <= float(r["optimizer.lr"]) <= 0.002 for r in table)
    for item, message in (
        ("tune.space.optimizer.lrr={type: uniform, low: 0.1, high: 0.2}", "--set tune.space.optimizer.lrr: unknown config key (did you mean 'optimizer.lr'?)"),
        ("tune.space.optimizer.lr.hihg=0.2", "--set tune.space.optimizer.lr.hihg: unknown key for type loguniform (did you mean 'high'?)"),
        ("tune.trials=0", "--set tune.trials: must be an integer >= 1, got 0"),
    ):
        result = cli(f"tune {path} --study bad -q --set '{item}'")
        assert result.exit_code == 1 and result.stderr.startswith(f"error: {message}"), result.stderr


def test_tune_section_errors(cli, tmp_path):
    path = config(tmp_path, "tune: {sampler: tpee}")
    result = cli(f"tune {path}")
    assert result.exit_code == 1
    assert f"{path}, line " in result.stderr
    assert "tune.sampler: unknown sampler 'tpee' (did you mean 'tpe'?); valid: tpe, random, grid" in result.stderr
    path = config(tmp_path, "tune: {metrc: val_loss}")
    assert "tune.metrc: unknown key (did you mean 'metric'?)" in cli(f"tune {path}").stderr
    path = config(tmp_path, "tune: {metric: val_acc}")
    assert "tune.metric: unknown metric 'val_acc' (did you mean 'val_accuracy'?)" in cli(f"tune {path}").stderr
    path = config(tmp_path, "data: {val_split: 0}")
    assert "tune.metric: 'val_accuracy' needs validation data" in cli(f"tune {path}").stderr
    path = config(tmp_path, "tune: {sampler: grid, space: {optimizer.lr: {type: uniform, low: 0.001, high: 0.1}}}")
    assert "the grid sampler needs choice or int dimensions, got uniform" in cli(f"tune {path}").stderr
    path = write_config(tmp_path, BASE, "plain.yaml")
    assert "no tune: section" in cli(f"tune {path}").stderr


def test_a_bad_study_name_names_where_it_came_from(cli, tmp_path):
    # the message said --name, an option nnclf tune does not have
    path = config(tmp_path)
    result = cli(f"tune {path} --study ../x")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --study '../x': a study name may use letters, digits, '.', '_' and '-' "
                                     "(at most 128, starting with a letter or digit, no '..')")
    spaced = config(tmp_path, name="my study.yaml")  # without --study the study is named after the file
    result = cli(["tune", spaced])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {spaced}: the study name (the file's, without --study) 'my study': a study name may use")
    assert not (tmp_path / "runs").exists()


def test_train_ignores_the_tune_section(cli, tmp_path):
    path = config(tmp_path)
    result = cli(f"train {path} --name plain -q")
    assert result.exit_code == 0, result.stderr
    saved = yaml.safe_load((tmp_path / "runs" / "plain" / "config.yaml").read_text())
    assert saved["tune"]["sampler"] == "random"  # kept as written, not used


def test_missing_optuna_gives_the_install_command(monkeypatch):
    from nnclf.errors import NnclfError
    from nnclf.tune.study import import_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(NnclfError, match=r'pip install "\.\[tune\]" in a clone, or pip install "nnclf\[tune\]"'):
        import_optuna()


def test_trial_seeds_differ_and_are_reproducible():
    from nnclf.tune.study import trial_seed

    seeds = [trial_seed(3, n) for n in range(50)]
    assert len(set(seeds)) == 50
    assert seeds == [trial_seed(3, n) for n in range(50)]
    assert trial_seed(4, 0) != trial_seed(3, 0)


# -- studies --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler, pruner", [("tpe", "median"), ("random", "hyperband"), ("random", "none"), ("tpe", "none")])
def test_tiny_study_with_each_sampler_and_pruner(cli, tmp_path, sampler, pruner):
    path = config(tmp_path, f"tune: {{sampler: {sampler}, pruner: {pruner}, trials: 5}}", "training: {epochs: 8}")
    result = cli(f"tune {path} --study s")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "s"
    table = rows(folder)
    assert [int(r["number"]) for r in table] == [0, 1, 2, 3, 4]
    assert {r["state"] for r in table} <= {"complete", "pruned"}
    for r in table:
        trial = json.loads((folder / f"trial-{int(r['number']):04d}" / "trial.json").read_text())
        assert trial["state"] == r["state"]
        summary = json.loads((folder / f"trial-{int(r['number']):04d}" / "summary.json").read_text())
        assert summary["status"] == ("pruned" if r["state"] == "pruned" else "finished")
        if r["state"] == "pruned":
            assert summary["epochs_run"] < 8
        else:
            assert float(r["val_accuracy"]) == summary["best"]["val_accuracy"]
    complete = [r for r in table if r["state"] == "complete"]
    best = max(complete, key=lambda r: (float(r["val_accuracy"]), -int(r["number"])))
    assert f"best trial {best['number']}: val_accuracy" in result.stdout
    assert (folder / "best.yaml").is_file()


def test_grid_sampler_visits_every_point_once(cli, tmp_path):
    grid = ("tune: {sampler: grid, metric: val_loss, space: {optimizer.lr: {type: choice, values: [0.01, 0.05]}, "
            "training.batch_size: {type: int, low: 8, high: 24, step: 8}}}")
    path = write_config(tmp_path, merged(BASE, grid))
    result = cli(f"tune {path} --study g")
    assert result.exit_code == 0, result.stderr
    table = rows(tmp_path / "runs" / "g")
    points = sorted((float(r["optimizer.lr"]), int(r["training.batch_size"])) for r in table)
    assert points == sorted((lr, b) for lr in (0.01, 0.05) for b in (8, 16, 24))


def test_a_choice_of_scalars_beside_a_mapping_gives_each_trial_the_value_written(cli, tmp_path):
    # Optuna's choices must be scalars, so a choice holding a mapping is suggested as JSON
    # texts: null and 'balanced' came back as the texts 'null' and '"balanced"', refused
    weights = "{setosa: 1.0, versicolor: 2.0, virginica: 1.0}"
    grid = ("tune: {sampler: grid, metric: val_loss, space: {loss.class_weights: "
            f"{{type: choice, values: [null, balanced, {weights}]}}}}}}")
    path = write_config(tmp_path, merged(BASE, grid))
    result = cli(f"tune {path} --study w")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "runs" / "w"
    table = rows(folder)
    assert [r["state"] for r in table] == ["complete"] * 3
    used = {json.dumps(yaml.safe_load((folder / f"trial-{int(r['number']):04d}" / "config.yaml").read_text())["loss"]["class_weights"],
                       sort_keys=True) for r in table}
    assert used == {"null", '"balanced"', json.dumps({"setosa": 1.0, "versicolor": 2.0, "virginica": 1.0}, sort_keys=True)}
    assert sorted(r["loss.class_weights"] for r in table) == sorted(["null", '"balanced"', '{"setosa": 1.0, "versicolor": 2.0, "virginica": 1.0}'])
    # the study report's importances give Optuna the same texts ('balanced' was not one of them)
    from nnclf.tune.report import importances, read_study

    meta, read = read_study(folder)
    imp = importances(meta, read)
    assert imp is None or set(imp) == {"loss.class_weights"}
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:  # (the page needs the plot extra)
        result = cli(f"report {folder}")
        assert result.exit_code == 0, result.stderr


def test_best_yaml_repeats_the_best_trial_bit_for_bit(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 3}")
    assert cli(f"tune {path} --study s -q").exit_code == 0
    folder = tmp_path / "runs" / "s"
    best_yaml = folder / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert "tune" not in best
    number = int(best_yaml.read_text().split("best trial ")[1].split()[0])
    result = cli(f"train {best_yaml} --name again -q")
    assert result.exit_code == 0, result.stderr
    for which in ("best", "last"):
        a = np.load(folder / f"trial-{number:04d}" / "checkpoints" / f"{which}.npz", allow_pickle=False)
        b = np.load(tmp_path / "runs" / "again" / "checkpoints" / f"{which}.npz", allow_pickle=False)
        assert a["params"].tobytes() == b["params"].tobytes()
    trial_metrics = (folder / f"trial-{number:04d}" / "metrics.csv").read_text().splitlines()
    again = (tmp_path / "runs" / "again" / "metrics.csv").read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in trial_metrics] == [line.rsplit(",", 1)[0] for line in again]  # all but seconds


def test_rerunning_continues_the_study(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 2}")
    assert cli(f"tune {path} --study s").exit_code == 0
    folder = tmp_path / "runs" / "s"
    first = (folder / "trial-0000" / "metrics.csv").read_text()
    result = cli(f"tune {path} --study s")
    assert result.exit_code == 0
    assert "2 trials done" in result.stdout and "0 run by this command" in result.stdout
    result = cli(f"tune {path} --study s --trials 4")
    assert result.exit_code == 0, result.stderr
    assert "4 trials done" in result.stdout and "2 run by this command" in result.stdout
    assert [int(r["number"]) for r in rows(folder)] == [0, 1, 2, 3]
    assert (folder / "trial-0000" / "metrics.csv").read_text() == first
    # another config under the same study name is refused, not mixed in
    other = config(tmp_path, "tune: {trials: 4}", "model: {activation: tanh}", name="other.yaml")
    result = cli(f"tune {other} --study s")
    assert result.exit_code == 1
    assert "the study was started with another config (model.activation changed)" in result.stderr


def test_a_lost_study_db_is_refused_and_trials_csv_is_kept(cli, tmp_path, monkeypatch):
    # with study.db deleted or emptied, the run started a new study whose trial 0 failed on
    # the existing trial-0000 folder and rewrote trials.csv, the old trials' last record
    from nnclf.tune import study as study_module

    path = config(tmp_path, "tune: {trials: 2}")
    assert cli(f"tune {path} --study s").exit_code == 0
    folder = tmp_path / "runs" / "s"
    table = (folder / "trials.csv").read_bytes()
    for lose in (lambda db: db.write_bytes(b""), lambda db: db.unlink()):
        lose(folder / "study.db")
        monkeypatch.setattr(study_module, "_STORAGES", {})  # as a new command's process: the file opened again
        result = cli(f"tune {path} --study s --trials 3")
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: {Path('runs') / 's'}: trial-0000, trial-0001 are trials of a study that the storage sqlite:///")
        assert "does not hold (was study.db deleted or replaced?)" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert (folder / "trials.csv").read_bytes() == table
        assert json.loads((folder / "trial-0000" / "trial.json").read_text())["state"] == "complete"


def test_same_study_from_scratch_is_reproducible(cli, tmp_path):
    path = config(tmp_path, "tune: {trials: 3, sampler: tpe}")
    assert cli(f"tune {path} --study a").exit_code == 0
    assert cli(f"tune {path} --study b").exit_code == 0
    a, b = rows(tmp_path / "runs" / "a"), rows(tmp_path / "runs" / "b")
    keep = ["number", "state", "val_accuracy", "optimizer.lr", "model.hidden"]
    assert [{k: r[k] for k in keep} for r in a] == [{k: r[k] for k in keep} for r in b]


def _tune_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "nnclf", "tune", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_marks_the_running_one(tmp_path):
    # trials of about 2 s, so that 0.5 s after one starts it is still running (at 300 epochs a
    # trial took about 0.25 s here, and the signal could fall between two trials)
    path = config(tmp_path, "tune: {trials: 40}", "training: {epochs: 2400, batch_size: 8}")
    folder = tmp_path / "runs" / "s"
    proc = _tune_process([str(path), "--study", "s"], tmp_path)
    # (a trial writes metrics.csv when it ends; config.yaml when it starts)
    assert _wait_for(lambda: (folder / "trial-0001" / "config.yaml").exists()), proc.communicate(timeout=5)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; finished trials are kept" in err
    table = rows(folder)
    assert table[-1]["state"] == "interrupted"
    assert all(r["state"] == "complete" for r in table[:-1])
    last = folder / f"trial-{int(table[-1]['number']):04d}"
    assert json.loads((last / "trial.json").read_text())["state"] == "interrupted"
    assert json.loads((last / "summary.json").read_text())["status"] == "interrupted"
    # the same command continues: the interrupted trial does not count, finished ones stay
    done = len(table) - 1
    result = subprocess.run([sys.executable, "-m", "nnclf", "tune", str(path), "--study", "s", "--trials", str(done + 1)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    states = [r["state"] for r in rows(folder)]
    assert states.count("complete") == done + 1 and states.count("interrupted") == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")])
def test_sigterm_and_sighup_stop_a_study_as_ctrl_c_does(tmp_path, signum, name):
    # only SIGINT was caught: SIGTERM raised inside the running trial, which was left
    # 'failed' without a trial.json, no best.yaml was written and the exit code was 130
    path = config(tmp_path, "tune: {trials: 40}", "training: {epochs: 2400, batch_size: 8}")
    folder = tmp_path / "runs" / "s"
    proc = _tune_process([str(path), "--study", "s"], tmp_path)
    assert _wait_for(lambda: (folder / "trial-0001" / "config.yaml").exists()), proc.communicate(timeout=5)
    time.sleep(0.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {name}; finished trials are kept" in err
    table = rows(folder)
    assert table[-1]["state"] == "interrupted" and all(r["state"] == "complete" for r in table[:-1])
    last = folder / f"trial-{int(table[-1]['number']):04d}"
    assert json.loads((last / "trial.json").read_text())["state"] == "interrupted"
    best = min(table[:-1], key=lambda r: (-float(r["val_accuracy"]), int(r["number"])))
    assert (folder / "best.yaml").read_text().startswith(f"# best trial {best['number']} of study 's'")


def _check_shared_study(folder: Path, total: int) -> None:
    table = rows(folder)
    numbers = [int(r["number"]) for r in table]
    assert len(numbers) == len(set(numbers))
    done = [r for r in table if r["state"] in ("complete", "pruned")]
    assert len(done) == total, table
    # each trial ran once: one run folder per trial that ran, named by its number, and its
    # trial.json says that number and the state the study has
    folders = sorted(p.name for p in folder.glob("trial-*"))
    assert folders == sorted(f"trial-{int(r['number']):04d}" for r in table if r["state"] != "skipped")
    workers = set()
    for r in done:
        trial = json.loads((folder / f"trial-{int(r['number']):04d}" / "trial.json").read_text())
        assert trial["number"] == int(r["number"]) and trial["state"] == r["state"]
        workers.add(trial["worker"])
        assert json.loads((folder / f"trial-{int(r['number']):04d}" / "summary.json").read_text())["epochs_run"] >= 1
    return workers


@pytest.mark.slow
@pytest.mark.parametrize("jobs, total", [(2, 8), (4, 12)])
def test_worker_processes_share_one_study(cli, tmp_path, jobs, total):
    path = config(tmp_path, f"tune: {{trials: {total}}}")
    result = cli(f"tune {path} --study s --jobs {jobs}")
    assert result.exit_code == 0, result.stderr
    workers = _check_shared_study(tmp_path / "runs" / "s", total)
    assert len(workers) >= 2  # the work was shared


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_retried(tmp_path):
    # trials of about 2 s here (0.25 s at 150 epochs, too short: the kill below found both
    # workers between or past their trials), so the kill lands inside one
    path = config(tmp_path, "tune: {trials: 6}", "training: {epochs: 1200, batch_size: 4}")
    folder = tmp_path / "runs" / "s"
    proc = _tune_process([str(path), "--study", "s", "--jobs", "2", "--heartbeat", "1"], tmp_path)
    # kill one worker in the middle of its trial (a child of the tune process)
    assert _wait_for(lambda: (folder / "trial-0001" / "config.yaml").exists()), proc.communicate(timeout=5)
    time.sleep(0.5)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 2
    os.kill(int(children[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    table = rows(folder)
    failed = [r for r in table if r["state"] == "failed"]
    assert len(failed) == 1, table
    assert len([r for r in table if r["state"] in ("complete", "pruned")]) == 6
    retried = [r for r in table if r["number"] != failed[0]["number"] and r["optimizer.lr"] == failed[0]["optimizer.lr"]]
    assert len(retried) == 1  # queued again with the same parameters, once
    stale = folder / f"trial-{int(failed[0]['number']):04d}"
    # the worker may die between taking a trial and making its run folder; a folder it made is marked
    if stale.is_dir():
        assert json.loads((stale / "trial.json").read_text())["state"] == "failed"
    assert "worker 0 exited" in err or "worker 1 exited" in err
    assert proc.returncode == 1


POSTGRES = os.environ.get("NNCLF_TEST_POSTGRES_URL")


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL: set NNCLF_TEST_POSTGRES_URL=postgresql://user@host/db "
                    "(bash .ci/run starts a local server and sets it) and pip install psycopg2-binary")
def test_two_machines_share_a_postgresql_study(tmp_path):
    """Two independent commands (as on two machines: separate run folders) join one study.

    The second starts once the first is running its first trial, and the trials are long enough
    (1200 epochs, about 1 s each; eight take the first machine about 8 s alone) that the first
    cannot finish them all while the second is still starting up: started together, the first
    machine sometimes took every trial on a busy machine, and with 300-epoch trials (0.25 s) a
    second command that took 2 s to start on a loaded CI host found the study done."""
    pytest.importorskip("psycopg2")
    path = config(tmp_path, "tune: {trials: 8}", "training: {epochs: 1200}")
    name = f"pg{os.getpid()}x{time.time_ns() % 10**9}"
    args = [str(path), "--study", name, "--storage", POSTGRES, "--runs-dir"]
    procs = [_tune_process([*args, "m0"], tmp_path)]
    assert _wait_for(lambda: any((tmp_path / "m0" / name).glob("trial-*"))), procs[0].communicate(timeout=60)
    procs.append(_tune_process([*args, "m1"], tmp_path))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    folders = [tmp_path / f"m{i}" / name for i in range(2)]
    numbers = [{int(p.name.split("-")[1]) for p in f.glob("trial-*")} for f in folders]
    assert numbers[0] and numbers[1] and not numbers[0] & numbers[1]  # each machine its own trials
    table = rows(folders[0])  # trials.csv: every trial of both machines, as the storage had them when m0 ended
    assert {int(r["number"]) for r in table} >= numbers[0] | numbers[1]
    # the final states, from the shared storage (m0's table is a snapshot: a surplus trial the
    # other machine had just asked for can still be "running" in it)
    import optuna

    from nnclf.tune.study import state_name

    states = {t.number: state_name(t) for t in optuna.load_study(study_name=name, storage=POSTGRES).get_trials(deepcopy=False)}
    assert sum(s in ("complete", "pruned") for s in states.values()) == 8, states
    ran = {n for n, s in states.items() if s != "skipped"}
    assert ran == numbers[0] | numbers[1], states


@pytest.mark.parametrize("target", ["d.csv", "study.yaml", "runs/s/trials.csv", "runs/s/best.yaml", "runs/s/trial-0000/checkpoints/best.npz"])
def test_a_study_report_html_link_to_what_the_study_holds_is_refused(cli, tmp_path, target):
    # DIR/STUDY/report.html as a symlink is kept and the file it names replaced: that file must
    # not be the study's data, its config, a file of the study or of a trial's run folder
    pytest.importorskip("matplotlib")
    import shutil

    shutil.copy(DATA / "iris.csv", tmp_path / "d.csv")
    path = config(tmp_path, f"data: {{train: {tmp_path / 'd.csv'}}}", "tune: {trials: 2}")
    assert cli(f"tune {path} --study s -q").exit_code == 0
    folder = tmp_path / "runs" / "s"
    (folder / "report.html").symlink_to(tmp_path / target)
    before = (tmp_path / target).read_bytes()
    result = cli(f"report {folder}")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines()[-1] == (f"error: {folder / 'report.html'}: is an input of this command (the same file as "
                                              f"{tmp_path / target}); refusing to overwrite it (nothing was written)")
    assert (tmp_path / target).read_bytes() == before


def test_study_report(cli, tmp_path):
    pytest.importorskip("matplotlib")
    path = config(tmp_path, "tune: {trials: 4}")
    assert cli(f"tune {path} --study s -q").exit_code == 0
    folder = tmp_path / "runs" / "s"
    result = cli(f"report {folder}")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"wrote {folder / 'report.html'}\n"
    page = (folder / "report.html").read_text()
    assert "Optimisation history" in page and "Parameter importances" in page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert {"history.png", "param_optimizer.lr.png", "param_model.hidden.png"} <= {name for name, _ in images}
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    from nnclf.tune.report import importances, read_study

    meta, table = read_study(folder)
    assert [r["number"] for r in table] == [0, 1, 2, 3]
    imp = importances(meta, table)
    if imp is not None:  # None only when every complete trial scored the same
        assert set(imp) == {"optimizer.lr", "model.hidden"} and abs(sum(imp.values()) - 1) < 1e-9


def test_diverging_trials_count_and_the_study_ends(cli, tmp_path):
    path = config(tmp_path, "optimizer: {name: sgd}", "tune: {trials: 3, space: {optimizer.lr: {type: loguniform, low: 1.0e+4, high: 1.0e+6}}}")
    spec = yaml.safe_load(path.read_text())
    del spec["tune"]["space"]["model.hidden"]
    path.write_text(yaml.safe_dump(spec))
    result = cli(f"tune {path} --study d")
    assert result.exit_code == 0, result.stderr
    assert "0 trials done (0 pruned), 3 diverged" in result.stdout and "no trial completed yet" in result.stdout
    folder = tmp_path / "runs" / "d"
    assert [r["state"] for r in rows(folder)] == ["diverged"] * 3
    assert json.loads((folder / "trial-0000" / "trial.json").read_text())["error"].startswith("training diverged")
    assert not (folder / "best.yaml").exists()


def test_a_regression_study_minimises_val_rmse(cli, tmp_path):
    text = f"""
task: regression
data: {{train: {DATA / 'diabetes.csv'}, target: progression}}
loss: {{name: mse}}
model: {{hidden: [8]}}
training: {{epochs: 4}}
tune:
  metric: val_rmse
  trials: 2
  space:
    optimizer.lr: {{type: loguniform, low: 1.0e-3, high: 1.0e-1}}
"""
    path = write_config(tmp_path, text)
    result = cli(f"tune {path} --study r")
    assert result.exit_code == 0, result.stderr
    table = rows(tmp_path / "runs" / "r")
    assert [r["state"] for r in table] == ["complete", "complete"]
    best = min(table, key=lambda r: float(r["val_rmse"]))
    assert f"best trial {best['number']}: val_rmse" in result.stdout
    bad = write_config(tmp_path, text.replace("metric: val_rmse", "metric: val_accuracy"), "bad.yaml")
    assert "tune.metric: unknown metric 'val_accuracy'" in cli(f"tune {bad}").stderr
