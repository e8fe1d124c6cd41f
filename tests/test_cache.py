"""data.cache: mmap: the training data parsed once into memory-mapped files, keyed by the file's
identity and the data settings; the same numbers as in memory, read again without parsing, never
stale, written atomically, and training on it holds batches, not the data, in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnclf.config import load_config
from nnclf.data import cache as cache_module
from nnclf.data import reading
from nnclf.data.cache import DiskCache, SpillTable, resolve_mode
from nnclf.data.dataset import prepare
from nnclf.errors import NnclfError

from conftest import ROOT, run_cli, write_config
from test_determinism import assert_same_checkpoint
from test_prepare_memory import _mixed_csv


def _config(tmp_path: Path, extra: str = "") -> Path:
    _mixed_csv(tmp_path / "mixed.csv")
    return write_config(
        tmp_path,
        f"data: {{train: {tmp_path / 'mixed.csv'}, target: label, categorical: [size], test_split: 0.2, val_split: 0.1{extra}}}\n",
    )


def _prepare(cfg_path: Path, cache_dir: Path | None, overrides=()):
    cfg = load_config(cfg_path, list(overrides))
    warnings: list[str] = []
    cache = DiskCache(cache_dir, cfg.data, 0, "float32") if cache_dir is not None else None
    return prepare(cfg.data, 0, "float32", warnings.append, cache=cache), warnings, cache


def _assert_same(a, b) -> None:
    assert a.preprocessor.state == b.preprocessor.state
    assert a.labels.values == b.labels.values and a.files == b.files
    for role in ("train", "val", "test"):
        x, y = getattr(a, role), getattr(b, role)
        assert (x is None) == (y is None), role
        if x is None:
            continue
        assert x.x.dtype == y.x.dtype and x.x.shape == y.x.shape, role
        assert x.x.tobytes() == y.x.tobytes(), role
        np.testing.assert_array_equal(x.y, y.y)
        np.testing.assert_array_equal(x.rows, y.rows)
        assert x.source == y.source


def test_spilled_chunks_read_back_as_parsed():
    chunks = [
        pd.DataFrame({"i": [1, 2, 3], "f": [0.5, np.nan, 1e300], "s": ["a", np.nan, "é\x00z"], "b": [True, False, True],
                      "ob": pd.Series([True, np.nan, False], dtype=object), "mixed": pd.Series(["x", 3, 2.5], dtype=object),
                      "st": pd.array(["p", None, "q"], dtype="string")}),
        pd.DataFrame({"i": [4, 5], "f": [2.0, 3.0], "s": ["b", "c"], "b": [False, False],
                      "ob": pd.Series([np.nan, True], dtype=object), "mixed": pd.Series([None, "y"], dtype=object),
                      "st": pd.array(["r", "s"], dtype="string")}, index=pd.RangeIndex(3, 5)),
    ]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = SpillTable.spill(iter([c.copy() for c in chunks]), Path(tmp))
        joined = reading.ChunkedTable([c.copy() for c in chunks])
        assert table.columns == joined.columns and len(table) == len(joined) == 5
        for i, chunk in enumerate(chunks):
            pd.testing.assert_frame_equal(table.chunk(i, list(chunk.columns)), chunk, check_exact=True)
        for name in joined.columns:
            pd.testing.assert_series_equal(table[name], joined[name], check_exact=True)
        keep = np.array([True, False, True, True, False])
        kept, expected = table.rows(keep), joined.rows(keep)
        for name in joined.columns:
            pd.testing.assert_series_equal(kept[name], expected[name], check_exact=True)
        np.testing.assert_array_equal(kept.index.to_numpy(), expected.index.to_numpy())
        # masks compose: dropping again from a table already cut
        again = kept.rows(np.array([False, True, True]))
        assert again["i"].tolist() == [3, 4]


@pytest.mark.parametrize("block_bytes", [1 << 30, 1 << 13])
def test_mmap_prepare_gives_the_numbers_of_memory(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", block_bytes)
    cfg = _config(tmp_path)
    memory, memory_warnings, _ = _prepare(cfg, None)
    mapped, mapped_warnings, cache = _prepare(cfg, tmp_path / "cache")
    assert not cache.hit
    assert isinstance(mapped.train.x, np.memmap) and not mapped.train.x.flags.writeable
    assert mapped_warnings == memory_warnings and any("missing 'label'" in w for w in memory_warnings)
    _assert_same(memory, mapped)
    entry = tmp_path / "cache" / cache.key
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        ["manifest.json"] + [f"{role}.{part}" for role in ("train", "val", "test") for part in ("x.f32", "y.i64", "rows.i64")]
    )
    # the raw files are what the manifest says, readable without nnclf
    shapes = json.loads((entry / "manifest.json").read_text())["splits"]
    x = np.fromfile(entry / "val.x.f32", dtype="<f4").reshape(shapes["val"]["x"])
    np.testing.assert_array_equal(x, memory.val.x)


def test_separate_val_and_test_files_are_cached_chunk_by_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_BLOCK_BYTES", 1 << 12)
    cfg = _config(tmp_path)
    text = (tmp_path / "mixed.csv").read_text().splitlines()
    (tmp_path / "val.csv").write_text("\n".join(text[:1] + text[1:4500] + ["3,1.5,XXL,2,a", "3,1.5,1,2,"]) + "\n")  # an unseen category, a missing label
    (tmp_path / "test.csv").write_text("\n".join(text[:1] + text[1000:4000]) + "\n")
    overrides = [f"data.val={tmp_path / 'val.csv'}", f"data.test={tmp_path / 'test.csv'}"]
    memory, memory_warnings, _ = _prepare(cfg, None, overrides)
    mapped, mapped_warnings, _ = _prepare(cfg, tmp_path / "cache", overrides)
    assert len(reading.read_chunks(tmp_path / "val.csv").chunks) >= 3
    assert mapped_warnings == memory_warnings and any("'size'" in w and "never seen" in w for w in memory_warnings)
    _assert_same(memory, mapped)


def test_unknown_label_in_a_separate_file_is_the_same_error(tmp_path):
    cfg = _config(tmp_path)
    (tmp_path / "val.csv").write_text("x,gap,size,w,label\n1,2,1,3,a\n1,2,1,3,q\n1,2,1,3,q\n")
    overrides = [f"data.val={tmp_path / 'val.csv'}"]
    with pytest.raises(NnclfError) as memory:
        _prepare(cfg, None, overrides)
    with pytest.raises(NnclfError) as mapped:
        _prepare(cfg, tmp_path / "cache", overrides)
    assert str(mapped.value) == str(memory.value) and "2 row(s) have labels never seen" in str(memory.value)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing half-built left


def test_a_second_run_reads_the_cache_without_parsing(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    first, first_warnings, cache = _prepare(cfg, tmp_path / "cache")

    def no_parsing(*args, **kwargs):
        raise AssertionError("the file was parsed again")

    monkeypatch.setattr(reading, "TableReader", no_parsing)
    monkeypatch.setattr(reading, "read_chunks", no_parsing)
    second, second_warnings, again = _prepare(cfg, tmp_path / "cache")
    assert again.hit and again.key == cache.key
    assert second_warnings == first_warnings  # the build's warnings are repeated
    _assert_same(first, second)
    # another setting of the data section is another entry (and needs a parse)
    with pytest.raises(AssertionError, match="parsed again"):
        _prepare(cfg, tmp_path / "cache", ["data.scaling=minmax"])
    with pytest.raises(AssertionError, match="parsed again"):
        _prepare(cfg, tmp_path / "cache", ["data.val_split=0.2"])


def test_a_changed_file_is_never_read_from_a_stale_cache(tmp_path):
    cfg = _config(tmp_path)
    data = tmp_path / "mixed.csv"
    first, _, cache = _prepare(cfg, tmp_path / "cache")
    stat = data.stat()
    # same size and modification time, one digit changed: only the SHA-256 tells
    text = data.read_text()
    changed = text.replace("\n3,", "\n4,", 1)
    assert len(changed) == len(text) and changed != text
    data.write_text(changed)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second, _, again = _prepare(cfg, tmp_path / "cache")
    memory, _, _ = _prepare(cfg, None)
    assert not again.hit and again.key != cache.key
    _assert_same(memory, second)
    assert any(getattr(first, r).x.tobytes() != getattr(second, r).x.tobytes() for r in ("train", "val", "test"))
    # the entry of the old content can never be read again: it is gone
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [again.key]
    # a touch (new mtime, same bytes) is a new key too: size, mtime and content are the key
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third, _, touched = _prepare(cfg, tmp_path / "cache")
    assert not touched.hit and touched.key != again.key
    _assert_same(second, third)


def test_a_failed_build_leaves_no_entry(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    from nnclf.data import preprocess

    def broken(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(preprocess.Preprocessor, "transform", broken)
    with pytest.raises(KeyboardInterrupt):
        _prepare(cfg, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    _, _, cache = _prepare(cfg, tmp_path / "cache")
    assert not cache.hit and [p.name for p in (tmp_path / "cache").iterdir()] == [cache.key]


def test_a_damaged_manifest_is_built_again(tmp_path):
    cfg = _config(tmp_path)
    first, _, cache = _prepare(cfg, tmp_path / "cache")
    (tmp_path / "cache" / cache.key / "manifest.json").write_text("{not json")
    second, _, again = _prepare(cfg, tmp_path / "cache")
    assert not again.hit
    _assert_same(first, second)


@pytest.mark.parametrize("damage", [
    lambda m: m["preprocessor"]["columns"][0].update(scale="x"),
    lambda m: m["preprocessor"].pop("columns"),
    lambda m: m["splits"]["train"].update(x=[1, 2, 3]),  # fewer numbers than the file holds
    lambda m: m["splits"]["train"].update(x=m["splits"]["train"]["x"][::-1]),  # the same size, transposed
])
def test_a_manifest_with_damaged_contents_is_built_again(tmp_path, damage):
    cfg = _config(tmp_path)
    first, _, cache = _prepare(cfg, tmp_path / "cache")
    manifest = tmp_path / "cache" / cache.key / "manifest.json"
    meta = json.loads(manifest.read_text())
    damage(meta)
    manifest.write_text(json.dumps(meta))
    second, _, again = _prepare(cfg, tmp_path / "cache")
    assert not again.hit
    _assert_same(first, second)


def test_auto_picks_mmap_only_when_memory_is_short(tmp_path, monkeypatch):
    cfg = load_config(_config(tmp_path, ", cache: auto"))
    estimate = cache_module.estimated_matrix_bytes(cfg.data.train, cfg.data)
    rows = 6000
    assert 0.5 * rows * 4 * 4 < estimate < 2 * rows * 4 * 4  # 6000 rows x 4 features x 4 bytes
    warnings: list[str] = []
    monkeypatch.setattr(cache_module, "available_memory", lambda: 100 * estimate)
    assert resolve_mode(cfg.data, "float32", warnings.append) == "memory" and not warnings
    monkeypatch.setattr(cache_module, "available_memory", lambda: 4 * estimate)
    assert resolve_mode(cfg.data, "float32", warnings.append) == "mmap"
    assert len(warnings) == 1 and "would not fit comfortably" in warnings[0]
    for mode in ("memory", "mmap"):
        cfg.data.cache = mode
        assert resolve_mode(cfg.data) == mode


def test_config_rejects_an_unknown_cache_mode(tmp_path):
    cfg = _config(tmp_path, ", cache: disk")
    r = run_cli(["train", cfg], tmp_path)
    assert r.exit_code == 1 and "data.cache" in r.stderr and "must be one of auto, memory, mmap, got 'disk'" in r.stderr


TRAIN = """\
seed: 3
data: {{train: d.csv, target: label, cache: {cache}}}
model: {{hidden: [7]}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 3, batch_size: 16, shuffle: true, workers: 1}}
"""


def _csv(path: Path, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    tone = rng.choice(["red", "green", "blue"], n)
    label = np.where(a + (tone == "red") > b, "yes", "no")
    pd.DataFrame({"a": a.round(4), "b": b.round(4), "tone": tone, "label": label}).to_csv(path, index=False)


def test_training_from_the_cache_gives_the_bits_of_memory(tmp_path):
    _csv(tmp_path / "d.csv")
    for cache in ("memory", "mmap"):
        write_config(tmp_path, TRAIN.format(cache=cache), f"{cache}.yaml")
        r = run_cli(["train", f"{cache}.yaml", "--name", cache, "--quiet"], tmp_path)
        assert r.exit_code == 0, r.stderr
    runs = tmp_path / "runs"
    assert not (runs / "memory" / "cache").exists()
    assert len(list((runs / "mmap" / "cache").iterdir())) == 1  # in the run folder by default
    for which in ("last", "best"):
        a, b = runs / "memory" / "checkpoints" / f"{which}.npz", runs / "mmap" / "checkpoints" / f"{which}.npz"
        with np.load(a) as x, np.load(b) as y:
            assert x["params"].tobytes() == y["params"].tobytes()
    assert (runs / "memory" / "metrics.csv").read_text().splitlines()[1].split(",")[:-1] == \
        (runs / "mmap" / "metrics.csv").read_text().splitlines()[1].split(",")[:-1]
    assert (runs / "memory" / "splits.npz").read_bytes() == (runs / "mmap" / "splits.npz").read_bytes()
    summary = [json.loads((runs / k / "summary.json").read_text())["test"] for k in ("memory", "mmap")]
    assert summary[0] == summary[1]


def test_resume_from_the_run_folders_cache(tmp_path):
    _csv(tmp_path / "d.csv")
    write_config(tmp_path, TRAIN.format(cache="mmap"), "c.yaml")
    assert run_cli(["train", "c.yaml", "--name", "whole", "--quiet"], tmp_path).exit_code == 0
    assert run_cli(["train", "c.yaml", "--name", "cut", "--quiet", "--set", "training.epochs=1"], tmp_path).exit_code == 0
    cut = tmp_path / "runs" / "cut"
    built = next((cut / "cache").iterdir()).stat().st_mtime_ns
    r = run_cli(["train", "--resume", cut, "--set", "training.epochs=3", "--quiet"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert next((cut / "cache").iterdir()).stat().st_mtime_ns == built  # read, not built again
    with np.load(cut / "checkpoints" / "last.npz") as x, np.load(tmp_path / "runs" / "whole" / "checkpoints" / "last.npz") as y:
        assert x["params"].tobytes() == y["params"].tobytes()


def test_a_failed_preparation_leaves_no_run_folder(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n1,x\n2,x\n3,x\n")  # a single class
    write_config(tmp_path, TRAIN.format(cache="mmap"), "c.yaml")
    r = run_cli(["train", "c.yaml", "--name", "one"], tmp_path)
    assert r.exit_code == 1 and "class" in r.stderr
    assert not (tmp_path / "runs" / "one").exists()


def test_a_shared_cache_dir_serves_a_second_run(tmp_path):
    _csv(tmp_path / "d.csv")
    write_config(tmp_path, TRAIN.format(cache="mmap") + "", "c.yaml")
    for name in ("one", "two"):
        r = run_cli(["train", "c.yaml", "--name", name, "--quiet", "--set", "data.cache_dir=shared"], tmp_path)
        assert r.exit_code == 0, r.stderr
    assert len(list((tmp_path / "shared").iterdir())) == 1
    assert not (tmp_path / "runs" / "one" / "cache").exists()
    with np.load(tmp_path / "runs" / "one" / "checkpoints" / "last.npz") as x, \
            np.load(tmp_path / "runs" / "two" / "checkpoints" / "last.npz") as y:
        assert x["params"].tobytes() == y["params"].tobytes()


# -- memory ------------------------------------------------------------------------------------
def write_wide_csv(path: Path, rows: int, cols: int, seed: int = 0, block: int = 20_000) -> None:
    """Two-digit integer features (10..99) and a 0/1 label from the first two, written as bytes
    (pandas' writer would take minutes for a gigabyte)."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write((",".join(f"f{j}" for j in range(cols)) + ",label\n").encode())
        for lo in range(0, rows, block):
            n = min(block, rows - lo)
            v = rng.integers(10, 100, size=(n, cols), dtype=np.uint8)
            label = (v[:, 0].astype(int) + v[:, 1] > 110).astype(np.uint8)
            out = np.empty((n, cols * 3 + 2), dtype=np.uint8)
            out[:, 0 : cols * 3 : 3] = 48 + v // 10
            out[:, 1 : cols * 3 : 3] = 48 + v % 10
            out[:, 2 : cols * 3 : 3] = ord(",")
            out[:, cols * 3] = 48 + label
            out[:, cols * 3 + 1] = 10
            f.write(out.tobytes())


def peak_anon_mb(command: list[str], cwd: Path, env: dict) -> tuple[int, float]:
    """(exit code, peak RssAnon in MB) of a child process, sampled every 5 ms from /proc."""
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.005)
    out, err = child.communicate()
    assert child.returncode == 0, err.decode()
    return child.returncode, peak / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_training_a_gigabyte_from_the_cache_stays_in_a_few_hundred_megabytes(tmp_path):
    # 1,000,000 rows x 250 features: a 1.0 GB float32 matrix (750 MB of CSV text). In memory,
    # prepare alone would peak near 3 GB; from the cache the process holds one column while
    # fitting (about 100 bytes a row at worst: the label keys), one chunk while transforming,
    # and batches while training
    rows, cols = 1_000_000, 250
    write_wide_csv(tmp_path / "big.csv", rows, cols)
    write_config(tmp_path, f"""\
data: {{train: big.csv, target: label, cache: mmap, test_split: 0.02, val_split: 0.02}}
model: {{hidden: [8]}}
training: {{epochs: 1, batch_size: 1024, workers: 1}}
""", "big.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "nnclf", "train", "big.yaml", "--name", "big", "--quiet"]
    _, built = peak_anon_mb(command, tmp_path, env)
    entry = next((tmp_path / "runs" / "big" / "cache").iterdir())
    matrix = (entry / "train.x.f32").stat().st_size
    assert matrix > 0.95e9
    assert built < 300, f"peak anonymous memory {built:.0f} MB for a {matrix / 1e9:.2f} GB matrix"
    summary = json.loads((tmp_path / "runs" / "big" / "summary.json").read_text())
    assert summary["rows"]["train"] == matrix // (cols * 4) and summary["test"]["accuracy"] > 0.6


def test_auto_does_not_open_a_file_that_fits_even_at_one_number_a_byte(tmp_path, monkeypatch):
    cfg = load_config(_config(tmp_path, ", cache: auto"))
    size = Path(cfg.data.train).stat().st_size
    estimate = cache_module.estimated_matrix_bytes(cfg.data.train, cfg.data)
    assert 0 < estimate < size * 4  # the bound holds: a cell takes at least a byte of text

    def no_look(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(cache_module, "estimated_matrix_bytes", no_look)
    monkeypatch.setattr(cache_module, "available_memory", lambda: 2 * size * 4 * cache_module.PEAK_PER_MATRIX_BYTE / cache_module.AUTO_SHARE)
    assert resolve_mode(cfg.data, "float32") == "memory"
    monkeypatch.setattr(cache_module, "available_memory", lambda: size)  # too little for the bound: the file is looked at
    with pytest.raises(AssertionError, match="the file was opened"):
        resolve_mode(cfg.data, "float32")
