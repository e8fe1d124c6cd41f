"""Damaged or hostile checkpoints are refused by `evaluate` and `predict` with one line naming
the file, never a traceback and never by unpickling anything."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_cli, write_config

CSV = "a,b,label\n" + "".join(f"{i % 5},{(i * 3) % 7},{i % 2}\n" for i in range(30))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "d.csv").write_text(CSV)
    write_config(folder, "data:\n  train: d.csv\n  target: label\nmodel:\n  hidden: [3]\ntraining:\n  epochs: 2\n", "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    path = folder / "runs" / "r" / "checkpoints" / "best.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return path, arrays, folder / "d.csv"


def _with_meta(arrays, change):
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    return {**arrays, "meta": np.array(json.dumps(meta))}


def _refused(cli, tmp_path, ckpt: str, data, expected: str):
    for command in ("evaluate", "predict"):
        r = cli([command, ckpt, data])
        assert r.exit_code == 1, (command, r.stderr)
        assert r.stderr == f"error: {ckpt}: {expected}\n", command
        assert r.stdout == ""
    r = cli(["predict", ckpt, data, "-o", "out.csv"])
    assert r.exit_code == 1
    assert not (tmp_path / "out.csv").exists()


def test_good_checkpoint_loads_as_plain_data(good):
    path, arrays, _ = good
    assert arrays["params"].dtype.kind == "f" and arrays["params"].ndim == 1
    assert arrays["meta"].dtype.kind == "U" and arrays["meta"].ndim == 0
    meta = json.loads(str(arrays["meta"]))
    assert meta["format"] == "nnclf-checkpoint" and meta["labels"] == [0, 1]
    # no object arrays anywhere
    assert all(a.dtype != object for a in arrays.values())


def test_truncated_file(cli, tmp_path, good):
    path, _, data = good
    raw = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    _refused(cli, tmp_path, "t.npz", data, "not a valid checkpoint (not an .npz archive; truncated or corrupted?)")


def test_random_bytes(cli, tmp_path, good):
    _, _, data = good
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    # not "contains pickled objects": random bytes are damage, not a pickle
    _refused(cli, tmp_path, "r.npz", data, "not a valid checkpoint (not an .npz archive; truncated or corrupted?)")


def test_empty_file(cli, tmp_path, good):
    _, _, data = good
    (tmp_path / "e.npz").write_bytes(b"")
    _refused(cli, tmp_path, "e.npz", data, "not a valid checkpoint (not an .npz archive; truncated or corrupted?)")


def test_bare_npy_array(cli, tmp_path, good):
    _, _, data = good
    with open(tmp_path / "a.npz", "wb") as f:
        np.save(f, np.zeros(3))
    _refused(cli, tmp_path, "a.npz", data, "not a valid checkpoint (not an .npz archive; truncated or corrupted?)")


def test_pickled_object_array_is_refused_without_unpickling(cli, tmp_path, good):
    _, arrays, data = good
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = np.empty(1, dtype=object)
    evil[0] = Boom()
    np.savez(tmp_path / "p.npz", **{**arrays, "extra": evil})
    _refused(cli, tmp_path, "p.npz", data, "refusing to load: the checkpoint contains pickled objects")
    np.savez(tmp_path / "q.npz", **{**arrays, "params": evil})
    _refused(cli, tmp_path, "q.npz", data, "refusing to load: the checkpoint contains pickled objects")
    assert not marker.exists()


def test_wrong_shape_params(cli, tmp_path, good):
    _, arrays, data = good
    n = arrays["params"].size
    np.savez(tmp_path / "s.npz", **{**arrays, "params": arrays["params"][:-2]})
    _refused(cli, tmp_path, "s.npz", data, f"not a valid checkpoint (params has shape ({n - 2},), the network needs ({n},))")
    np.savez(tmp_path / "s2.npz", **{**arrays, "params": arrays["params"].reshape(1, -1)})
    _refused(cli, tmp_path, "s2.npz", data, f"not a valid checkpoint (params has shape (1, {n}), the network needs ({n},))")


def test_non_float_params(cli, tmp_path, good):
    _, arrays, data = good
    np.savez(tmp_path / "i.npz", **{**arrays, "params": arrays["params"].astype(np.int64)})
    _refused(cli, tmp_path, "i.npz", data, "not a valid checkpoint (params has dtype int64, expected floats)")


def test_nan_params(cli, tmp_path, good):
    _, arrays, data = good
    params = arrays["params"].copy()
    params[0] = np.nan
    np.savez(tmp_path / "n.npz", **{**arrays, "params": params})
    _refused(cli, tmp_path, "n.npz", data, "the checkpoint holds NaN or infinite weights")


@pytest.mark.parametrize("missing", ["meta", "params"])
def test_missing_array(cli, tmp_path, good, missing):
    _, arrays, data = good
    np.savez(tmp_path / "m.npz", **{k: v for k, v in arrays.items() if k != missing})
    _refused(cli, tmp_path, "m.npz", data, f"not a valid checkpoint (no '{missing}' array)")


def test_meta_that_is_not_json(cli, tmp_path, good):
    _, arrays, data = good
    np.savez(tmp_path / "j.npz", **{**arrays, "meta": np.array("{not json")})
    _refused(cli, tmp_path, "j.npz", data,
             "not a valid checkpoint (meta JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")
    np.savez(tmp_path / "k.npz", **{**arrays, "meta": np.zeros(2)})
    _refused(cli, tmp_path, "k.npz", data, "not a valid checkpoint ('meta' is not a JSON string)")


def test_other_file_formats_and_versions(cli, tmp_path, good):
    _, arrays, data = good
    np.savez(tmp_path / "f.npz", **_with_meta(arrays, lambda m: m.update(format="something-else")))
    _refused(cli, tmp_path, "f.npz", data, "not an nnclf checkpoint")
    np.savez(tmp_path / "v.npz", **_with_meta(arrays, lambda m: m.update(version=99)))
    _refused(cli, tmp_path, "v.npz", data, "checkpoint format version 99 is not supported (this nnclf reads 1)")


def test_damaged_metadata(cli, tmp_path, good):
    _, arrays, data = good
    np.savez(tmp_path / "a.npz", **_with_meta(arrays, lambda m: m.pop("preprocessor")))
    _refused(cli, tmp_path, "a.npz", data, "not a valid checkpoint (missing entry 'preprocessor')")
    np.savez(tmp_path / "b.npz", **_with_meta(arrays, lambda m: m.update(labels=[0, 1, 2])))
    _refused(cli, tmp_path, "b.npz", data, "not a valid checkpoint (preprocessing, labels and network sizes disagree)")
    for i, labels in enumerate(([0, 0], [1], [1, "1"])):  # were accepted: proba_0,proba_0 columns; one class
        np.savez(tmp_path / f"l{i}.npz", **_with_meta(arrays, lambda m: m.update(labels=labels)))
        _refused(cli, tmp_path, f"l{i}.npz", data, f"not a valid checkpoint (labels {labels!r} are not 2 or more distinct classes)")
    np.savez(tmp_path / "c.npz", **_with_meta(arrays, lambda m: m["network"].update(activation="swish")))
    _refused(cli, tmp_path, "c.npz", data,
             "not a valid checkpoint (unknown activation 'swish'; valid: identity, linear, sigmoid, logistic, tanh, "
             "relu, leaky_relu, elu, softplus, gelu)")
    np.savez(tmp_path / "d.npz", **_with_meta(arrays, lambda m: m.update(preprocessor="x")))
    _refused(cli, tmp_path, "d.npz", data,
             "not a valid checkpoint (malformed metadata: 'preprocessor' is a string, expected an object)")
    np.savez(tmp_path / "f.npz", **_with_meta(arrays, lambda m: m["preprocessor"]["columns"][0].pop("center")))
    _refused(cli, tmp_path, "f.npz", data, "not a valid checkpoint (missing entry 'center')")
    np.savez(tmp_path / "g.npz", **_with_meta(arrays, lambda m: m["preprocessor"]["columns"][1].update(kind="date")))
    _refused(cli, tmp_path, "g.npz", data, "not a valid checkpoint (unknown column kind 'date')")
    np.savez(tmp_path / "e.npz", **_with_meta(arrays, lambda m: m["network"].update(sizes=[2, -1, 2])))
    _refused(cli, tmp_path, "e.npz", data, "not a valid checkpoint (bad network sizes [2, -1, 2])")


def test_missing_checkpoint_in_a_run_folder_falls_back_to_last(cli, tmp_path, good):
    path, _, data = good
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.npz").write_bytes(path.read_bytes())
    r = cli(["predict", "run", data])
    assert r.exit_code == 0, r.stderr
    r = cli(["predict", "run", data, "--checkpoint", "last"])
    assert r.exit_code == 0, r.stderr
