"""The YAML config through the real CLI: every mistake is one line naming file, line and key,
with a suggestion, and nothing is written before the config is valid."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, write_config

DATA = "data:\n  train: d.csv\n  target: label\n"


def _write_data(folder: Path, name: str = "d.csv") -> Path:
    rows = "".join(f"{i % 5},{(i * 7) % 11},{i % 2}\n" for i in range(30))
    path = folder / name
    path.write_text("a,b,label\n" + rows)
    return path


def _fails(cli, tmp_path, text: str, expected: str, extra_args: str = ""):
    """`train` and `config` both refuse ``text`` with exactly ``expected`` and write nothing."""
    write_config(tmp_path, text, "c.yaml")
    _write_data(tmp_path)
    for command in ("train", "config"):
        r = cli(f"{command} c.yaml {extra_args}")
        assert r.exit_code == 1, (command, r.stderr)
        assert r.stderr == f"error: {expected}\n", command
        assert r.stdout == ""
    assert not (tmp_path / "runs").exists()


# -- reading the file -------------------------------------------------------------------------
def test_missing_config_file(cli, tmp_path):
    r = cli("train nope.yaml")
    assert (r.exit_code, r.stderr) == (1, "error: nope.yaml: config file not found\n")
    assert not (tmp_path / "runs").exists()
    r = cli("config nope.yaml")
    assert (r.exit_code, r.stderr) == (1, "error: nope.yaml: config file not found\n")


def test_invalid_yaml_names_its_line(cli, tmp_path):
    # the unclosed flow list starts on line 3; the parser notices at line 4, column 9
    _fails(cli, tmp_path, "seed: 0\ndata:\n  train: [d.csv\n  target: label\n",
           "c.yaml, line 4, column 9: invalid YAML: expected ',' or ']', but got ':'")


def test_a_yaml_set_is_an_error_not_an_order_of_chance(cli, tmp_path):
    # {4, 8} as a set iterates as 8, 4: the network would silently be 8-4 instead of 4-8
    _fails(cli, tmp_path, "data: {train: d.csv, target: label}\nmodel: {hidden: !!set {4, 8}}\n",
           "c.yaml, line 2, column 17: invalid YAML: a YAML set (!!set) has no order; write a list like [a, b]")
    write_config(tmp_path, "data: {train: d.csv, target: label}\n", "c.yaml")
    r = cli(["config", "c.yaml", "--set", "model.hidden=!!set {4, 8}"])
    assert r.exit_code == 1 and "--set model.hidden: cannot parse value" in r.stderr


def test_a_key_written_twice_is_an_error_not_silently_the_last(cli, tmp_path):
    text = "data: {train: d.csv, target: label}\ntraining:\n  epochs: 3\nmodel: {hidden: [4]}\ntraining:\n  batch_size: 8\n"
    _fails(cli, tmp_path, text, "c.yaml, line 5, column 1: invalid YAML: key 'training' appears twice (lines 2 and 5)")
    _fails(cli, tmp_path, "data: {train: d.csv, target: label, train: e.csv}\n",
           "c.yaml, line 1, column 37: invalid YAML: key 'train' appears twice (lines 1 and 1)")


def test_yaml_merge_keys_are_not_duplicates(cli, tmp_path):
    # an explicit key overrides the same key brought in by '<<' (YAML merge), no error
    (tmp_path / "c.yaml").write_text(
        "data: {train: d.csv, target: label}\ntraining:\n  <<: {epochs: 3, batch_size: 4}\n  batch_size: 8\n"
    )
    result = cli(["config", tmp_path / "c.yaml"])
    assert result.exit_code == 0, result.stderr
    assert "  epochs: 3\n" in result.stdout and "  batch_size: 8\n" in result.stdout


def test_empty_document(cli, tmp_path):
    _fails(cli, tmp_path, "# only a comment\n", "c.yaml: the config is empty; it needs at least data.train and data.target")


def test_document_that_is_not_a_mapping(cli, tmp_path):
    _fails(cli, tmp_path, "- data\n- model\n", "c.yaml: the config must be a mapping of keys to values, got list")


def test_yaml_python_tag_is_rejected_and_not_executed(cli, tmp_path):
    marker = tmp_path / "pwned.txt"
    text = DATA + f'seed: !!python/object/apply:os.system ["echo pwned > {marker}"]\n'
    _fails(cli, tmp_path, text,
           "c.yaml, line 4, column 7: invalid YAML: could not determine a constructor for the tag "
           "'tag:yaml.org,2002:python/object/apply:os.system'")
    assert not marker.exists()


# -- keys -------------------------------------------------------------------------------------
TOP_KEYS = "seed, task, data, model, loss, optimizer, schedule, training, tune"


def test_unknown_top_level_key_suggests_the_closest(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "optimiser:\n  lr: 0.1\n",
           f"c.yaml, line 4: optimiser: unknown key (did you mean 'optimizer'?); valid keys: {TOP_KEYS}")


def test_unknown_nested_key(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "model:\n  hiden: [8]\n",
           "c.yaml, line 5: model.hiden: unknown key (did you mean 'hidden'?); valid keys: hidden, activation, init, dropout, code_layer")


def test_unknown_deeply_nested_key(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "training:\n  early_stopping:\n    patince: 3\n",
           "c.yaml, line 6: training.early_stopping.patince: unknown key (did you mean 'patience'?); "
           "valid keys: monitor, patience, min_delta, mode")


def test_unknown_optimizer_specific_key(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "optimizer:\n  name: momentum\n  momentm: 0.5\n",
           "c.yaml, line 6: optimizer.momentm: unknown key for optimizer 'momentum' (did you mean 'momentum'?); "
           "valid keys: name, lr, momentum")


def test_key_of_another_optimizer_is_rejected(cli, tmp_path):
    # adam has no momentum: silently ignoring it is the bug users lose hours to
    _fails(cli, tmp_path, DATA + "optimizer:\n  name: adam\n  momentum: 0.5\n",
           "c.yaml, line 6: optimizer.momentum: unknown key for optimizer 'adam'; valid keys: name, lr, beta1, beta2, eps")


def test_missing_required_section(cli, tmp_path):
    _fails(cli, tmp_path, "seed: 0\n", "c.yaml: data: required key is missing")


def test_missing_required_key(cli, tmp_path):
    _fails(cli, tmp_path, "data:\n  train: d.csv\n", "c.yaml, line 1: data.target: required key is missing")


# -- types and ranges -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, expected",
    [
        ("training:\n  epochs: ten\n",
         "c.yaml, line 5: training.epochs: input should be a valid integer, unable to parse string as an integer, got 'ten'"),
        ("model:\n  hidden: 5\n", "c.yaml, line 5: model.hidden: input should be a valid list, got 5"),
        ("training:\n  shuffle: maybe\n",
         "c.yaml, line 5: training.shuffle: input should be a valid boolean, unable to interpret input, got 'maybe'"),
        ("optimizer: adam\n", "c.yaml, line 4: optimizer: expected a mapping of optimizer keys such as {name: adam}, got 'adam'"),
    ],
    ids=["int", "list", "bool", "section"],
)
def test_wrong_types(cli, tmp_path, extra, expected):
    _fails(cli, tmp_path, DATA + extra, expected)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("optimizer:\n  lr: 0\n", "c.yaml, line 5: optimizer.lr: must be a number > 0, got 0"),
        ("optimizer:\n  lr: -0.1\n", "c.yaml, line 5: optimizer.lr: must be a number > 0, got -0.1"),
        ("optimizer:\n  lr: .nan\n", "c.yaml, line 5: optimizer.lr: must be a finite number > 0, got nan"),
        ("training:\n  batch_size: 0\n", "c.yaml, line 5: training.batch_size: must be an integer >= 1 or 'full', got 0"),
        ("model:\n  dropout: 1.0\n", "c.yaml, line 5: model.dropout: must be a number in [0, 1), got 1.0"),
        ("model:\n  dropout: -0.1\n", "c.yaml, line 5: model.dropout: must be a number in [0, 1), got -0.1"),
        ("  test_split: 0.5\n  val_split: 0.5\n", "c.yaml, line 1: data: test_split + val_split must be < 1, got 0.5 + 0.5"),
        ("optimizer:\n  name: momentum\n  momentum: 1.5\n",
         "c.yaml, line 6: optimizer.momentum: must be a number in [0, 1), got 1.5"),
    ],
    ids=["lr0", "lr-neg", "lr-nan", "batch0", "dropout1", "dropout-neg", "splits", "momentum"],
)
def test_out_of_range(cli, tmp_path, extra, expected):
    _fails(cli, tmp_path, DATA + extra, expected)


def test_unknown_text_encoding(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "  encoding: klingon\n",
           "c.yaml, line 4: data.encoding: unknown text encoding 'klingon' (e.g. utf-8, latin-1, cp1252)")


def test_batch_size_full_is_allowed(cli, tmp_path):
    write_config(tmp_path, DATA + "training:\n  batch_size: full\n", "c.yaml")
    r = cli("config c.yaml")
    assert r.exit_code == 0, r.stderr
    assert yaml.safe_load(r.stdout)["training"]["batch_size"] == "full"


def test_splits_summing_below_one_are_allowed(cli, tmp_path):
    write_config(tmp_path, DATA + "  test_split: 0.5\n  val_split: 0.49\n", "c.yaml")
    assert cli("config c.yaml").exit_code == 0


@pytest.mark.parametrize(
    "extra, kind, name, closest, valid",
    [
        ("optimizer:\n  name: adma\n", "optimizer", "adma", "adam", "sgd, gd, momentum, nesterov, adagrad, rmsprop, adam, adamw, lbfgs, cg, newton_cg"),
        ("model:\n  activation: rellu\n", "activation", "rellu", "relu",
         "identity, linear, sigmoid, logistic, tanh, relu, leaky_relu, elu, softplus, gelu"),
        ("loss:\n  name: cross_entropi\n", "loss", "cross_entropi", "cross_entropy", "cross_entropy, ce, bce, nll, kl_div, kl, mse, mae, huber"),
        ("schedule:\n  name: cosin\n", "schedule", "cosin", "cosine", "constant, step, exponential, cosine, reduce_on_plateau, plateau"),
        ("model:\n  init: he_norml\n", "init", "he_norml", "he_normal",
         "auto, xavier_uniform, glorot_uniform, xavier, glorot, xavier_normal, glorot_normal, he_normal, he, "
         "kaiming_normal, he_uniform, kaiming_uniform, normal, uniform"),
    ],
    ids=["optimizer", "activation", "loss", "schedule", "init"],
)
def test_unknown_names_list_choices_and_suggest(cli, tmp_path, extra, kind, name, closest, valid):
    key = {"optimizer": "optimizer.name", "activation": "model.activation", "loss": "loss.name",
           "schedule": "schedule.name", "init": "model.init"}[kind]
    _fails(cli, tmp_path, DATA + extra,
           f"c.yaml, line 5: {key}: unknown {kind} '{name}' (did you mean '{closest}'?); valid: {valid}")


def test_several_problems_in_one_line(cli, tmp_path):
    _fails(cli, tmp_path, DATA + "training:\n  epochs: 0\n  shuffle: x\n",
           "c.yaml, line 5: training.epochs: must be an integer >= 1, got 0; "
           "line 6: training.shuffle: input should be a valid boolean, unable to interpret input, got 'x'")


# -- overrides and paths ----------------------------------------------------------------------
def test_set_overrides_values(cli, tmp_path):
    write_config(tmp_path, DATA + "optimizer:\n  lr: 0.1\nmodel:\n  hidden: [4]\n", "c.yaml")
    r = cli(["config", "c.yaml", "--set", "optimizer.lr=0.01", "--set", "model.hidden=[128,64]"])
    assert r.exit_code == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["model"]["hidden"] == [128, 64]


def test_set_errors_name_the_override_not_a_file_line(cli, tmp_path):
    # the file's lr (line 5) is fine; the bad value came from --set
    _fails(cli, tmp_path, DATA + "optimizer:\n  lr: 0.1\n",
           "--set optimizer.lr: must be a number > 0, got -1", "--set optimizer.lr=-1")
    _fails(cli, tmp_path, DATA + "optimizer:\n  lr: 0.1\n",
           "--set optimizer.lrr: unknown key for optimizer 'adam' (did you mean 'lr'?); valid keys: name, lr, beta1, beta2, eps",
           "--set optimizer.lrr=1")


def test_set_without_equals(cli, tmp_path):
    _fails(cli, tmp_path, DATA, "--set 'optimizer.lr': expected KEY=VALUE, e.g. --set optimizer.lr=0.01", "--set optimizer.lr")


@pytest.mark.parametrize("key", ["model..hidden", ".seed", "seed.", "tune.space..x"])
def test_set_key_with_an_empty_name_is_refused(cli, tmp_path, key):
    # was "c.yaml, line N: model.: unknown key" (a file line for a --set typo), "--set seed: input
    # should be a valid integer" (seed became a section), or for tune.space silently accepted
    _fails(cli, tmp_path, DATA + "model:\n  hidden: [4]\n",
           f"--set '{key}': a dotted key with an empty name in it; expected e.g. --set model.hidden=[64]",
           f"--set {key}=1")


def test_an_empty_data_path_is_refused_by_its_key(cli, tmp_path):
    # it resolved to the current folder: "error: .: is a folder, expected a data file"
    _fails(cli, tmp_path, "data:\n  train: ''\n  target: label\n", "c.yaml, line 2: data.train: must be a path, got ''")
    _fails(cli, tmp_path, DATA + "  test: ''\n", "c.yaml, line 4: data.test: must be a path, got ''")
    _fails(cli, tmp_path, DATA, "--set data.val: must be a path, got ''", "--set 'data.val=\"\"'")


def test_a_data_path_that_is_a_symlink_loop_is_one_line(cli, tmp_path):
    # Path.resolve raised RuntimeError("Symlink loop") on it: a traceback from config and train
    (tmp_path / "loop.csv").symlink_to("loop.csv")
    expected = f"error: {tmp_path.resolve() / 'loop.csv'}: cannot read the data file (Too many levels of symbolic links)\n"
    write_config(tmp_path, "data:\n  train: loop.csv\n  target: label\n", "c.yaml")
    assert cli("config c.yaml").exit_code == 0
    try:
        for args in ("train c.yaml", "train c.yaml --set data.train=loop.csv"):
            r = cli(args)
            assert (r.exit_code, r.stderr) == (1, expected), args
        assert not (tmp_path / "runs").exists()
    finally:
        (tmp_path / "loop.csv").unlink()  # other tests walk the shared temporary folder


def test_relative_paths_in_file_resolve_against_its_folder_and_set_against_cwd(cli, tmp_path):
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs", "data:\n  train: ../data/train.csv\n  target: label\n  val: v.csv\n", "c.yaml")
    r = cli(["config", "configs/c.yaml", "--set", "data.test=rel/test.csv"])
    assert r.exit_code == 0, r.stderr
    data = yaml.safe_load(r.stdout)["data"]
    root = tmp_path.resolve()
    assert data["train"] == str(root / "data" / "train.csv")
    assert data["val"] == str(root / "configs" / "v.csv")
    assert data["test"] == str(root / "rel" / "test.csv")


def test_set_data_train_relative_to_cwd_is_used_for_training(cli, tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _write_data(tmp_path / "elsewhere", "train.csv")
    write_config(tmp_path / "cfg", "data:\n  train: missing.csv\n  target: label\nmodel:\n  hidden: [3]\ntraining:\n  epochs: 1\n", "c.yaml")
    r = cli(["train", "cfg/c.yaml", "--set", "data.train=elsewhere/train.csv", "--name", "r", "--quiet"])
    assert r.exit_code == 0, r.stderr
    saved = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text())
    assert saved["data"]["train"] == str(tmp_path.resolve() / "elsewhere" / "train.csv")


# -- nnclf config -----------------------------------------------------------------------------
def test_config_prints_every_key_with_defaults(cli, tmp_path):
    write_config(tmp_path, DATA + "optimizer:\n  name: momentum\n", "c.yaml")
    r = cli("config c.yaml")
    assert r.exit_code == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert list(cfg) == ["seed", "task", "data", "model", "loss", "optimizer", "schedule", "training"]
    assert set(cfg["data"]) == {
        "train", "target", "test", "val", "test_split", "val_split", "features", "ignore", "categorical",
        "max_categories", "missing_indicators", "scaling", "encoding", "delimiter", "target_scaling", "split_seed", "na_values",
        "cache", "cache_dir",
    }
    assert cfg["model"] == {"hidden": [64, 64], "activation": "relu", "init": "auto", "dropout": 0.0, "code_layer": None}
    # the chosen optimizer's own keys appear with their defaults
    assert cfg["optimizer"] == {"name": "momentum", "lr": 0.001, "momentum": 0.9}
    assert cfg["schedule"] == {"name": "constant", "warmup_epochs": 0}
    assert set(cfg["training"]) == {"epochs", "batch_size", "shuffle", "early_stopping", "dtype", "clip_norm",
                                    "checkpoint_every", "threads", "workers", "calibration", "refit", "refit_epochs"}
    assert cfg["loss"]["name"] == "cross_entropy"
    assert (cfg["seed"], cfg["data"]["test_split"], cfg["data"]["val_split"]) == (0, 0.2, 0.1)


def test_config_output_is_a_valid_config(cli, tmp_path):
    """What `config` prints can be loaded again and gives the same result."""
    write_config(tmp_path, DATA + "optimizer:\n  name: adamw\n  lr: 0.02\n", "c.yaml")
    first = cli("config c.yaml").stdout
    (tmp_path / "again.yaml").write_text(first)
    again = cli("config again.yaml")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first


def test_config_does_not_import_pandas(tmp_path):
    path = write_config(tmp_path, DATA, "c.yaml")
    code = textwrap.dedent(
        f"""
        import sys
        from nnclf.cli import main
        sys.argv = ["nnclf", "config", {str(path)!r}]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        assert "pandas" not in sys.modules, "pandas imported"
        print("OK", file=sys.stderr)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "OK"
    assert "train:" in r.stdout


@pytest.mark.parametrize("key", ["features", "ignore", "categorical"])
def test_a_column_listed_twice_is_an_error(cli, tmp_path, key):
    _fails(cli, tmp_path, f"data:\n  train: d.csv\n  target: label\n  {key}: [a, b, a]\n",
           f"c.yaml, line 4: data.{key}: column 'a' is listed more than once")


def test_a_huge_set_value_is_shown_cut_short(cli, tmp_path):
    (tmp_path / "c.yaml").write_text("data: {train: d.csv, target: label}\n")
    result = cli(["config", tmp_path / "c.yaml", "--set", "data.categorical=" + "9" * 5000])  # int too long to parse
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --set data.categorical: cannot parse value '9999")
    assert len(result.stderr) < 300
