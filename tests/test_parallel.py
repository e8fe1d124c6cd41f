"""Batches of >= SPLIT_ROWS rows are two halves, the second computed by a forked worker when the
machine allows: the numbers must not depend on whether it ran, and the worker must never be
left behind, hang the trainer or survive it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import nnclf.trainer as trainer_module
from nnclf.engine.losses import LOSSES
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import OPTIMIZERS
from nnclf.engine.parallel import SPLIT_ROWS, BatchHalves, batch_gradient, fork_available
from nnclf.engine.schedules import SCHEDULES
from nnclf.errors import NnclfError
from nnclf.trainer import Trainer

from conftest import DATA, write_config
from test_training import _nnclf, _wait_for_epochs, metrics_rows, train_quiet

needs_fork = pytest.mark.skipif(not fork_available(), reason="no worker process here (Linux on x86-64, 2 cores)")


@pytest.fixture
def halves_made(monkeypatch):
    """Every BatchHalves the trainer makes, so a test can see whether a worker ran."""
    made = []

    class Recorded(BatchHalves):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.had_worker, self.worker_pid, self.split = self.parallel, self._pid, self.splits_update
            made.append(self)

    monkeypatch.setattr(trainer_module, "BatchHalves", Recorded)
    return made


def _data(n=1100, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = (x[:, :k].argmax(axis=1) + (rng.random(n) < 0.1)) % k
    return x, y.astype(np.int64)


def _trainer(workers, *, dtype="float32", k=3, d=12, loss_kwargs=None, batch=301, shuffle=True, optimizer="adam",
             weight_decay=0.0, clip_norm=None, epochs=3, callbacks=(), dropout=0.0):
    rng = np.random.default_rng(7)
    loss = LOSSES.get("cross_entropy")(k, **(loss_kwargs or {}))
    net = MLP([d, 16, 8, loss.n_outputs], "tanh", dropout=dropout, dtype=dtype)
    net.initialize("auto", rng)
    opt = OPTIMIZERS.get(optimizer)(net.params.size, net.dtype, weight_mask=net.weight_mask())
    return Trainer(net, loss, opt, SCHEDULES.get("constant")(0.01, epochs), epochs=epochs, batch_size=batch, rng=rng,
                   shuffle=shuffle, weight_decay=weight_decay, clip_norm=clip_norm, workers=workers, callbacks=callbacks,
                   monitor="train_loss")


CASES = {
    "float32 softmax, shuffled": {},
    "float64, class weights and label smoothing, in file order": dict(
        dtype="float64", shuffle=False, loss_kwargs=dict(label_smoothing=0.1, class_weights=np.array([1.0, 2.0, 0.5]))),
    "binary: one sigmoid unit": dict(k=2),
    "weight decay, clipping, momentum": dict(weight_decay=1e-3, clip_norm=0.5, optimizer="nesterov"),
    "dropout (the worker replays the parent's uniforms)": dict(dropout=0.3),
    "dropout, float64, in file order": dict(dropout=0.5, dtype="float64", shuffle=False),
    "adamw (decay on weights only)": dict(optimizer="adamw"),
    "rmsprop": dict(optimizer="rmsprop"),
    "adagrad, float64": dict(optimizer="adagrad", dtype="float64"),
    "momentum": dict(optimizer="momentum"),
}


@needs_fork
@pytest.mark.parametrize("case", CASES)
def test_workers_change_the_speed_never_the_numbers(case, halves_made):
    kw = CASES[case]
    x, y = _data(k=kw.get("k", 3))
    x = x.astype(kw.get("dtype", "float32"))
    x_val, y_val = _data(200, seed=1, k=kw.get("k", 3))
    results = {}
    for workers in (None, 1):
        tr = _trainer(workers, **kw)
        history = tr.fit(x, y, x_val.astype(x.dtype), y_val)
        results[workers] = (tr.net.params.copy(), tr.optimizer.state(), [{k: v for k, v in r.items() if k != "seconds"} for r in history])
    assert [h.had_worker for h in halves_made] == [True, False]  # the worker really ran, once
    # the optimizer step is shared between the processes unless it needs the whole gradient
    assert halves_made[0].split == (not kw.get("weight_decay") and not kw.get("clip_norm"))
    (p_par, s_par, h_par), (p_one, s_one, h_one) = results[None], results[1]
    assert np.array_equal(p_par, p_one)
    assert s_par.keys() == s_one.keys() and all(np.array_equal(s_par[k], s_one[k]) for k in s_par)
    assert h_par == h_one  # losses, accuracies, validation metrics: the same floats


def test_two_halves_give_the_batch_mean_gradient():
    # the halves' shares make their sum the mean over the whole batch: compared with one pass
    # over all rows (float64, class weights, an odd batch so the halves differ in size)
    x, y = _data(301)
    weights = np.array([0.5, 1.0, 3.0])
    loss = LOSSES.get("cross_entropy")(3, class_weights=weights)
    net = MLP([12, 10, 3], "sigmoid", dtype="float64")
    net.initialize("auto", np.random.default_rng(0))
    value_full, correct_full = batch_gradient(net, loss, x, y, 1.0)
    grads_full = net.grads.copy()
    halves = BatchHalves(net, loss, x, y, 301, parallel=False)
    value, correct = halves.gradient(np.arange(301))
    assert correct == correct_full
    assert value == pytest.approx(value_full, rel=1e-12)
    np.testing.assert_allclose(net.grads, grads_full, rtol=1e-10, atol=1e-14)
    # and the sum is over different rows: the halves alone are not the batch gradient
    batch_gradient(net, loss, x[:150], y[:150], 1.0)
    assert not np.allclose(net.grads, grads_full, rtol=1e-3)


@needs_fork
def test_fit_ends_its_worker_and_gives_the_parameters_back(halves_made):
    tr = _trainer(None)
    params_before, grads_before, moment_before = tr.net.params, tr.net.grads, tr.optimizer.m_scaled
    start = params_before.copy()
    tr.fit(*_data())
    (halves,) = halves_made
    assert halves.had_worker and halves.split
    # the optimizer's state lived in the shared mapping during fit; now back in its own array
    assert tr.optimizer.m_scaled is moment_before and np.any(moment_before != 0)
    assert tr.net.grads is grads_before
    with pytest.raises(ChildProcessError):  # reaped: no zombie either
        os.waitpid(halves.worker_pid, os.WNOHANG)
    assert tr.net.params is params_before and not np.array_equal(params_before, start)
    assert tr.net.weights[0].base is not None and np.shares_memory(tr.net.weights[0], params_before)


@needs_fork
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_when_the_worker_dies_training_goes_on_with_the_same_numbers(halves_made, dropout):
    class KillWorker:
        def on_batch_end(self, trainer, epoch, batch, n_batches, loss):
            if (epoch, batch) == (1, 1):
                os.kill(halves_made[0].worker_pid, signal.SIGKILL)

    x, y = _data()
    x = x.astype(np.float32)
    killed = _trainer(None, callbacks=[KillWorker()], epochs=4, dropout=dropout)
    start = time.monotonic()
    killed.fit(x, y)
    assert time.monotonic() - start < 20
    one = _trainer(1, epochs=4, dropout=dropout)
    one.fit(x, y)
    assert halves_made[0].had_worker and not halves_made[0].parallel
    assert killed.notes == ["training's worker process was killed by signal 9; training went on in one process "
                            "(the same numbers, slower)"]
    assert np.array_equal(killed.net.params, one.net.params)
    assert [r["train_loss"] for r in killed.history] == [r["train_loss"] for r in one.history]
    with pytest.raises(ChildProcessError):
        os.waitpid(halves_made[0].worker_pid, os.WNOHANG)


@needs_fork
def test_a_worker_lost_while_updating_is_an_error_naming_resume(halves_made, monkeypatch):
    # its half of the weights may be half updated: nothing exact to go on from
    import nnclf.engine.parallel as parallel

    parent, update = os.getpid(), parallel._update_part

    def dies_in_the_worker(*args, first, **kwargs):
        if os.getpid() != parent and parallel.time.perf_counter() > deadline:
            os._exit(3)
        update(*args, first=first, **kwargs)

    monkeypatch.setattr(parallel, "_update_part", dies_in_the_worker)
    deadline = parallel.time.perf_counter() + 0.05
    tr = _trainer(None, epochs=1000)
    with pytest.raises(NnclfError, match=r"worker process failed \(exit status 3\) while updating the weights; "
                                         r"resume from the last checkpoint"):
        tr.fit(*_data())
    assert halves_made[0].split
    with pytest.raises(ChildProcessError):
        os.waitpid(halves_made[0].worker_pid, os.WNOHANG)


@needs_fork
@pytest.mark.parametrize("failing", ["fork", "mmap"])
def test_a_worker_that_cannot_start_leaves_one_process(halves_made, monkeypatch, failing):
    import errno

    import nnclf.engine.parallel as parallel

    def fails(*args):
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    from threadpoolctl import threadpool_info

    blas_threads = [lib["num_threads"] for lib in threadpool_info()]
    monkeypatch.setattr(parallel.os if failing == "fork" else parallel.mmap, failing, fails)
    x, y = _data()
    tr = _trainer(None)
    params_before = tr.net.params
    tr.fit(x.astype(np.float32), y)
    assert tr.net.params is params_before  # the network has its own storage back
    assert [lib["num_threads"] for lib in threadpool_info()] == blas_threads  # the BLAS limit undone
    one = _trainer(1)
    one.fit(x.astype(np.float32), y)
    assert [h.had_worker for h in halves_made] == [False, False]
    assert tr.notes == [f"training's worker process could not start ({os.strerror(errno.EAGAIN)}); training runs in one process"]
    assert np.array_equal(tr.net.params, one.net.params)


def test_small_batches_run_in_one_pass_and_other_platforms_never_split(halves_made, monkeypatch):
    x, y = _data()
    _trainer(None, batch=SPLIT_ROWS - 1).fit(x.astype(np.float32), y)
    assert halves_made == []  # below SPLIT_ROWS: the single pass
    monkeypatch.setattr(trainer_module, "halves_platform", lambda: False)
    big = _trainer(None, batch=301)
    big.fit(x.astype(np.float32), y)
    assert halves_made == []  # not Linux x86-64: one pass whatever the batch


# -- through the CLI ---------------------------------------------------------------------------
DIGITS_BIG_BATCH = f"""
seed: 3
data: {{train: {DATA / 'digits.csv'}, target: digit}}
model: {{hidden: [32]}}
optimizer: {{name: adam, lr: 0.002}}
training: {{epochs: 120, batch_size: 300}}
"""


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"  # a zombie is dead
    except OSError:
        return True


@needs_fork
def test_sigint_with_a_worker_and_resume_are_bit_identical_to_one_process(cli, tmp_path):
    cfg = write_config(tmp_path, DIGITS_BIG_BATCH)
    reference = train_quiet(cli, cfg, "--name", "one", "--set", "training.workers=1")
    proc = _nnclf("train", cfg, "--name", "two", cwd=tmp_path)
    run = tmp_path / "runs" / "two"
    _wait_for_epochs(run, 3, proc)
    assert len(_children(proc.pid)) == 1  # the worker
    proc.send_signal(signal.SIGINT)  # only the trainer: the worker ignores Ctrl-C anyway
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    resumed = cli(["train", "--resume", run, "--quiet"])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
    assert json.loads((reference / "summary.json").read_text())["processes"] == 1
    for name in ("last.npz", "best.npz"):
        assert np.array_equal(np.load(reference / "checkpoints" / name)["params"], np.load(run / "checkpoints" / name)["params"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(metrics_rows(reference)) == strip(metrics_rows(run))


@needs_fork
def test_killing_the_trainer_kills_its_worker(tmp_path):
    cfg = write_config(tmp_path, DIGITS_BIG_BATCH.replace("epochs: 120", "epochs: 100000"))
    proc = _nnclf("train", cfg, "--name", "k", "--quiet", cwd=tmp_path)
    _wait_for_epochs(tmp_path / "runs" / "k", 1, proc)
    (worker,) = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 5
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(worker)


def test_workers_key_is_checked(cli, tmp_path):
    cfg = write_config(tmp_path, DIGITS_BIG_BATCH)
    result = cli(["train", cfg, "--set", "training.workers=4"])
    assert result.exit_code == 1
    assert "training.workers: must be 'auto', 1 or 2, got 4" in result.stderr
