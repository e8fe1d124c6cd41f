"""Each optimizer's and schedule's config model (nnclf/hyperparams.py): the same names and
defaults as the engine classes, the ranges the lecture gives, and the README config
reference listing every key of the schema with its default."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from conftest import ROOT
from nnclf.config import schema_fields, validate
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.schedules import SCHEDULES
from nnclf.errors import NnclfError
from nnclf.hyperparams import OPTIMIZER_KEYS, SCHEDULE_KEYS

DATA = {"train": "x.csv", "target": "y"}
PAIRS = [("optimizer", OPTIMIZER_KEYS, OPTIMIZERS), ("schedule", SCHEDULE_KEYS, SCHEDULES)]


def _own_defaults(model) -> dict:
    return {key: field.default for key, field in model.model_fields.items() if key not in ("name", "lr", "warmup_epochs")}


@pytest.mark.parametrize("section, keys, engine", PAIRS, ids=["optimizer", "schedule"])
def test_every_engine_class_has_a_model_with_its_keys_and_defaults(section, keys, engine):
    assert keys.names() == engine.names()
    for name in engine.names():
        defaults = _own_defaults(keys.get(name))
        assert defaults == engine.get(name).hyper, name
        for key, value in defaults.items():  # 10 is not 10.0: a count must stay an integer
            assert type(value) is type(engine.get(name).hyper[key]), (name, key)


@pytest.mark.parametrize("section, keys, engine", PAIRS, ids=["optimizer", "schedule"])
def test_the_built_engine_part_gets_the_configured_values(section, keys, engine):
    from nnclf.build import build_optimizer, build_schedule
    from nnclf.engine.network import MLP

    net = MLP([3, 2, 2], "relu", 0.0, "float64")
    for name in engine.names():
        own = _own_defaults(keys.get(name))
        # a value other than the default for every key (within its range)
        changed = {k: (v + 1 if isinstance(v, int) else "min" if k == "mode" else "train_loss" if k == "monitor"
                       else "hessian" if k == "curvature" else "fixed" if k == "damping_rule" else v / 2 if v else 0.25) for k, v in own.items()}
        cfg = validate({"data": DATA, section: {"name": name, **changed}})
        part = build_optimizer(cfg, net) if section == "optimizer" else build_schedule(cfg)
        assert {k: getattr(part, k) for k in own} == changed, name


# each key's range, as the lecture states it: (section, name, key, accepted, refused)
RANGES = [
    ("optimizer", "momentum", "momentum", [0, 0.5, 0.999], [1, 1.5, -0.1]),
    ("optimizer", "nesterov", "momentum", [0], [1.0]),
    ("optimizer", "rmsprop", "rho", [0, 0.99], [1, -1e-9]),
    ("optimizer", "adam", "beta1", [0, 0.9], [1, -0.5]),
    ("optimizer", "adam", "beta2", [0.5, 0.9999], [1.0]),
    ("optimizer", "adam", "eps", [1e-12, 1], [0, -1e-8, math.inf, math.nan]),
    ("optimizer", "adagrad", "eps", [1e-6], [0]),
    ("optimizer", "adamw", "weight_decay", [0, 0.5], [-0.1, math.inf]),
    ("optimizer", "lbfgs", "history", [1, 50], [0, -1, 2.5]),
    ("optimizer", "lbfgs", "gtol", [0, 1e-3], [-1e-5, math.inf]),
    ("optimizer", "cg", "restart", [0, 7], [-1]),
    ("optimizer", "cg", "c2", [0.01, 0.4], [0]),
    ("optimizer", "newton_cg", "curvature", ["gauss_newton", "hessian"], ["hesian", 1]),
    ("optimizer", "newton_cg", "max_cg", [1], [0]),
    ("optimizer", "newton_cg", "damping", [0, 1.0], [-1e-4]),
    ("schedule", "step", "step_size", [1, 3], [0, 1.5]),
    ("schedule", "step", "gamma", [0.5, 2], [0, -0.1]),
    ("schedule", "exponential", "gamma", [0.9], [0, math.inf]),
    ("schedule", "cosine", "min_lr", [0, 1e-5], [-1e-5]),
    ("schedule", "reduce_on_plateau", "factor", [0, 0.5], [1, 2]),
    ("schedule", "reduce_on_plateau", "patience", [0, 3], [-1]),
    ("schedule", "reduce_on_plateau", "mode", ["auto", "min", "max"], ["mni"]),
    ("schedule", "plateau", "monitor", ["val_loss", "train_loss"], [""]),
]


@pytest.mark.parametrize("section, name, key, accepted, refused", RANGES, ids=[f"{r[1]}.{r[2]}" for r in RANGES])
def test_ranges(section, name, key, accepted, refused):
    for value in accepted:
        cfg = validate({"data": DATA, section: {"name": name, key: value}})
        assert getattr(getattr(cfg, section), key) == value
    for value in [*refused, True]:
        with pytest.raises(NnclfError) as e:
            validate({"data": DATA, section: {"name": name, key: value}})
        assert str(e.value).startswith(f"config: {section}.{key}: "), str(e.value)
        assert "\n" not in str(e.value)


def test_range_messages_describe_the_whole_range():
    cases = {
        ("optimizer", "momentum", "momentum", 1.5): "optimizer.momentum: must be a number in [0, 1), got 1.5",
        ("optimizer", "adam", "eps", 0): "optimizer.eps: must be a number > 0, got 0",
        ("optimizer", "adam", "eps", math.inf): "optimizer.eps: must be a finite number > 0, got inf",
        ("optimizer", "lbfgs", "history", 0): "optimizer.history: must be an integer >= 1, got 0",
        ("schedule", "cosine", "min_lr", -1): "schedule.min_lr: must be a number >= 0, got -1",
        ("schedule", "reduce_on_plateau", "mode", "mni"): "schedule.mode: must be one of auto, min, max, got 'mni' (did you mean 'min'?)",
    }
    for (section, name, key, value), expected in cases.items():
        with pytest.raises(NnclfError) as e:
            validate({"data": DATA, section: {"name": name, key: value}})
        assert str(e.value) == f"config: {expected}"


def test_a_key_of_another_schedule_lists_the_valid_ones():
    with pytest.raises(NnclfError) as e:
        validate({"data": DATA, "schedule": {"name": "plateau", "gamma": 0.5}})
    assert str(e.value) == ("config: schedule.gamma: unknown key for schedule 'plateau'; valid keys: name, warmup_epochs, "
                            "monitor, mode, factor, patience, min_delta, min_lr")


def test_name_of_wrong_type_and_missing_name():
    with pytest.raises(NnclfError, match=r"^config: optimizer.name: unknown optimizer 5; valid: sgd, "):
        validate({"data": DATA, "optimizer": {"name": 5}})
    with pytest.raises(NnclfError, match=r"^config: schedule: expected a mapping of schedule keys such as \{name: constant\}, got None$"):
        validate({"data": DATA, "schedule": None})
    # no name: the default optimizer's keys
    assert validate({"data": DATA, "optimizer": {"beta1": 0.8}}).optimizer.hyperparameters() == {"beta1": 0.8, "beta2": 0.999, "eps": 1e-8}


def test_the_name_of_a_validated_section_cannot_be_changed():
    cfg = validate({"data": DATA, "optimizer": {"name": "momentum"}})
    with pytest.raises(Exception):  # its keys were checked for momentum
        cfg.optimizer.name = "adam"


# -- the README's config reference -------------------------------------------------------------
def _reference() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Config reference", 1)[1]
    return section.split("```yaml", 1)[1].split("```", 1)[0]


def _own_key_lines(block: str, section: str) -> dict[str, dict]:
    """``#   momentum, nesterov: momentum: 0.9  formula`` lines of a section -> {name: {key: default}}."""
    lines = block.split(f"\n{section}:\n", 1)[1].split("\n", 1)[1]
    lines = lines.split("\n" + next(line for line in lines.splitlines() if line and not line.startswith(" ")), 1)[0]
    listed: dict[str, dict] = {}
    names: list[str] = []
    for line in lines.splitlines():
        m = re.match(r"\s*#\s+([a-z_][a-z_, ]*):\s+(\S.*)$", line)
        cont = re.match(r"\s*#\s{6,}(\S.*)$", line)
        if cont and names:  # a wrapped line goes on with the same names
            rest = cont.group(1)
        elif m and not line.lstrip("# ").startswith("each "):
            names, rest = [n.strip() for n in m.group(1).split(",")], m.group(2)
        else:
            continue
        keys_part = re.split(r"\s{3,}", rest)[0]  # then, after a wide gap, the update's formula
        for key, value in re.findall(r"([a-z_0-9]+): ([^\s,]+)", keys_part):
            for name in names:
                listed.setdefault(name, {})[key] = yaml.safe_load(value)
    return listed


def test_readme_lists_every_key_with_its_default():
    block = _reference()
    documented = yaml.safe_load(block)
    early = yaml.safe_load(re.search(r"early_stopping: null\s+# or (\{[^}]*\})", block).group(1))
    for key, (field, names) in schema_fields().items():
        if names:
            continue  # an optimizer's or schedule's own key: below
        parts = key.split(".")
        node = documented
        if parts[:2] == ["training", "early_stopping"] and len(parts) > 2:
            node, parts = early, parts[2:]  # a null section: its keys are in the comment
        for part in parts:
            assert isinstance(node, dict) and part in node, f"README config reference lacks {key}"
            node = node[part]
        if key in ("data.train", "data.target"):
            continue  # REQUIRED: the README shows examples
        default = field.get_default(call_default_factory=True)
        default = getattr(default, "name", default)  # optimizer/schedule sections: their name
        if isinstance(node, dict):
            node = node.get("name", node)
        assert node == default, f"README gives {key}: {node!r}, the schema's default is {default!r}"
    for section, keys, _ in PAIRS:
        listed = _own_key_lines(block, section)
        for name in keys.names():
            own = _own_defaults(keys.get(name))
            aliases = [n for n in keys.names() if keys.get(n) is keys.get(name)]
            shown = next((listed[n] for n in aliases if n in listed), {})
            assert shown == own, f"README {section} {name}: {shown} != the schema's {own}"
