"""Full-batch methods: L-BFGS, nonlinear conjugate gradient (PR+) and truncated Newton (Newton-CG).

Each works on a function ``objective(x) -> (f, g)`` of a flat float64 vector x (P,) (the whole
training set per call: engine/step.py's ``Objective``) and, for Newton-CG, a curvature product
``curvature(x, v) -> B v`` (engine/curvature.py). One call of ``iterate`` is one outer
iteration (one "epoch" of the trainer): a search direction d, a strong-Wolfe line search along
it, x <- x + alpha d.

Why the outer iterations are written here rather than calling ``scipy.optimize.minimize``:
a run must stop after any iteration (an epoch: metrics, checkpoints, early stopping, Ctrl-C)
and resume exactly, which needs the method's state (the L-BFGS (s, y) pairs, the previous CG
direction) as arrays in the checkpoint. scipy's minimizers keep that state inside one call and
cannot be given it back. The fragile part, the strong-Wolfe line search (Moré-Thuente-style
bracketing and zoom with cubic interpolation), is scipy's ``scipy.optimize.line_search``.

State: ``x`` (the float64 master copy of the parameters; the network holds them rounded to its
dtype), ``g`` = grad f(x), ``f`` = [f(x), f(previous x)] (before the first step, f(x) + ||g|| / 2), ``status`` (0 running, else the
reason it stopped: see ``STOPPED``), and each method's own arrays.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import numpy as np

from .optimizers import OPTIMIZERS, Optimizer, all_finite

# objective(x) -> (f, grad f); the gradient must be a new array on every call (the line search
# and the optimizers keep the ones of earlier points without copying them)
Function = Callable[[np.ndarray], "tuple[float, np.ndarray]"]

# status code -> why the method stopped (0: still running)
STOPPED = {
    1: "converged: the gradient's largest entry fell below gtol",
    2: "converged: the relative change of the loss fell below ftol",
    3: "stopped: the line search found no point with enough decrease (the loss is flat to rounding at this precision)",
}


def _blas():
    """scipy's BLAS ddot and daxpy, imported on first use (scipy.linalg is slow to import, and
    an import statement in the two-loop recursion costs more per iteration than a call)."""
    global _BLAS
    if _BLAS is None:
        from scipy.linalg.blas import daxpy, ddot

        _BLAS = ddot, daxpy
    return _BLAS


_BLAS = None


class Iteration(NamedTuple):
    """What one outer iteration did: the objective after it, the evaluations of f and grad it used,
    the curvature products (Newton-CG) and the step length."""

    value: float
    evaluations: int
    products: int
    step: float


class _Counted:
    """Wraps ``objective``: counts calls and remembers every point evaluated in one iteration,
    so the line search's separate calls for f and grad f at a point, and scipy's replay of the
    points ``wolfe_line_search`` tried before handing over, cost one evaluation each (the
    objective is deterministic: a point asked for again is not recomputed)."""

    def __init__(self, objective: Function):
        self.objective, self.calls = objective, 0
        self.points: list[tuple[np.ndarray, float, np.ndarray]] = []  # (x, f, grad f), oldest first

    def _find(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray] | None:
        """The remembered (x, f, g) at point x, newest first, or None."""
        for entry in reversed(self.points):
            # a new point nearly always differs in its first entry: that scalar test spares
            # np.array_equal's Python layer (NaN != NaN, so a NaN point is new either way)
            if not x[0] != entry[0][0] and np.array_equal(x, entry[0]):
                return entry
        return None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        known = self._find(x)
        if known is not None:
            return known[1], known[2]
        self.calls += 1
        f, g = self.objective(x)
        g = np.asarray(g, dtype=np.float64)
        if any(g is kept for _, _, kept in self.points):  # an objective that reuses one buffer would overwrite the memo
            g = g.copy()
        f = float(f)
        self.points.append((np.array(x, dtype=np.float64), f, g))
        return f, g

    def value_at(self, x: np.ndarray) -> float | None:
        """f at a point evaluated before, or None."""
        known = self._find(x)
        return None if known is None else known[1]


def first_trial_step(f: float, previous_f: float | None, slope: float) -> float:
    """The line search's first trial alpha, scipy's rule (scalar_search_wolfe2): 1, or
    min(1, 2.02 (f - previous_f) / g.d) when ``previous_f`` is given (the step that would repeat
    the last decrease: Nocedal & Wright eq. 3.60), and 1 again if that is negative."""
    alpha = min(1.0, 1.01 * 2 * (f - previous_f) / slope) if previous_f is not None and slope != 0 else 1.0
    return 1.0 if alpha < 0 else alpha


def wolfe_line_search(fun: _Counted, x, d, f, g, c1: float, c2: float, max_evaluations: int, previous_f: float | None = None,
                      slope: float | None = None):
    """alpha > 0 with the strong Wolfe conditions along d (scipy.optimize.line_search), or None.

    f(x + alpha d) <= f + c1 alpha g.d   and   |grad f(x + alpha d).d| <= c2 |g.d|.
    The first trial is ``first_trial_step``. Returns (alpha, f_new, g_new) or (None, f, g).
    ``slope`` is g.d when the caller has computed it (the same dot product, not repeated).

    scipy's search (Nocedal & Wright Algorithms 3.5 and 3.6) is used, but its two most common
    outcomes are taken here first, with scipy's own arithmetic and tests, so that the result is
    the one scipy would return while its Python set-up is paid only in the remaining cases (on
    iris 4 iterations of 200 instead of 28: benchmarks/RESULTS.md, fifth pass):

    - the first trial meets both conditions (for L-BFGS and Newton-CG most iterations: the
      quasi-Newton or Newton step of length 1): accepted;
    - it fails the sufficient decrease (too long): scipy's zoom on [0, alpha_1] tries the
      minimiser of the quadratic through f, g.d at 0 and f at alpha_1 (``_zoom_first_trial``);
      if that point meets both conditions it is accepted.

    Otherwise scipy's line search runs from the start; its calls at the points tried here hit
    ``fun``'s memo, so the evaluations counted are the same as scipy's alone.
    """
    if slope is None:
        slope = float(np.dot(g, d))  # scipy's derphi0
    alpha = first_trial_step(f, previous_f, slope)
    if alpha != 0 and max_evaluations >= 1:
        f_new, g_new = fun(x + alpha * d)
        if f_new > f + c1 * alpha * slope:  # too long: scipy's zoom on [0, alpha] would try a_j first
            a_j = _zoom_first_trial(alpha, f, slope, f_new)
            if a_j is not None:
                f_j, g_j = fun(x + a_j * d)
                if not (f_j > f + c1 * a_j * slope or f_j >= f) and abs(np.dot(g_j, d)) <= -c2 * slope:
                    return (float(a_j), f_j, g_j) if f_j <= f else (None, f, g)
        elif abs(np.dot(g_new, d)) <= -c2 * slope:
            if not f_new <= f:  # as below
                return None, f, g
            return float(alpha), f_new, g_new
    from scipy.optimize import line_search

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LineSearchWarning: a failure is reported by alpha None
        alpha, *_ = line_search(lambda z: fun(z)[0], lambda z: fun(z)[1], x, d, g, f, previous_f,
                                c1=c1, c2=c2, maxiter=max_evaluations)
    if alpha is None or not math.isfinite(alpha) or alpha <= 0:
        return None, f, g
    f_new, g_new = fun(x + alpha * d)
    if not f_new <= f:  # strong Wolfe implies it; NaN or rounding noise must not move x
        return None, f, g
    return float(alpha), f_new, g_new


def _zoom_first_trial(alpha: float, f: float, slope: float, f_alpha: float) -> float | None:
    """The first point scipy's zoom (scipy.optimize._linesearch._zoom, iteration 0) tries on
    [0, alpha] after alpha failed the sufficient decrease: the minimiser of the quadratic q
    with q(0) = f, q'(0) = slope, q(alpha) = f_alpha (scipy's ``_quadmin``), or the midpoint
    when that falls within 0.1 alpha of either end. Written out so that these iterations
    need not run scipy's search; the same operations in the same order as scipy's, hence the
    same double. scipy computes ``_quadmin`` under np.errstate(raise) and treats an overflow,
    invalid operation or division by zero as "no minimiser"; rather than imitate each of those
    in Python floats, None is returned (scipy then runs) whenever any input or intermediate
    is not finite or a divisor is zero."""
    if not (math.isfinite(f) and math.isfinite(slope) and math.isfinite(f_alpha) and math.isfinite(alpha) and alpha > 0):
        return None
    # _zoom(a_lo=0, a_hi=alpha, phi_lo=f, phi_hi=f_alpha, derphi_lo=slope): dalpha = alpha > 0
    a_lo, dalpha = 0, alpha - 0
    a, b = a_lo, alpha
    qchk = 0.1 * dalpha
    # _quadmin(a=0, fa=f, fpa=slope, b=alpha, fb=f_alpha)
    D, C = f, slope
    db = alpha - a_lo * 1.0
    db2 = db * db
    rest = f_alpha - D - C * db
    if not (math.isfinite(db2) and db2 != 0 and math.isfinite(C * db) and math.isfinite(f_alpha - D) and math.isfinite(rest)):
        return None
    B = rest / db2
    twice = 2.0 * B
    if not (math.isfinite(B) and math.isfinite(twice) and twice != 0):
        return None
    step = C / twice
    xmin = a_lo - step
    if not (math.isfinite(step) and math.isfinite(xmin)):
        return None
    if xmin > b - qchk or xmin < a + qchk:
        xmin = a_lo + 0.5 * dalpha
    return xmin


class FullBatchOptimizer(Optimizer):
    """Base: state handling, the first evaluation, tolerances. Subclasses give ``_iterate``."""

    full_batch = True
    needs_curvature = False
    # hyperparameters shared by all three (name -> default, as in engine/optimizers.py)
    hyper = {
        "gtol": 1e-5,
        "ftol": 1e-9,
        "max_line_search": 20,
    }
    arrays: tuple[str, ...] = ()  # the method's own state arrays besides x, g, f, status

    def __init__(self, n_params: int, dtype="float32", weight_mask=None, **hyper):
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyperparameters {sorted(unknown)}")
        for key, default in self.hyper.items():
            setattr(self, key, type(default)(hyper.get(key, default)))  # counts stay int, names str
        self.dtype, self.weight_mask, self.n = np.dtype(dtype), weight_mask, int(n_params)
        self.t = 0
        self.x = np.zeros(self.n)
        self.g = np.zeros(self.n)
        self.f = np.zeros(2)
        self.status = 0
        self._g_max = (None, math.nan)  # (the g it was computed from, max |g_i|): see largest_gradient_entry
        self._allocate()

    def _allocate(self) -> None:
        """Make the method's own arrays (``arrays``)."""

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("x", "g", "f", "status", *self.arrays)

    def memory_bytes(self) -> int:
        """Bytes of state and work vectors, for the check before training."""
        return (len(self.state_names) + 4) * self.n * 8

    def state(self) -> dict[str, np.ndarray]:
        out = {"t": np.array(self.t, dtype=np.int64), "status": np.array(self.status, dtype=np.int64)}
        for name in ("x", "g", "f", *self.arrays):
            out[name] = getattr(self, name)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t, self.status = int(state["t"]), int(state["status"])
        for name in ("x", "g", "f", *self.arrays):
            value = np.asarray(state[name])
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"optimizer state '{name}' has shape {value.shape}, expected {getattr(self, name).shape}")
            setattr(self, name, np.array(value, dtype=getattr(self, name).dtype))

    def largest_gradient_entry(self) -> float:
        """max_i |g_i| of the current g: the gtol test, and, as a max propagates NaN and an
        infinite entry makes it infinite, the finiteness test of g at no extra pass. Kept for
        the g it was computed from (every accepted point brings a new g array)."""
        of, value = self._g_max
        if of is not self.g:
            value = float(np.abs(self.g).max(initial=0.0))
            self._g_max = (self.g, value)
        return value

    def nonfinite_state(self) -> str | None:
        if not all_finite(self.x):
            return "x"
        if not math.isfinite(self.largest_gradient_entry()):
            return "g"
        if not (math.isfinite(self.f[0]) and math.isfinite(self.f[1])):
            return "f"
        for name in self._checked_arrays():
            value = np.asarray(getattr(self, name))
            if value.dtype.kind == "f" and not all_finite(value):
                return name
        return None

    def _checked_arrays(self) -> tuple[str, ...]:
        """The method's own arrays that ``nonfinite_state`` scans whole."""
        return self.arrays

    @property
    def converged(self) -> bool:
        return self.status != 0

    @property
    def reason(self) -> str | None:
        return STOPPED.get(self.status)

    def step(self, x, g, lr):  # the first-order interface makes no sense for these
        raise TypeError(f"{self.name} is a full-batch method: call iterate(objective, x0)")

    def iterate(self, objective: Function, x0: np.ndarray, curvature=None) -> Iteration:
        """One outer iteration from the state (on the first call, from x0). Updates ``x`` etc."""
        fun = _Counted(objective)
        if self.t == 0:
            self.x = np.array(x0, dtype=np.float64)
            f, g = fun(self.x)
            self.f[:] = [f, f + 0.5 * float(np.linalg.norm(g))]  # a made-up "previous" f: CG's first trial step has length ~1
            self.g = g.copy()
        if self.status:
            return Iteration(float(self.f[0]), 0, 0, 0.0)
        # later iterations tested g at the end of the one before (status 1 if it was small)
        if self.t == 0 and self.largest_gradient_entry() <= self.gtol:
            self.status = 1
            self.t += 1
            return Iteration(float(self.f[0]), fun.calls, 0, 0.0)
        f_old = float(self.f[0])
        products, alpha = self._iterate(fun, curvature)
        self.t += 1
        f_new = float(self.f[0])
        if self.status == 0:
            if self.largest_gradient_entry() <= self.gtol:
                self.status = 1
            elif (f_old - f_new) <= self.ftol * max(abs(f_old), abs(f_new), 1.0):
                self.status = 2
        return Iteration(f_new, fun.calls, products, alpha)

    def _accept(self, step, f_new, g_new) -> None:
        """Move to x + step (step = alpha d) with f and grad f there."""
        self.x += step
        self.f[1] = self.f[0]
        self.f[0] = f_new
        self.g = g_new  # _Counted's own float64 array (every objective call returns a new one)

    def _iterate(self, fun: _Counted, curvature) -> tuple[int, float]:
        raise NotImplementedError


@OPTIMIZERS.register("lbfgs")
class LBFGS(FullBatchOptimizer):
    """Limited-memory BFGS (Nocedal 1980; Nocedal & Wright, Algorithm 7.4 and 7.5).

    With the last m pairs s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i (``pairs`` of them kept, in
    rows of ``s`` and ``y``, (m, P)), the two-loop recursion gives d = -H g with H the BFGS
    inverse-Hessian approximation grown from H_0 = gamma I, gamma = s^T y / y^T y of the newest
    pair. A pair is kept only if s^T y > 1e-10 ||s|| ||y|| (H stays positive definite). Line
    search: strong Wolfe (c1 = 1e-4, c2 = 0.9), alpha = 1 first; if it fails, the history is
    dropped and a scaled steepest-descent step is tried.

    The rows form a ring: the oldest pair is row ``head`` and the i-th oldest row
    (head + i) mod m, so a new pair overwrites the oldest in place instead of shifting the
    whole (m, P) history every iteration (for a small network that shift cost about as much as
    an evaluation of the objective). A checkpoint without ``head`` (written before the ring)
    holds its rows oldest first, which is the ring with head 0.
    """

    name = "lbfgs"
    hyper = {"history": 10, **FullBatchOptimizer.hyper}
    arrays = ("s", "y", "pairs", "head")

    def _allocate(self):
        self.s = np.zeros((self.history, self.n))
        self.y = np.zeros((self.history, self.n))
        self.pairs = np.array(0, dtype=np.int64)
        self.head = np.array(0, dtype=np.int64)
        # the products of the zero rows, and nothing to check: zeros are finite
        self._sy, self._yy, self._unchecked = np.zeros(self.history), np.zeros(self.history), set()
        self._row_views = None  # (rows of s, rows of y) as views, for the two-loop recursion

    def _products(self) -> None:
        """s_i^T y_i and y_i^T y_i of every row, kept beside the rows (not state: they follow
        from s and y), so the two-loop recursion does not recompute 2 m + 1 of its dot products
        each iteration; and every row marked for the next finiteness check."""
        ddot, _ = _blas()
        self._sy = np.array([ddot(self.s[r], self.y[r]) for r in range(self.history)])
        self._yy = np.array([ddot(self.y[r], self.y[r]) for r in range(self.history)])
        self._unchecked = set(range(self.history))

    def _checked_arrays(self):
        return ()  # s and y: only rows loaded by load_state and not checked since (``nonfinite_state``)

    def nonfinite_state(self):
        """Besides x, g and f, only the rows of s and y that ``load_state`` read and no check has
        seen: a row written by ``_remember`` is finite (its pair test refuses any other), and
        rows change only by being written."""
        name = super().nonfinite_state()
        if name is None:
            for r in sorted(self._unchecked):
                for array in ("s", "y"):
                    if not all_finite(getattr(self, array)[r]):
                        return array
            self._unchecked.clear()
        return name

    def state(self):
        out = super().state()
        out["pairs"] = np.array(int(self.pairs), dtype=np.int64)
        out["head"] = np.array(int(self.head), dtype=np.int64)
        return out

    def load_state(self, state):
        if "head" not in state:
            state = {**state, "head": np.array(0, dtype=np.int64)}
        super().load_state(state)
        if not (0 <= int(self.pairs) <= self.history and 0 <= int(self.head) < self.history):
            raise ValueError(f"optimizer state: pairs {int(self.pairs)} and head {int(self.head)} must lie in "
                             f"0..{self.history} and 0..{self.history - 1} (optimizer.history)")
        self._products()

    def memory_bytes(self):
        return (2 * self.history + 6) * self.n * 8

    def _forget(self) -> None:
        self.pairs = np.array(0, dtype=np.int64)
        self.head = np.array(0, dtype=np.int64)

    def direction(self, g: np.ndarray) -> np.ndarray:
        """d = -H g by the two-loop recursion (Nocedal & Wright Algorithm 7.4). The loops are
        2m dot products and in-place axpy updates of one work vector q (BLAS ddot / daxpy:
        numpy's ``q -= a * y`` would make a temporary per update)."""
        ddot, daxpy = _blas()
        k, m, head = int(self.pairs), self.history, int(self.head)
        q = -g  # a new array: the loops update it in place
        if k == 0:
            return q / max(float(np.linalg.norm(g)), 1.0)  # a first step of length <= 1
        rows = [(head + i) % m for i in range(k)]  # oldest first
        views = self._row_views
        if views is None or views[0][0].base is not self.s or views[1][0].base is not self.y:
            # made once per s and y arrays (load_state replaces them): indexing a row makes a view object
            views = self._row_views = (list(self.s), list(self.y))
        s, y = views
        sy = self._sy.tolist()
        rho = [1.0 / sy[r] for r in rows]
        a = [0.0] * k
        for i in range(k - 1, -1, -1):
            r = rows[i]
            a[i] = rho[i] * ddot(s[r], q)
            q = daxpy(y[r], q, a=-a[i])  # q <- q - a_i y_i
        newest = rows[-1]
        q *= sy[newest] / float(self._yy[newest])
        for i in range(k):
            r = rows[i]
            b = rho[i] * ddot(y[r], q)
            q = daxpy(s[r], q, a=a[i] - b)  # q <- q + (a_i - b) s_i
        return q

    def _remember(self, s_new, y_new):
        ddot, _ = _blas()
        # s^T y > 1e-10 ||s|| ||y||, with BLAS dot products (np.linalg.norm costs more in its
        # Python checks than in its arithmetic on these vectors); s^T y and y^T y are kept.
        # The test also keeps every stored row finite: a NaN or infinite entry of s or y makes
        # s^T s or y^T y NaN or infinite, and then the right side is NaN or infinite (or
        # 0 * inf = NaN) and no s^T y exceeds it, so nonfinite_state need not rescan new rows
        sy, yy = ddot(s_new, y_new), ddot(y_new, y_new)
        if not sy > 1e-10 * math.sqrt(ddot(s_new, s_new)) * math.sqrt(yy):
            return
        k, m, head = int(self.pairs), self.history, int(self.head)
        if k < m:
            row = (head + k) % m
            self.pairs = np.array(k + 1, dtype=np.int64)
        else:  # full: the oldest pair's row takes the new one, and the next row is the oldest
            row = head
            self.head = np.array((head + 1) % m, dtype=np.int64)
        self.s[row], self.y[row] = s_new, y_new
        self._sy[row], self._yy[row] = sy, yy
        self._unchecked.discard(row)  # a loaded row it replaces needs no check any more

    def _iterate(self, fun, curvature):
        f, g = float(self.f[0]), self.g
        for attempt in range(2):
            d = self.direction(g)
            slope = float(g @ d)
            if not slope < 0:  # rounding made H lose definiteness: restart from -g
                self._forget()
                d = self.direction(g)
                slope = float(g @ d)
            alpha, f_new, g_new = wolfe_line_search(fun, self.x, d, f, g, 1e-4, 0.9, self.max_line_search, slope=slope)
            if alpha is not None:
                break
            if int(self.pairs) == 0:
                self.status = 3
                return 0, 0.0
            self._forget()
        old_g = g
        d *= alpha  # s = alpha d, in d's own storage (d is not used again); x + s is x + alpha d
        self._accept(d, f_new, g_new)
        self._remember(d, self.g - old_g)
        return 0, alpha


@OPTIMIZERS.register("cg")
class ConjugateGradient(FullBatchOptimizer):
    """Nonlinear conjugate gradient, Polak-Ribiere+ (Nocedal & Wright section 5.2):

        beta = max(0, g_{k+1}^T (g_{k+1} - g_k) / g_k^T g_k),   d_{k+1} = -g_{k+1} + beta d_k

    restarted (beta = 0) every ``restart`` iterations (0: every P, the dimension), when
    |g_{k+1}^T g_k| >= 0.1 ||g_{k+1}||^2 (Powell's test: the gradients are far from orthogonal),
    and whenever d is not a descent direction. Line search: strong Wolfe with c2 = ``c2``
    (default 0.1; PR+ needs c2 < 1/2); a smaller c2 approaches the exact line search under which
    CG minimises a P-dimensional quadratic in at most P steps.
    """

    name = "cg"
    hyper = {"restart": 0, "c2": 0.1, **FullBatchOptimizer.hyper}
    arrays = ("d", "since_restart")

    def _allocate(self):
        self.d = np.zeros(self.n)
        self.since_restart = np.array(0, dtype=np.int64)

    def state(self):
        out = super().state()
        out["since_restart"] = np.array(int(self.since_restart), dtype=np.int64)
        return out

    def _iterate(self, fun, curvature):
        f, g = float(self.f[0]), self.g
        d = self.d if int(self.since_restart) > 0 else -g
        slope = float(g @ d)
        if not slope < 0:
            d = -g
            slope = None
        previous = float(self.f[1])
        alpha, f_new, g_new = wolfe_line_search(fun, self.x, d, f, g, min(1e-4, self.c2 / 10), self.c2, self.max_line_search, previous, slope)
        if alpha is None and d is not None and int(self.since_restart) > 0:
            d = -g
            alpha, f_new, g_new = wolfe_line_search(fun, self.x, d, f, g, min(1e-4, self.c2 / 10), self.c2, self.max_line_search, previous)
        if alpha is None:
            self.status = 3
            return 0, 0.0
        old_g = g  # _accept rebinds self.g to a new array; g itself is not written
        self._accept(alpha * d, f_new, g_new)
        g = self.g
        period = self.restart or self.n
        count = int(self.since_restart) + 1
        gg_old = float(old_g @ old_g)
        beta = max(0.0, float(g @ (g - old_g)) / gg_old) if gg_old > 0 else 0.0
        if count >= period or abs(float(g @ old_g)) >= 0.1 * float(g @ g):
            beta, count = 0.0, 0
        self.d = -g + beta * d
        self.since_restart = np.array(count, dtype=np.int64)
        return 0, alpha


@OPTIMIZERS.register("newton_cg")
class NewtonCG(FullBatchOptimizer):
    """Truncated Newton, "Hessian-free" (Nocedal & Wright Algorithm 7.1; Martens 2010).

    Each iteration solves (B + lam I) d = -g approximately by linear conjugate gradient, using
    only products B v (``curvature``: the Gauss-Newton matrix, PSD for matched losses, or the
    exact Hessian by the R-operator), stopping when ||r|| <= min(0.5, sqrt(||g||)) ||g||
    (superlinear convergence), after ``max_cg`` products, or when it meets a direction of
    non-positive curvature (possible with the exact Hessian; then it keeps the last d, or -g if
    there is none yet). Then a strong-Wolfe line search with alpha = 1 first (the Newton step).

    The damping lam starts at ``damping``. With ``damping_rule: adaptive`` (the default) it
    follows the Levenberg-Marquardt rule of Martens 2010 (section 4.1): after the step, the
    reduction ratio of the full CG step d

        rho = (f(x + d) - f(x)) / q(d),   q(d) = g^T d + 1/2 d^T B d   (the undamped model;
                                                                      Martens & Sutskever 2012)

    says how well the quadratic model predicted the decrease: rho < 1/4 -> lam <- 3/2 lam (trust
    the model less: shorter, more gradient-like steps), rho > 3/4 -> lam <- 2/3 lam (towards the
    Newton step). f(x + d) is the line search's first trial (alpha = 1), so rho costs no
    evaluation; if the search never tried alpha = 1, rho is taken at the accepted step alpha d.
    d^T B d comes from the CG recursion itself: with the residual r = -g - (B + lam I) d,
    d^T (B + lam I) d = -g^T d - r^T d, so q costs no product either. When the solve gave no
    model (non-positive curvature at once, or no descent direction) lam <- 3/2 lam. lam = 0
    stays 0 (pure Newton / Gauss-Newton steps). ``damping_rule: fixed`` keeps lam = ``damping``.
    State: ``lam`` (saved with the checkpoint, so a resumed run continues with the damping it had);
    ``rho``, the last reduction ratio (NaN when there was none), is for inspection only.
    """

    name = "newton_cg"
    needs_curvature = True
    hyper = {
        "curvature": "gauss_newton",
        "damping": 1e-4,
        "damping_rule": "adaptive",
        "max_cg": 50,
        **FullBatchOptimizer.hyper,
    }
    arrays = ("lam",)
    INCREASE, DECREASE = 1.5, 2.0 / 3.0  # Martens 2010's factors
    LOW, HIGH = 0.25, 0.75  # the rho thresholds

    def _allocate(self):
        self.lam = np.array(float(self.damping))
        self.rho = math.nan

    def load_state(self, state):
        # checkpoints from before the adaptive rule have no lam: they ran with lam = damping
        state = {"lam": np.array(float(self.damping)), **state}
        super().load_state(state)
        if not (math.isfinite(float(self.lam)) and float(self.lam) >= 0):
            raise ValueError(f"optimizer state 'lam' must be a finite number >= 0, got {float(self.lam)}")

    def solve(self, curvature, x, g) -> tuple[np.ndarray, int, float | None]:
        """d with (B + lam I) d ~ -g by linear CG from d = 0; returns (d, products used,
        d^T B d), the last None when the solve gave no model (d = -g)."""
        lam = float(self.lam)
        gnorm = float(np.linalg.norm(g))
        tolerance = min(0.5, math.sqrt(gnorm)) * gnorm
        d = np.zeros_like(g)
        r = -g.copy()  # residual -g - (B + lam I) d
        p = r.copy()
        rr = float(r @ r)
        used = 0
        for _ in range(self.max_cg):
            bp = curvature(x, p) + lam * p
            used += 1
            curv = float(p @ bp)
            if not curv > 0:
                if used == 1:
                    return -g.copy(), used, None
                break
            a = rr / curv
            d += a * p
            r -= a * bp
            rr_new = float(r @ r)
            if math.sqrt(rr_new) <= tolerance:
                break
            p *= rr_new / rr
            p += r
            rr = rr_new
        dbd = -float(g @ d) - float(r @ d) - lam * float(d @ d)
        return d, used, dbd

    def _adapt(self, rho: float | None) -> None:
        """lam from the reduction ratio (None: no model this iteration)."""
        self.rho = math.nan if rho is None else rho
        if self.damping_rule != "adaptive":
            return
        if rho is None or not rho >= self.LOW:  # NaN (the trial overflowed) counts as a bad model
            self.lam = np.array(float(self.lam) * self.INCREASE)
        elif rho > self.HIGH:
            self.lam = np.array(float(self.lam) * self.DECREASE)

    def _iterate(self, fun, curvature):
        if curvature is None:
            raise ValueError("newton_cg needs a curvature product")
        f, g = float(self.f[0]), self.g
        d, used, dbd = self.solve(curvature, self.x, g)
        gd = float(g @ d)
        if not gd < 0:
            d, dbd = -g / max(float(np.linalg.norm(g)), 1.0), None
            gd = float(g @ d)
        alpha, f_new, g_new = wolfe_line_search(fun, self.x, d, f, g, 1e-4, 0.9, self.max_line_search, slope=gd)
        rho = None
        if dbd is not None:
            f_full = fun.value_at(self.x + d)
            step = 1.0 if f_full is not None else alpha
            if f_full is None and alpha is not None:
                f_full = f_new
            if f_full is not None:
                predicted = step * gd + 0.5 * step * step * dbd
                rho = (f_full - f) / predicted if predicted < 0 else None
        self._adapt(rho)
        if alpha is None:
            self.status = 3
            return used, 0.0
        self._accept(alpha * d, f_new, g_new)
        return used, alpha


FULL_BATCH = ("lbfgs", "cg", "newton_cg")
