"""Epoch time from the memory-mapped cache (data.cache: mmap) against the same arrays in memory.

    python benchmarks/cache_bench.py                 # 400,000 x 100 (a 160 MB matrix), 5 rounds
    python benchmarks/cache_bench.py --rows 100000 --rounds 3

A CSV is generated in a temporary folder and prepared once into a cache entry (the real
``prepare`` + ``DiskCache``); then, in interleaved rounds (each round runs every contestant once,
the order rotated), one training epoch of the wide network (100-256-256-4 ReLU, Adam, shuffled,
batch 256, one BLAS thread) is timed on:

* memory: the training matrix copied into an ordinary array;
* mmap warm: the cache file mapped, its pages in the page cache (the previous sample read them);
* mmap cold: the same, after ``posix_fadvise(DONTNEED)`` dropped the file's pages from the page
  cache (the map is opened afresh after the drop, so no page is still mapped), so the epoch's
  random row gathers fault every page in from the disk.

It also times the gathers alone (an epoch of ``x.take(rows)`` into the batch buffer, no training)
in random row order and in shuffled blocks of 64 consecutive rows, warm and cold: the cost of
exact row shuffling from a map against what a block-shuffle option would save.

Ratios are per round (paired) medians against memory. The machine is shared: read them, not the
absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnclf.config import validate  # noqa: E402
from nnclf.data.cache import DiskCache  # noqa: E402
from nnclf.data.dataset import prepare  # noqa: E402


def write_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(cols)) + ",label\n")
        for lo in range(0, rows, 20_000):
            n = min(20_000, rows - lo)
            x = rng.standard_normal((n, cols)).astype(np.float32)
            label = (x[:, :10].sum(axis=1) > 0).astype(int) + 2 * (x[:, 10] > 0.5)
            np.savetxt(f, np.column_stack([x, label]), fmt=["%.4f"] * cols + ["%d"], delimiter=",")


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def epoch_seconds(x, y, batch: int, seed: int) -> float:
    from nnclf.engine.losses import CrossEntropy
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import Adam
    from nnclf.engine.schedules import SCHEDULES
    from nnclf.trainer import Trainer

    rng = np.random.default_rng(seed)
    net = MLP([x.shape[1], 256, 256, 4], "relu")
    net.initialize("auto", rng)
    trainer = Trainer(net, CrossEntropy(4), Adam(net.params.size, net.dtype), SCHEDULES.get("constant")(1e-3, 1),
                      epochs=1, batch_size=batch, rng=rng, monitor="train_loss")
    t = time.perf_counter()
    trainer.fit(x, y)
    return time.perf_counter() - t


def gather_seconds(x, batch: int, seed: int, block: int | None) -> float:
    rng = np.random.default_rng(seed)
    n = len(x)
    if block is None:
        order = rng.permutation(n)
    else:  # blocks of consecutive rows, the blocks in random order
        starts = rng.permutation(np.arange(0, n, block))
        order = np.concatenate([np.arange(s, min(s + block, n)) for s in starts])
    buffer = np.empty((batch, x.shape[1]), dtype=x.dtype)
    t = time.perf_counter()
    for lo in range(0, n, batch):
        idx = order[lo : lo + batch]
        x.take(idx, axis=0, out=buffer[: len(idx)], mode="clip")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        write_csv(tmp / "d.csv", args.rows, args.cols)
        print(f"CSV {(tmp / 'd.csv').stat().st_size / 1e6:.0f} MB written in {time.perf_counter() - t:.1f} s", flush=True)
        cfg = validate({"data": {"train": str(tmp / "d.csv"), "target": "label", "cache": "mmap", "val_split": 0, "test_split": 0}})
        t = time.perf_counter()
        cache = DiskCache(tmp / "cache", cfg.data, 0, "float32")
        prepared = prepare(cfg.data, 0, "float32", print, cache=cache)
        print(f"cache built in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        prepare(cfg.data, 0, "float32", print, cache=DiskCache(tmp / "cache", cfg.data, 0, "float32"))
        print(f"cache read again (SHA-256 of the CSV, the manifest) in {time.perf_counter() - t:.2f} s", flush=True)
        xfile = cache.folder / "train.x.f32"
        shape = prepared.train.x.shape
        y = np.array(prepared.train.y)
        in_memory = np.array(prepared.train.x)
        del prepared  # no map may stay open: the page cache keeps pages that are mapped
        import gc

        gc.collect()
        print(f"matrix {shape[0]} x {shape[1]} float32 = {xfile.stat().st_size / 1e6:.0f} MB", flush=True)

        def mapped(cold: bool):
            if cold:
                drop_from_page_cache(xfile)
            return np.memmap(xfile, dtype=np.float32, mode="r", shape=shape)

        import shutil
        import subprocess

        if shutil.which("fincore"):  # show that the drop works: resident pages before and after
            for when in ("warm", "dropped"):
                if when == "dropped":
                    drop_from_page_cache(xfile)
                out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(xfile)], capture_output=True, text=True)
                print(f"page cache ({when}): {out.stdout.strip()} of {xfile.stat().st_size} bytes resident", flush=True)
        contestants = {
            "epoch, memory": lambda r: epoch_seconds(in_memory, y, args.batch, r),
            "epoch, mmap warm": lambda r: epoch_seconds(mapped(False), y, args.batch, r),
            "epoch, mmap cold": lambda r: epoch_seconds(mapped(True), y, args.batch, r),
            "gather rows, memory": lambda r: gather_seconds(in_memory, args.batch, r, None),
            "gather rows, mmap warm": lambda r: gather_seconds(mapped(False), args.batch, r, None),
            "gather rows, mmap cold": lambda r: gather_seconds(mapped(True), args.batch, r, None),
            "gather 64-row blocks, mmap cold": lambda r: gather_seconds(mapped(True), args.batch, r, 64),
        }
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=1, user_api="blas")  # one BLAS thread: steady on a shared machine
        times: dict[str, list[float]] = {k: [] for k in contestants}
        names = list(contestants)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                times[name].append(contestants[name](r))
            print(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.2f}s" for k in names), flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
        print(f"{'contestant':34s} {'median s':>9s} {'ratio':>7s}")
        for name in names:
            base = "epoch, memory" if name.startswith("epoch") else "gather rows, memory"
            ratio = statistics.median(a / b for a, b in zip(times[name], times[base]))
            print(f"{name:34s} {statistics.median(times[name]):9.3f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
