"""Hostile input to the Python API (estimators, nnclf.train, nnclf.load, Model): each case is a
one-line error naming what is wrong, or the right answer; never a silent wrong result."""

from __future__ import annotations

import numpy as np
import pytest

import nnclf

from conftest import DATA

IRIS = DATA / "iris.csv"


def _data(n: int = 40, d: int = 3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


def _classifier(**params):
    return nnclf.Classifier(**{"hidden": (4,), "epochs": 2, "random_state": 0, **params})


# -- configs and parameters --------------------------------------------------------------------
def test_a_python_set_is_refused_like_a_yaml_set(tmp_path):
    # hidden={4, 8} became the layers [8, 4] (pydantic takes a set as a list in hash order)
    X, y = _data()
    unordered = r"a set has no order .*; give a list like \[a, b\]"
    with pytest.raises(nnclf.NnclfError, match=r"^Classifier: model\.hidden: " + unordered):
        _classifier(hidden={4, 8}).fit(X, y)
    with pytest.raises(nnclf.NnclfError, match=r"^Classifier: data\.categorical: " + unordered):
        _classifier(categorical={"x0"}).fit(X, y)
    with pytest.raises(nnclf.NnclfError, match=r"^--set model\.hidden: " + unordered):
        nnclf.train(DATA.parent / "configs" / "iris.yaml", runs_dir=tmp_path / "runs", model__hidden={4, 8})
    config = {"data": {"train": str(IRIS), "target": "species", "features": frozenset({"sepal_length", "petal_length"})}}
    with pytest.raises(nnclf.NnclfError, match=r"^config: data\.features: " + unordered):
        nnclf.train(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


# -- predicting on rows far outside the training range -------------------------------------------
def test_an_output_that_overflows_is_refused_not_returned_as_nan():
    # float32 inputs near 3e38 overflow the hidden layers: predict_proba gave NaN rows and
    # predict the label classes_[0], the regressor NaN, the autoencoder NaN codes; nnclf
    # predict and nnclf.Model refuse such a row
    X, y = _data()
    far = np.array([[3e38, -3e38, 3e38], [1.0, 2.0, 3.0]])
    overflow = r"^X, row 0: the model's (output|code|reconstruction|prediction) for this row overflows to NaN or infinity"
    for target in (y, np.arange(40) % 3):
        clf = nnclf.Classifier(hidden=(16, 16), epochs=2, random_state=0).fit(X, target)
        for method in (clf.predict, clf.predict_proba, clf.predict_log_proba, clf.decision_function):
            with pytest.raises(ValueError, match=overflow):
                method(far)
        assert np.isfinite(clf.predict_proba(far[1:])).all()
    reg = nnclf.Regressor(hidden=(16, 16), epochs=2, random_state=0).fit(X, X[:, 1])
    ae = nnclf.Autoencoder(hidden=(16, 2, 16), epochs=2, random_state=0).fit(X)
    for method in (reg.predict, ae.transform, ae.reconstruct, ae.score_samples, ae.score):
        with pytest.raises(ValueError, match=overflow):
            method(far)
    with pytest.raises(ValueError, match=overflow):
        ae.inverse_transform(np.full((1, 2), 3e38))
    with pytest.raises(ValueError, match=r"^codes contain NaN or infinity"):
        ae.inverse_transform(np.full((1, 2), np.nan))
    # one sigmoid unit's infinite logit is a probability of 1: an answer, as in nnclf predict
    one_unit = nnclf.Classifier(hidden=(4,), epochs=2, random_state=0).fit(X, y)
    assert np.isfinite(one_unit.predict_proba(np.full((1, 3), 3e38))).all()


def test_a_dataframe_of_no_rows_predicts_no_rows():
    import pandas as pd

    X, y = _data()
    frame = pd.DataFrame({"a": X[:, 0], "c": np.where(y == 1, "u", "v")})  # preprocessed: no scikit-learn row check
    assert _classifier().fit(frame, y).predict_proba(frame.iloc[:0]).shape == (0, 2)
    assert nnclf.Regressor(hidden=(4,), epochs=2).fit(frame, X[:, 1]).predict(frame.iloc[:0]).shape == (0,)
    assert nnclf.Autoencoder(hidden=(4, 2, 4), epochs=2).fit(frame).transform(frame.iloc[:0]).shape == (0, 2)


def test_model_encode_refuses_codes_that_overflow(tmp_path):
    X, _ = _data()
    nnclf.Autoencoder(hidden=(16, 2, 16), epochs=2, random_state=0).fit(X).save(tmp_path / "ae.npz")
    model = nnclf.load(tmp_path / "ae.npz")
    with pytest.raises(nnclf.NnclfError, match=r"^X, line 2: the model's output for this row overflows"):
        model.encode(np.array([[3e38, -3e38, 3e38]]))
    assert np.isfinite(model.encode(X[:2])).all()


# -- sample weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [np.r_[1e308, 1e308, np.ones(38)], np.r_[2e-320, np.full(39, 1e-320)]],
                         ids=["sum-overflows", "subnormal"])
def test_weights_near_the_ends_of_float64_weigh_as_their_ratios(weights):
    # two weights of 1e308 sum to inf: every row weighed n / inf = 0, the loss was 0.0 and
    # nothing trained; subnormal weights made n / sum inf and training "diverged"
    X, y = _data()
    scaled = weights / weights.max()
    for make, target in ((_classifier, y), (lambda: nnclf.Regressor(hidden=(4,), epochs=2, random_state=0), X[:, 1])):
        fitted = make().fit(X, target, sample_weight=weights)
        reference = make().fit(X, target, sample_weight=scaled)
        assert fitted.loss_curve_[0] > 0
        np.testing.assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-6)


def test_training_rows_that_all_weigh_zero_after_the_validation_split_are_refused():
    # the one weighed row held out for validation: 0 / 0 weighed every training row NaN, and
    # fit "diverged" (the classifier) or the target "overflowed" (the regressor)
    X, y = _data()
    weights = np.r_[1.0, np.zeros(39)]
    refused = r"^sample_weight: every row left for training after the validation split \(validation_fraction=0\.9\) has weight 0"
    with pytest.raises(ValueError, match=refused):
        _classifier(validation_fraction=0.9, random_state=2).fit(X, y, sample_weight=weights)
    with pytest.raises(ValueError, match=refused):
        nnclf.Regressor(hidden=(4,), epochs=2, random_state=0, validation_fraction=0.9).fit(X, X[:, 1], sample_weight=weights)


# -- labels and class weights --------------------------------------------------------------------
def test_class_weight_keyed_by_boolean_or_float_classes(tmp_path):
    # the schema's int-or-str keys made True and 1.0 the label 1: {True: 5.0} was refused for
    # a classifier of booleans ("label 1 is not a class; classes: False, True"), {1.0: 5.0}
    # for one of floats
    X, y = _data()
    reference = _classifier(class_weight={1: 5.0}).fit(X, y).loss_curve_
    unweighted = _classifier().fit(X, y).loss_curve_
    assert reference != unweighted
    for labels, key in ((y == 1, True), (y.astype(float), 1.0), (y.astype(float), 1), (y, np.int64(1))):
        fitted = _classifier(class_weight={key: 5.0}).fit(X, labels)
        assert fitted.loss_curve_ == reference, (labels.dtype, key)
    fitted.save(tmp_path / "weighted.npz")
    assert nnclf.load(tmp_path / "weighted.npz").predict(X).tolist() == fitted.predict(X).tolist()
    with pytest.raises(nnclf.NnclfError, match=r"^loss\.class_weights: label 'maybe' is not a class of the training data"):
        _classifier(class_weight={"maybe": 2.0}).fit(X, y == 1)


def test_partial_fit_refuses_classes_other_than_the_first_calls():
    # the network has one output per class of the first call; classes=[0, 1, 2] later was ignored
    X, y = _data()
    clf = _classifier().partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"^classes=\[0, 1, 2\] is not the same as on the first call to partial_fit, was: \[0, 1\]$"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"^classes=\['a', 'b'\] is not the same"):
        clf.partial_fit(X, y, classes=["a", "b"])
    assert clf.partial_fit(X, y, classes=np.array([1, 0])).n_iter_ == 2  # the same classes, in any order


@pytest.mark.parametrize("params, message", [
    ({"warm_start": "no"}, r"^warm_start: expected True or False, got 'no'$"),  # was read as True: the fit continued
    ({"verbose": "no"}, r"^verbose: expected True or False, got 'no'$"),  # printed every epoch
    ({"preprocess": "yes"}, r"^preprocess: expected True, False or 'auto', got 'yes'$"),  # accepted with an array
])
def test_options_the_estimator_reads_itself_are_checked(params, message, capsys):
    X, y = _data()
    with pytest.raises(nnclf.NnclfError, match=message):
        _classifier(**params).fit(X, y)
    assert capsys.readouterr().out == ""
    assert _classifier(warm_start=np.bool_(True), verbose=0).fit(X, y).fit(X, y).n_iter_ == 4


def test_labels_of_types_that_do_not_compare_are_one_line():
    # np.unique raised "TypeError: '<' not supported between instances of 'int' and 'str'"
    X, y = _data()
    mixed = r"^Classifier: y mixes labels of types that do not compare \(int, str\); give labels of one type"
    with pytest.raises(ValueError, match=mixed):
        _classifier().fit(X, np.array(["a", 1] * 20, dtype=object))
    with pytest.raises(ValueError, match=mixed):
        _classifier().fit(X, y).partial_fit(X, np.array(["a", "b"] * 20, dtype=object))
    with pytest.raises(ValueError, match=mixed):
        _classifier().partial_fit(X, y, classes=np.array([0, 1, "a"], dtype=object))


def test_regression_targets_that_are_not_numbers_are_one_line():
    import scipy.sparse

    X, _ = _data()
    regressor = nnclf.Regressor(hidden=(4,), epochs=2, random_state=0)
    with pytest.raises(TypeError, match=r"^Sparse data was passed for y, but dense data is required"):
        regressor.fit(X, scipy.sparse.csr_matrix(X[:, :1]))  # "setting an array element with a sequence"
    with pytest.raises(ValueError, match=r"^Regressor: y must be numbers \(real-valued targets\): could not convert string to float"):
        regressor.fit(X, np.where(X[:, 0] > 0, "a", "b"))


def test_labels_a_checkpoint_cannot_hold_are_refused_before_writing(tmp_path):
    X, y = _data()
    dates = np.where(y == 1, np.datetime64("2020-01-01"), np.datetime64("2021-01-01"))
    fitted = _classifier().fit(X, dates)
    assert fitted.predict(X[:1]).dtype.kind == "M"
    with pytest.raises(nnclf.NnclfError, match=r"cannot save class labels of type date .*\(nothing was written\)$"):
        fitted.save(tmp_path / "dates.npz")  # was "TypeError: not JSON serialisable: date"
    assert list(tmp_path.iterdir()) == []


# -- nnclf.load and Model ----------------------------------------------------------------------
def test_load_refuses_a_checkpoint_choice_with_a_checkpoint_file(tmp_path):
    X, y = _data()
    _classifier().fit(X, y).save(tmp_path / "model.npz")
    assert nnclf.load(tmp_path / "model.npz").predict(X[:1]).shape == (1,)
    # checkpoint chooses among a run folder's checkpoints; with a file it was ignored silently
    with pytest.raises(nnclf.NnclfError, match=r"^checkpoint='last': .*model\.npz is a checkpoint file, the model used as it is"):
        nnclf.load(tmp_path / "model.npz", checkpoint="last")
    # the API's own parameter name, not the CLI's --checkpoint
    with pytest.raises(nnclf.NnclfError, match=r"^checkpoint: expected 'auto', 'best', 'last', 'calibrated', 'refit', got 'bst'$"):
        nnclf.load(tmp_path / "model.npz", checkpoint="bst")


def test_model_refuses_repeated_columns_and_evaluate_an_array(tmp_path):
    import pandas as pd

    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=np.where(y == 1, "yes", "no"))
    nnclf.Classifier(hidden=(4,), epochs=2, random_state=0, preprocess=True).fit(frame[["a", "b", "c"]], frame["label"]).save(tmp_path / "m.npz")
    model = nnclf.load(tmp_path / "m.npz")
    twice = pd.concat([frame, frame[["b"]] * 100], axis=1)  # which 'b'? (pandas: "TypeError: arg must be a list, tuple, ...")
    with pytest.raises(nnclf.NnclfError, match=r"^X: column 'b' appears more than once; give each column once$"):
        model.predict(twice)
    with pytest.raises(nnclf.NnclfError, match=r"^DataFrame: column 'label' appears more than once"):
        model.evaluate(pd.concat([frame, frame[["label"]]], axis=1))  # "ValueError: Buffer has wrong number of dimensions"
    with pytest.raises(nnclf.NnclfError, match=r"^evaluate: expected a DataFrame with the feature columns and the target column, got ndarray$"):
        model.evaluate(frame.to_numpy())  # "AttributeError: 'numpy.ndarray' object has no attribute 'columns'"
    assert model.evaluate(frame)["n"] == 40
    assert model.predict(pd.concat([frame, frame[["label"]]], axis=1)).shape == (40,)  # an unread column may repeat


def test_complex_numbers_and_huge_integers_in_a_dataframe_are_named(tmp_path):
    import pandas as pd

    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    nnclf.Classifier(hidden=(4,), epochs=2, random_state=0, preprocess=True).fit(frame, y).save(tmp_path / "m.npz")
    model = nnclf.load(tmp_path / "m.npz")
    rows = frame.iloc[:3]
    not_a_number = r"^X, line 3: column 'a': non-numeric value (np\.complex128)?\(?\(1\+2j\)\)? in a numeric column"
    # the float64 cast kept the real part silently, with a ComplexWarning at most
    for cells in (np.array([0.5, 1 + 2j, 0.25]), pd.Series([0.5, 1 + 2j, 0.25], dtype=object)):
        with pytest.raises(nnclf.NnclfError, match=not_a_number):
            model.predict(rows.assign(a=cells))
    with pytest.raises(nnclf.NnclfError, match=r"^X, line 2: column 'a': non-numeric value"):
        nnclf.Classifier(hidden=(4,), epochs=2, preprocess=True).fit(frame.assign(a=frame["a"] + 1j), y)
    # a complex number with no imaginary part is its real number
    np.testing.assert_array_equal(model.features(rows.assign(a=rows["a"] + 0j)), model.features(rows))
    # Python integers beyond float64 ("OverflowError: int too large to convert to float")
    for big in (10**400, -(10**5000)):
        with pytest.raises(nnclf.NnclfError, match=r"^X, line 3: column 'a': infinite value -?inf"):
            model.predict(rows.assign(a=pd.Series([1, big, 2], dtype=object, index=rows.index)))


# -- without scikit-learn (its validate_data replaced by _minimal_validate) ------------------------
@pytest.fixture
def without_sklearn(monkeypatch):
    import nnclf.estimators

    monkeypatch.setattr(nnclf.estimators, "_sklearn_available", lambda: False)


def test_without_sklearn_hostile_arrays_are_one_line(without_sklearn):
    import pandas as pd
    import scipy.sparse

    X, y = _data()
    with pytest.raises(ValueError, match=r"found array with 0 feature\(s\) \(shape=\(40, 0\)\)"):
        _classifier().fit(X[:, :0], y)  # "ZeroDivisionError: float division by zero" in the initialiser
    with pytest.raises(ValueError, match=r"^Input X contains a value too large for dtype\('float32'\)"):
        _classifier().fit(X * 1e300, y)  # was "contains NaN or infinity" for finite numbers
    with pytest.raises(TypeError, match=r"^Sparse data was passed for X, but dense data is required"):
        _classifier().fit(scipy.sparse.csr_matrix(X), y)  # "expected a 2-D array ..., got shape ()"
    with pytest.raises(ValueError, match=r"^Classifier: input y contains NaN or infinity$"):
        _classifier().fit(X, np.where(y == 1, 1.0, np.nan))  # "y holds labels not in classes_ [1.0, nan]: [nan]"
    with pytest.raises(ValueError, match=r"^Classifier: unknown label type: continuous"):
        _classifier().fit(X, X[:, 0])  # 40 classes
    assert _classifier().fit(X, y.astype(float)).classes_.tolist() == [0.0, 1.0]
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    fitted = _classifier().fit(frame, y)
    assert fitted.feature_names_in_.tolist() == ["a", "b", "c"]
    # predicting on the columns in another order used them by position, silently
    with pytest.raises(ValueError, match=r"the feature names should match those that were passed during fit"):
        fitted.predict(frame[["c", "b", "a"]])
    np.testing.assert_array_equal(fitted.predict(frame), fitted.predict(X))
    with pytest.raises(ValueError, match=r"^Classifier: column names must be unique; repeated: 'a'$"):
        _classifier().fit(pd.DataFrame(X, columns=["a", "a", "b"]), y)
    with pytest.raises(nnclf.NnclfError, match=r"^X: column 'a' appears more than once; give each column once$"):
        _classifier().fit(pd.DataFrame({"a": X[:, 0], "c": np.where(y == 1, "u", "v")}).rename(columns={"c": "a"}), y)


@pytest.mark.parametrize("sklearn_installed", [True, False])
def test_predicting_casts_to_the_fitted_networks_dtype_not_the_current_parameter(sklearn_installed, monkeypatch):
    import nnclf.estimators

    if not sklearn_installed:
        monkeypatch.setattr(nnclf.estimators, "_sklearn_available", lambda: False)
    X, y = _data()
    wide = _classifier(dtype="float64").fit(X, y)
    expected = wide.predict_proba(X * 1e300)
    wide.set_params(dtype="float32")  # (no refit): 1e300 was refused as too large for float32
    np.testing.assert_array_equal(wide.predict_proba(X * 1e300), expected)
    narrow = _classifier().fit(X, y).set_params(dtype="float64")
    with pytest.raises(ValueError, match=r"^Input X contains a value too large for dtype\('float32'\)"):
        narrow.predict(X * 1e300)


def test_a_watched_metric_is_checked_before_training_as_nnclf_train_does():
    X, y = _data()
    # no validation rows: the lr was never lowered, silently
    with pytest.raises(nnclf.NnclfError, match=r"^schedule\.monitor: 'val_loss' needs validation data; set validation_fraction > 0$"):
        _classifier(schedule="reduce_on_plateau").fit(X, y)
    with pytest.raises(nnclf.NnclfError, match=r"^training\.early_stopping\.monitor: metric 'val_los' is not logged \(did you mean 'val_loss'\?\)"):
        _classifier(early_stopping={"monitor": "val_los"}).fit(X, y)
    assert _classifier(schedule="reduce_on_plateau", validation_fraction=0.2).fit(X, y).n_iter_ == 2
    assert _classifier(schedule={"name": "reduce_on_plateau", "monitor": "train_loss"}).fit(X, y).n_iter_ == 2
    # an autoencoder's validation split of one row: "TypeError: object of type 'NoneType' has no len()"
    with pytest.raises(ValueError, match=r"^validation_fraction=0\.1: 1 rows are too few for a validation split$"):
        nnclf.Autoencoder(hidden=(4, 2, 4), epochs=2, early_stopping=True).fit(X[:1])


def test_a_default_target_name_is_not_a_feature_columns(tmp_path, cli):
    # a DataFrame with a column 'target' and an array y: the checkpoint's label column was that
    # feature, and nnclf evaluate scored the feature's values as the labels (accuracy 0)
    import pandas as pd

    X, y = _data()
    frame = pd.DataFrame(X, columns=["target", "target_1", "c"])
    clf = _classifier().fit(frame, y)
    assert clf.config_.data.target == "target_2"
    clf.save(tmp_path / "m.npz")
    frame.assign(target_2=y).to_csv(tmp_path / "data.csv", index=False)
    result = cli(f"evaluate {tmp_path / 'm.npz'} {tmp_path / 'data.csv'} --json")
    assert result.exit_code == 0, result.stderr
    assert abs(__import__("json").loads(result.stdout)["accuracy"] - clf.score(frame, y)) < 1e-12
    reg = nnclf.Regressor(hidden=(4,), epochs=2, random_state=0).fit(pd.DataFrame(X, columns=["target_0", "b", "c"]), X[:, :2])
    assert reg.targets_.names == ["target_0_1", "target_1"]
    assert nnclf.Regressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0]).targets_.names == ["target"]


def test_train_takes_paths_as_values(tmp_path):
    # data__train=Path(...) was refused: "input should be a valid string, got PosixPath(...)"
    run = nnclf.train(DATA.parent / "configs" / "iris.yaml", runs_dir=tmp_path / "runs", data__train=IRIS, training__epochs=1)
    assert run.history and len(run.history) == 1
    config = {"data": {"train": IRIS, "target": "species"}, "training": {"epochs": 1}}
    assert nnclf.load(nnclf.train(config, runs_dir=tmp_path / "runs")).predict(__import__("pandas").read_csv(IRIS)).shape == (150,)


def test_partial_fit_refuses_balanced_class_weights():
    # the first call's counts set the weights for good: a class missing from it weighed 0
    # (its loss 0.0 in every later call: never learned)
    X, y = _data()
    with pytest.raises(ValueError, match=r"^class_weight='balanced' is not supported for partial_fit"):
        _classifier(class_weight="balanced").partial_fit(X[y == 0], y[y == 0], classes=[0, 1])
    fitted = _classifier(class_weight="balanced").fit(X, y)  # balanced over every row: continuing is fine
    assert fitted.partial_fit(X, y).n_iter_ == 3
