"""Streaming prediction: a CSV of millions of rows is predicted in bounded memory and gives the
same output as predicting it in one piece."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import write_config

ROWS_SMALL = 200_000
REPEAT = 10  # the big file is the small one 10 times: 2,000,000 rows


def _peak_rss_mb(run: Path, data: Path, out: Path, chunk_rows: int) -> float:
    """Run ``nnclf predict`` in a fresh process and return that process's peak RSS in MB."""
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'nnclf', 'predict', *sys.argv[1:]], capture_output=True, text=True)\n"
        "assert p.returncode == 0, p.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    args = [run, data, "-o", out, "--chunk-rows", chunk_rows, "--overwrite"]
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def test_predict_millions_of_rows_in_bounded_memory(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS_SMALL, 4)).round(4)
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    lines = "".join(f"{a},{b},{c},{d},{t}\n" for (a, b, c, d), t in zip(x.tolist(), y.tolist()))
    header = "a,b,c,d,label\n"
    small = tmp_path / "small.csv"
    small.write_text(header + lines)
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write(header)
        for _ in range(REPEAT):
            f.write(lines)
    train_csv = tmp_path / "train.csv"
    train_csv.write_text(header + "".join(lines.splitlines(keepends=True)[:3000]))
    cfg = write_config(tmp_path, f"data: {{train: {train_csv}, target: label}}\nmodel: {{hidden: [8]}}\ntraining: {{epochs: 3}}\n")
    trained = cli(["train", cfg, "--quiet"])
    assert trained.exit_code == 0, trained.stderr
    run = tmp_path / trained.stdout.strip()

    chunk = 50_000
    rss_small = _peak_rss_mb(run, small, tmp_path / "small_pred.csv", chunk)
    # the reference for "does not grow": a file of several 8 MB blocks, so that it already keeps
    # every parse thread busy (the small file is one block; the threads' buffers are not growth)
    medium = tmp_path / "medium.csv"
    with medium.open("w") as f:
        f.write(header)
        for _ in range(3):
            f.write(lines)
    rss_medium = _peak_rss_mb(run, medium, tmp_path / "medium_pred.csv", chunk)
    rss_big = _peak_rss_mb(run, big, tmp_path / "big_pred.csv", chunk)
    # a compressed file is parsed as one stream (not in blocks by threads), here with a chunk as
    # large as the file: in one piece
    packed = tmp_path / "big.csv.gz"
    with big.open("rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    rss_whole = _peak_rss_mb(run, packed, tmp_path / "whole_pred.csv", 10 * ROWS_SMALL * REPEAT)
    # 10x the rows, same chunk: memory does not grow with the file ...
    print(f"peak RSS MB: small {rss_small:.0f}, medium {rss_medium:.0f}, big {rss_big:.0f}, whole {rss_whole:.0f}")
    assert rss_big < rss_medium + 25, (rss_medium, rss_big)
    # ... while reading the file in one piece does (so the measurement can tell the difference)
    assert rss_whole > rss_big + 100, (rss_big, rss_whole)

    chunked = (tmp_path / "big_pred.csv").read_bytes()
    assert chunked == (tmp_path / "whole_pred.csv").read_bytes()
    out_lines = chunked.decode().splitlines()
    assert len(out_lines) == 1 + ROWS_SMALL * REPEAT
    assert out_lines[0] == "prediction,proba_0,proba_1"
    # the big file repeats the small one, and so do its predictions
    small_lines = (tmp_path / "small_pred.csv").read_text().splitlines()
    assert out_lines[1 : 1 + ROWS_SMALL] == small_lines[1:]
    assert out_lines[-ROWS_SMALL:] == small_lines[1:]
