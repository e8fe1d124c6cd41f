"""prepare() holds the training data once: the parsed chunks are transformed one at a time and
dropped, the training rows are cut out of the float matrix in place, and freed heap goes back to
the system. None of it may change a number."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest

from nnclf.data import reading
from nnclf.data.dataset import _keep_rows, prepare

from conftest import write_config


@pytest.mark.parametrize("block", [1, 3, 8192])
def test_keep_rows_is_fancy_indexing_in_place(block):
    rng = np.random.default_rng(block)
    for n, keep in [(1, 1), (10, 10), (10, 1), (50, 37), (200, 120), (200, 3)]:
        x = rng.standard_normal((n, 4)).astype(np.float32)
        positions = np.sort(rng.choice(n, keep, replace=False))
        expected = x[positions]
        got = _keep_rows(x, positions, block=block)
        assert got.shape == (keep, 4)
        np.testing.assert_array_equal(got, expected)
    # rows already in place, then a gap: the leading block needs no copy, the rest moves up
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    positions = np.r_[0:6, 9:20]
    np.testing.assert_array_equal(_keep_rows(x.copy(), positions, block=block), x[positions])


def _mixed_csv(path, n=6000):
    rows = []
    for i in range(n):
        gap = "" if i % 13 == 0 else f"{(i * 7919) % 1000 / 7:.5f}"
        size = "" if i % 10 == 0 else ("XL" if i > 4000 and i % 7 == 0 else str(1 + i % 3))
        label = "" if i % 997 == 5 else "abc"[(i // 3 + i % 5) % 3]
        rows.append(f"{i % 11},{gap},{size},{(i * 31) % 17 - 8.5},{label}")
    path.write_text("x,gap,size,w,label\n" + "\n".join(rows) + "\n")


def _prepared(tmp_path, monkeypatch, block_bytes):
    from nnclf.config import load_config

    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", block_bytes)
    data = tmp_path / "mixed.csv"
    cfg = write_config(tmp_path, f"data: {{train: {data}, target: label, categorical: [size], test_split: 0.2, val_split: 0.1}}\n")
    warnings = []
    prepared = prepare(load_config(cfg).data, 0, "float32", warnings.append)
    chunks = len(reading.read_chunks(data).chunks)
    return prepared, warnings, chunks


def test_prepare_in_chunks_gives_the_numbers_of_one_piece(tmp_path, monkeypatch):
    _mixed_csv(tmp_path / "mixed.csv")
    whole, whole_warnings, one = _prepared(tmp_path, monkeypatch, 1 << 30)
    chunked, chunked_warnings, many = _prepared(tmp_path, monkeypatch, 1 << 14)
    assert one == 1 and many >= 4  # the two paths really differ: one piece column by column, chunks at once
    assert chunked_warnings == whole_warnings and any("missing 'label'" in w for w in whole_warnings)
    assert chunked.preprocessor.state == whole.preprocessor.state
    for role in ("train", "val", "test"):
        a, b = getattr(chunked, role), getattr(whole, role)
        assert a.x.dtype == b.x.dtype == np.float32 and a.x.flags.c_contiguous
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.rows, b.rows)
    # and both are the plain reference: the joined file transformed whole, rows picked by number
    frame = reading.read_table(tmp_path / "mixed.csv")
    frame = frame[frame["label"].notna()]
    x_ref = whole.preprocessor.transform(frame, "mixed.csv")
    for role in ("train", "val", "test"):
        split = getattr(chunked, role)
        np.testing.assert_array_equal(split.x, x_ref[np.searchsorted(frame.index.to_numpy(), split.rows)])
    unlabelled = sum(1 for i in range(6000) if i % 997 == 5)
    assert len(chunked.train) + len(chunked.val) + len(chunked.test) == 6000 - unlabelled


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_parse_buffers_go_back_to_the_system():
    # freeing the chunks pandas parsed leaves their memory in glibc's heap (resident) until
    # malloc_trim; measured here: ~30 MB for 39 MB of CSV text
    script = r"""
import io
import numpy as np, pandas as pd
from nnclf.data.dataset import release_freed_memory
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
text = pd.DataFrame(np.random.default_rng(0).standard_normal((100_000, 20))).to_csv(index=False)
chunks = list(pd.read_csv(io.StringIO(text), chunksize=10_000))
firsts = [chunk.iloc[:1].copy() for chunk in chunks]
del chunks
before = rss_mb()
release_freed_memory()
print(before - rss_mb())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 10, out.stdout


def test_evaluating_many_rows_keeps_the_networks_buffers_small():
    # buffers grow to the largest batch a network has seen and stay: evaluation and prediction
    # go through INFERENCE_ROWS rows at a time, so a 20,000-row evaluation costs no more
    from nnclf.engine.losses import CrossEntropy
    from nnclf.engine.network import INFERENCE_ROWS, MLP
    from nnclf.engine.optimizers import Adam
    from nnclf.engine.schedules import SCHEDULES
    from nnclf.trainer import Trainer

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20_000, 5)).astype(np.float32), rng.integers(0, 3, 20_000)
    net = MLP([5, 16, 3], "relu")
    net.initialize("auto", rng)
    trainer = Trainer(net, CrossEntropy(3), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(0.01, 1),
                      epochs=1, batch_size=64, rng=rng, monitor="train_loss")
    whole = trainer.evaluate(x, y, chunk=len(y))  # one pass over all rows, as a reference
    net2 = MLP([5, 16, 3], "relu")
    net2.params[...] = net.params
    trainer.net = net2
    chunked = trainer.evaluate(x, y)
    assert net2._capacity == INFERENCE_ROWS < len(y)
    assert chunked["accuracy"] == whole["accuracy"] and chunked["f1"] == whole["f1"]
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert net2.logits(x).shape == (20_000, 3) and net2._capacity == INFERENCE_ROWS
