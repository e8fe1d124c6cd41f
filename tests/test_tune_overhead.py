"""What makes a small trial cheap: the prepared data kept between the trials of a worker
(nnclf.tune.prepared), checkpoints and metrics.csv written once at the end of a trial
(runs.train(deferred=True)), and the storage writes a trial makes. Each shortcut must give
the same bits as the long way."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, CountingPrepare, merged, write_config

from nnclf import runs
from nnclf.config import load_config
from nnclf.data.dataset import prepare
from nnclf.tune.prepared import PreparedMemo

BASE = """
seed: 3
data:
  train: {train}
  target: species
model:
  hidden: [8]
training:
  epochs: 5
  batch_size: 16
"""


def iris_copy(tmp_path: Path) -> Path:
    path = tmp_path / "iris.csv"
    shutil.copyfile(DATA / "iris.csv", path)
    return path


def cfg_of(tmp_path: Path, *extra: str, train: Path | None = None):
    text = merged(BASE.format(train=train or DATA / "iris.csv"), *extra)
    return load_config(write_config(tmp_path, text, f"c{time.monotonic_ns()}.yaml"))


# -- the prepared-data memo -----------------------------------------------------------------------
def test_memo_returns_the_same_arrays_for_the_same_data_and_split(tmp_path):
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    a = cfg_of(tmp_path, "data: {split_seed: 3}", "seed: 11")
    b = cfg_of(tmp_path, "data: {split_seed: 3}", "seed: 12", "model: {hidden: [32]}")  # another trial
    pa = memo.prepare(a.data, a.seed, a.training.dtype, task=a.task)
    pb = memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert counting.calls == 1 and memo.hits == 1
    fresh = prepare(b.data, b.seed, b.training.dtype, task=b.task)
    for role in ("train", "val", "test"):
        for name in ("x", "y", "rows"):
            got, want = getattr(getattr(pb, role), name), getattr(getattr(fresh, role), name)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert pb.preprocessor.state == fresh.preprocessor.state and pb.files == fresh.files
    # the arrays are shared and read-only: a trial cannot change the next one's data
    assert np.shares_memory(pa.train.x, pb.train.x)
    with pytest.raises(ValueError):
        pb.train.x[0, 0] = 1.0
    # attributes a run sets stay on its own copy
    pb.pca = "set by a run"
    pb.train.source = "changed"
    pc = memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert pc.pca is None and pc.train.source != "changed"


@pytest.mark.parametrize("change", [
    "data: {scaling: minmax}",  # a trial parameter that changes preparation
    "data: {split_seed: 4}",  # another split
    "data: {val_split: 0.2}",
    "training: {dtype: float64}",
])
def test_memo_prepares_again_when_preparation_changes(tmp_path, change):
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    a = cfg_of(tmp_path, "data: {split_seed: 3}")
    b = cfg_of(tmp_path, "data: {split_seed: 3}", change)
    memo.prepare(a.data, a.seed, a.training.dtype, task=a.task)
    pb = memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert counting.calls == 2
    fresh = prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert pb.train.x.tobytes() == fresh.train.x.tobytes() and pb.val.rows.tobytes() == fresh.val.rows.tobytes()
    # both stay kept: alternating between them reads nothing more
    memo.prepare(a.data, a.seed, a.training.dtype, task=a.task)
    memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert counting.calls == 2


def test_memo_without_split_seed_keys_on_the_seed(tmp_path):
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    a, b = cfg_of(tmp_path, "seed: 1"), cfg_of(tmp_path, "seed: 2")
    pa = memo.prepare(a.data, a.seed, a.training.dtype, task=a.task)
    pb = memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert counting.calls == 2
    assert pa.val.rows.tolist() != pb.val.rows.tolist()  # the seed draws the split


def test_memo_reads_a_rewritten_file_again(tmp_path):
    path = iris_copy(tmp_path)
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    cfg = cfg_of(tmp_path, train=path)
    first = memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
    # the same size, one value changed, and the modification time set back to what it was
    # plus one nanosecond: a new file for the memo
    st = path.stat()
    text = path.read_text()
    line = text.splitlines()[1]
    changed = line.replace(line.split(",")[0], str(float(line.split(",")[0]) + 1.0)[: len(line.split(",")[0])], 1)
    assert len(changed) == len(line) and changed != line
    path.write_text(text.replace(line, changed, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    second = memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
    assert counting.calls == 2
    assert first.files["train"] != second.files["train"]  # (the file's sha256 changed)


def test_memo_repeats_the_data_warnings_on_a_hit(tmp_path):
    path = tmp_path / "gaps.csv"
    lines = (DATA / "iris.csv").read_text().splitlines()
    lines[3] = ",".join(["", *lines[3].split(",")[1:]])  # a missing feature value
    path.write_text("\n".join(lines) + "\n")
    memo = PreparedMemo()
    cfg = cfg_of(tmp_path, train=path)
    first, second = [], []
    memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, first.append, cfg.task)
    memo.prepare(cfg.data, cfg.seed, cfg.training.dtype, second.append, cfg.task)
    assert memo.hits == 1 and first and second == first


def test_memo_does_not_keep_the_disk_cache_or_a_regression_split_of_another_seed(tmp_path):
    counting = CountingPrepare()
    memo = PreparedMemo(counting)
    text = f"task: regression\ndata: {{train: {DATA / 'diabetes.csv'}, target: progression, split_seed: 5}}\nloss: {{name: mse}}\nseed: 1\n"
    a = load_config(write_config(tmp_path, text, "a.yaml"))
    b = load_config(write_config(tmp_path, text.replace("seed: 1\n", "seed: 2\n"), "b.yaml"))
    pa = memo.prepare(a.data, a.seed, a.training.dtype, task=a.task)
    pb = memo.prepare(b.data, b.seed, b.training.dtype, task=b.task)
    assert counting.calls == 1 and pa.val.rows.tolist() == pb.val.rows.tolist()


def test_regression_split_follows_split_seed_not_seed(tmp_path):
    """Regression trials vary seed; the split must stay put (data.split_seed), as for classification."""
    text = f"task: regression\ndata: {{train: {DATA / 'diabetes.csv'}, target: progression}}\nloss: {{name: mse}}\n"
    splits = []
    for extra in ("seed: 1\ndata: {split_seed: 7}", "seed: 2\ndata: {split_seed: 7}", "seed: 7"):
        cfg = load_config(write_config(tmp_path, merged(text, extra), f"r{len(splits)}.yaml"))
        p = prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task)
        splits.append((p.val.rows.tolist(), p.test.rows.tolist()))
    assert splits[0] == splits[1] == splits[2]
    cfg = load_config(write_config(tmp_path, merged(text, "seed: 8"), "r9.yaml"))
    assert prepare(cfg.data, cfg.seed, cfg.training.dtype, task=cfg.task).val.rows.tolist() != splits[0][0]


def test_a_run_on_memo_data_equals_a_fresh_run_bit_for_bit(tmp_path):
    path = write_config(tmp_path, BASE.format(train=DATA / "iris.csv"))
    memo = PreparedMemo()
    runs.train(path, ["seed=4", "data.split_seed=3"], tmp_path / "runs", "warm", prepare_data=memo.prepare)
    runs.train(path, ["seed=5", "data.split_seed=3"], tmp_path / "runs", "hit", prepare_data=memo.prepare)
    assert memo.hits == 1
    runs.train(path, ["seed=5", "data.split_seed=3"], tmp_path / "runs", "fresh")
    hit, fresh = tmp_path / "runs" / "hit", tmp_path / "runs" / "fresh"
    for which in ("best", "last"):
        a = np.load(hit / "checkpoints" / f"{which}.npz", allow_pickle=False)
        b = np.load(fresh / "checkpoints" / f"{which}.npz", allow_pickle=False)
        assert a["params"].tobytes() == b["params"].tobytes()
    assert np.load(hit / "splits.npz")["val"].tolist() == np.load(fresh / "splits.npz")["val"].tolist()


# -- deferred writes ------------------------------------------------------------------------------
def _metrics_without_seconds(folder: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in (folder / "metrics.csv").read_text().splitlines()]


def _meta_without_times(npz) -> dict:
    meta = json.loads(str(npz["meta"]))
    meta.pop("saved_at"), meta.pop("started_at")
    return meta


@pytest.mark.parametrize("extra", ["training: {epochs: 6}", "training: {epochs: 12, early_stopping: {monitor: val_loss, patience: 2}}",
                                   "training: {epochs: 6, calibration: temperature}"])
def test_deferred_writes_give_the_same_files(tmp_path, extra):
    path = write_config(tmp_path, merged(BASE.format(train=DATA / "iris.csv"), extra))
    seen = []

    class Look:  # what is on disk while the deferred run trains
        def on_epoch_end(self, trainer, record, improved):
            folder = tmp_path / "runs" / "deferred"
            seen.append(((folder / "metrics.csv").exists(), (folder / "checkpoints" / "best.npz").exists()))

    runs.train(path, [], tmp_path / "runs", "deferred", [Look()], deferred=True)
    runs.train(path, [], tmp_path / "runs", "direct")
    assert seen and set(seen) == {(False, False)}
    d, e = tmp_path / "runs" / "deferred", tmp_path / "runs" / "direct"
    assert _metrics_without_seconds(d) == _metrics_without_seconds(e)
    for which in ("best", "last"):
        a = np.load(d / "checkpoints" / f"{which}.npz", allow_pickle=False)
        b = np.load(e / "checkpoints" / f"{which}.npz", allow_pickle=False)
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key != "meta":
                assert a[key].tobytes() == b[key].tobytes(), key
        assert _meta_without_times(a) == _meta_without_times(b)
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (d, e))
    assert sa["best_epoch"] == sb["best_epoch"] and sa["test"] == sb["test"]


def test_deferred_run_interrupted_keeps_its_last_checkpoint(tmp_path):
    import threading

    path = write_config(tmp_path, merged(BASE.format(train=DATA / "iris.csv"), "training: {epochs: 50}"))
    stop = threading.Event()

    class StopAt3:
        def on_epoch_end(self, trainer, record, improved):
            if trainer.epoch == 3:
                stop.set()

    result = runs.train(path, [], tmp_path / "runs", "cut", [StopAt3()], stop=stop, deferred=True)
    assert result.interrupted
    folder = tmp_path / "runs" / "cut"
    last = np.load(folder / "checkpoints" / "last.npz", allow_pickle=False)
    assert json.loads(str(last["meta"]))["trainer"]["epoch"] == len(_metrics_without_seconds(folder)) - 1 >= 3


# -- storage writes per trial ---------------------------------------------------------------------
def test_a_trial_stores_its_result_in_one_user_attribute_and_no_report_without_pruner(cli, tmp_path):
    optuna = pytest.importorskip("optuna")
    text = merged(BASE.format(train=DATA / "iris.csv"), """
tune:
  metric: val_loss
  trials: 3
  pruner: none
  sampler: random
  space:
    optimizer.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
""")
    path = write_config(tmp_path, text, "s.yaml")
    result = cli(f"tune {path} --study s")
    assert result.exit_code == 0, result.stderr
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}")
    for t in study.trials:
        assert set(t.user_attrs) == {"result"}
        summary = json.loads((tmp_path / "runs" / "s" / f"trial-{t.number:04d}" / "summary.json").read_text())
        assert t.user_attrs["result"] == {"epochs": summary["epochs_run"], "test_accuracy": summary["test"]["accuracy"]}
        assert t.intermediate_values == {}  # nothing prunes: no per-epoch writes
    lines = (tmp_path / "runs" / "s" / "trials.csv").read_text().splitlines()
    assert all(line.split(",")[3] == "5" for line in lines[1:])  # epochs, from the one attribute


# -- the shipped tune configs ---------------------------------------------------------------------
TUNE_CONFIGS = sorted((DATA.parent / "configs" / "tune").glob("*.yaml"))


def test_every_data_set_has_a_shipped_tune_config():
    shipped = {p.stem for p in (DATA.parent / "configs").glob("*.yaml")} & {p.stem for p in DATA.glob("*.csv")}
    assert shipped - {"digits_autoencoder"} <= {p.stem for p in TUNE_CONFIGS}


@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_shipped_tune_configs_validate(path):
    from nnclf.tune.study import load_study_config

    raw, spec, cfg = load_study_config(path, [])
    assert spec.trials == 30 and spec.pruner in ("median", "none") and len(spec.space) >= 3
    assert Path(cfg.data.train).is_file()
    assert cfg.training.early_stopping is not None and spec.metric == cfg.training.early_stopping.monitor


@pytest.mark.slow
@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_shipped_tune_configs_run(cli, tmp_path, path):
    result = cli(f"tune {path} --trials 2 --set training.epochs=3 --study s -q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "runs" / "s" / "best.yaml").is_file()


def test_the_kept_data_is_let_go_when_the_study_ends(tmp_path):
    pytest.importorskip("optuna")
    from nnclf.tune import study as st
    from nnclf.tune.prepared import process_memo

    text = merged(BASE.format(train=DATA / "iris.csv"), """
tune:
  metric: val_loss
  trials: 3
  sampler: random
  space:
    optimizer.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
""")
    setup = st.prepare_study(write_config(tmp_path, text, "s.yaml"), runs_dir=tmp_path / "runs")
    seen = []

    class Look:
        def on_epoch_end(self, trainer, record, improved):
            seen.append((len(process_memo()), process_memo().hits))

    result = st.tune(setup, callbacks=[Look()])
    assert result.ran == 3
    # one preparation, then two hits (the counters are the process's, so compared as differences)
    assert seen[0][0] == seen[-1][0] == 1 and seen[-1][1] - seen[0][1] == 2
    assert len(process_memo()) == 0
