"""``nnclf optimizers`` and ``nnclf gradcheck --curvature`` through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONFIGS
from nnclf.landscape import run_all


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[0] and cells[0] not in ("optimizer",):
            rows[cells[0]] = cells
    return rows


def test_quadratic_table_matches_the_theory_of_each_method(cli):
    result = cli("optimizers --function quadratic --lr 0.4 --steps 300")
    assert result.exit_code == 0, result.stderr
    rows = _table(result.stdout)
    # gd: x2 contracts by |1 - 0.4 * 4| = 0.6, x1 by 1 - 0.4 * 0.2 = 0.92 per step; f = 0.1 x1^2 < 1e-6
    # needs 0.92^k * 4 < sqrt(1e-5), k = ceil(ln(sqrt(1e-5) / 4) / ln 0.92) = 86
    assert rows["gd"][1] == "86" and rows["sgd"][1] == "86"
    assert rows["nesterov"][1].startswith("diverged")  # lr L = 1.6 > 2 (1 + b) / (1 + 2b) = 1.36
    assert int(rows["cg"][1]) <= 3 and int(rows["newton_cg"][1]) <= 2 and int(rows["lbfgs"][1]) <= 8
    assert set(rows) >= {"sgd", "gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lbfgs", "cg", "newton_cg"}
    # the caption says why cg may take more than the 2 steps of the theory (inexact line searches)
    assert "cg: c2 0.1" in " ".join(result.stdout.split()) and "exact line searches" in " ".join(result.stdout.split())


def test_gd_diverges_above_two_over_the_largest_curvature(cli):
    rows = _table(cli("optimizers --lr 0.51 --steps 300").stdout)
    assert rows["gd"][1].startswith("diverged")
    rows = _table(cli("optimizers --lr 0.49 --steps 2000").stdout)
    assert rows["gd"][1].isdigit()


def test_rosenbrock_second_order_methods_reach_the_minimum():
    fn, _, traces = run_all("rosenbrock", None, 500, 1e-8)
    by_name = {t.optimizer: t for t in traces}
    for name in ("lbfgs", "cg", "newton_cg"):
        assert by_name[name].converged_at is not None, name
        assert np.allclose(by_name[name].final, fn.minimum, atol=1e-3)
    assert by_name["gd"].converged_at is None  # 500 steps at lr 1e-3 crawl along the valley


def test_plot_writes_an_image_and_bad_options_are_one_line_errors(cli, tmp_path):
    pytest.importorskip("matplotlib")
    result = cli("optimizers --function rosenbrock --steps 50 --plot paths.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "paths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli("optimizers --function rosenbrok")
    assert bad.exit_code == 1 and "--function: unknown function 'rosenbrok' (did you mean 'rosenbrock'?)" in bad.stderr
    assert cli("optimizers --lr -1").exit_code == 1


def test_gradcheck_curvature_option_checks_both_products(cli):
    result = cli(["gradcheck", CONFIGS / "wine.yaml", "--curvature", "--set", "loss.weight_decay=0.01", "--set", "model.activation=gelu"])
    assert result.exit_code == 0, result.stderr
    assert "Hv" in result.stdout and "Gv (Gauss-Newton)" in result.stdout


def test_gradcheck_curvature_reports_a_wrong_product(cli, monkeypatch):
    from nnclf.engine import curvature

    original = curvature.CurvatureProduct.__call__
    monkeypatch.setattr(curvature.CurvatureProduct, "__call__", lambda self, theta, v: original(self, theta, v) * 1.001)
    result = cli(["gradcheck", CONFIGS / "wine.yaml", "--curvature"])
    assert result.exit_code == 1
    assert "gradient check failed" in result.stderr and "FAIL" in result.stdout


def test_an_overflowing_path_is_reported_as_diverged_not_a_traceback(cli):
    # rosenbrock's (1 - x1)^2 on a path thrown to 1e308 overflows: Python's ** raised OverflowError
    result = cli("optimizers --function rosenbrock --lr 1e308 --steps 3")
    assert result.exit_code == 0, result.stderr
    rows = _table(result.stdout)
    assert rows["gd"][1] == "diverged (step 1)" and rows["adam"][1] == "diverged (step 1)"


def test_a_tolerance_no_step_can_meet_is_a_one_line_error(cli):
    for tol in ("nan", "-1"):
        result = cli(f"optimizers --tol {tol}")
        assert result.exit_code == 1 and result.stderr.strip() == f"error: --tol: must be a number >= 0, got {float(tol)}"
