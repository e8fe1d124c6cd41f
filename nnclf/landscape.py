"""``nnclf optimizers``: every optimizer from one start on a 2-D test function (the lecture's pictures).

The updates are made by the same classes that train networks (engine/optimizers.py and
engine/fullbatch.py): first-order methods take ``steps`` updates x <- update(x, grad f(x), lr);
full-batch methods take outer iterations on (f, grad f) and, for newton_cg, the exact
Hessian-vector product. A method has converged at the first step with f(x) - f* <= tol, and
diverged when f or x stops being finite or f grows past 1e6 times f(x0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NnclfError

PLOT_HINT = 'nnclf optimizers --plot needs matplotlib: pip install ".[plot]" (from a clone) or pip install "nnclf[plot]"'


@dataclass(frozen=True)
class TestFunction:
    name: str
    formula: str
    start: tuple[float, float]
    minimum: tuple[float, float]
    lr: float  # a default step size at which plain gradient descent converges
    box: tuple[float, float, float, float]  # plot limits x1 min, x1 max, x2 min, x2 max

    def value_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        # NumPy scalars, not Python floats: a diverging path overflows to inf (which run_all
        # reports as diverged), where Python's ** raises OverflowError
        a, b = np.float64(x[0]), np.float64(x[1])
        if self.name == "quadratic":
            return 0.1 * a * a + 2 * b * b, np.array([0.2 * a, 4 * b])
        r = b - a * a
        return (1 - a) ** 2 + 100 * r * r, np.array([-2 * (1 - a) - 400 * a * r, 200 * r])

    def hessian_vector(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b = np.float64(x[0]), np.float64(x[1])
        if self.name == "quadratic":
            return np.array([0.2 * v[0], 4 * v[1]])
        h = np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])
        return h @ v


FUNCTIONS = {
    # the lecture's ill-conditioned bowl: curvatures 0.2 and 4 (condition number 20); GD is stable for lr < 2/4
    "quadratic": TestFunction("quadratic", "f(x) = 0.1 x1^2 + 2 x2^2", (-4.0, 2.0), (0.0, 0.0), 0.4, (-5, 5, -3, 3)),
    # Rosenbrock's banana valley, from the classic start (-1.2, 1)
    "rosenbrock": TestFunction("rosenbrock", "f(x) = (1 - x1)^2 + 100 (x2 - x1^2)^2", (-1.2, 1.0), (1.0, 1.0), 1e-3, (-2, 2, -1, 3)),
}


@dataclass
class Trace:
    optimizer: str
    path: list[tuple[float, float]] = field(default_factory=list)
    converged_at: int | None = None  # first step with f - f* <= tol
    diverged_at: int | None = None
    evaluations: int = 0

    @property
    def final(self) -> tuple[float, float]:
        return self.path[-1]


def run_all(function: str = "quadratic", lr: float | None = None, steps: int = 200, tol: float = 1e-6) -> tuple[TestFunction, float, list[Trace]]:
    from .engine.optimizers import OPTIMIZERS

    if function not in FUNCTIONS:
        from .registry import did_you_mean

        raise NnclfError(f"--function: unknown function {function!r}{did_you_mean(function, list(FUNCTIONS))}; valid: {', '.join(FUNCTIONS)}")
    if steps < 1:
        raise NnclfError(f"--steps: must be >= 1, got {steps}")
    fn = FUNCTIONS[function]
    lr = fn.lr if lr is None else lr
    if not (lr > 0 and math.isfinite(lr)):
        raise NnclfError(f"--lr: must be a number > 0, got {lr}")
    if not tol >= 0:  # NaN too: no step would ever count as converged
        raise NnclfError(f"--tol: must be a number >= 0, got {tol}")
    f_star = fn.value_and_gradient(np.array(fn.minimum))[0]
    f0 = fn.value_and_gradient(np.array(fn.start))[0]
    traces = []
    for name in OPTIMIZERS.names():
        cls = OPTIMIZERS.get(name)
        trace = Trace(name, [fn.start])
        x = np.array(fn.start, dtype=np.float64)
        full = getattr(cls, "full_batch", False)
        opt = cls(2, "float64", None, **({"gtol": 0.0, "ftol": 0.0} if full else {}), **({"curvature": "hessian", "damping": 0.0} if name == "newton_cg" else {}))
        with np.errstate(all="ignore"):
            for step in range(1, steps + 1):
                if full:
                    result = opt.iterate(fn.value_and_gradient, x, fn.hessian_vector)
                    trace.evaluations += result.evaluations
                    x = opt.x.copy()
                    if opt.converged and result.evaluations == 0:
                        break
                else:
                    opt.step(x, fn.value_and_gradient(x)[1], lr)
                    trace.evaluations += 1
                f = fn.value_and_gradient(x)[0]
                if not (np.all(np.isfinite(x)) and math.isfinite(f)) or f > 1e6 * max(f0, 1.0):
                    trace.diverged_at = step
                    break
                trace.path.append((float(x[0]), float(x[1])))
                if f - f_star <= tol:
                    trace.converged_at = step
                    break
                if full and opt.converged:
                    break
        traces.append(trace)
    return fn, lr, traces


def plot(fn: TestFunction, traces: list[Trace], path: Path) -> None:
    """Contours of f with every optimizer's path, written atomically to ``path`` (PNG, SVG, PDF)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnclfError(PLOT_HINT) from None
    from .files import write_file

    x1 = np.linspace(fn.box[0], fn.box[1], 300)
    x2 = np.linspace(fn.box[2], fn.box[3], 300)
    a, b = np.meshgrid(x1, x2)
    values = 0.1 * a * a + 2 * b * b if fn.name == "quadratic" else (1 - a) ** 2 + 100 * (b - a * a) ** 2
    fig, ax = plt.subplots(figsize=(8, 6))
    levels = np.geomspace(max(values.min(), 1e-3), values.max(), 25)
    ax.contour(a, b, values, levels=levels, colors="#bbbbbb", linewidths=0.7)
    for trace in traces:
        p = np.array(trace.path)
        p = p[(np.abs(p[:, 0]) < 1e3) & (np.abs(p[:, 1]) < 1e3)]
        label = trace.optimizer + (" (diverged)" if trace.diverged_at else "")
        ax.plot(p[:, 0], p[:, 1], marker=".", markersize=3, linewidth=1, label=label)
    ax.plot(*fn.minimum, marker="*", color="black", markersize=12)
    ax.set_xlim(fn.box[0], fn.box[1])
    ax.set_ylim(fn.box[2], fn.box[3])
    ax.set_title(fn.formula)
    ax.legend(fontsize=8, loc="best")
    suffix = path.suffix.lower().lstrip(".") or "png"
    if suffix not in ("png", "svg", "pdf"):
        plt.close(fig)
        raise NnclfError(f"--plot {path}: use a .png, .svg or .pdf file name")
    write_file(path, lambda f: fig.savefig(f, format=suffix, dpi=120))
    plt.close(fig)
