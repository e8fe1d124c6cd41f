"""Checkpoints of short epochs are written at most every ``_Checkpointer.WRITE_SECONDS`` (metrics.csv
every epoch), and what is held is never lost except to kill -9: the end of training, Ctrl-C (a
stop request) and divergence write it, with the same bytes (but ``saved_at``) as writing every epoch would have,
and ``--resume`` from them is bit-identical to an uninterrupted run. ``WRITE_SECONDS`` is
patched to 0 (every epoch writes, the old behaviour) and to 1e9 (only the first epoch and the
end write) so the test does not depend on the machine's speed."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from conftest import DATA, write_config
from nnclf import runs
from nnclf.checkpoint import load_checkpoint

LBFGS = f"""
seed: 2
data: {{train: {DATA / 'wine.csv'}, target: class}}
model: {{hidden: [16]}}
optimizer: {{name: lbfgs, gtol: 0.0, ftol: 0.0}}
training: {{epochs: 25}}
"""

ADAM = f"""
seed: 0
data: {{train: {DATA / 'iris.csv'}, target: species}}
model: {{hidden: [8]}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 12, batch_size: 16}}
"""


def _count_writes(monkeypatch) -> list[tuple[str, int]]:
    written = []
    real = runs.save_checkpoint

    def spy(path, params, meta, arrays, durable=True):
        epoch = meta["trainer"]["epoch"]
        written.append((path.name, epoch))
        # what a kill -9 right after this write would leave: metrics.csv with at least the
        # checkpoint's epochs (--resume reads them back from it)
        metrics = path.parent.parent / "metrics.csv"
        assert len(metrics.read_text().splitlines()) - 1 >= epoch, (path.name, epoch)
        return real(path, params, meta, arrays, durable)

    monkeypatch.setattr(runs, "save_checkpoint", spy)
    return written


def _contents(path):
    params, meta, arrays = load_checkpoint(path)
    meta = {k: v for k, v in meta.items() if k not in ("saved_at", "started_at")}
    return params, meta, arrays


def _same_checkpoint(a, b):
    pa, ma, xa = _contents(a)
    pb, mb, xb = _contents(b)
    assert pa.tobytes() == pb.tobytes()
    assert ma["trainer"] == mb["trainer"] and ma["schedule"] == mb["schedule"]
    assert sorted(xa) == sorted(xb)
    for key in xa:
        assert np.asarray(xa[key]).tobytes() == np.asarray(xb[key]).tobytes(), key


def _train(tmp_path, text, name, seconds, monkeypatch, **kwargs):
    monkeypatch.setattr(runs._Checkpointer, "WRITE_SECONDS", seconds)
    cfg = write_config(tmp_path, text, f"{name}.yaml")
    return runs.train(cfg, runs_dir=tmp_path / "runs", name=name, **kwargs)


@pytest.mark.parametrize("text", [LBFGS, ADAM])
def test_held_checkpoints_are_written_at_the_end_with_the_same_contents(tmp_path, monkeypatch, text):
    written = _count_writes(monkeypatch)
    every = _train(tmp_path, text, "every", 0.0, monkeypatch)
    epochs = len(every.history)
    assert sum(1 for f, _ in written if f == "last.npz") == epochs  # every epoch, as before
    written.clear()
    held = _train(tmp_path, text, "held", 1e9, monkeypatch)
    assert [e for f, e in written if f == "last.npz"] == [1, epochs]  # the first epoch and the end
    assert len([f for f, _ in written if f == "best.npz"]) <= 2
    for which in ("last.npz", "best.npz"):
        _same_checkpoint(every.folder / "checkpoints" / which, held.folder / "checkpoints" / which)
    rows = lambda run: [line.rsplit(",", 1)[0] for line in (run.folder / "metrics.csv").read_text().splitlines()]
    assert rows(every) == rows(held)  # every epoch's row, the seconds column aside


def test_a_stop_request_writes_the_held_checkpoints_and_resume_is_bit_identical(tmp_path, monkeypatch):
    reference = _train(tmp_path, LBFGS, "reference", 0.0, monkeypatch)
    stop = threading.Event()

    class StopAt:
        def on_epoch_end(self, trainer, record, improved):
            if trainer.epoch == 9:
                stop.set()

    written = _count_writes(monkeypatch)
    stopped = _train(tmp_path, LBFGS, "stopped", 1e9, monkeypatch, callbacks=[StopAt()], stop=stop)
    assert stopped.interrupted
    last = stopped.folder / "checkpoints" / "last.npz"
    assert load_checkpoint(last)[1]["trainer"]["epoch"] == 10  # the stop is seen after the next iteration
    assert ("last.npz", 1) in written and ("last.npz", 10) in written and len(written) <= 4
    assert len((stopped.folder / "metrics.csv").read_text().splitlines()) == 1 + 10
    best_epoch = load_checkpoint(stopped.folder / "checkpoints" / "best.npz")[1]["trainer"]["epoch"]
    # the best epoch by val_loss, held since then, agrees with the tracker saved in last.npz
    assert best_epoch == load_checkpoint(last)[1]["trainer"]["best_epoch"]
    assert 1 < best_epoch < 10
    resumed = runs.resume(stopped.folder)
    assert not resumed.interrupted
    _same_checkpoint(reference.folder / "checkpoints" / "last.npz", stopped.folder / "checkpoints" / "last.npz")
    _same_checkpoint(reference.folder / "checkpoints" / "best.npz", stopped.folder / "checkpoints" / "best.npz")


def test_divergence_writes_the_last_good_held_checkpoint(tmp_path, monkeypatch):
    class Corrupt:  # after epoch 4 is checkpointed (held), the weights become NaN: epoch 5 diverges
        def on_epoch_end(self, trainer, record, improved):
            if trainer.epoch == 4:
                trainer.net.params[0] = np.nan

    with pytest.raises(runs.TrainingDiverged, match="last good checkpoint"):
        _train(tmp_path, ADAM, "boom", 1e9, monkeypatch, callbacks=[Corrupt()])
    folder = tmp_path / "runs" / "boom" / "checkpoints"
    params, meta, _ = load_checkpoint(folder / "last.npz")
    assert meta["trainer"]["epoch"] == 4
    assert len((folder.parent / "metrics.csv").read_text().splitlines()) == 1 + 4
    assert np.all(np.isfinite(params))
    best, _, _ = load_checkpoint(folder / "best.npz")
    assert np.all(np.isfinite(best))


def test_first_epoch_is_written_at_once():
    checkpointer = runs._Checkpointer.__new__(runs._Checkpointer)
    runs._Checkpointer.__init__(checkpointer, run=None, every=1)
    assert checkpointer.last_write == -math.inf
    assert runs._Checkpointer.WRITE_SECONDS > 0
