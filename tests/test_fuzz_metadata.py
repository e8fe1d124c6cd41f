"""Damaged metadata, generated: any JSON value put anywhere in a checkpoint's ``meta`` or in a
run's summary.json gives either a working command or one line naming the file; never a
traceback. `nnclf runs` always lists the run and prints strict JSON."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli, write_config

CSV = "a,tone,label\n" + "".join(f"{i % 7},{'dark' if i % 3 else 'pale'},{i % 2}\n" for i in range(40))
CONFIG = "seed: 1\ndata: {train: d.csv, target: label}\nmodel: {hidden: [3]}\ntraining: {epochs: 2, batch_size: 8}\n"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzmeta")
    (folder / "d.csv").write_text(CSV)
    write_config(folder, CONFIG, "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    with np.load(folder / "runs" / "r" / "checkpoints" / "last.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return folder, arrays


def _paths(value, prefix=()):
    """Every place in a JSON document: (path of keys / indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, prefix + (i,))


def _replace(document, path, new):
    if not path:
        return new
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return document


def _one_line_or_ok(r):
    assert "Traceback" not in r.stderr
    if r.exit_code != 0:
        assert r.exit_code == 1, (r.exit_code, r.stderr)
        lines = [line for line in r.stderr.splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), value=json_values)
def test_any_value_anywhere_in_checkpoint_meta(project, tmp_path_factory, data, value):
    folder, arrays = project
    meta = json.loads(str(arrays["meta"]))
    paths = [p for p in _paths(meta) if p[:1] != ("trainer",) or len(p) < 3]
    path = data.draw(st.sampled_from(paths))
    damaged = _replace(json.loads(json.dumps(meta)), path, value)
    work = tmp_path_factory.mktemp("case")
    np.savez(work / "m.npz", **{**arrays, "meta": np.array(json.dumps(damaged))})
    for args in (["predict", work / "m.npz", folder / "d.csv"], ["evaluate", work / "m.npz", folder / "d.csv"]):
        _one_line_or_ok(run_cli(args, work))
    # and as a run's last checkpoint: resume and listing
    run = work / "runs" / "run"
    shutil.copytree(folder / "runs" / "r", run)
    shutil.copy(work / "m.npz", run / "checkpoints" / "last.npz")
    (run / "summary.json").unlink()
    _one_line_or_ok(run_cli(["train", "--resume", run, "--set", "training.epochs=3", "--quiet"], work))
    listing = run_cli(["runs", "--json"], work)
    assert listing.exit_code == 0, listing.stderr
    rows = json.loads(listing.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [r["run"] for r in rows] == ["run"]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), value=json_values)
def test_any_value_anywhere_in_summary_json(project, tmp_path_factory, data, value):
    folder, _ = project
    summary = json.loads((folder / "runs" / "r" / "summary.json").read_text())
    path = data.draw(st.sampled_from(list(_paths(summary))))
    work = tmp_path_factory.mktemp("case")
    runs = work / "runs"
    shutil.copytree(folder / "runs" / "r", runs / "r")
    (runs / "r" / "summary.json").write_text(json.dumps(_replace(json.loads(json.dumps(summary)), path, value)))
    for args in (["runs", "--json"], ["runs"]):
        r = run_cli(args, work)
        assert r.exit_code == 0 and "Traceback" not in r.stderr, r.stderr
    rows = json.loads(run_cli(["runs", "--json"], work).stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [r["run"] for r in rows] == ["r"]


HOSTILE = (None, "x", -1, 0, 1e300, True, [], {})


TASK_CONFIGS = {
    "classification": CONFIG,
    "regression": "seed: 1\ntask: regression\ndata: {train: d.csv, target: label}\nmodel: {hidden: [3]}\ntraining: {epochs: 2, batch_size: 8}\n",
    "reconstruction": "seed: 1\ntask: reconstruction\ndata: {train: d.csv, target: label}\nmodel: {hidden: [3]}\ntraining: {epochs: 2, batch_size: 8}\n",
}


@pytest.fixture(scope="module", params=sorted(TASK_CONFIGS))
def task_project(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    (folder / "d.csv").write_text(CSV)
    write_config(folder, TASK_CONFIGS[request.param], "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    with np.load(folder / "runs" / "r" / "checkpoints" / "last.npz", allow_pickle=False) as z:
        return folder, {k: z[k] for k in z.files}


@pytest.mark.slow
def test_every_place_in_checkpoint_meta_with_each_hostile_value(task_project, tmp_path):
    """The generated test above samples; this sweeps: every place (trainer state aside) times a
    handful of values chosen to break type and range checks, through predict, for each task."""
    folder, arrays = task_project
    meta = json.loads(str(arrays["meta"]))
    paths = [p for p in _paths(meta) if p and p[0] not in ("trainer", "config", "started_at", "saved_at", "data_files")]
    assert len(paths) > 30
    failures = []
    for i, path in enumerate(paths):
        for value in HOSTILE:
            model = tmp_path / f"m{i}.npz"
            np.savez(model, **{**arrays, "meta": np.array(json.dumps(_replace(json.loads(json.dumps(meta)), path, value)))})
            try:
                _one_line_or_ok(run_cli(["predict", model, folder / "d.csv"], tmp_path))
            except Exception as e:  # noqa: BLE001 (collected: one run names every failing place)
                failures.append(f"{path} = {value!r}: {type(e).__name__} {str(e)[:200]}")
            model.unlink()
    assert not failures, "\n".join(failures)
