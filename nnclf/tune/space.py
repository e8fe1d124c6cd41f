"""The ``tune:`` section of a config: what to search, checked before any trial runs.

```yaml
tune:
  metric: val_loss        # a logged metric (val_accuracy, val_f1, val_rmse, val_r2, ...); mode auto
  mode: auto              # auto, min, max
  trials: 20              # trials the study should hold (complete + pruned), across all workers
  timeout: null           # seconds; stop starting trials after this long (per command)
  sampler: tpe            # tpe, random, grid
  pruner: none            # none, median, hyperband
  cv: null                # K >= 2: score each trial by the mean of K validation folds (nnclf/tune/folds.py)
  refit: auto             # with cv: train the winner on every training-pool row (auto = on with cv)
  space:                  # dotted config keys
    optimizer.lr:   {type: loguniform, low: 1.0e-4, high: 1.0e-1}
    model.hidden:   {type: choice, values: [[64], [128], [256, 128]]}
    training.epochs: {type: int, low: 10, high: 50, step: 10}
```

Every dimension is checked against the config schema itself: the key must exist, and its
extreme values (``low``, ``high``, an interior point for real ranges, every ``choice``) are
put into the config and validated there, so a range the trainer would refuse fails now, with
the file, the line and the key. This module needs no Optuna.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import ValidationError

from ..config import Config, _line_of, _shown, format_errors, schema_fields
from ..engine.schedules import resolve_mode
from ..errors import NnclfError
from ..registry import did_you_mean

TYPES = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "int": ("low", "high", "step"),
    "choice": ("values",),
}
REQUIRED = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "int": ("low", "high"), "choice": ("values",)}
SAMPLERS = ("tpe", "random", "grid")
GRID_MAX = 10**6  # points: Optuna's GridSampler keeps every combination in a list (about 100 MB at this size)
PRUNERS = ("none", "median", "hyperband")
def task_metrics(task: str) -> list[str]:
    """The per-epoch metrics a run of ``task`` logs (metrics.csv), any of which a study may optimise."""
    from ..runs import TASK_METRICS

    extra = ["train_accuracy"] if task == "classification" else []
    return ["val_loss", *(f"val_{m}" for m in TASK_METRICS[task]), "train_loss", *extra]
SECTION_KEYS = ("metric", "mode", "trials", "timeout", "sampler", "pruner", "cv", "refit", "space")
NOT_TUNABLE = {"seed": "each trial's seed is derived from the config's seed and the trial number"}


@dataclass(frozen=True)
class Param:
    """One search dimension: ``key`` is a dotted config key."""

    key: str
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[int] = None
    values: tuple = ()

    def count(self) -> Optional[int]:
        """How many values the dimension has (None for real ranges), without listing them."""
        if self.type == "choice":
            return len(self.values)
        if self.type == "int":
            return (int(self.high) - int(self.low)) // (self.step or 1) + 1
        return None

    def grid(self) -> Optional[list]:
        """Every value, for the grid sampler (None for real ranges); parse_tune has checked
        that the grid is at most GRID_MAX points."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, self.step or 1))
        return None

    def probes(self) -> list[tuple[str, Any]]:
        """(what, value) pairs that stand for every value the sampler can draw."""
        if self.type == "choice":
            return [(f"value {_shown(v)}", v) for v in self.values]
        if self.type == "int":
            # the ends, computed: listing an int range of 10^9 values would take gigabytes
            low, last = int(self.low), int(self.low) + (self.count() - 1) * (self.step or 1)
            return [(f"low {low}", low), (f"high {last}", last)]
        # a non-round interior point catches a real range on an integer key
        inner = self.low + (self.high - self.low) * 0.381966 if self.type == "uniform" else math.sqrt(self.low * self.high) * 1.0317
        inner = float(f"{inner:.6g}")
        return [(f"low {self.low!r}", self.low), (f"high {self.high!r}", self.high), (f"the value {inner!r} inside the range", inner)]


@dataclass
class TuneSpec:
    metric: str = "val_loss"
    mode: str = "min"  # min or max (auto resolved)
    trials: int = 20
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "none"
    cv: Optional[int] = None  # folds per trial (None: the config's one validation split)
    refit: bool = False  # after the study, the final model on every training-pool row (cv only)
    space: dict[str, Param] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"

    def grid_space(self) -> dict[str, list]:
        return {key: p.grid() for key, p in self.space.items()}

    def grid_size(self) -> int:
        return math.prod(p.count() for p in self.space.values())


def tunable_keys(cfg: Config) -> list[str]:
    """Every dotted key of the schema (sections that are null, like early_stopping, included),
    plus every optimizer's and schedule's own keys (the schema then checks them per name)."""
    return [key for key in schema_fields() if key != "tune"]


class _Where:
    """Formats ``source, line N: tune.<key>: message`` with the line of the deepest key found,
    or ``--set tune.<key>: message`` when --set gave that key (or a section above it): a line
    of the file would point at a value that is not the one checked."""

    def __init__(self, source: str, text: Optional[str], overridden: list[list[str]] = ()):
        self.source, self.text, self.overridden = source, text, list(overridden)

    def error(self, loc: list[str], message: str) -> NnclfError:
        path = ["tune", *loc]
        if any(path[: len(p)] == p for p in self.overridden):
            return NnclfError(f"--set {'.'.join(path)}: {message}")
        line = _line_of(self.text, path) if self.text else None
        where = f"{self.source}, line {line}" if line else self.source
        return NnclfError(f"{where}: tune.{'.'.join(loc)}: {message}")


def parse_tune(raw: dict[str, Any], cfg: Config, source: str = "config", text: Optional[str] = None,
               overridden: list[list[str]] = ()) -> TuneSpec:
    """Check the raw config's ``tune:`` section against the schema; ``cfg`` is the validated
    config (with --set overrides), ``raw`` its unvalidated mapping (the values put into it for
    the checks are removed again); ``overridden``: the key paths --set gave (``config.key_path``)."""
    where = _Where(source, text, overridden)
    section = raw.get("tune")
    if section is None:
        raise NnclfError(f"{source}: no tune: section; add one with at least tune.space (see the README's 'nnclf tune')")
    if not isinstance(section, dict):
        raise where.error([], f"must be a mapping with metric, trials, sampler, pruner and space, got {_shown(section)}")
    for key in section:
        if key not in SECTION_KEYS:
            raise where.error([str(key)], f"unknown key{did_you_mean(str(key), list(SECTION_KEYS))}; valid keys: {', '.join(SECTION_KEYS)}")
    spec = TuneSpec()
    has_val = cfg.data.val is not None or cfg.data.val_split > 0
    metric = section.get("metric", "val_loss")
    logged = task_metrics(cfg.task)
    if not isinstance(metric, str) or metric not in logged:
        raise where.error(["metric"], f"unknown metric {_shown(metric)}{did_you_mean(str(metric), logged)}; logged: {', '.join(logged)}")
    if metric.startswith("val_") and not has_val:
        raise where.error(["metric"], f"'{metric}' needs validation data; set data.val_split > 0 or data.val, or use train_loss")
    spec.metric = metric
    mode = section.get("mode", "auto")
    if mode not in ("auto", "min", "max"):
        raise where.error(["mode"], f"must be one of auto, min, max, got {_shown(mode)}")
    spec.mode = resolve_mode(mode, metric)
    for key, kind in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        value = section.get(key, getattr(spec, key))
        if value not in kind:
            raise where.error([key], f"unknown {key} {_shown(value)}{did_you_mean(str(value), list(kind))}; valid: {', '.join(kind)}")
        setattr(spec, key, value)
    trials = section.get("trials", spec.trials if spec.sampler != "grid" else None)
    if trials is not None and (not _is_int(trials) or trials < 1):
        raise where.error(["trials"], f"must be an integer >= 1, got {_shown(trials)}")
    timeout = section.get("timeout")
    if timeout is not None and (not _is_number(timeout) or not timeout > 0 or not math.isfinite(timeout)):
        raise where.error(["timeout"], f"must be a number of seconds > 0 (or null), got {_shown(timeout)}")
    spec.timeout = timeout
    spec.cv, spec.refit = _parse_cv(section, cfg, metric, where)
    space = section.get("space")
    if not isinstance(space, dict) or not space:
        raise where.error(["space"], "must map dotted config keys to ranges, e.g. optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}")
    known = tunable_keys(cfg)
    base = copy.deepcopy({k: v for k, v in raw.items() if k != "tune"})
    for key, entry in space.items():
        spec.space[str(key)] = _parse_param(str(key), entry, known, base, where)
    _check_pairs(spec.space, base, where)
    if spec.sampler == "grid":
        ranged = [k for k, p in spec.space.items() if p.count() is None]
        if ranged:
            raise where.error(["space", ranged[0], "type"], f"the grid sampler needs choice or int dimensions, got {spec.space[ranged[0]].type}")
        if spec.grid_size() > GRID_MAX:
            raise where.error(["sampler"], f"the grid of tune.space has {spec.grid_size():,} points, more than the grid sampler lists "
                                           f"({GRID_MAX:,}); use fewer values or a larger int step, or sampler tpe or random")
    spec.trials = trials if trials is not None else spec.grid_size()
    return spec


CV_TOLERANCE = 0.02  # data.val_split may differ from 1/K by 2% of 1/K (0.33 for 3 folds)


def _parse_cv(section: dict, cfg: Config, metric: str, where: _Where) -> tuple[Optional[int], bool]:
    """``tune.cv`` and ``tune.refit``. Fold 0 is the config's own validation split (so each
    trial's run folder stays the ordinary run best.yaml repeats) and the other K-1 folds are
    equal parts of the remaining training rows: the folds are equal only when
    data.val_split is 1/K, which is therefore required."""
    cv = section.get("cv")
    refit = section.get("refit", "auto")
    if refit not in ("auto", True, False):
        raise where.error(["refit"], f"must be auto, true or false, got {_shown(refit)}")
    if cv is None:
        if refit is True:
            raise where.error(["refit"], "needs tune.cv: the final model trains for the folds' mean best epoch count; set tune.cv: 5, or use training.refit for one run")
        return None, False
    if not _is_int(cv) or cv < 2:
        raise where.error(["cv"], f"must be an integer >= 2 (the number of folds), or null, got {_shown(cv)}")
    if cfg.data.val is not None:
        raise where.error(["cv"], "the folds are cut from the training rows, so data.val (a separate file) cannot be one of them; "
                                  f"remove data.val and set data.val_split: {_fraction(cv)}")
    if not metric.startswith("val_"):
        raise where.error(["cv"], f"scores each fold on its validation rows; tune.metric '{metric}' is not a validation metric")
    if abs(cfg.data.val_split * cv - 1) > CV_TOLERANCE:
        raise where.error(["cv"], f"{cv} folds need data.val_split: {_fraction(cv)} (fold 0 is the config's validation split, "
                                  f"the other folds are equal parts of the rest), got {cfg.data.val_split!r}")
    return cv, refit in ("auto", True)


def _fraction(k: int) -> str:
    return f"{1 / k:.4g}"


def _number_text(value):
    """``'1e-4'`` as 1e-4 (a float written without '.', which YAML leaves a string); any
    other value as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_param(key: str, entry: Any, known: list[str], base: dict, where: _Where) -> Param:
    loc = ["space", key]
    if key in NOT_TUNABLE:
        raise where.error(loc, f"cannot be searched: {NOT_TUNABLE[key]}")
    if key not in known:
        raise where.error(loc, f"unknown config key{did_you_mean(key, known)}; a dimension is a dotted key such as optimizer.lr or model.hidden")
    if not isinstance(entry, dict):
        raise where.error(loc, f"expected a mapping like {{type: uniform, low: 0.0, high: 0.5}}, got {_shown(entry)}")
    kind = entry.get("type")
    if kind not in TYPES:
        if kind is None:
            raise where.error([*loc, "type"], f"required key is missing; one of {', '.join(TYPES)}")
        raise where.error([*loc, "type"], f"unknown type {_shown(kind)}{did_you_mean(str(kind), list(TYPES))}; valid: {', '.join(TYPES)}")
    allowed = ("type", *TYPES[kind])
    for sub in entry:
        if sub not in allowed:
            raise where.error([*loc, str(sub)], f"unknown key for type {kind}{did_you_mean(str(sub), list(allowed))}; valid keys: {', '.join(allowed)}")
    for sub in REQUIRED[kind]:
        if sub not in entry:
            raise where.error(loc, f"type {kind} needs {' and '.join(REQUIRED[kind])}; '{sub}' is missing")
    if kind == "choice":
        values = entry["values"]
        if not isinstance(values, list) or not values:
            raise where.error([*loc, "values"], f"must be a non-empty list, got {_shown(values)}")
        if any(values.count(v) > 1 for v in values):
            repeated = next(v for v in values if values.count(v) > 1)
            raise where.error([*loc, "values"], f"value {_shown(repeated)} is listed more than once")
        param = Param(key, kind, values=tuple(values))
    else:
        low, high = entry["low"], entry["high"]
        if kind != "int":  # YAML 1.1 reads 1e-4 (no '.') as text; the config schema takes it as a number, so here too
            low, high = _number_text(low), _number_text(high)
        check = _is_int if kind == "int" else _is_number
        what = "an integer" if kind == "int" else "a number"
        for sub, value in (("low", low), ("high", high)):
            if not check(value) or not math.isfinite(value):
                raise where.error([*loc, sub], f"must be {what}, got {_shown(value)}")
        if not low < high:
            raise where.error(loc, f"low must be < high, got low {low!r}, high {high!r}")
        if kind == "loguniform" and low <= 0:
            raise where.error([*loc, "low"], f"a loguniform range needs low > 0, got {low!r}")
        step = entry.get("step")
        if kind == "int" and step is not None and (not _is_int(step) or step < 1):
            raise where.error([*loc, "step"], f"must be an integer >= 1, got {_shown(step)}")
        if kind == "int" and step is not None and (high - low) % step:
            raise where.error([*loc, "step"], f"high - low ({high - low}) must be a multiple of step {step}")
        param = Param(key, kind, low=low, high=high, step=step)
    for what, value in param.probes():
        problem = schema_problem(base, key, value)
        if problem is not None:
            raise where.error(loc, f"{what} would be refused by the config schema: {problem}")
    return param


def _check_pairs(space: dict[str, Param], base: dict, where: _Where) -> None:
    """Every pair of dimensions at their probes together: the schema's rules across keys
    (optimizer.name lbfgs needs training.batch_size full; model.code_layer must index
    model.hidden) refuse values that each pass alone, and a trial refused by the schema ends
    the study, so such a space is refused now (about 0.05 ms a pair of probes)."""
    params = list(space.values())
    for i, a in enumerate(params):
        for b in params[i + 1:]:
            for what_a, value_a in a.probes():
                for what_b, value_b in b.probes():
                    raw = copy.deepcopy(base)
                    set_dotted(raw, a.key, copy.deepcopy(value_a))
                    problem = schema_problem(raw, b.key, value_b)
                    if problem is not None:
                        raise where.error(["space", b.key], f"{what_b} with {a.key} {what_a} would be refused by the config schema: {problem}")


def set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def schema_problem(base: dict, key: str, value: Any) -> Optional[str]:
    """The schema's complaint about ``key: value`` in the config ``base``, or None."""
    raw = copy.deepcopy(base)
    set_dotted(raw, key, copy.deepcopy(value))
    try:
        Config.model_validate(raw)
    except ValidationError as e:
        return format_errors(e, "", None).lstrip(": ")
    return None
