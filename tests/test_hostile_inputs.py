"""Inputs that were tracebacks (issue 13) are one-line errors naming the file: compressed files
that are not what their name says, truncated, or zips with 0 or several members; a compression
library that is missing; a pipe as input; a full or closed stdout; memory bombs (a checkpoint
whose arrays inflate, a network too big for memory, a data file that decompresses past memory)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli, SMALL_CONFIG, SMALL_CSV, train_small_run, write_config

CSV, CONFIG = SMALL_CSV, SMALL_CONFIG


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("hostile"))


def one_line(r, code: int = 1) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


RAW = CSV.encode()
COMPRESSED = {
    "plain text named .gz": ("x.csv.gz", lambda: RAW, "the name says gzip-compressed but the file is not gzip data"),
    "plain text named .bz2": ("x.csv.bz2", lambda: RAW, "the name says bzip2-compressed but the file is not bzip2 data"),
    "plain text named .xz": ("x.csv.xz", lambda: RAW, "the name says xz-compressed but the file is not xz data"),
    "plain text named .zip": ("x.csv.zip", lambda: RAW, "the name says zip-compressed but the file is not zip data"),
    "truncated gzip": ("x.csv.gz", lambda: gzip.compress(RAW * 50)[:-30], "the compressed data file is truncated or corrupted"),
    "truncated bzip2": ("x.csv.bz2", lambda: bz2.compress(RAW * 50)[:-30], "the compressed data file is truncated or corrupted"),
    "truncated xz": ("x.csv.xz", lambda: lzma.compress(RAW * 50)[:-30], "the compressed data file is truncated or corrupted"),
    "corrupted gzip": ("x.csv.gz", lambda: gzip.compress(RAW)[:12] + b"\x00" * 40, "the compressed data file is truncated or corrupted"),
    "empty zip": ("x.csv.zip", lambda: _zip([]), "a zip file must hold exactly one CSV, this one holds 0"),
    "zip of two": ("x.csv.zip", lambda: _zip(["a.csv", "b.csv"]), "a zip file must hold exactly one CSV, this one holds 2 (a.csv, b.csv)"),
}


def _zip(names) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name in names:
            z.writestr(name, CSV)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(COMPRESSED))
def test_compressed_files_that_are_not_what_they_say(trained, tmp_path, case):
    name, content, message = COMPRESSED[case]
    (tmp_path / name).write_bytes(content())
    line = one_line(run_cli(["predict", trained / "runs" / "r", name], tmp_path))
    assert line.startswith(f"error: {name}: {message}"), line
    # and as training data, before any run folder exists
    write_config(tmp_path, CONFIG.replace("d.csv", name), "c.yaml")
    line = one_line(run_cli("train c.yaml", tmp_path))
    assert f"{name}: {message}" in line, line
    assert not (tmp_path / "runs").exists()


def test_a_missing_compression_library_names_the_package(trained, tmp_path, monkeypatch):
    (tmp_path / "x.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if it were not installed
    line = one_line(run_cli(["predict", trained / "runs" / "r", "x.csv.zst"], tmp_path))
    assert line == "error: x.csv.zst: reading zstandard-compressed files needs pip install zstandard"


def test_a_pipe_as_input_is_explained(trained, tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    line = one_line(run_cli(["predict", trained / "runs" / "r", fifo], tmp_path))
    assert line == (f"error: {fifo}: is a pipe (FIFO or process substitution); nnclf reads a data file more than once, "
                    f"so save it to a file first")


# -- stdout that is full or closed -----------------------------------------------------------------
def _nnclf(args, cwd, **kw):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "nnclf", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, **kw)


def test_a_full_stdout_is_one_line(trained):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    for args in (["predict", "runs/r", "d.csv"], ["runs", "--json"], ["evaluate", "runs/r", "--json"]):
        with open("/dev/full", "w") as full:
            env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
            r = subprocess.run([sys.executable, "-m", "nnclf", *args], cwd=trained, env=env, stdout=full, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr == "error: stdout: could not write (No space left on device)\n", (args, r.stderr)


def test_a_closed_pipe_on_stdout_is_quiet(trained):
    rows = "a,b\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(200_000))
    (trained / "many.csv").write_text(rows)
    proc = subprocess.Popen(f"{sys.executable} -m nnclf predict runs/r many.csv | head -1", shell=True, cwd=trained,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert out == "prediction,proba_0,proba_1\n" and err == ""


def test_a_closed_stdout_is_one_line(trained):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(f"{sys.executable} -m nnclf predict runs/r d.csv >&-", shell=True, cwd=trained, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "error: stdout is closed; give an output file with -o FILE (nothing was written)\n"


# -- memory bombs ------------------------------------------------------------------------------------
def _checkpoint_arrays(trained):
    with np.load(trained / "runs" / "r" / "checkpoints" / "best.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz_with_member(path: Path, arrays: dict, name: str, shape, dtype=np.float32, declared_size=None):
    """An .npz with ``arrays`` plus member ``name`` of ``shape`` full of zeros, streamed through
    deflate so it costs almost nothing on disk (the bomb)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, value in arrays.items():
            if key != name:
                with z.open(f"{key}.npy", "w") as f:
                    np.lib.format.write_array(f, value, allow_pickle=False)
        with z.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            left = int(np.prod(shape)) * np.dtype(dtype).itemsize
            block = bytes(1 << 22)
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)


@pytest.mark.parametrize("member", ["params", "optimizer.m", "trainer.permutation"])
def test_a_checkpoint_that_inflates_is_refused_before_its_arrays_are_read(trained, tmp_path, member):
    arrays = _checkpoint_arrays(trained)
    bomb = tmp_path / "bomb.npz"
    dtype = np.int64 if member == "trainer.permutation" else np.float32
    _write_npz_with_member(bomb, arrays, member, (60_000_000,), dtype)  # 240-480 MB inflated
    assert bomb.stat().st_size < 3_000_000
    tracemalloc.start()
    r = run_cli(["predict", bomb.name, trained / "d.csv"], tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = one_line(r)
    assert line.startswith("error: bomb.npz: not a valid checkpoint ("), line
    assert peak < 50_000_000, peak  # nothing near the inflated size was allocated


def test_a_consistent_but_huge_checkpoint_is_refused_against_available_memory(trained, tmp_path, monkeypatch):
    import nnclf.checkpoint

    arrays = {k: v for k, v in _checkpoint_arrays(trained).items() if not k.startswith("optimizer.")}
    meta = json.loads(str(arrays["meta"]))
    meta["network"]["sizes"] = [2, 20_000_000, 2]  # 100 million parameters: 400 MB of float32
    arrays["meta"] = np.array(json.dumps(meta))
    bomb = tmp_path / "big.npz"
    _write_npz_with_member(bomb, arrays, "params", (100_000_002,))
    monkeypatch.setattr(nnclf.checkpoint, "available_memory", lambda: 100_000_000)
    tracemalloc.start()
    r = run_cli(["predict", bomb.name, trained / "d.csv"], tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = one_line(r)
    assert line == "error: big.npz: the checkpoint's arrays need 400.0 MB of memory but only 100.0 MB are available; nothing was read"
    assert peak < 50_000_000, peak


def test_a_member_whose_header_lies_about_its_size_is_refused(trained, tmp_path):
    arrays = _checkpoint_arrays(trained)
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as z:
        for key, value in arrays.items():
            with z.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, value[:3] if key == "params" else value, allow_pickle=False)
    line = one_line(run_cli(["predict", path.name, trained / "d.csv"], tmp_path))
    assert line.startswith("error: lie.npz: not a valid checkpoint (params has shape (3,), the network needs")


def test_a_network_too_big_for_memory_is_refused_before_allocating(trained, tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG.replace("hidden: [4]", "hidden: [100000, 100000]"), "c.yaml")
    tracemalloc.start()
    r = run_cli("train c.yaml", tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = one_line(r)
    p = 2 * 100_000 + 100_000 + 100_000 * 100_000 + 100_000 + 100_000 * 2 + 2  # 2 inputs, 2 classes
    assert line.startswith(f"error: model.hidden: [100000, 100000] makes a network of {p:,} parameters, too many to allocate: "
                           "training needs about "), line
    assert "(weights, gradients, adam state, buffers)" in line and "are available; use fewer or smaller hidden layers" in line
    assert not (tmp_path / "runs").exists() and peak < 100_000_000


def test_the_estimate_counts_the_optimizer_state(tmp_path):
    from nnclf.memory import training_bytes

    sgd = training_bytes([10, 100, 3], 4, 0, 32)
    adam = training_bytes([10, 100, 3], 4, 2, 32)
    p = 10 * 100 + 100 + 100 * 3 + 3
    assert adam[0] - sgd[0] == 2 * p * 4  # two parameter-sized moments
    assert sgd[0] == 4 * p * 4  # weights, gradient, best copy, one copy of slack
    assert sgd[1] == 2 * (32 + 2048) * (100 + 3) * 4


def test_running_out_of_memory_while_reading_data_names_the_data_not_chunk_rows(trained, tmp_path, monkeypatch):
    import nnclf.data.dataset

    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG, "c.yaml")

    def bomb(*args, **kwargs):  # what a gzip bomb does to the reader, without spending the memory
        raise MemoryError

    monkeypatch.setattr(nnclf.data.dataset, "read_chunks", bomb)
    line = one_line(run_cli("train c.yaml", tmp_path))
    assert line.startswith(f"error: {tmp_path / 'd.csv'}: out of memory while reading the data") and "--chunk-rows" not in line
    assert not (tmp_path / "runs").exists()
