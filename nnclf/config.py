"""The YAML config: schema with defaults, loading, ``--set`` overrides and one-line errors.

Every check happens here, before any data is read or any folder is written. Errors name the
file, the line and the dotted key, say what is wrong and suggest the closest valid name.
"""

from __future__ import annotations

import math
import os
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .data.reading import DEFAULT_NA_VALUES
from .engine.activations import ACTIVATIONS
from .engine.init import INITIALIZERS
from .engine.losses import LOSSES
from .engine.optimizers import OPTIMIZERS
from .engine.regression import REGRESSION_LOSSES
from .errors import NnclfError
from .hyperparams import OPTIMIZER_KEYS, SCHEDULE_KEYS, AdamKeys, ScheduleKeys, chosen_by_name
from .registry import Registry, did_you_mean
from .schema import KeyProblem, Section
from .schema import shown as _shown

PATH_KEYS = ("train", "test", "val", "cache_dir")
# the default precision of each full-batch method (see Config._full_batch_methods)
FULL_BATCH_DTYPE = {"lbfgs": "float32", "cg": "float64", "newton_cg": "float64"}
TASKS = ("classification", "regression", "reconstruction")


def _registered(registry: Registry, extra: tuple[str, ...] = ()):
    def check(value: str) -> str:
        if value not in registry and value not in extra:
            valid = ", ".join([*extra, *registry.names()])
            raise ValueError(f"unknown {registry.kind} {_shown(value)}{did_you_mean(value, [*extra, *registry.names()])}; valid: {valid}")
        return value

    return check


class EarlyStopping(Section):
    monitor: str = "val_loss"
    patience: int = Field(10, ge=0)
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


class DataConfig(Section):
    train: str
    # one column (classification, regression), a list of columns (multi-output regression),
    # or none (reconstruction); which is allowed is checked with the task (Config._task_rules)
    target: Union[str, list[str], None] = None
    target_scaling: Literal["standard", "none"] = "standard"
    test: Optional[str] = None
    val: Optional[str] = None
    test_split: float = Field(0.2, ge=0, lt=1)
    val_split: float = Field(0.1, ge=0, lt=1)
    features: Optional[list[str]] = None
    ignore: list[str] = []
    categorical: list[str] = []
    max_categories: Optional[int] = Field(None, ge=1)
    missing_indicators: bool = False
    scaling: Literal["standard", "minmax", "none"] = "standard"
    encoding: str = "utf-8"
    delimiter: Optional[str] = None
    # the split's seed when it must stay put while ``seed`` varies (nnclf tune's trials); null: seed
    split_seed: Optional[int] = Field(None, ge=0)
    na_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NA_VALUES))

    @field_validator(*PATH_KEYS)
    @classmethod
    def _not_empty(cls, path):
        """An empty path would resolve to the current folder ("is a folder, expected a data file")."""
        if path is not None and not path.strip():
            raise ValueError(f"must be a path, got {_shown(path)}")
        return path

    @field_validator("na_values", mode="before")
    @classmethod
    def _tokens_as_text(cls, tokens):
        """Cells are compared as text: ``-999`` in YAML means the cell text "-999"."""
        if isinstance(tokens, (str, int, float)) and not isinstance(tokens, bool):
            tokens = [tokens]
        if isinstance(tokens, list):
            for token in tokens:
                if isinstance(token, bool) or not isinstance(token, (str, int, float)):
                    raise ValueError(f"expected a list of cell texts such as ['', NA, '?', '-999'], got {_shown(token)}")
            return [t if isinstance(t, str) else repr(t) if isinstance(t, float) else str(t) for t in tokens]
        return tokens
    # memory: arrays in memory; mmap: parsed once into a memory-mapped cache on disk (data larger
    # than memory); auto: mmap when the in-memory arrays would not fit comfortably
    cache: Literal["auto", "memory", "mmap"] = "auto"
    cache_dir: Optional[str] = None  # where the mmap cache lives (default: the run folder's cache/)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding):
        import codecs

        try:
            codecs.lookup(encoding)
            "a,b\n1,2\n".encode(encoding).decode(encoding)  # 'rot13', 'zlib'... are codecs, not text encodings
        except (LookupError, UnicodeError):
            raise ValueError(f"unknown text encoding '{encoding}' (e.g. utf-8, latin-1, cp1252)") from None
        if codecs.lookup(encoding).name in ("idna", "punycode"):  # round-trip text, but a CSV's bytes fail in pandas
            raise ValueError(f"'{encoding}' encodes domain names, not files (e.g. utf-8, latin-1, cp1252)")
        return encoding

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, delimiter):
        if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
            raise ValueError(f"must be one character such as ',', ';', '\\t' or '|' (or null to detect it), got {delimiter!r}")
        return delimiter

    @property
    def targets(self) -> list[str]:
        """``target`` as a list of column names (empty when there is none)."""
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @field_validator("target")
    @classmethod
    def _target_names(cls, target):
        if isinstance(target, list):
            if not target:
                raise ValueError("an empty list names no target column")
            repeated = sorted({n for n in target if target.count(n) > 1})
            if repeated:
                raise ValueError(f"column {repeated[0]!r} is listed more than once")
        return target

    @field_validator("features", "ignore", "categorical")
    @classmethod
    def _no_repeats(cls, names):
        repeated = sorted({n for n in names or [] if (names or []).count(n) > 1})
        if repeated:
            raise ValueError(f"column {repeated[0]!r} is listed more than once")
        return names

    @model_validator(mode="after")
    def _splits_leave_training_rows(self):
        if self.test is None and self.val is None and self.test_split + self.val_split >= 1:
            raise ValueError(f"test_split + val_split must be < 1, got {self.test_split} + {self.val_split}")
        return self


class ModelConfig(Section):
    hidden: list[int] = [64, 64]
    activation: str = "relu"
    init: str = "auto"
    dropout: float = Field(0.0, ge=0, lt=1)
    # reconstruction: the index into ``hidden`` of the code layer (default: the narrowest)
    code_layer: Optional[int] = Field(None, ge=0)

    _check_activation = field_validator("activation")(_registered(ACTIVATIONS))
    _check_init = field_validator("init")(_registered(INITIALIZERS, ("auto",)))

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden):
        for width in hidden:
            if width < 1:
                raise ValueError(f"every layer width must be >= 1, got {width}")
        return hidden


class LossConfig(Section):
    name: str = "cross_entropy"
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Union[None, Literal["balanced"], dict[Union[int, str], float]] = None
    delta: float = Field(1.0, gt=0)  # huber: the residual where the loss turns from quadratic to linear

    @field_validator("name")
    @classmethod
    def _known_loss(cls, name):
        # names of both tasks' registries; Config._task_rules checks it fits the task
        names = list(dict.fromkeys([*LOSSES.names(), *REGRESSION_LOSSES.names()]))
        if name not in names:
            raise ValueError(f"unknown loss {_shown(name)}{did_you_mean(name, names)}; valid: {', '.join(names)}")
        return name

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, weights):
        if isinstance(weights, dict):
            for label, w in weights.items():
                if not (w > 0 and math.isfinite(w)):
                    raise ValueError(f"weight of class {label!r} must be a positive number, got {w}")
        return weights


class TrainingConfig(Section):
    epochs: int = Field(100, ge=1)
    batch_size: Union[int, Literal["full"]] = 64
    shuffle: bool = True
    early_stopping: Optional[EarlyStopping] = None
    dtype: Literal["float32", "float64"] = "float32"
    clip_norm: Optional[float] = Field(None, gt=0)
    checkpoint_every: int = Field(1, ge=1)
    # BLAS threads: "auto" measures (nnclf/threads.py); a count fixes it (BLAS takes a C int).
    # null, in configs written before "auto" existed, means auto.
    threads: Union[Literal["auto"], int] = "auto"
    # accepted so configs and run folders from before 0.2 load; the worker process it chose is gone
    workers: Union[Literal["auto"], int] = "auto"
    calibration: Literal["none", "temperature"] = "none"

    @field_validator("calibration", mode="before")
    @classmethod
    def _null_is_none(cls, calibration):
        return "none" if calibration is None else calibration
    # after training, train again on training + validation rows for the best epoch's count
    # (checkpoints/refit.npz, the model predict and evaluate use by default)
    refit: bool = False
    # the refit's epoch count; null: the run's best epoch (nnclf tune with cv sets the folds' mean)
    refit_epochs: Optional[int] = Field(None, ge=1)

    @field_validator("threads", mode="before")
    @classmethod
    def _auto_or_count(cls, threads):
        if threads is None:
            return "auto"
        if isinstance(threads, bool) or not (threads == "auto" or (isinstance(threads, int) and 1 <= threads <= 1024)):
            raise ValueError(f"must be 'auto' or an integer from 1 to 1024, got {threads!r}")
        return threads

    @field_validator("workers", mode="before")
    @classmethod
    def _one_or_two(cls, workers):
        if workers not in ("auto", 1, 2) or isinstance(workers, bool):
            raise ValueError(f"must be 'auto', 1 or 2, got {workers!r}")
        return workers

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, batch_size):
        if isinstance(batch_size, int) and batch_size < 1:
            raise ValueError(f"must be an integer >= 1 or 'full', got {batch_size}")
        return batch_size


class Config(Section):
    seed: int = Field(0, ge=0)
    task: Literal["classification", "regression", "reconstruction"] = "classification"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    # each optimizer and schedule has its own keys: the model its name picks (nnclf/hyperparams.py)
    optimizer: chosen_by_name(OPTIMIZER_KEYS, "adam") = Field(default_factory=AdamKeys)
    schedule: chosen_by_name(SCHEDULE_KEYS, "constant") = Field(default_factory=ScheduleKeys)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # the search of ``nnclf tune`` (nnclf/tune/space.py checks it); ``nnclf train`` ignores it,
    # so one file serves both commands
    tune: Optional[dict[str, Any]] = None

    @model_validator(mode="after")
    def _gd_means_full_batch(self):
        """``optimizer: gd`` is batch gradient descent: unless batch_size is given, use all rows."""
        if self.optimizer.name == "gd" and "batch_size" not in self.training.model_fields_set:
            self.training.batch_size = "full"
        return self

    @model_validator(mode="after")
    def _full_batch_methods(self):
        """lbfgs, cg and newton_cg evaluate the loss on every training row at each step: their
        batch_size is ``full`` (the default for them; any other value is an error), and their
        default precision is ``FULL_BATCH_DTYPE``'s, chosen from measurements
        (benchmarks/RESULTS.md, "Quiet machine, fourth pass", part E): L-BFGS reaches
        the objectives of float64 in float32, in up to half the time, so it keeps the general
        float32 default; conjugate gradient's line search fails early in float32, and Newton-CG
        needed twice the iterations there, so these two default to float64."""
        if not getattr(OPTIMIZERS.get(self.optimizer.name), "full_batch", False):
            return self
        if "batch_size" not in self.training.model_fields_set:
            self.training.batch_size = "full"
        elif self.training.batch_size != "full":
            raise KeyProblem(
                "training.batch_size", f"optimizer '{self.optimizer.name}' is a full-batch method (every step uses all "
                f"training rows); batch_size must be 'full', got {self.training.batch_size}"
            )
        if "dtype" not in self.training.model_fields_set:
            self.training.dtype = FULL_BATCH_DTYPE.get(self.optimizer.name, "float64")
        # what these methods would ignore is refused rather than silently dropped: the line
        # search needs a deterministic objective (no dropout), and picks the step itself (no
        # learning-rate schedule, no clipped gradient); optimizer.lr, which every config has by
        # default, is documented as unused
        name = self.optimizer.name
        if self.model.dropout > 0:
            raise KeyProblem("model.dropout", f"optimizer '{name}' minimises a deterministic full-batch objective, which "
                             f"dropout would make random (its line search needs the same loss at the same point); "
                             f"use dropout 0 or a first-order optimizer, got {self.model.dropout}")
        if self.training.clip_norm is not None:
            raise KeyProblem("training.clip_norm", f"optimizer '{name}' chooses its step by a line search on the exact "
                             "gradient and does not clip it; remove training.clip_norm or use a first-order optimizer")
        if self.schedule.name != "constant" or self.schedule.warmup_epochs:
            raise KeyProblem("schedule", f"optimizer '{name}' takes no learning rate (its line search picks each step), "
                             "so a schedule would change nothing; remove the schedule section or use a first-order optimizer")
        return self

    @model_validator(mode="after")
    def _task_rules(self):
        """What each task needs of data.target, the loss and the model (messages name the key)."""
        task, data, loss = self.task, self.data, self.loss
        if task != "reconstruction" and data.target is None:
            raise KeyProblem("data.target", "required key is missing")
        if task == "classification":
            if isinstance(data.target, list):
                raise KeyProblem(
                    "data.target", "classification takes one target column, got a list; "
                    "for several real-valued targets use task: regression"
                )
            if loss.name not in LOSSES:
                raise KeyProblem(
                    "loss.name", f"'{loss.name}' is a loss for task: regression or reconstruction; "
                    f"with task: classification use one of {', '.join(LOSSES.names())}"
                )
        else:
            if "name" not in loss.model_fields_set:
                loss.name = "mse"  # the lecture's 1/2 ||h - y||^2
            elif loss.name not in REGRESSION_LOSSES:
                raise KeyProblem(
                    "loss.name", f"'{loss.name}' is a classification loss; with task: {task} use one of "
                    f"{', '.join(REGRESSION_LOSSES.names())}"
                )
            if self.optimizer.name == "newton_cg" and loss.name == "mae":
                raise KeyProblem(
                    "optimizer.name", "newton_cg needs curvature, and absolute error (loss mae) has none (its second "
                    "derivative is 0 almost everywhere); use loss mse or huber, or lbfgs or cg"
                )
            if self.training.calibration != "none":
                raise KeyProblem("training.calibration", f"temperature scaling calibrates class probabilities; task: {task} has none")
            for key in ("label_smoothing", "class_weights"):
                if key in loss.model_fields_set and getattr(loss, key) not in (None, 0, 0.0):
                    raise KeyProblem(f"loss.{key}", f"applies to task: classification only, not {task}")
        if "delta" in loss.model_fields_set and loss.name != "huber":
            raise KeyProblem("loss.delta", f"only the huber loss takes delta (loss.name is '{loss.name}')")
        if task == "reconstruction":
            if not self.model.hidden:
                raise KeyProblem("model.hidden", "reconstruction needs at least one hidden layer (the code), e.g. [32, 8, 32]")
            code = self.model.code_layer
            if code is not None and code >= len(self.model.hidden):
                raise KeyProblem(
                    "model.code_layer", f"{code} is not an index of model.hidden {self.model.hidden} "
                    f"(0 to {len(self.model.hidden) - 1})"
                )
        elif self.model.code_layer is not None:
            raise KeyProblem("model.code_layer", f"applies to task: reconstruction only, not {task}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value, defaults included (the chosen optimizer's and schedule's own keys too)."""
        out = self.model_dump(mode="json")
        if self.loss.name != "huber":
            del out["loss"]["delta"]  # only huber reads it (and _task_rules refuses it elsewhere)
        if out.get("tune") is None:
            out.pop("tune", None)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def schema_fields() -> dict[str, tuple[Any, tuple[str, ...]]]:
    """Every dotted key of the schema -> (its pydantic field, the optimizer or schedule names that
    take it; empty for keys every config has). Sections that default to null (early_stopping)
    are walked too; ``tune`` is a key of its own (nnclf/tune/space.py checks its content)."""
    out: dict[str, tuple[Any, tuple[str, ...]]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = prefix + name
            registry = _CHOSEN.get(tuple(key.split(".")))
            sub = _submodel(field.annotation)
            if registry is not None:
                models = {chosen: registry.get(chosen) for chosen in registry.names()}
                shared = set.intersection(*(set(m.model_fields) for m in models.values()))
                for chosen, chosen_model in models.items():
                    for own, own_field in chosen_model.model_fields.items():
                        first, names = out.setdefault(f"{key}.{own}", (own_field, ()))
                        if own not in shared:
                            out[f"{key}.{own}"] = (first, (*names, chosen))
            elif sub is not None:
                walk(sub, key + ".")
            else:
                out[key] = (field, ())

    walk(Config, "")
    return out


# -- loading ---------------------------------------------------------------------------------
def load_config(path: str | Path | dict, overrides: list[str] = (), values: dict[str, Any] | None = None) -> Config:
    """Read ``path`` (safe YAML only), apply ``KEY=VALUE`` overrides, then ``values`` (dotted
    key -> Python value), validate, resolve paths.

    ``path`` may also be a mapping (the YAML document already read): its relative data paths
    resolve against the current folder.
    """
    values = values or {}
    if isinstance(path, dict):
        import copy

        raw = copy.deepcopy(path)
        _resolve_paths(raw, Path.cwd())
        for item in overrides:
            apply_override(raw, item)
        for key, value in values.items():
            set_key(raw, key, value, "override")
        return validate(raw, "config", None, [*(item.partition("=")[0].strip() for item in overrides), *values])
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NnclfError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise NnclfError(f"{path}: is a folder, expected a YAML config file") from None
    except UnicodeDecodeError as e:
        raise NnclfError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise NnclfError(f"{path}: cannot read config ({e.strerror})") from None
    raw, lines = read_yaml(text, str(path))
    base = path.resolve().parent
    _resolve_paths(raw, base)
    for item in overrides:
        apply_override(raw, item)
    for key, value in values.items():
        set_key(raw, key, value, "override")
    overridden = [*(item.partition("=")[0].strip() for item in overrides), *values]
    return validate(raw, str(path), overridden=overridden, lines=lines)


class _StrictLoader(yaml.SafeLoader):
    """Safe loading that also refuses a key written twice in one mapping (YAML itself keeps the
    last one silently, so a repeated ``training:`` block would drop the first one's keys)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:  # before merging: keys from '<<' may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key '{key}' appears twice (lines {seen[key]} and {line})", key_node.start_mark
                        )
                    seen[key] = line
                except TypeError:  # an unhashable key: the schema reports it
                    continue
        return super().construct_mapping(node, deep)

    def construct_yaml_set(self, node):
        # a set has no order (and strings hash differently in every process): as model.hidden
        # or data.features it would make the network or the feature order a matter of chance
        raise yaml.constructor.ConstructorError(None, None, "a YAML set (!!set) has no order; write a list like [a, b]", node.start_mark)


_StrictLoader.add_constructor("tag:yaml.org,2002:set", _StrictLoader.construct_yaml_set)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The config mapping of YAML ``text`` (errors name ``source`` and the line)."""
    return read_yaml(text, source)[0]


def read_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """(the config mapping, the line of every key path) from one parse of ``text``."""
    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise NnclfError(f"{source}{where}: invalid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise NnclfError(f"{source}: invalid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise NnclfError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits, a date like 2001-13-45
        text = str(e).splitlines()[0]
        if "integer string conversion" in text:  # Python words this differently from version to version
            text = "a number with more than 4300 digits"
        raise NnclfError(f"{source}: invalid YAML: {_shown(text)[1:-1]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if raw is None:
        raise NnclfError(f"{source}: the config is empty; it needs at least data.train and data.target")
    if not isinstance(raw, dict):
        raise NnclfError(f"{source}: the config must be a mapping of keys to values, got {type(raw).__name__}")
    return raw, _key_lines(node)


def _key_lines(node) -> dict[tuple[str, ...], int]:
    """The 1-based line of every key path of a composed YAML document (``("optimizer", "lr")``).
    A mapping reached again through an alias is not walked twice (aliases can nest exponentially)."""
    lines: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()
    todo = [((), node)]
    while todo:
        path, node = todo.pop()
        if not isinstance(node, yaml.MappingNode) or id(node) in seen:
            continue
        seen.add(id(node))
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (*path, str(key_node.value))
                lines.setdefault(key, key_node.start_mark.line + 1)
                todo.append((key, value_node))
    return lines


def _text_lines(text: str) -> dict[tuple[str, ...], int]:
    """The key lines of a YAML text read elsewhere (empty if it does not parse)."""
    try:
        return _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError, ValueError):
        return {}


def line_of(lines: dict[tuple[str, ...], int], keys: list[str]) -> int | None:
    """The line of the deepest of ``keys``' prefixes present in the file."""
    for depth in range(len(keys), 0, -1):
        line = lines.get(tuple(keys[:depth]))
        if line is not None:
            return line
    return None


def _line_of(text: str, keys: list[str]) -> int | None:
    """``line_of`` for a YAML text (nnclf/tune/space.py names lines of the tune: section)."""
    return line_of(_text_lines(text), keys)


def _absolute(path: Path) -> str:
    """``path`` absolute, symlinks resolved; a symlink loop (``resolve`` raises RuntimeError on
    one before Python 3.13) stays as written, made absolute, for the data reader to report."""
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):
        return os.path.abspath(path)


def _resolve_paths(raw: dict, base: Path) -> None:
    """Relative data paths in the file resolve against the config file's folder."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in PATH_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                data[key] = _absolute(base / value)


def apply_override(raw: dict, item: str) -> None:
    """``a.b.c=VALUE``: VALUE is parsed as YAML; data paths resolve against the current folder."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise NnclfError(f"--set {_shown(item)}: expected KEY=VALUE, e.g. --set optimizer.lr=0.01")
    if "" in key.split("."):  # 'model..hidden' would make a section named '' and blame a file line
        raise NnclfError(f"--set {_shown(key)}: a dotted key with an empty name in it; expected e.g. --set model.hidden=[64]")
    try:
        value = yaml.load(text, Loader=_StrictLoader) if text.strip() else None  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError, ValueError):
        raise NnclfError(f"--set {_shown(key)[1:-1]}: cannot parse value {_shown(text)} as YAML") from None
    set_key(raw, key, value)


def key_path(raw: dict, key: str) -> list[str]:
    """The sections and name of a dotted key. Under ``tune.space`` a dimension's name is itself
    a dotted config key, so what follows ``tune.space.`` is one name (``tune.space.optimizer.lr``),
    or an existing dimension's name and one of its fields (``tune.space.optimizer.lr.high``)."""
    parts = key.split(".")
    if parts[:2] != ["tune", "space"] or len(parts) < 4:
        return parts
    rest = parts[2:]
    tune = raw.get("tune")
    space = tune.get("space") if isinstance(tune, dict) else None
    if isinstance(space, dict) and isinstance(space.get(".".join(rest[:-1])), dict):
        return ["tune", "space", ".".join(rest[:-1]), rest[-1]]
    return ["tune", "space", ".".join(rest)]


def set_key(raw: dict, key: str, value: Any, origin: str = "--set") -> None:
    """Set the dotted ``key`` of the raw config to a Python value (sections made as needed;
    ``key_path`` splits it); a data path resolves against the current folder."""
    parts = key_path(raw, key)
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise NnclfError(f"{origin} {_shown(key)[1:-1]}: {_shown('.'.join(parts[: depth + 1]))[1:-1]} is not a section")
        node = child
    if parts[:-1] == ["data"] and parts[-1] in PATH_KEYS and isinstance(value, str) and value.strip():
        value = _absolute(Path(value))
    node[parts[-1]] = value


def validate(
    raw: dict,
    source: str = "config",
    text: str | None = None,
    overridden: list[str] = (),
    lines: dict[tuple[str, ...], int] | None = None,
) -> Config:
    """Validate the raw config mapping; errors name ``source`` and the key's line, from
    ``lines`` (``read_yaml``'s) or else the YAML ``text`` the mapping was read from.
    ``overridden``: dotted keys set with --set, so their errors name --set, not a file line."""
    unordered = _set_key(raw)
    if unordered is not None:
        # YAML's !!set is refused when read; a Python set (nnclf.train's overrides, a dict config,
        # an estimator's hidden={4, 8}) would reach pydantic, which takes it as a list in hash
        # order: the layer or feature order a matter of chance
        message = "a set has no order (the layer or feature order would be a matter of chance); give a list like [a, b]"
        raise NnclfError(_placed(unordered, message, source, lines or (_text_lines(text) if text is not None else {}), overridden))
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        if lines is None and text is not None:
            lines = _text_lines(text)
        raise NnclfError(format_errors(e, source, None, overridden, lines)) from None


def _set_key(value, keys: tuple[str, ...] = (), seen: set | None = None) -> str | None:
    """The dotted key of the first set or frozenset in a raw config document, else None
    (a container met twice, as a YAML alias makes, is looked into once: a recursive alias
    is the schema's error to report)."""
    if isinstance(value, (set, frozenset)):
        return ".".join(keys)
    if not isinstance(value, (dict, list, tuple)):
        return None
    seen = set() if seen is None else seen
    if id(value) in seen:
        return None
    seen.add(id(value))
    items = value.items() if isinstance(value, dict) else ((None, child) for child in value)
    for key, child in items:
        found = _set_key(child, keys if key is None else (*keys, str(key)), seen)
        if found is not None:
            return found
    return None


def format_errors(
    error: ValidationError,
    source: str,
    text: str | None = None,
    overridden: list[str] = (),
    lines: dict[tuple[str, ...], int] | None = None,
) -> str:
    """One line: ``source, line N: key.path: message`` for up to three problems."""
    if lines is None:
        lines = _text_lines(text) if text is not None else {}
    messages, seen = [], set()
    for item in error.errors():
        keys, owner, chosen = _walk([str(p) for p in item["loc"] if not _is_union_tag(p)])
        path = ".".join(keys)
        if path in seen:  # a union reports each alternative; the first says enough
            continue
        seen.add(path)
        key, message = _problem(item, keys, owner, chosen)
        messages.append(_placed(key, message, source, lines, overridden))
    # name the file once: "cfg.yaml, line 3: a: ...; line 9: b: ..." (or "config: a: ...; b: ...")
    named = messages[0].startswith((source + ", ", source + ": "))
    rest = [m[len(source) + 2 :] if named and m.startswith((source + ", ", source + ": ")) else m for m in messages[1:3]]
    shown = "; ".join([messages[0], *rest])
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return shown + more


# sections whose model is picked by their ``name`` (a tag pydantic puts in the error's loc)
_CHOSEN = {("optimizer",): OPTIMIZER_KEYS, ("schedule",): SCHEDULE_KEYS}
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number")


def _is_union_tag(part) -> bool:
    """pydantic names each alternative of a Union in the loc (``int``, ``literal['full']``)."""
    return isinstance(part, str) and (part in ("int", "float", "str", "bool", "none") or part.startswith(("function-", "literal[", "dict[", "list[")))


def _walk(loc: list[str]) -> tuple[list[str], Any, tuple[str, str] | None]:
    """(the config keys of ``loc``, the model owning its last key, (kind, name) when that model is
    the one an optimizer's or schedule's name picked). pydantic puts the name after
    ``optimizer`` in the loc; it is no key and is dropped."""
    keys: list[str] = []
    model: Any = Config
    owner, chosen, parts = None, None, list(loc)
    while parts:
        keys.append(parts.pop(0))
        owner = model
        field = model.model_fields.get(keys[-1]) if model is not None else None
        registry = _CHOSEN.get(tuple(keys)) if owner is Config else None
        if registry is not None and parts:
            name = parts.pop(0)
            model, chosen = (registry.get(name) if name in registry else None), (registry.kind, name)
        else:
            model = _submodel(field.annotation) if field is not None else None
    return keys, owner, (chosen if owner is not Config else None)


def _submodel(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[EarlyStopping]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _problem(item: dict, keys: list[str], owner: Any, chosen: tuple[str, str] | None) -> tuple[str, str]:
    """(dotted key, what is wrong with it) for one pydantic error."""
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    key = ".".join(keys)
    error = ctx.get("error")
    if isinstance(error, KeyProblem):  # a model validator naming the key it is about
        return ".".join([*keys, error.key]), error.message
    if isinstance(error, Exception):  # a field validator's ValueError
        return key, str(error)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        registry = _CHOSEN[tuple(keys)]
        if not isinstance(value, dict):
            example = Config.model_fields[keys[0]].default_factory().name
            return key, f"expected a mapping of {registry.kind} keys such as {{name: {example}}}, got {_shown(value)}"
        name, names = value.get("name"), registry.names()
        return f"{key}.name", f"unknown {registry.kind} {_shown(name)}{did_you_mean(str(name), names)}; valid: {', '.join(names)}"
    if kind == "extra_forbidden":
        valid = list(owner.model_fields) if owner is not None else []
        whose = f" for {chosen[0]} '{chosen[1]}'" if chosen else ""
        return key, f"unknown key{whose}{did_you_mean(keys[-1], valid)}; valid keys: {', '.join(valid)}"
    if kind == "missing":
        return key, "required key is missing"
    field = owner.model_fields.get(keys[-1]) if owner is not None and keys else None
    if field is not None and kind in _BOUNDS:
        return key, f"must be {_expected(field, finite=kind == 'finite_number')}, got {_shown(value)}"
    if field is not None and kind == "literal_error" and typing.get_origin(field.annotation) is Literal:
        choices = [str(c) for c in typing.get_args(field.annotation)]
        return key, f"must be one of {', '.join(choices)}, got {_shown(value)}{did_you_mean(str(value), choices)}"
    msg = item["msg"]
    got = f", got {_shown(value)}" if not isinstance(value, dict) else ""
    return key, f"{msg[0].lower() + msg[1:]}{got}"


def _expected(field, finite: bool = False) -> str:
    """A numeric field's valid values from its constraints: "a number in [0, 1)", "an integer >= 1"."""
    bounds = {name: getattr(m, name) for m in field.metadata for name in ("ge", "gt", "le", "lt") if getattr(m, name, None) is not None}
    integer = int in (field.annotation, *typing.get_args(field.annotation))  # int or Optional[int]
    what = "an integer" if integer else "a finite number" if finite else "a number"
    low = (">=", bounds["ge"]) if "ge" in bounds else (">", bounds["gt"]) if "gt" in bounds else None
    high = ("<=", bounds["le"]) if "le" in bounds else ("<", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        return f"{what} in {'[' if low[0] == '>=' else '('}{low[1]}, {high[1]}{']' if high[0] == '<=' else ')'}"
    bound = low or high
    return f"{what} {bound[0]} {bound[1]}" if bound else what


def _placed(key: str, message: str, source: str, lines: dict, overridden: list[str]) -> str:
    """``source, line N: key: message``; ``--set key: message`` when --set gave the value."""
    line = line_of(lines, key.split(".")) if key else None
    if any(key == k or key.startswith(k + ".") or (line is None and k.startswith(key + ".")) for k in overridden):
        return f"--set {key}: {message}"  # the bad value came from --set: a file line would mislead
    where = f"{source}, line {line}" if line else source
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"
