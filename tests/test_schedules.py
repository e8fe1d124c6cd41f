"""Learning-rate schedules, epoch by epoch, against their formulas and hand-worked sequences."""

from __future__ import annotations

import json
import math

import pytest

from nnclf.engine.schedules import SCHEDULES, resolve_mode


def make(name, base_lr=0.1, epochs=10, warmup=0, **hyper):
    return SCHEDULES.get(name)(base_lr, epochs, warmup_epochs=warmup, **hyper)


def test_constant():
    s = make("constant", base_lr=0.3, epochs=5)
    assert [s.lr(e) for e in range(5)] == [0.3] * 5


def test_step_hand_sequence():
    s = make("step", base_lr=1.0, epochs=8, step_size=3, gamma=0.5)
    assert [s.lr(e) for e in range(8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential():
    s = make("exponential", base_lr=0.2, epochs=6, gamma=0.9)
    for e in range(6):
        assert s.lr(e) == pytest.approx(0.2 * 0.9**e, rel=1e-14)
    assert s.lr(2) == pytest.approx(0.162, rel=1e-14)  # 0.2 * 0.81


def test_cosine_formula_and_endpoints():
    base, low, epochs = 0.1, 0.001, 11
    s = make("cosine", base_lr=base, epochs=epochs, min_lr=low)
    for e in range(epochs):
        expect = low + (base - low) * (1 + math.cos(math.pi * e / (epochs - 1))) / 2
        assert s.lr(e) == pytest.approx(expect, rel=1e-12)
    assert s.lr(0) == pytest.approx(base, rel=1e-15)
    assert s.lr(5) == pytest.approx((base + low) / 2, rel=1e-12)  # halfway: cos = 0
    assert s.lr(epochs - 1) == pytest.approx(low, rel=1e-12)  # reaches min_lr at the last epoch
    assert s.lr(epochs + 3) == pytest.approx(low, rel=1e-12)  # and stays there
    lrs = [s.lr(e) for e in range(epochs)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_cosine_single_epoch_does_not_divide_by_zero():
    assert make("cosine", base_lr=0.1, epochs=1).lr(0) == pytest.approx(0.1)


def test_warmup_linear_factor_then_decay():
    # W = 3: factors 1/4, 2/4, 3/4, then the decay starts at t = 0 on epoch 3
    s = make("constant", base_lr=0.4, epochs=8, warmup=3)
    assert [s.lr(e) for e in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4], rel=1e-14)

    s = make("step", base_lr=1.0, epochs=10, warmup=2, step_size=2, gamma=0.1)
    assert [s.lr(e) for e in range(8)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)

    s = make("exponential", base_lr=0.5, epochs=10, warmup=1, gamma=0.5)
    assert [s.lr(e) for e in range(4)] == pytest.approx([0.25, 0.5, 0.25, 0.125], rel=1e-14)


def test_cosine_with_warmup_reaches_min_lr_at_last_epoch():
    base, low, epochs, w = 0.2, 0.01, 12, 2
    s = make("cosine", base_lr=base, epochs=epochs, warmup=w, min_lr=low)
    assert s.lr(0) == pytest.approx(base / 3, rel=1e-12)
    assert s.lr(1) == pytest.approx(2 * base / 3, rel=1e-12)
    span = epochs - w - 1
    for e in range(w, epochs):
        t = e - w
        assert s.lr(e) == pytest.approx(low + (base - low) * (1 + math.cos(math.pi * t / span)) / 2, rel=1e-12)
    assert s.lr(w) == pytest.approx(base, rel=1e-14)
    assert s.lr(epochs - 1) == pytest.approx(low, rel=1e-12)


def plateau_run(schedule, values, key="val_loss"):
    """lr used at each epoch, observing that epoch's metric afterwards."""
    lrs = []
    for e, v in enumerate(values):
        lrs.append(schedule.lr(e))
        schedule.observe({key: v})
    return lrs


def test_reduce_on_plateau_hand_sequence():
    # patience 2: two epochs in a row without improvement -> lr * 0.5, used from the next epoch
    s = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=2, factor=0.5)
    values = [1.0, 0.9, 0.95, 0.92, 0.8, 0.85, 0.85, 0.9, 0.9, 0.7]
    #  epoch: 0    1    2     3     4    5     6     7    8    9
    #  best : 1.0  0.9  bad1  bad2* 0.8  bad1  bad2* bad1 bad2* 0.7
    assert plateau_run(s, values) == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_reduce_on_plateau_min_lr_floor():
    s = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=1, factor=0.1, min_lr=0.05)
    lrs = plateau_run(s, [1.0, 2.0, 2.0, 2.0, 2.0])
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.05, 0.05])


def test_reduce_on_plateau_min_delta_and_max_mode():
    s = make("reduce_on_plateau", base_lr=1.0, epochs=20, monitor="val_accuracy", patience=1, factor=0.5, min_delta=0.01)
    # accuracy is maximised; +0.005 is not an improvement beyond min_delta, +0.05 is
    lrs = plateau_run(s, [0.50, 0.505, 0.60, 0.55], key="val_accuracy")
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5])
    assert s.lr(4) == pytest.approx(0.25)


def test_reduce_on_plateau_ignores_missing_and_nan_metrics():
    s = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=1, factor=0.5)
    s.observe({"val_loss": 1.0})
    s.observe({"val_loss": float("nan")})
    s.observe({"train_loss": 5.0})
    assert s.lr(3) == 1.0
    s.observe({"val_loss": 1.5})
    assert s.lr(4) == 0.5


def test_reduce_on_plateau_state_roundtrip():
    values = [1.0, 0.9, 0.95, 0.97, 0.99, 0.85, 0.9, 0.91, 0.92]
    a = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=2, factor=0.5)
    plateau_run(a, values[:4])
    state = json.loads(json.dumps(a.state()))  # stored as JSON in the run folder
    b = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=2, factor=0.5)
    b.load_state(state)
    rest_a = [(a.lr(e), a.observe({"val_loss": v})) for e, v in enumerate(values[4:], start=4)]
    rest_b = [(b.lr(e), b.observe({"val_loss": v})) for e, v in enumerate(values[4:], start=4)]
    assert rest_a == rest_b
    # without the state the run would differ (best and bad-epoch count matter)
    c = make("reduce_on_plateau", base_lr=1.0, epochs=20, patience=2, factor=0.5)
    rest_c = [(c.lr(e), c.observe({"val_loss": v})) for e, v in enumerate(values[4:], start=4)]
    assert rest_c != rest_a


def test_pure_schedules_have_no_state():
    s = make("cosine", base_lr=0.1, epochs=5)
    s.observe({"val_loss": 1.0})
    assert s.state() == {}
    assert s.lr(2) == make("cosine", base_lr=0.1, epochs=5).lr(2)


def test_resolve_mode():
    assert resolve_mode("auto", "val_loss") == "min"
    assert resolve_mode("auto", "val_accuracy") == "max"
    assert resolve_mode("auto", "val_f1") == "max"
    assert resolve_mode("max", "val_loss") == "max"


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(TypeError, match="gama"):
        make("step", gama=0.5)
