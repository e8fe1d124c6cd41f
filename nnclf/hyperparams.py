"""The config keys of each optimizer and schedule: one small pydantic model per engine class.

``optimizer:`` and ``schedule:`` are chosen by ``name``: the config schema looks the name up in
``OPTIMIZER_KEYS`` / ``SCHEDULE_KEYS`` (the same names as the engine's ``OPTIMIZERS`` /
``SCHEDULES``) and validates the section with that model, so a key of another optimizer
(``momentum`` for adam) is an unknown key and every value is checked against its range.

The engine classes keep their own defaults (``hyper``) so they can be used without a config;
tests/test_hyperparams.py checks that both agree, key for key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from .registry import Registry
from .schema import Section

# the ranges, as pydantic constraints (the error messages describe them: config.py, _expected)
Fraction = Annotated[float, Field(ge=0, lt=1)]  # 0 <= v < 1
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
NonNegativeCount = Annotated[int, Field(ge=0)]


class OptimizerKeys(Section):
    """Keys every optimizer takes; subclasses add the optimizer's own."""

    name: str = Field("adam", frozen=True)
    lr: Positive = 0.001

    def hyperparameters(self) -> dict[str, Any]:
        """The optimizer's own keys and values (what its engine class takes as keywords)."""
        return {key: getattr(self, key) for key in type(self).model_fields if key not in OptimizerKeys.model_fields}


class ScheduleKeys(Section):
    """Keys every schedule takes; subclasses add the schedule's own."""

    name: str = Field("constant", frozen=True)
    warmup_epochs: NonNegativeCount = 0

    def hyperparameters(self) -> dict[str, Any]:
        """The schedule's own keys and values (what its engine class takes as keywords)."""
        return {key: getattr(self, key) for key in type(self).model_fields if key not in ScheduleKeys.model_fields}


OPTIMIZER_KEYS: Registry[type[OptimizerKeys]] = Registry("optimizer")
SCHEDULE_KEYS: Registry[type[ScheduleKeys]] = Registry("schedule")

# -- optimizers (nnclf/engine/optimizers.py, fullbatch.py) -------------------------------------
OPTIMIZER_KEYS.register("sgd", "gd")(OptimizerKeys)


@OPTIMIZER_KEYS.register("momentum", "nesterov")
class MomentumKeys(OptimizerKeys):
    momentum: Fraction = 0.9


@OPTIMIZER_KEYS.register("adagrad")
class AdaGradKeys(OptimizerKeys):
    eps: Positive = 1e-8


@OPTIMIZER_KEYS.register("rmsprop")
class RMSPropKeys(OptimizerKeys):
    rho: Fraction = 0.9
    eps: Positive = 1e-8


@OPTIMIZER_KEYS.register("adam")
class AdamKeys(OptimizerKeys):
    beta1: Fraction = 0.9
    beta2: Fraction = 0.999
    eps: Positive = 1e-8


@OPTIMIZER_KEYS.register("adamw")
class AdamWKeys(AdamKeys):
    weight_decay: NonNegative = 0.01  # decoupled: x <- x - lr * weight_decay * x on weights


class FullBatchKeys(OptimizerKeys):
    """Stopping rules shared by lbfgs, cg and newton_cg."""

    gtol: NonNegative = 1e-5  # stop when ||g||_inf <= gtol
    ftol: NonNegative = 1e-9  # stop when the loss falls by <= ftol * max(|f_old|, |f_new|, 1)
    max_line_search: Count = 20  # iterations of each strong-Wolfe line search


@OPTIMIZER_KEYS.register("lbfgs")
class LBFGSKeys(FullBatchKeys):
    history: Count = 10  # (s, y) pairs kept


@OPTIMIZER_KEYS.register("cg")
class CGKeys(FullBatchKeys):
    restart: NonNegativeCount = 0  # restart along -g every this many iterations (0: every P, the parameter count)
    c2: Positive = 0.1  # the strong-Wolfe curvature constant


@OPTIMIZER_KEYS.register("newton_cg")
class NewtonCGKeys(FullBatchKeys):
    curvature: Literal["gauss_newton", "hessian"] = "gauss_newton"
    damping: NonNegative = 1e-4  # lam of (B + lam I) d = -g: the start, with damping_rule adaptive
    damping_rule: Literal["adaptive", "fixed"] = "adaptive"  # adaptive: Martens' Levenberg-Marquardt rule on rho
    max_cg: Count = 50


# -- schedules (nnclf/engine/schedules.py) -----------------------------------------------------
SCHEDULE_KEYS.register("constant")(ScheduleKeys)


@SCHEDULE_KEYS.register("step")
class StepKeys(ScheduleKeys):
    step_size: Count = 10
    gamma: Positive = 0.1


@SCHEDULE_KEYS.register("exponential")
class ExponentialKeys(ScheduleKeys):
    gamma: Positive = 0.95


@SCHEDULE_KEYS.register("cosine")
class CosineKeys(ScheduleKeys):
    min_lr: NonNegative = 0.0


@SCHEDULE_KEYS.register("reduce_on_plateau", "plateau")
class PlateauKeys(ScheduleKeys):
    monitor: str = Field("val_loss", min_length=1)  # nnclf/runs.py checks that the run logs it
    mode: Literal["auto", "min", "max"] = "auto"
    factor: Fraction = 0.1
    patience: NonNegativeCount = 5
    min_delta: NonNegative = 0.0
    min_lr: NonNegative = 0.0


def chosen_by_name(registry: Registry, default: str):
    """The annotation of a section validated by the model its ``name`` picks (``default`` when
    the section has no name). An unknown name or a section that is no mapping is reported by
    pydantic as ``union_tag_invalid`` / ``union_tag_not_found``; config.py words those."""

    def pick(value: Any):
        if isinstance(value, dict):
            name = value.get("name", default)
            return name if isinstance(name, str) else None
        return getattr(value, "name", None)

    members = tuple(Annotated[registry.get(name), Tag(name)] for name in registry.names())
    return Annotated[Union[members], Discriminator(pick)]  # type: ignore[valid-type]
