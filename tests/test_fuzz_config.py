"""Hostile configs: generated YAML, valid and invalid, through `nnclf config` and `nnclf train`.

The rule every config must obey: it validates (and then trains), or nnclf exits 1 with ONE line
on stderr starting "error:": never a traceback, never a run folder for a rejected config,
never code execution from a YAML tag.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from nnclf.checkpoint import load_checkpoint
from nnclf.config import validate

CSV = "a,b,label\n" + "".join(f"{(i * 7) % 11 / 5:.2f},{(i * 3) % 5},{'xy'[i % 2]}\n" for i in range(20))
MARKER = "PWNED"  # a tag that executed code would create this file in the working folder
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FUZZ_TRAIN = settings(FUZZ, max_examples=60)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_config")


def fresh_folder(base: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=base))
    (folder / "d.csv").write_text(CSV)
    return folder


def check_failure(result) -> str:
    """Exit 1 (2 for usage) and one line starting 'error:' (warnings aside), no traceback."""
    assert result.exit_code in (1, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith("error: ") and len(lines[0]) < 2000, lines[0][:2000]
    return lines[0]


def run_config(folder: Path, text: str | bytes, *overrides: str):
    path = folder / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    args = ["config", "c.yaml"]
    for item in overrides:
        args += ["--set", item]
    result = run_cli(args, folder)
    assert not (folder / MARKER).exists(), "a YAML tag executed code"
    if result.exit_code == 0:
        # what `config` prints is the whole truth: it parses and validates to itself
        printed = yaml.safe_load(result.stdout)
        assert validate(printed).to_dict() == printed
    else:
        check_failure(result)
    return result


def run_train(folder: Path, text: str | bytes, *overrides: str):
    path = folder / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    args = ["train", "c.yaml", "--quiet"]
    for item in overrides:
        args += ["--set", item]
    result = run_cli(args, folder)
    assert not (folder / MARKER).exists(), "a YAML tag executed code"
    runs = folder / "runs"
    folders = sorted(runs.iterdir()) if runs.exists() else []
    if result.exit_code == 0:
        assert len(folders) == 1
        run = folders[0]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished"
        params, meta, _ = load_checkpoint(run / "checkpoints" / "last.npz")
        assert np.all(np.isfinite(params)) and meta["trainer"]["epoch"] == summary["epochs_run"]
        # the run's config is the one `nnclf config` resolves
        assert (run / "config.yaml").read_text() == run_config(folder, text, *overrides).stdout
    else:
        line = check_failure(result)
        if "training diverged" in line:  # a valid config that trained badly: the run is kept, marked
            assert len(folders) == 1
            assert json.loads((folders[0] / "summary.json").read_text())["status"] == "diverged"
        else:  # a rejected config leaves nothing behind
            assert folders == [], (line, folders)
    return result


# -- building blocks ---------------------------------------------------------------------------
def dump(value) -> str:
    """A Python value as YAML flow text."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9).strip().removesuffix("\n...")


RAW = [  # YAML text that safe_dump would never produce
    f"!!python/object/apply:os.system ['touch {MARKER}']",
    f"!!python/object/apply:subprocess.call [[touch, {MARKER}]]",
    f"!!python/object/new:os.system ['touch {MARKER}']",
    "!!python/name:os.system",
    "!!python/module:os",
    f"!!python/object/apply:builtins.exec [\"open('{MARKER}', 'w')\"]",
    "!custom 3",
    "!!binary aGVsbG8=",
    "!!set {1, 2}",
    "!!omap [{a: 1}]",
    "!!timestamp 2001-12-14",
    "2001-13-45",
    "1e400",
    "-1e400",
    ".inf",
    "-.inf",
    ".nan",
    "1e-400",
    "10" + "0" * 29,
    "-" + "9" * 40,
    "9" * 5000,
    "0x1F",
    "0o17",
    "1_000",
    "0b101",
    "+12",
    "1.0e+3",
    "12:30:00",
    "yes",
    "no",
    "on",
    "off",
    "~",
    "''",
    '"\\u0000"',
    '"\u2603 snow \U0001f600"',
    "*undefined_alias",
    "&anchor [1, 2]",
    "[" * 300 + "]" * 300,
    "{a: " * 200 + "1" + "}" * 200,
    "[1, [2, [3, [4]]]]",
    "{<<: {lr: 0.1}}",
    "|\n    two\n    lines",
    "'unterminated",
    "[1, 2",
    "{a: 1, a: 2}",
    "@reserved",
    "`backtick",
    "%percent",
    "? complex\n  : key",
]

KEYS = {  # every documented key with a few in-range values
    "seed": [0, 1, 12345],
    "task": ["classification"],
    "data.test_split": [0.0, 0.2, 0.3],
    "data.val_split": [0.0, 0.1, 0.25],
    "data.features": [["a", "b"], ["a"]],
    "data.ignore": [[], ["b"]],
    "data.categorical": [[], ["b"]],
    "data.max_categories": [None, 1, 3],
    "data.missing_indicators": [True, False],
    "data.scaling": ["standard", "minmax", "none"],
    "data.encoding": ["utf-8", "latin-1", "UTF8"],
    "data.delimiter": [None, ","],
    "model.hidden": [[], [3], [2, 2]],
    "model.activation": ["relu", "tanh", "sigmoid", "gelu", "elu", "softplus", "leaky_relu", "identity"],
    "model.init": ["auto", "xavier_uniform", "he_normal", "normal", "uniform"],
    "model.dropout": [0.0, 0.2],
    "loss.name": ["cross_entropy", "nll", "mse", "kl_div"],
    "loss.weight_decay": [0.0, 0.01],
    "loss.label_smoothing": [0.0, 0.1],
    "loss.class_weights": [None, "balanced", {"x": 2.0}],
    "optimizer.name": ["gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"],
    "optimizer.lr": [0.001, 0.1, 1.0],
    "optimizer.momentum": [0.5],
    "optimizer.beta1": [0.8],
    "optimizer.eps": [1e-6],
    "optimizer.rho": [0.5],
    "optimizer.weight_decay": [0.1],
    "schedule.name": ["constant", "step", "exponential", "cosine", "reduce_on_plateau"],
    "schedule.warmup_epochs": [0, 1, 10**30],
    "schedule.step_size": [1, 10**30],
    "schedule.gamma": [0.5],
    "schedule.min_lr": [0.0, 1e-4],
    "schedule.monitor": ["val_loss", "train_loss", "val_accuracy"],
    "schedule.factor": [0.5],
    "schedule.patience": [0, 2],
    "training.epochs": [1, 2, 3],
    "training.batch_size": [1, 4, "full", 10**30],
    "training.shuffle": [True, False],
    "training.early_stopping": [None, {"patience": 1}, {"monitor": "train_loss", "patience": 0, "mode": "min"}],
    "training.dtype": ["float32", "float64"],
    "training.clip_norm": [None, 1.0, 1e-300],
    "training.checkpoint_every": [1, 2, 10**30],
    "training.threads": [None, "auto", 1],
}
weird_scalars = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["", " ", "full", "auto", "relu ", "ADAM", "val_loss", "ünïcødé", "\u202e", "a" * 300]),
)
weird_values = st.recursive(weird_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def misspell(key: str):
    """Typos and look-alikes of a real key."""
    return st.sampled_from(
        [
            key[:-1],
            key + "s",
            key.upper(),
            key.replace("i", "\u0456"),  # Cyrillic i
            key.replace("_", "-"),
            key.replace("o", "0"),
            " " + key,
            key + "\u200b",
        ]
    )


@st.composite
def mutated_configs(draw, allow_hostile_values: bool = True):
    """(YAML text, whether only in-range values were used) from a valid base plus mutations."""
    tree: dict = {"data": {"train": "d.csv", "target": "label"}, "model": {"hidden": [3]}, "training": {"epochs": 2}}
    raw_inserts: dict[str, str] = {}
    clean = True
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from(sorted(KEYS)))
        kind = draw(st.sampled_from(["valid", "valid", "weird", "raw", "misspelled", "unknown", "delete"]))
        section, _, leaf = key.rpartition(".")
        node = tree.setdefault(section, {}) if section else tree
        if not isinstance(node, dict):
            continue
        if kind == "valid":
            node[leaf] = draw(st.sampled_from(KEYS[key]))
        elif kind == "delete":
            node.pop(leaf, None)
        elif not allow_hostile_values:
            continue
        elif kind == "weird":
            node[leaf] = draw(weird_values)
            clean = False
        elif kind == "raw":
            placeholder = f"__raw_{len(raw_inserts)}__"
            node[leaf] = placeholder
            raw_inserts[placeholder] = draw(st.sampled_from(RAW))
            clean = False
        elif kind == "misspelled":
            node[draw(misspell(leaf))] = draw(st.sampled_from(KEYS[key]))
            clean = False
        else:
            node[draw(st.text(min_size=1, max_size=8))] = draw(weird_scalars)
            clean = False
    if draw(st.booleans()):  # sometimes a whole section is replaced by a non-mapping
        if allow_hostile_values and draw(st.integers(0, 4)) == 0:
            tree[draw(st.sampled_from(["data", "model", "training", "optimizer"]))] = draw(weird_scalars)
            clean = False
    text = "\n".join(f"{dump(k)}: {dump(v)}" for k, v in tree.items()) + "\n"
    for placeholder, raw in raw_inserts.items():
        text = text.replace(placeholder, raw)
    return text, clean


# -- properties --------------------------------------------------------------------------------
@FUZZ
@given(case=mutated_configs())
def test_config_command_validates_or_fails_with_one_line(base, case):
    text, _ = case
    run_config(fresh_folder(base), text)


@FUZZ_TRAIN
@given(case=mutated_configs())
def test_train_trains_or_fails_with_one_line_and_no_folder(base, case):
    text, _ = case
    run_train(fresh_folder(base), text)


@FUZZ_TRAIN
@given(case=mutated_configs(allow_hostile_values=False))
def test_configs_of_documented_keys_and_in_range_values_validate(base, case):
    """Only documented keys with in-range values: a rejection must be a cross-key rule
    (optimizer/schedule keys of another class, splits, monitors), never a crash."""
    text, clean = case
    assert clean
    result = run_train(fresh_folder(base), text)
    if result.exit_code != 0:
        line = check_failure(result)
        expected = ("unknown key for", "test_split + val_split", "needs validation data", "too few for data.",
                    "single class", "training diverged", "is not logged", "no feature columns", "not found")
        assert any(e in line for e in expected), line


@FUZZ
@given(
    key=st.one_of(st.sampled_from(sorted(KEYS)), st.text(min_size=0, max_size=12), st.sampled_from(["a.b.c.d", ".", "..", "data.", ".seed", "data.train.x", "model.hidden.0"])),
    value=st.one_of(st.sampled_from(RAW).filter(lambda r: "\n" not in r), st.builds(dump, weird_values), st.text(max_size=10)),
)
def test_set_overrides_validate_or_fail_with_one_line(base, key, value):
    text = "data: {train: d.csv, target: label}\ntraining: {epochs: 1}\n"
    run_config(fresh_folder(base), text, f"{key}={value}")


# -- named hostile cases -----------------------------------------------------------------------
def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines)


HOSTILE = {
    "empty file": "",
    "only a comment": "# nothing here\n",
    "only whitespace": "   \n\n\t\n",
    "a bare scalar": "42\n",
    "a list": "- data\n- model\n",
    "null document": "~\n",
    "two documents": "data: {train: d.csv, target: label}\n---\nseed: 1\n",
    "NUL byte": "data: {train: d.csv, target: label\x00}\n",
    "latin-1 bytes": "data: {train: d.csv, target: lab\xe9l}\n".encode("latin-1"),
    "UTF-16": "data: {train: d.csv, target: label}\n".encode("utf-16"),
    "tab indentation": "data:\n\ttrain: d.csv\n",
    "python tag at the top": f"!!python/object/apply:os.system ['touch {MARKER}']\n",
    "python tag in a value": f"data: {{train: d.csv, target: !!python/object/apply:os.system ['touch {MARKER}']}}\n",
    "python/object/new": f"seed: !!python/object/new:os.system ['touch {MARKER}']\ndata: {{train: d.csv, target: label}}\n",
    "python/name": "seed: !!python/name:os.system\ndata: {train: d.csv, target: label}\n",
    "python tag as a key": f"? !!python/object/apply:os.system ['touch {MARKER}']\n: 1\n",
    "python tag in --set-like merge": f"base: &b {{train: !!python/object/apply:os.system ['touch {MARKER}'], target: label}}\ndata: *b\n",
    "billion laughs in a value": _laughs(7) + "\ndata: {train: d.csv, target: label}\nmodel: {hidden: [*l6]}\n",
    "billion laughs as an optimizer key": _laughs(7) + "\ndata: {train: d.csv, target: label}\noptimizer: {name: sgd, momentum: *l6}\n",
    "billion laughs as features": _laughs(7) + "\ndata: {train: d.csv, target: label, features: *l6}\n",
    "recursive alias": "data: &d {train: d.csv, target: label, self: *d}\n",
    "deeply nested list": "data: {train: d.csv, target: label}\nmodel: {hidden: " + "[" * 5000 + "]" * 5000 + "}\n",
    "deeply nested mapping": "data: {train: d.csv, target: label}\nmodel: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "5000-digit integer": "data: {train: d.csv, target: label}\nseed: " + "9" * 5000 + "\n",
    "1e400": "data: {train: d.csv, target: label}\noptimizer: {lr: 1e400}\n",
    "10**30 seed": "data: {train: d.csv, target: label}\nseed: " + "1" + "0" * 30 + "\ntraining: {epochs: 1}\n",
    "10**30 hidden width": "data: {train: d.csv, target: label}\nmodel: {hidden: [" + "1" + "0" * 30 + "]}\n",
    "10**20 hidden widths": "data: {train: d.csv, target: label}\nmodel: {hidden: [100000000000000000000, 2]}\n",
    "10**9 x 10**9 hidden": "data: {train: d.csv, target: label}\nmodel: {hidden: [1000000000, 1000000000]}\n",
    "10**30 threads": "data: {train: d.csv, target: label}\ntraining: {epochs: 1, threads: " + "1" + "0" * 30 + "}\n",
    "10**30 batch": "data: {train: d.csv, target: label}\ntraining: {epochs: 1, batch_size: " + "1" + "0" * 30 + "}\n",
    "huge class weight": "data: {train: d.csv, target: label}\nloss: {class_weights: {x: 1e308, y: 1e308}}\ntraining: {epochs: 1}\n",
    "huge weight decay": "data: {train: d.csv, target: label}\nloss: {weight_decay: 1e308}\ntraining: {epochs: 1}\n",
    "epochs: yes": "data: {train: d.csv, target: label}\ntraining: {epochs: yes}\n",
    "hidden: [on, off]": "data: {train: d.csv, target: label}\nmodel: {hidden: [on, off]}\n",
    "lr: true": "data: {train: d.csv, target: label}\noptimizer: {lr: true}\n",
    "unknown encoding": "data: {train: d.csv, target: label, encoding: klingon}\n",
    "codec that is not a text encoding": "data: {train: d.csv, target: label, encoding: rot13}\n",
    "domain-name codec as the encoding": "data: {train: d.csv, target: label, encoding: punycode}\n",
    "idna as the encoding": "data: {train: d.csv, target: label, encoding: idna}\n",
    "two-character delimiter": "data: {train: d.csv, target: label, delimiter: ';;'}\n",
    "newline delimiter": "data: {train: d.csv, target: label, delimiter: \"\\n\"}\n",
    "unknown early-stopping metric": "data: {train: d.csv, target: label}\ntraining: {epochs: 2, early_stopping: {monitor: val_acc}}\n",
    "unknown plateau metric": "data: {train: d.csv, target: label}\ntraining: {epochs: 2}\nschedule: {name: reduce_on_plateau, monitor: vall_loss}\n",
    "plateau on val_loss without validation": "data: {train: d.csv, target: label, val_split: 0}\ntraining: {epochs: 2}\nschedule: {name: reduce_on_plateau}\n",
    "Cyrillic o in a key": "data: {train: d.csv, target: label}\n\u043eptimizer: {lr: 0.1}\n",
    "zero-width space in a key": "data: {train: d.csv, target: label}\nseed\u200b: 1\n",
    "unicode everywhere": "data: {train: d.csv, target: \u2603}\nmodel: {activation: r\u00e9lu}\n",
    "right-to-left override": "data: {train: d.csv, target: label}\nmodel: {activation: \"\u202eulre\"}\n",
    "a newline in a key": 'data: {train: d.csv, target: label}\n"se\\red\\nx": 1\n',
    "a 100 kB string": "data: {train: d.csv, target: label}\nmodel: {activation: " + "x" * 100_000 + "}\n",
    "non-string key": "data: {train: d.csv, target: label}\n1: 2\n",
    "null key": "data: {train: d.csv, target: label}\n~: 2\n",
    "list as a key": "data: {train: d.csv, target: label}\n? [a, b]\n: 2\n",
    "data is a list": "data: [d.csv, label]\n",
    "data paths are numbers": "data: {train: 1, target: 2}\n",
    "train is a folder": "data: {train: ., target: label}\n",
    "train is empty": "data: {train: '', target: label}\n",
    "train is /dev/null": "data: {train: /dev/null, target: label}\n",
    "missing train file": "data: {train: nope.csv, target: label}\n",
    "bad date": "data: {train: d.csv, target: label}\nseed: 2001-13-45\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_named_hostile_configs(base, name):
    folder = fresh_folder(base)
    text = HOSTILE[name]
    config = run_config(folder, text)
    train = run_train(folder, text)
    if config.exit_code != 0:  # what `config` rejects, `train` rejects too
        assert train.exit_code == 1
    if any(word in name for word in ("python", "laughs", "nested", "digit", "encoding", "delimiter", "yes", "true")):
        assert config.exit_code == 1


@pytest.mark.parametrize(
    "name, message",
    [
        ("epochs: yes", "training.epochs: expected an integer, got the boolean True"),
        ("hidden: [on, off]", "model.hidden: expected a list of integers, got [True, False]"),
        ("lr: true", "optimizer.lr: expected a number, got the boolean True"),
        ("unknown encoding", "data.encoding: unknown text encoding 'klingon'"),
        ("codec that is not a text encoding", "data.encoding: unknown text encoding 'rot13'"),
        ("domain-name codec as the encoding", "data.encoding: 'punycode' encodes domain names, not files"),  # was a traceback
        ("idna as the encoding", "data.encoding: 'idna' encodes domain names, not files"),
        ("two-character delimiter", "data.delimiter: must be one character"),
        ("unknown early-stopping metric", "training.early_stopping.monitor: metric 'val_acc' is not logged (did you mean 'val_accuracy'?)"),
        ("unknown plateau metric", "schedule.monitor: metric 'vall_loss' is not logged (did you mean 'val_loss'?)"),
        ("plateau on val_loss without validation", "schedule.monitor: 'val_loss' needs validation data"),
        ("10**30 hidden width", "model.hidden: [1000000000000000000000000000000] makes a network of"),
        ("10**9 x 10**9 hidden", "too many to allocate"),
        ("10**30 threads", "training.threads: must be 'auto' or an integer from 1 to 1024"),
        ("deeply nested list", "c.yaml: invalid YAML: nested too deeply"),
        ("5000-digit integer", "c.yaml: invalid YAML: a number with more than 4300 digits"),
        ("a newline in a key", "c.yaml, line 2: se\\red\\nx: unknown key (did you mean 'seed'?)"),
        ("python tag at the top", "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ],
)
def test_hostile_configs_are_explained(base, name, message):
    """The one line says what is wrong (these were tracebacks, silent 1s, or left run folders)."""
    result = run_train(fresh_folder(base), HOSTILE[name])
    line = check_failure(result)
    assert message in line, line


def test_billion_laughs_error_is_short(base):
    """10**7 aliased leaves: the message shows a bounded excerpt of the value, not gigabytes."""
    result = run_config(fresh_folder(base), HOSTILE["billion laughs in a value"])
    line = check_failure(result)
    assert "model.hidden.0: input should be a valid integer, got [[" in line and len(line) < 1000
