"""The start of ``nnclf tune``: the trials' data prepared in a helper process while the
command opens the study (``PreparedMemo.prefetch``), and the modules the command does not
load. Each shortcut must give the same bits, warnings and errors as the long way."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, CountingPrepare, merged, write_config

from nnclf.config import load_config
from nnclf.data.dataset import prepare
from nnclf.errors import NnclfError
from nnclf.inputs import inferred_compression
from nnclf.tune.prepared import PreparedMemo

ROOT = Path(__file__).resolve().parent.parent
needs_fork = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="prefetch needs fork")

BASE = """
seed: 3
data:
  train: {train}
  target: species
  split_seed: 3
model:
  hidden: [8]
training:
  epochs: 3
  batch_size: 16
"""


def gaps_csv(tmp_path: Path) -> Path:
    """iris with a missing feature value (imputed) and a missing label (a data warning)."""
    lines = (DATA / "iris.csv").read_text().splitlines()
    lines[3] = ",".join(["", *lines[3].split(",")[1:]])
    lines[5] = ",".join([*lines[5].split(",")[:-1], ""])
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def same_arrays(a, b) -> None:
    for role in ("train", "val", "test"):
        sa, sb = getattr(a, role), getattr(b, role)
        assert (sa is None) == (sb is None)
        if sa is None:
            continue
        for name in ("x", "y", "rows", "values"):
            xa, xb = getattr(sa, name), getattr(sb, name)
            if xa is None:
                assert xb is None
                continue
            assert xa.dtype == xb.dtype and xa.shape == xb.shape and xa.tobytes() == xb.tobytes(), (role, name)


# -- compression by name without pandas -----------------------------------------------------------
NAMES = ["a.csv", "a.CSV.GZ", "a.csv.gz", "a.tar.gz", "a.TAR", "a.tar.bz2", "a.tar.xz", "x.bz2", "x.zip", "x.xz",
         "x.zst", "x.gzip", "x.tgz", "gz", ".gz", "a.gz.csv", "dir.gz/a.csv", "a::b.gz", "a.gz::b", "s3://b/k.csv.xz",
         "a.Zip", "a.tar.zst", "", "a.tar.gz.txt"]


@pytest.mark.parametrize("name", NAMES)
def test_inferred_compression_is_pandas_answer(name):
    from pandas.io.common import infer_compression

    if "::" not in name:  # (pandas 3 splits a string at '::', a chained URL; pandas 2 does not)
        assert inferred_compression(name) == infer_compression(name, "infer")
    assert inferred_compression(Path(name or ".")) == infer_compression(Path(name or "."), "infer")


def test_sizing_the_training_file_imports_no_pandas(tmp_path):
    """data.cache: auto sizes the file before anything reads it (every run and trial); a trial
    whose data is already prepared then never needs pandas."""
    code = (
        "import sys\n"
        "from nnclf.config import load_config\n"
        "from nnclf import runs\n"
        f"cfg = load_config({str(write_config(tmp_path, BASE.format(train=DATA / 'iris.csv')))!r})\n"
        "assert cfg.data.cache == 'auto'\n"
        "print(runs._cache_mode(cfg, print))\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["memory", "False"]


# -- the prefetch -----------------------------------------------------------------------------------
def cfg_of(tmp_path: Path, train: Path, *extra: str, name: str = "c.yaml"):
    return load_config(write_config(tmp_path, merged(BASE.format(train=train), *extra), name))


@needs_fork
@pytest.mark.parametrize("task", ["classification", "regression", "reconstruction"])
def test_prefetched_data_are_the_bits_of_a_fresh_preparation(tmp_path, task):
    if task == "classification":
        cfg = cfg_of(tmp_path, gaps_csv(tmp_path))
    else:
        target = "" if task == "reconstruction" else "  target: progression\n"
        text = f"task: {task}\nseed: 5\ndata:\n  train: {DATA / 'diabetes.csv'}\n{target}  split_seed: 2\n"
        cfg = load_config(write_config(tmp_path, text + ("loss: {name: mse}\n" if task == "regression" else "")))
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    assert memo.prefetch(lambda: (cfg.data, cfg.seed, cfg.training.dtype, cfg.task))
    got, seen = [], []
    p = memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, got.append, cfg.task)
    assert counting.calls == 0 and memo.hits == 1 and len(memo) == 1  # prepared by the helper only
    fresh = prepare(cfg.data, cfg.seed, cfg.training.dtype, seen.append, cfg.task)
    same_arrays(p, fresh)
    assert p.files == fresh.files and p.task == fresh.task
    assert json.dumps(p.preprocessor.state, default=str) == json.dumps(fresh.preprocessor.state, default=str)
    if task == "classification":
        assert p.labels.values == fresh.labels.values
        assert len(seen) == 1 and got == seen  # the preparation's warning, as a fresh read gives it
    # kept like a preparation made here: read-only, and a second call is a hit with the warnings again
    with pytest.raises(ValueError):
        p.train.x[0, 0] = 1.0
    again = []
    memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, again.append, cfg.task)
    assert again == got and memo.hits == 2 and counting.calls == 0


@needs_fork
def test_a_failing_prefetch_leaves_the_error_to_the_caller(tmp_path):
    cfg = cfg_of(tmp_path, DATA / "iris.csv", "data: {target: specis}")
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    assert memo.prefetch(lambda: (cfg.data, cfg.seed, cfg.training.dtype, cfg.task))
    with pytest.raises(NnclfError) as here:
        memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
    with pytest.raises(NnclfError) as fresh:
        prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
    assert str(here.value) == str(fresh.value) and "species" in str(here.value)  # (did you mean)
    assert counting.calls == 1 and len(memo) == 0


@needs_fork
def test_a_prefetch_that_keeps_nothing_or_dies_changes_nothing(tmp_path):
    cfg = cfg_of(tmp_path, DATA / "iris.csv")
    args = (cfg.data, cfg.seed, cfg.training.dtype, cfg.task)
    for inputs in (lambda: None, lambda: os._exit(3), lambda: 1 / 0):
        counting = CountingPrepare()
        memo = PreparedMemo(counting)
        assert memo.prefetch(inputs)
        assert not memo.collect() and len(memo) == 0
        memo.prepare(*args[:3], task=cfg.task)
        assert counting.calls == 1 and len(memo) == 1


@needs_fork
def test_cancel_ends_the_helper_and_one_prefetch_at_a_time(tmp_path):
    import threading

    cfg = cfg_of(tmp_path, DATA / "iris.csv")
    memo = PreparedMemo()
    gate = threading.Event()
    assert memo.prefetch(lambda: gate.wait())  # (never set in the helper: it waits until killed)
    helper = memo._pending[0]
    assert not memo.prefetch(lambda: (cfg.data, cfg.seed, cfg.training.dtype, cfg.task))
    memo.cancel()
    assert not helper.is_alive() and memo._pending is None and not memo.collect()
    # clear() (the end of a study) cancels too
    assert memo.prefetch(lambda: gate.wait())
    helper = memo._pending[0]
    memo.clear()
    assert not helper.is_alive() and len(memo) == 0


def test_no_prefetch_without_fork(tmp_path, monkeypatch):
    monkeypatch.setattr(mp, "get_all_start_methods", lambda: ["spawn"])
    cfg = cfg_of(tmp_path, DATA / "iris.csv")
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    assert not memo.prefetch(lambda: (cfg.data, cfg.seed, cfg.training.dtype, cfg.task))
    memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
    assert counting.calls == 1


# -- the command ------------------------------------------------------------------------------------
TUNE = """
tune:
  metric: val_loss
  trials: {trials}
  sampler: random
  space:
    optimizer.lr: {{type: loguniform, low: 1.0e-3, high: 1.0e-1}}
"""


@needs_fork
@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_tune_command_loads_no_pandas_and_warns_once(tmp_path, jobs):
    """``nnclf tune`` on a CSV: the process that runs the study (and forks the workers) never
    imports pandas (the helper read the CSV), and the data warnings are printed once. (A core is
    reported free, as the helper starts only then: test_the_prefetch_waits_for_a_free_core.)"""
    pytest.importorskip("optuna")
    path = write_config(tmp_path, merged(BASE.format(train=gaps_csv(tmp_path)), TUNE.format(trials=2)), "s.yaml")
    code = (
        "import sys\n"
        "import nnclf.threads\n"
        "nnclf.threads._spare_cores = lambda: 1\n"
        "from nnclf.cli import app\n"
        f"code = app(['tune', {str(path)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}, '--jobs', '{jobs}', '-q'], standalone_mode=False)\n"
        "print('pandas' in sys.modules, code or 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False 0"
    lines = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "1 row(s) with a missing 'species' label dropped" in lines[0], out.stderr
    rows = (tmp_path / "runs" / "s" / "trials.csv").read_text().splitlines()[1:]
    # (two workers may both ask for the last trial: the later one is marked skipped)
    assert sum(",complete," in r for r in rows) == 2 and all(",complete," in r or ",skipped," in r for r in rows), rows


def untimed(value):
    """``value`` without the clock's entries (``*_at``, ``seconds``, ``wall``)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not (k.endswith("_at") or k in ("seconds", "wall"))}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


@needs_fork
@pytest.mark.slow
def test_prefetched_study_gives_the_files_of_one_without(tmp_path, monkeypatch):
    """The same study with and without the prefetch: the same checkpoints, metrics and best.yaml."""
    pytest.importorskip("optuna")
    import nnclf.threads
    from nnclf.tune import study as st

    monkeypatch.setattr(nnclf.threads, "_spare_cores", lambda: 1)  # the helper runs whatever the load

    path = write_config(tmp_path, merged(BASE.format(train=gaps_csv(tmp_path)), TUNE.format(trials=3)), "s.yaml")
    folders = {}
    for prefetch in (False, True):
        runs_dir = tmp_path / f"runs-{prefetch}"
        setup = st.prepare_study(path, runs_dir=runs_dir, prefetch=prefetch)
        result = st.tune(setup)
        assert result.ran == 3 and not result.errors
        folders[prefetch] = runs_dir / "s"
    a, b = folders[False], folders[True]
    config = lambda p: [line for line in p.read_text().splitlines() if not line.startswith("#")]  # (the header names the folder)
    assert config(a / "best.yaml") == config(b / "best.yaml")
    for t in range(3):
        for name in ("best", "last"):
            za = np.load(a / f"trial-000{t}" / "checkpoints" / f"{name}.npz", allow_pickle=False)
            zb = np.load(b / f"trial-000{t}" / "checkpoints" / f"{name}.npz", allow_pickle=False)
            assert sorted(za.files) == sorted(zb.files)
            for key in za.files:
                if key == "meta":  # JSON text: the same but for when it was made
                    assert untimed(json.loads(str(za[key]))) == untimed(json.loads(str(zb[key])))
                    continue
                assert za[key].dtype == zb[key].dtype and za[key].tobytes() == zb[key].tobytes(), (t, name, key)
        strip = lambda p: [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]  # (the seconds column)
        assert strip(a / f"trial-000{t}" / "metrics.csv") == strip(b / f"trial-000{t}" / "metrics.csv")


def test_only_small_inputs_are_prefetched(tmp_path, monkeypatch):
    from nnclf.tune import study as st

    plain = tmp_path / "a.csv"
    plain.write_bytes(b"x" * 1000)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(b"x" * 300)
    monkeypatch.setattr(st, "PREFETCH_MAX_BYTES", 1600)
    data = lambda **k: type("Data", (), {"train": str(plain), "val": None, "test": None, **k})()
    assert st._small_inputs(data())
    assert not st._small_inputs(data(test=str(gz)))  # 1000 + 5 x 300 bytes
    assert st._small_inputs(data(train=str(gz)))
    assert not st._small_inputs(data(val=str(tmp_path / "missing.csv")))
    monkeypatch.setattr(st, "PREFETCH_MAX_BYTES", 999)
    assert not st._small_inputs(data())


@needs_fork
@pytest.mark.parametrize("spare, started", [(0, False), (1, True), (None, True)])
def test_the_prefetch_waits_for_a_free_core(tmp_path, monkeypatch, spare, started):
    """No helper when every other core is busy (it would only add a fork and a copy to the
    start); one when a core is free, or where the kernel does not say."""
    pytest.importorskip("optuna")
    import nnclf.threads
    from nnclf.tune import study as st
    from nnclf.tune.prepared import process_memo

    monkeypatch.setattr(nnclf.threads, "_spare_cores", lambda: spare)
    path = write_config(tmp_path, merged(BASE.format(train=DATA / "iris.csv"), TUNE.format(trials=1)), "s.yaml")
    try:
        st.prepare_study(path, runs_dir=tmp_path / "runs", prefetch=True)
        assert (process_memo()._pending is not None) == started
    finally:
        process_memo().cancel()


def _child_storage(setup, parent_ids, send):
    from nnclf.tune import study as st

    storage = st.open_storage(setup)
    rows = st.read_rows(setup)  # the inherited storage works here, with a connection of this process
    send.send((id(storage) == parent_ids[0], id(storage.engine.pool) != parent_ids[1], len(rows)))
    os._exit(0)


@needs_fork
def test_a_forked_worker_keeps_the_parents_storage_with_a_pool_of_its_own(tmp_path):
    """--jobs workers: no second schema check or storage open; no connection shared."""
    pytest.importorskip("optuna")
    from nnclf.tune import study as st

    path = write_config(tmp_path, merged(BASE.format(train=DATA / "iris.csv"), TUNE.format(trials=2)), "s.yaml")
    setup = st.prepare_study(path, runs_dir=tmp_path / "runs")
    try:
        storage = st.open_storage(setup)
        st.dispose(storage)  # (as start_workers does before forking)
        ctx = mp.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child_storage, args=(setup, (id(storage), id(storage.engine.pool)), send))
        child.start()
        assert receive.recv() == (True, True, 0)
        child.join()
        assert child.exitcode == 0
        assert st.read_rows(setup) == []  # and the parent's own storage still works
    finally:
        st.close_storages()
