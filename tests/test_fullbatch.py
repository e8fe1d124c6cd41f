"""Full-batch methods (engine/fullbatch.py): textbook functions, a convex problem against
scikit-learn, and training through the CLI (metrics, resume, refusals)."""

from __future__ import annotations

import csv
import math
import json

import numpy as np
import pytest
from scipy.optimize import minimize

from conftest import DATA, merged, write_config
from nnclf.build import check_full_batch_memory
from nnclf.config import validate
from nnclf.engine.curvature import CurvatureProduct
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.step import Objective
from nnclf.errors import NnclfError


def lecture_quadratic(x):
    """f = 0.1 x1^2 + 2 x2^2 (condition number 20)."""
    return 0.1 * x[0] ** 2 + 2 * x[1] ** 2, np.array([0.2 * x[0], 4 * x[1]])


def lecture_quadratic_hessian(x, v):
    return np.array([0.2 * v[0], 4 * v[1]])


def rosenbrock(x):
    a, b = x
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


def rosenbrock_hessian(x, v):
    a, b = x
    return np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]]) @ v


def run(name, fun, x0, product=None, limit=500, **hyper):
    opt = OPTIMIZERS.get(name)(len(x0), "float64", None, **hyper)
    evaluations = 0
    for _ in range(limit):
        evaluations += opt.iterate(fun, np.asarray(x0, dtype=np.float64), product).evaluations
        if opt.converged:
            break
    return opt, evaluations


@pytest.mark.parametrize("n", [2, 5, 10])
def test_cg_with_exact_line_searches_minimises_an_n_dimensional_quadratic_in_n_steps(n):
    """The n-step bound holds in exact arithmetic; condition number 10 keeps float64's loss of
    conjugacy too small to cost a step (at condition 100 and n = 12 it takes 13)."""
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.geomspace(0.5, 5, n)) @ q.T
    b = rng.normal(size=n)
    fun = lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)  # noqa: E731
    opt, _ = run("cg", fun, np.zeros(n), c2=1e-6, gtol=1e-10, ftol=0.0)
    assert opt.status == 1 and opt.t <= n
    assert np.allclose(opt.x, np.linalg.solve(a, b), atol=1e-8)


def test_lecture_quadratic_cg_two_steps_newton_at_most_two_lbfgs_superlinear():
    cg, _ = run("cg", lecture_quadratic, [-4.0, 2.0], c2=1e-6, gtol=1e-10, ftol=0.0)
    assert cg.status == 1 and cg.t <= 2
    newton, _ = run("newton_cg", lecture_quadratic, [-4.0, 2.0], lecture_quadratic_hessian, curvature="hessian", damping=0.0, gtol=1e-10, ftol=0.0)
    assert newton.status == 1 and newton.t <= 2
    lbfgs, _ = run("lbfgs", lecture_quadratic, [-4.0, 2.0], gtol=1e-10, ftol=0.0)
    assert lbfgs.status == 1 and np.allclose(lbfgs.x, 0, atol=1e-9)
    reference = minimize(lambda x: lecture_quadratic(x)[0], [-4.0, 2.0], jac=lambda x: lecture_quadratic(x)[1], method="BFGS", options={"gtol": 1e-10})
    assert lbfgs.t <= reference.nit + 2  # the same quasi-Newton updates as scipy's BFGS in 2-D (m = 10 > n)


def test_gradient_descent_on_the_lecture_quadratic_needs_many_more_steps():
    opt = OPTIMIZERS.get("gd")(2, "float64")
    x = np.array([-4.0, 2.0])
    steps = next(t for t in range(1, 10_000) if (opt.step(x, lecture_quadratic(x)[1], 0.4) or True) and np.max(np.abs(lecture_quadratic(x)[1])) < 1e-6)
    assert steps > 50  # linear rate 1 - 0.4 * 0.2 = 0.92 per step on the flat axis


@pytest.mark.parametrize("name,scipy_method,curvature", [("lbfgs", "L-BFGS-B", None), ("cg", "CG", None), ("newton_cg", "Newton-CG", rosenbrock_hessian)])
def test_rosenbrock_converges_as_fast_as_scipy(name, scipy_method, curvature):
    hyper = {"curvature": "hessian", "damping": 0.0} if curvature else {}
    opt, evaluations = run(name, rosenbrock, [-1.2, 1.0], curvature, gtol=1e-6, **hyper)
    assert opt.converged and np.allclose(opt.x, [1.0, 1.0], atol=1e-4)
    reference = minimize(lambda x: rosenbrock(x)[0], [-1.2, 1.0], jac=lambda x: rosenbrock(x)[1], hessp=curvature, method=scipy_method)
    assert reference.success
    assert opt.t <= 1.5 * reference.nit


def _logistic_problem(k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, 5))
    w = rng.normal(size=(5, k))
    y = (x @ w + rng.gumbel(size=(240, k))).argmax(axis=1)
    return x, y


@pytest.mark.parametrize("k", [2, 3])
def test_lbfgs_reaches_the_logistic_regression_optimum_of_scikit_learn(k):
    """No hidden layer + cross-entropy + weight decay lam is logistic regression with C = 1 / (lam n):
    C sum_i l_i + ||W||^2 / 2 = C n (1/n sum_i l_i + lam/2 ||W||^2), intercepts unpenalised in both."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _logistic_problem(k)
    lam, n = 0.05, len(y)
    loss = LOSSES.get("cross_entropy")(k)
    net = MLP([5, loss.n_outputs], "tanh", dtype="float64")
    objective = Objective(net, loss, x, y, lam)
    opt, _ = run("lbfgs", objective, np.zeros(net.params.size), gtol=1e-10, ftol=0.0)
    reference = sklearn.LogisticRegression(C=1 / (lam * n), tol=1e-12, max_iter=10_000).fit(x, y)
    coef, intercept = reference.coef_.T, reference.intercept_
    theta = np.concatenate([coef.ravel(), intercept])  # W (5, K_out) row-major, then b: MLP's layout
    ours, theirs = objective(opt.x)[0], objective(theta)[0]
    assert abs(ours - theirs) < 1e-6
    assert ours <= theirs + 1e-9


def test_newton_cg_with_gauss_newton_curvature_reaches_the_same_optimum():
    x, y = _logistic_problem(3, seed=1)
    loss = LOSSES.get("cross_entropy")(3)
    net = MLP([5, 3], "tanh", dtype="float64")
    objective = Objective(net, loss, x, y, 0.01)
    lbfgs, lbfgs_evaluations = run("lbfgs", objective, np.zeros(net.params.size), gtol=1e-9, ftol=0.0)
    curvature = CurvatureProduct(net, loss, x, y, 0.01, "gauss_newton")
    newton, newton_evaluations = run("newton_cg", objective, np.zeros(net.params.size), curvature, damping=0.0, gtol=1e-9, ftol=0.0)
    assert abs(objective(newton.x)[0] - objective(lbfgs.x)[0]) < 1e-10
    assert newton.t < lbfgs.t  # a (here exact) Newton method needs fewer outer iterations


def test_state_round_trip_continues_exactly():
    x, y = _logistic_problem(3, seed=2)
    loss = LOSSES.get("cross_entropy")(3)
    net = MLP([5, 4, 3], "tanh", dtype="float64")
    net.initialize("auto", np.random.default_rng(0))
    x0 = net.params.copy()
    objective = Objective(net, loss, x, y, 0.01)
    for name in ("lbfgs", "cg"):
        straight = OPTIMIZERS.get(name)(x0.size, "float64", history=3) if name == "lbfgs" else OPTIMIZERS.get(name)(x0.size, "float64")
        for _ in range(8):
            straight.iterate(objective, x0)
        first = OPTIMIZERS.get(name)(x0.size, "float64", **({"history": 3} if name == "lbfgs" else {}))
        for _ in range(4):
            first.iterate(objective, x0)
        saved = {k: np.array(v) for k, v in first.state().items()}
        second = OPTIMIZERS.get(name)(x0.size, "float64", **({"history": 3} if name == "lbfgs" else {}))
        second.load_state(saved)
        for _ in range(4):
            second.iterate(objective, x0)
        assert np.array_equal(second.x, straight.x), name


def _dense_lbfgs_inverse(pairs, n):
    """H from BFGS updates H <- (I - r s y^T) H (I - r y s^T) + r s s^T, r = 1 / s^T y, over
    ``pairs`` (oldest first) from H_0 = gamma I with the newest pair's gamma = s^T y / y^T y
    (Nocedal & Wright eq. 7.19-7.20): the matrix the two-loop recursion multiplies by."""
    s_new, y_new = pairs[-1]
    h = (s_new @ y_new) / (y_new @ y_new) * np.eye(n)
    for s, y in pairs:
        r = 1.0 / (s @ y)
        left = np.eye(n) - r * np.outer(s, y)
        h = left @ h @ left.T + r * np.outer(s, s)
    return h


def test_lbfgs_direction_equals_the_dense_bfgs_matrix_of_the_newest_pairs_after_the_ring_wraps():
    n, m = 6, 3
    rng = np.random.default_rng(4)
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=m)
    pushed = []
    g = rng.normal(size=n)
    for count in range(1, 8):  # 7 pairs into a ring of 3: it wraps twice, head moves
        s = rng.normal(size=n)
        y = s * rng.uniform(0.5, 3.0, n) + 0.1 * rng.normal(size=n)  # s^T y > 0
        assert s @ y > 0
        opt._remember(s, y)
        pushed.append((s, y))
        kept = pushed[-m:]
        assert int(opt.pairs) == len(kept)
        expected = -_dense_lbfgs_inverse(kept, n) @ g
        assert np.allclose(opt.direction(g), expected, rtol=1e-10, atol=1e-12), count
    assert int(opt.head) == 7 % m  # the oldest kept pair is the 5th pushed: row 4 mod 3


def test_lbfgs_loads_a_history_saved_oldest_first_without_head():
    """Checkpoints written before the ring (no ``head``) hold rows oldest first: head 0."""
    n, m = 5, 3
    rng = np.random.default_rng(1)
    pairs = [(s, s * rng.uniform(1.0, 2.0, n)) for s in rng.normal(size=(m, n))]
    opt = OPTIMIZERS.get("lbfgs")(n, "float64", history=m)
    state = {k: v for k, v in opt.state().items() if k != "head"}
    state.update(s=np.array([p[0] for p in pairs]), y=np.array([p[1] for p in pairs]), pairs=np.array(m), t=np.array(3))
    opt.load_state(state)
    g = rng.normal(size=n)
    assert int(opt.head) == 0
    assert np.allclose(opt.direction(g), -_dense_lbfgs_inverse(pairs, n) @ g, rtol=1e-10)
    with pytest.raises(ValueError, match="head 3 must lie in"):
        opt.load_state({**state, "head": np.array(3)})


# -- newton_cg's adaptive damping (Levenberg-Marquardt rule, Martens 2010) ---------------------
def test_adaptive_damping_shrinks_by_two_thirds_when_the_model_is_exact():
    """On a quadratic with its exact Hessian the quadratic model is f itself, so rho = 1 at every
    step and lam <- 2/3 lam each iteration: lam_t = lam_0 (2/3)^t."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a = q @ np.diag(np.geomspace(0.5, 5, 5)) @ q.T
    fun = lambda x: (0.5 * x @ a @ x, a @ x)  # noqa: E731
    opt = OPTIMIZERS.get("newton_cg")(5, "float64", None, curvature="hessian", damping=2.0, gtol=1e-12, ftol=0.0)
    x0 = rng.normal(size=5)
    for t in range(1, 7):
        opt.iterate(fun, x0, lambda x, v: a @ v)
        assert abs(float(opt.rho) - 1.0) < 1e-9, t
        assert float(opt.lam) == pytest.approx(2.0 * (2.0 / 3.0) ** t, rel=1e-12)


def test_adaptive_damping_grows_while_the_curvature_is_underestimated():
    """f = (x1^2 + 4 x2^2) / 2 with a curvature product B = 0.1 I (far too flat). CG solves
    (B + lam I) d = -g exactly, d = -g / c with c = 0.1 + lam, so by hand

        f(x + d) - f(x) = -g.g / c + g.H g / (2 c^2),   q(d) = -g.g / c + 0.1 g.g / (2 c^2)

    and rho is their ratio. Small c overshoots (f rises: rho < 0), so lam grows by 3/2 per
    iteration until rho >= 1/4; the line search still makes progress meanwhile."""
    h = np.array([1.0, 4.0])
    fun = lambda x: (0.5 * float(x @ (h * x)), h * x)  # noqa: E731
    opt = OPTIMIZERS.get("newton_cg")(2, "float64", None, curvature="hessian", damping=0.01, gtol=1e-10, ftol=0.0)
    lams, x0 = [0.01], np.array([3.0, 1.0])
    while not opt.converged and opt.t < 300:
        g = h * (opt.x if opt.t else x0)
        c = 0.1 + float(opt.lam)
        opt.iterate(fun, x0, lambda x, v: 0.1 * v)
        expected = (-(g @ g) / c + (g @ (h * g)) / (2 * c * c)) / (-(g @ g) / c + 0.1 * (g @ g) / (2 * c * c))
        assert float(opt.rho) == pytest.approx(expected, rel=1e-9)
        step = float(opt.lam) / lams[-1]
        assert step == pytest.approx(1.5 if expected < 0.25 else 2.0 / 3.0 if expected > 0.75 else 1.0)
        lams.append(float(opt.lam))
    assert opt.converged and np.max(np.abs(opt.x)) < 1e-9
    assert lams[1:6] == pytest.approx([0.01 * 1.5**k for k in range(1, 6)])  # c = 0.115 ... 0.176: f rose
    assert max(lams) > 0.5  # it grew until the damped model was good enough


def test_adaptive_damping_converges_on_rosenbrock_where_fixed_damping_crawls():
    """From lam_0 = 10 the rule lowers lam as the model improves near the minimum, and the method
    ends in fewer iterations than scipy's undamped Newton-CG; a fixed lam = 10 keeps every step
    short (linear convergence along the valley) and needs more than twice as many."""
    reference = minimize(lambda x: rosenbrock(x)[0], [-1.2, 1], jac=lambda x: rosenbrock(x)[1], hessp=rosenbrock_hessian,
                         method="Newton-CG", options={"xtol": 1e-12})
    adaptive, _ = run("newton_cg", rosenbrock, [-1.2, 1.0], rosenbrock_hessian, limit=2000, curvature="hessian", damping=10.0, gtol=1e-8, ftol=0.0)
    fixed, _ = run("newton_cg", rosenbrock, [-1.2, 1.0], rosenbrock_hessian, limit=2000, curvature="hessian", damping=10.0,
                   damping_rule="fixed", gtol=1e-8, ftol=0.0)
    for opt in (adaptive, fixed):
        assert opt.status == 1 and np.allclose(opt.x, [1.0, 1.0], atol=1e-6)
    assert adaptive.t <= reference.nit
    assert fixed.t > 2 * adaptive.t
    assert float(adaptive.lam) < 0.01 * 10.0 and float(fixed.lam) == 10.0


def test_newton_cg_state_round_trip_restores_the_damping_exactly():
    x, y = _logistic_problem(3, seed=2)
    loss = LOSSES.get("cross_entropy")(3)
    net = MLP([5, 4, 3], "tanh", dtype="float64")
    net.initialize("auto", np.random.default_rng(0))
    x0 = net.params.copy()
    objective = Objective(net, loss, x, y, 0.01)
    curvature = CurvatureProduct(net, loss, x, y, 0.01, kind="gauss_newton")
    make = lambda: OPTIMIZERS.get("newton_cg")(x0.size, "float64", damping=1.0, gtol=0.0, ftol=0.0)  # noqa: E731
    straight = make()
    lams = []
    for _ in range(8):
        straight.iterate(objective, x0, curvature)
        lams.append(float(straight.lam))
    assert len(set(lams)) > 2  # the damping moved
    first = make()
    for _ in range(4):
        first.iterate(objective, x0, curvature)
    saved = {k: np.array(v) for k, v in first.state().items()}
    second = make()
    second.load_state(saved)
    for _ in range(4):
        second.iterate(objective, x0, curvature)
    assert np.array_equal(second.x, straight.x) and float(second.lam) == float(straight.lam)
    old = {k: v for k, v in saved.items() if k != "lam"}  # a checkpoint from before the rule
    third = make()
    third.load_state(old)
    assert float(third.lam) == 1.0


# -- through the config and the CLI -------------------------------------------------------------
CONFIG = f"""
data: {{train: {DATA / 'wine.csv'}, target: class}}
model: {{hidden: [8], activation: tanh}}
loss: {{weight_decay: 0.001}}
optimizer: {{name: lbfgs}}
training: {{epochs: 12}}
"""


def test_full_batch_methods_default_to_full_batches_and_their_precision_and_refuse_mini_batches():
    raw = {"data": {"train": "x.csv", "target": "y"}, "optimizer": {"name": "cg"}}
    cfg = validate(raw)
    assert cfg.training.batch_size == "full" and cfg.training.dtype == "float64"
    # lbfgs keeps the general float32 default; cg and newton_cg default to float64 (RESULTS.md)
    for name, dtype in (("lbfgs", "float32"), ("cg", "float64"), ("newton_cg", "float64")):
        assert validate({**raw, "optimizer": {"name": name}}).training.dtype == dtype
        assert validate({**raw, "optimizer": {"name": name}, "training": {"dtype": "float32"}}).training.dtype == "float32"
        assert validate({**raw, "optimizer": {"name": name}, "training": {"dtype": "float64"}}).training.dtype == "float64"
    with pytest.raises(NnclfError, match="training.batch_size: optimizer 'lbfgs' is a full-batch method .* must be 'full', got 32"):
        validate({**raw, "optimizer": {"name": "lbfgs"}, "training": {"batch_size": 32}})
    with pytest.raises(NnclfError, match=r"optimizer.curvature: must be one of gauss_newton, hessian, got 'hesian' \(did you mean 'hessian'\?\)"):
        validate({**raw, "optimizer": {"name": "newton_cg", "curvature": "hesian"}})
    with pytest.raises(NnclfError, match=r"optimizer.histroy: unknown key for optimizer 'lbfgs' \(did you mean 'history'\?\)"):
        validate({**raw, "optimizer": {"name": "lbfgs", "histroy": 5}})


@pytest.mark.parametrize("name", ["lbfgs", "cg", "newton_cg"])
def test_settings_a_full_batch_method_would_ignore_are_refused(cli, tmp_path, name):
    """Dropout, gradient clipping and a learning-rate schedule do nothing to these methods (a
    deterministic objective, a line search on the exact gradient, no learning rate): each is a
    config error naming its key and line, not a silent no-op; first-order methods keep them."""
    base = f"seed: 1\ndata: {{train: {DATA / 'iris.csv'}, target: species}}\noptimizer: {{name: {name}}}\ntraining: {{epochs: 2}}\n"
    for extra, key in (("model: {hidden: [4], dropout: 0.2}", "model.dropout"), ("training: {clip_norm: 1.0}", "training.clip_norm"),
                       ("schedule: {name: cosine}", "schedule"), ("schedule: {warmup_epochs: 2}", "schedule")):
        path = write_config(tmp_path, merged(base, extra), "c.yaml")
        r = cli(f"train {path} -q")
        assert r.exit_code == 1 and r.stdout == ""
        assert r.stderr.startswith(f"error: {path}, line ") and f": {key}: optimizer '{name}' " in r.stderr and r.stderr.count("\n") == 1
        # the same setting with a first-order optimizer trains
        r = cli(f"train {path} -q --set optimizer.name=adam --set training.batch_size=32")
        assert r.exit_code == 0, r.stderr


def test_a_model_too_big_for_free_memory_is_refused_before_training():
    cfg = validate({"data": {"train": "x.csv", "target": "y"}, "optimizer": {"name": "lbfgs", "history": 20}})
    net = MLP([100, 1000, 10], "relu", dtype="float64")
    opt = OPTIMIZERS.get("lbfgs")(net.params.size, "float64", history=20)
    # (2 * 20 + 6) float64 vectors of P = 111,010 (40.9 MB) + 3 parameter vectors (2.7 MB) + 4 chunk
    # buffers of 2,048 x (100 + 1000 + 10) float64 (72.7 MB) + the (5000, 10) logits (0.4 MB) = 111 MiB
    with pytest.raises(NnclfError, match=r"lbfgs needs about 111 MiB for 111,010 parameters and 5,000 rows but only 10 MiB are free; .*optimizer.history"):
        check_full_batch_memory(cfg, opt, net, 5000, available=10 * 2**20)
    check_full_batch_memory(cfg, opt, net, 5000, available=120 * 2**20)


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["lbfgs", "cg", "newton_cg"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cli_trains_each_method_with_evaluations_in_the_metrics(cli, tmp_path, name, dtype):
    write_config(tmp_path, CONFIG.replace("name: lbfgs", f"name: {name}"))
    result = cli(["train", "config.yaml", "--name", "r", "--quiet", "--set", f"training.dtype={dtype}"])
    assert result.exit_code == 0, result.stderr
    rows = _metrics(tmp_path / "runs" / "r")
    assert rows and all(int(r["evaluations"]) >= 1 for r in rows)
    assert (int(rows[-1]["products"]) > 0) == (name == "newton_cg")
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0]
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.85


def test_cli_refuses_a_mini_batch_size(cli, tmp_path):
    write_config(tmp_path, CONFIG)
    result = cli(["train", "config.yaml", "--set", "training.batch_size=16"])
    assert result.exit_code == 1
    assert "training.batch_size: optimizer 'lbfgs' is a full-batch method" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["lbfgs", "newton_cg"])
def test_resume_restores_the_history_and_continues_bit_for_bit(cli, tmp_path, name):
    write_config(tmp_path, CONFIG.replace("name: lbfgs", f"name: {name}"))
    assert cli(["train", "config.yaml", "--name", "whole", "--quiet"]).exit_code == 0
    assert cli(["train", "config.yaml", "--name", "part", "--quiet", "--set", "training.epochs=5"]).exit_code == 0
    resumed = cli(["train", "--resume", tmp_path / "runs" / "part", "--set", "training.epochs=12", "--quiet"])
    assert resumed.exit_code == 0, resumed.stderr
    whole, part = _metrics(tmp_path / "runs" / "whole"), _metrics(tmp_path / "runs" / "part")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(part) == drop(whole)
    a = np.load(tmp_path / "runs" / "whole" / "checkpoints" / "last.npz", allow_pickle=False)
    b = np.load(tmp_path / "runs" / "part" / "checkpoints" / "last.npz", allow_pickle=False)
    assert np.array_equal(a["params"], b["params"])
    if name == "lbfgs":  # the (s, y) history came back from the checkpoint whole
        assert int(b["optimizer.pairs"]) > 5
        assert np.array_equal(a["optimizer.s"], b["optimizer.s"]) and np.array_equal(a["optimizer.y"], b["optimizer.y"])
    else:  # the adapted damping came back (it moved away from the configured 1e-4)
        assert float(b["optimizer.lam"]) == float(a["optimizer.lam"]) != 1e-4


@pytest.mark.parametrize("name", ["lbfgs", "newton_cg"])
def test_full_batch_methods_fit_a_regression_through_the_cli(cli, tmp_path, name):
    """y = 3 a - 2 b + 10 + noise (sd 0.05): a full-batch fit reaches a test RMSE near the noise."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 200))
    y = 3 * a - 2 * b + 10 + 0.05 * rng.normal(size=200)
    (tmp_path / "reg.csv").write_text("a,b,y\n" + "".join(f"{p:.6f},{q:.6f},{r:.6f}\n" for p, q, r in zip(a, b, y)))
    write_config(tmp_path, f"task: regression\ndata: {{train: reg.csv, target: y}}\nmodel: {{hidden: [8], activation: tanh}}\n"
                           f"loss: {{name: huber}}\noptimizer: {{name: {name}}}\ntraining: {{epochs: 60}}\n")
    result = cli(["train", "config.yaml", "--name", "r", "--quiet"])
    assert result.exit_code == 0, result.stderr
    rows = _metrics(tmp_path / "runs" / "r")
    assert all(int(r["evaluations"]) >= 1 for r in rows) and "train_accuracy" not in [k for k, v in rows[-1].items() if v]
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["test"]["rmse"] < 0.2, summary["test"]


def _scipy_wolfe(fun, x, d, f, g, c1, c2, maxiter, previous_f=None):
    """The line search as it was before the shortcuts: scipy's line_search throughout."""
    import warnings

    from scipy.optimize import line_search

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alpha, *_ = line_search(lambda z: fun(z)[0], lambda z: fun(z)[1], x, d, g, f, previous_f, c1=c1, c2=c2, maxiter=maxiter)
    if alpha is None or not np.isfinite(alpha) or alpha <= 0:
        return None, f, g
    f_new, g_new = fun(x + alpha * d)
    if not f_new <= f:
        return None, f, g
    return float(alpha), f_new, g_new


@pytest.mark.parametrize("scale", [1.0, 0.3, 3.0, 40.0])  # the first trial: accepted, too short, too long, far too long
@pytest.mark.parametrize("previous", [None, "near", "far"])
@pytest.mark.parametrize("c2", [0.9, 0.1])
def test_the_accepted_first_trial_gives_what_scipys_line_search_gives(scale, previous, c2):
    """wolfe_line_search accepts a first trial that meets both Wolfe conditions itself (or the
    zoom's first point after a too-long one) and hands the rest to scipy: alpha, f, g and the
    evaluations used must be those of scipy's line search run alone, bit for bit, whichever
    case the trial falls in."""
    from nnclf.engine.fullbatch import _Counted, wolfe_line_search

    rng = np.random.default_rng(11)
    a = rng.standard_normal((6, 6))
    hess = a @ a.T + np.eye(6)

    def quartic(x):  # a convex quadratic plus a quartic term: alpha = 1 on the Newton step is not exact
        return 0.5 * x @ hess @ x + 0.05 * np.sum(x**4), hess @ x + 0.2 * x**3

    cases = 0
    for trial in range(8):
        x = rng.standard_normal(6) * 2
        f, g = quartic(x)
        d = -np.linalg.solve(hess, g) * scale
        previous_f = None if previous is None else f + (1e-3 if previous == "near" else 10.0) * abs(f)
        ours, theirs = _Counted(quartic), _Counted(quartic)
        got = wolfe_line_search(ours, x, d, f, g, 1e-4, c2, 20, previous_f)
        want = _scipy_wolfe(theirs, x, d, f, g, 1e-4, c2, 20, previous_f)
        assert (got[0] is None) == (want[0] is None)
        if want[0] is not None:
            assert got[0] == want[0] and type(got[0]) is float
            assert got[1] == want[1]
            np.testing.assert_array_equal(got[2], want[2])
            cases += 1
        assert ours.calls == theirs.calls
    assert cases >= 4


def test_the_line_search_equals_scipys_on_many_random_searches(monkeypatch):
    """Every outcome of wolfe_line_search (the first trial accepted, the zoom's first
    interpolated point accepted, scipy's search after both were tried) gives scipy's alpha, f,
    g and evaluation count bit for bit, on convex and nonconvex functions, directions of many
    lengths, with and without a previous f, for L-BFGS's and CG's c2."""
    import scipy.optimize

    from nnclf.engine.fullbatch import _Counted, wolfe_line_search

    scipy_runs = [0]
    real = scipy.optimize.line_search

    def counting(*args, **kwargs):
        scipy_runs[0] += 1
        return real(*args, **kwargs)

    rng = np.random.default_rng(5)
    a = rng.standard_normal((5, 5))
    hess = a @ a.T + 0.5 * np.eye(5)

    def quartic(x):
        return 0.5 * x @ hess @ x + 0.05 * np.sum(x**4), hess @ x + 0.2 * x**3

    def wavy(x):  # nonconvex: a quadratic bowl with ripples
        return 0.5 * x @ x + np.sum(np.sin(3 * x)), x + 3 * np.cos(3 * x)

    outcomes = {"first": 0, "zoom": 0, "scipy": 0}
    for function in (quartic, wavy):
        for _ in range(60):
            x = rng.standard_normal(5) * 2
            f, g = function(x)
            d = -g * float(np.exp(rng.uniform(-3, 4)))
            previous_f = None if rng.random() < 0.3 else f + abs(f) * float(np.exp(rng.uniform(-6, 2)))
            c2 = 0.9 if rng.random() < 0.5 else 0.1
            ours, theirs = _Counted(function), _Counted(function)
            monkeypatch.setattr(scipy.optimize, "line_search", counting)
            before = scipy_runs[0]
            got = wolfe_line_search(ours, x, d, f, g, 1e-4, c2, 20, previous_f)
            used_scipy = scipy_runs[0] > before
            monkeypatch.setattr(scipy.optimize, "line_search", real)
            want = _scipy_wolfe(theirs, x, d, f, g, 1e-4, c2, 20, previous_f)
            assert (got[0] is None) == (want[0] is None)
            if want[0] is not None:
                assert got[0] == want[0] and type(got[0]) is float and got[1] == want[1]
                np.testing.assert_array_equal(got[2], want[2])
            assert ours.calls == theirs.calls
            if used_scipy:
                outcomes["scipy"] += 1
            else:
                outcomes["first" if ours.calls == 1 else "zoom"] += 1
    assert min(outcomes.values()) >= 5, outcomes  # each path taken many times


def test_the_zoom_step_leaves_a_degenerate_case_to_scipy():
    from nnclf.engine.fullbatch import _zoom_first_trial

    assert _zoom_first_trial(1.0, 1.0, -2.0, 5.0) == pytest.approx(2.0 / (2 * 6.0))  # q(t) = 1 - 2t + 6t^2
    assert _zoom_first_trial(1.0, 1.0, -2.0, 1e300) is not None  # a huge f: the midpoint guard, finite
    assert _zoom_first_trial(1.0, 1.0, -2.0, math.inf) is None  # scipy's arithmetic would not be plain floats
    assert _zoom_first_trial(1.0, 1.0, -2.0, math.nan) is None
    assert _zoom_first_trial(1e-170, 1.0, -2.0, 5.0) is None  # alpha^2 underflows to 0: scipy's division by zero
    assert _zoom_first_trial(1.0, 1.0, -2.0, -1.0) is None  # f(alpha) = f + slope alpha: no curvature, B = 0
