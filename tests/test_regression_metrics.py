"""Regression metrics, target scaling and the PCA baseline against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from nnclf.data.targets import PCABaseline, Targets, per_feature_error, shuffled_holdout
from nnclf.metrics import regression_report, regression_scores


def test_scores_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(50, 3)) * [1, 10, 100], rng.normal(size=(50, 3)) * [1, 10, 100]
    s = regression_scores(y, p)
    np.testing.assert_allclose(s["rmse"], np.sqrt(mean_squared_error(y, p, multioutput="raw_values")))
    np.testing.assert_allclose(s["mae"], mean_absolute_error(y, p, multioutput="raw_values"))
    np.testing.assert_allclose(s["r2"], r2_score(y, p, multioutput="raw_values"))
    report = regression_report(y, p, ["a", "b", "c"])
    assert report["r2"] == pytest.approx(r2_score(y, p))  # uniform average over targets
    assert report["per_target"]["b"]["mae"] == pytest.approx(mean_absolute_error(y[:, 1], p[:, 1]))


def test_scores_by_hand():
    y, p = np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [2.0], [1.0]])
    s = regression_scores(y, p)
    # residuals -1, 0, 2: rmse sqrt(5/3), mae 1, r2 = 1 - 5 / 2
    assert s["rmse"][0] == pytest.approx(np.sqrt(5 / 3)) and s["mae"][0] == 1.0 and s["r2"][0] == pytest.approx(-1.5)
    assert np.isnan(regression_scores(np.ones((3, 1)), p)["r2"][0])  # constant truth: undefined


def test_target_scaling_round_trip():
    values = np.array([[100.0, -1.0], [300.0, -1.0], [200.0, -1.0]])
    t = Targets.fit(values, ["a", "b"], "standard")
    encoded = t.encode(values, "float64")
    np.testing.assert_allclose(encoded[:, 0], [-np.sqrt(1.5), np.sqrt(1.5), 0.0])
    np.testing.assert_allclose(encoded[:, 1], 0.0)  # constant target: scale 1, stays constant
    np.testing.assert_allclose(t.decode(encoded), values)
    none = Targets.fit(values, ["a", "b"], "none")
    np.testing.assert_array_equal(none.encode(values, "float64"), values)


def test_pca_baseline_matches_scikit_learn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 6)) @ rng.normal(size=(6, 6))
    ours = PCABaseline.fit(x[:60], 2).reconstruct(x[60:])
    sk = PCA(2).fit(x[:60])
    np.testing.assert_allclose(ours, sk.inverse_transform(sk.transform(x[60:])), atol=1e-10)


def test_per_feature_sums_one_hot_groups():
    squared = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    assert per_feature_error(squared, [("n", 1), ("colour", 3)]) == {"n": 2.0, "colour": 2.0 + 2.0 + 2.0}


def test_shuffled_holdout_is_a_seeded_partition():
    positions = np.arange(100, 200)
    kept, held = shuffled_holdout(positions, 0.25, np.random.default_rng(5))
    assert len(held) == 25 and len(kept) == 75
    assert sorted(np.concatenate([kept, held]).tolist()) == positions.tolist()
    again = shuffled_holdout(positions, 0.25, np.random.default_rng(5))
    assert np.array_equal(again[1], held)
