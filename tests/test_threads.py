"""BLAS threads change the speed of training, never its numbers; ``threads: auto`` keeps the
faster count by measurement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from nnclf import threads as threads_module
from nnclf.threads import MIN_FLOPS, WINDOW_STEPS, BlasThreads, step_flops


def feed(t: BlasThreads, seconds_at: dict[int, float], windows: int) -> list[int]:
    """Report ``windows`` x WINDOW_STEPS steps, each taking seconds_at[count in force];
    returns the count in force at each step."""
    seen = []
    for _ in range(windows * WINDOW_STEPS):
        seen.append(t.current)
        t._observe(seconds_at[t.current])
    return seen


def adaptive(monkeypatch, spare_cores=8) -> BlasThreads:
    """An auto BlasThreads choosing between 1 and 2 threads, the kernel saying ``spare_cores``."""
    monkeypatch.setattr(BlasThreads, "_memory", {})
    monkeypatch.setattr(threads_module, "_spare_cores", lambda: spare_cores)
    t = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: True)
    t.candidates = [1, 2]  # whatever this machine's BLAS default is
    t.__enter__()
    return t


def test_auto_keeps_the_faster_count_and_a_losing_trial_costs_one_step(monkeypatch):
    t = adaptive(monkeypatch)
    try:
        w = WINDOW_STEPS
        seen = feed(t, {1: 2e-3, 2: 1e-3}, 200)  # two threads twice as fast: a quiet machine
        assert seen[:w] == [1] * w and seen[w : 2 * w] == [2] * w  # a window at each count first
        assert seen[2 * w : 10 * w] == [2] * (8 * w)  # then the faster for 8 windows
        assert seen[10 * w] == 1 and seen[10 * w + 1] == 2  # a trial of one thread, lost in one step
        assert seen.count(1) <= w + 5, "trials were not rare"
        # the machine gets busy: two threads now four times slower than one
        seen = feed(t, {1: 2e-3, 2: 8e-3}, 200)
        assert seen[-100 * w :].count(2) <= 3, "did not move to one thread"
    finally:
        t.__exit__()
    # the choice is kept for the next fit of this size in this process
    again = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: True)
    assert again.chosen == 1


def test_chosen_two_threads_fall_back_to_one_after_slow_steps_in_a_row(monkeypatch):
    t = adaptive(monkeypatch)
    try:
        feed(t, {1: 2e-3, 2: 1e-3}, 3)  # one window at 1, then 2 wins
        assert t.chosen == 2
        t._observe(2e-3)  # as slow as one thread: within ABORT_RATIO, kept
        assert t.current == 2
        for _ in range(threads_module.SLOW_STEPS - 1):
            t._observe(4e-3)  # twice one thread's mean: a hiccup...
            assert t.current == 2
        t._observe(1e-3)  # ...over, the count starts again
        for _ in range(threads_module.SLOW_STEPS - 1):
            t._observe(4e-3)
        assert t.current == 2
        t._observe(4e-3)  # SLOW_STEPS in a row: the machine got busy
        assert t.chosen == 1 and t.current == 1
    finally:
        t.__exit__()


def test_no_spare_core_means_no_trial_of_more_threads_until_one_is_free(monkeypatch):
    t = adaptive(monkeypatch, spare_cores=1)  # another process holds the second core
    try:
        seen = feed(t, {1: 2e-3, 2: 1e-3}, 300)  # two threads would win, but no core is free
        assert seen.count(2) == 0
        monkeypatch.setattr(threads_module, "_spare_cores", lambda: 2)  # the other process ended
        seen = feed(t, {1: 2e-3, 2: 1e-3}, 2)
        assert seen[WINDOW_STEPS:] == [2] * WINDOW_STEPS and t.chosen == 2  # tried after one window, and kept
    finally:
        t.__exit__()


def test_a_remembered_choice_of_two_threads_starts_at_one_when_a_core_is_taken(monkeypatch):
    t = adaptive(monkeypatch)
    feed(t, {1: 2e-3, 2: 1e-3}, 3)
    t.__exit__()
    again = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: True)
    again.candidates = [1, 2]
    assert again.chosen == 2  # two threads remembered for this step size
    monkeypatch.setattr(threads_module, "_spare_cores", lambda: 1)
    again.__enter__()
    try:
        assert again.current == 1
    finally:
        again.__exit__()
    # with the cores free it starts at two and tries one thread after the first window (the
    # machine may have changed since the choice was made): here one thread is now the faster
    monkeypatch.setattr(threads_module, "_spare_cores", lambda: 2)
    BlasThreads._memory[again._key] = (2, threads_module.MAX_EXPLOIT_WINDOWS)
    third = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: True)
    third.candidates = [1, 2]
    third.__enter__()
    try:
        seen = feed(third, {1: 2e-3, 2: 6e-3}, 3)
        assert seen[:WINDOW_STEPS] == [2] * WINDOW_STEPS and seen[WINDOW_STEPS] == 1 and third.chosen == 1
    finally:
        third.__exit__()


def test_spare_cores_counts_other_processes_running_threads(monkeypatch, tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.52 0.41 0.30 3/119 1234\n")
    tasks = tmp_path / "task"
    for tid, state in ((100, "R"), (101, "S"), (102, "R")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (python (a) b) {state} 1 2 3\n")  # a ')' in the name
    monkeypatch.setattr(threads_module, "LOADAVG", str(loadavg))
    monkeypatch.setattr(threads_module, "TASKS", str(tasks))
    monkeypatch.setattr(threads_module, "_usable_cores", lambda: 4)
    assert threads_module._spare_cores() == 3  # 3 running, 2 of them ours: one other
    loadavg.write_text("0.52 0.41 0.30 7/119 1234\n")
    assert threads_module._spare_cores() == -1  # five others on four cores
    loadavg.write_text("garbage\n")
    assert threads_module._spare_cores() is None
    monkeypatch.setattr(threads_module, "LOADAVG", str(tmp_path / "absent"))
    assert threads_module._spare_cores() is None


def test_spare_cores_on_this_machine_is_a_count_or_unknown():
    spare = threads_module._spare_cores()
    assert spare is None or -1000 < spare <= threads_module._usable_cores()


def test_small_steps_never_try_a_second_thread():
    t = BlasThreads("auto", flops_per_step=MIN_FLOPS / 2)
    assert t.candidates == [1] and not t.adaptive
    fixed = BlasThreads(3, flops_per_step=1e12)
    assert fixed.candidates == [3]


def test_step_flops_counts_three_products_per_layer():
    assert step_flops([4, 3, 2], batch=10) == 6 * 10 * (4 * 3 + 3 * 2)


CSV_ROWS = 2400


def wide_csv(path: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(CSV_ROWS, 16))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1)
    lines = ["," .join(f"f{i}" for i in range(16)) + ",label"]
    lines += [",".join(f"{v:.4f}" for v in row) + f",c{label}" for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


CONFIG = """\
seed: 3
data: {train: wide.csv, target: label}
model: {hidden: [256, 256], dropout: 0.1}
optimizer: {name: adam, lr: 0.001}
training: {epochs: 4, batch_size: 128}
"""


def checkpoint_bits(run: Path) -> bytes:
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as z:
        return b"".join(z[k].tobytes() for k in sorted(z.files) if k != "meta")


@pytest.mark.slow
def test_threads_one_two_auto_and_one_core_give_the_same_bits(tmp_path):
    wide_csv(tmp_path / "wide.csv")
    (tmp_path / "c.yaml").write_text(CONFIG)
    # the step is large enough for auto to measure both counts during this run
    assert step_flops([16, 256, 256, 3], 128) > MIN_FLOPS and CSV_ROWS * 0.8 // 128 * 4 > 2 * WINDOW_STEPS
    bits = {}
    for threads in ("1", "2", "auto"):
        r = run_cli(["train", "c.yaml", "--name", f"t{threads}", "--quiet", "--set", f"training.threads={threads}"], tmp_path)
        assert r.exit_code == 0, r.stderr
        bits[threads] = checkpoint_bits(tmp_path / "runs" / f"t{threads}")
    # and a process held to one core (affinity), auto threads
    code = ("import os, sys; os.sched_setaffinity(0, {0}); from nnclf.cli import main; "
            "sys.argv = ['nnclf', 'train', 'c.yaml', '--name', 'onecore', '--quiet']; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bits["one core"] = checkpoint_bits(tmp_path / "runs" / "onecore")
    # auto, one thread and one core: always the same bits
    assert bits["auto"] == bits["1"] == bits["one core"], {k: hash(v) for k, v in bits.items()}
    # a fixed 2 is used as given (README): the same bits exactly where this BLAS sums every
    # product of the fit as on one thread (OpenBLAS 0.3.31's Haswell kernels do not for these
    # shapes, e.g. (128, 17) @ (17, 256); other CPUs' do)
    from nnclf.config import load_config
    from nnclf.data.dataset import prepare

    cfg = load_config(tmp_path / "c.yaml")
    p = prepare(cfg.data, cfg.seed, cfg.training.dtype)
    batch, rows = cfg.training.batch_size, len(p.train)
    products = threads_module.fit_products([16, 256, 256, 3], {c for c in (batch, rows % batch) if c}, {len(p.val)})
    if threads_module.same_bits(products, "float32", 2):
        assert bits["2"] == bits["1"]


def test_threads_key_is_checked(tmp_path):
    (tmp_path / "wide.csv").write_text("a,label\n1,x\n2,y\n3,x\n4,y\n5,x\n6,y\n")
    (tmp_path / "c.yaml").write_text(CONFIG)
    for bad in ("0", "two", "true"):
        r = run_cli(["train", "c.yaml", "--set", f"training.threads={bad}"], tmp_path)
        assert r.exit_code == 1
        assert "training.threads: must be 'auto' or an integer from 1 to 1024" in r.stderr, r.stderr


# --- counts that would change the bits are never tried ------------------------------------------
def _blas_products_differ(m: int, k: int, n: int, dtype: str) -> bool:
    """Independently of nnclf.threads: does A (m, k) @ B (k, n) differ between 1 and 2 threads?"""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        one = a @ b
    with threadpool_limits(limits=2, user_api="blas"):
        two = a @ b
    return not np.array_equal(one, two)


def test_same_bits_is_true_where_every_product_keeps_its_bits():
    # small inner dimensions: one block of the sum whatever the thread count
    products = threads_module.fit_products([16, 32, 3], {64, 16}, {100})
    assert ("tn", 17, 64, 32) in products and ("nt", 64, 3, 32) in products and ("nn", 100, 33, 3) in products
    assert threads_module.same_bits(products, "float32", 2)


def test_same_bits_refuses_a_count_whose_products_change_the_bits():
    """The forward product of a 784-input layer at 2048 rows is blocked differently by some BLAS
    builds with two threads (OpenBLAS 0.3.31 here); where it is, same_bits must say no."""
    differs = _blas_products_differ(2048, 785, 64, "float32")
    if not differs:
        pytest.skip("this BLAS computes that product with the same bits on 1 and 2 threads")
    assert not threads_module.same_bits(threads_module.fit_products([784, 64, 10], set(), {2048}), "float32", 2)


def test_auto_tries_no_second_thread_when_the_bits_would_change(monkeypatch):
    """The check runs when auto first means to try two threads (not before: a short run never
    pays for it), once; a refused count is never applied and auto stops timing."""
    monkeypatch.setattr(BlasThreads, "_memory", {})
    monkeypatch.setattr(threads_module, "_spare_cores", lambda: 8)
    asked = []
    t = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: asked.append(n) or False)
    t.candidates = [1, 2]  # whatever this machine's BLAS default is
    t.__enter__()
    assert asked == []
    seen = feed(t, {1: 2e-3, 2: 1e-3}, 6)
    assert asked == [2] and set(seen) == {1} and t.candidates == [1] and not t.adaptive
    t.__exit__()
    # a fixed count is the user's: used as given, never checked
    fixed = BlasThreads(2, flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: asked.append(n) or False)
    assert fixed.candidates == [2] and asked == [2]


def test_a_remembered_two_threads_is_checked_for_this_fits_bits(monkeypatch):
    """The memory is by step size: another fit of that size whose products would change the bits
    on two threads starts (and stays) at one."""
    t = adaptive(monkeypatch)
    feed(t, {1: 2e-3, 2: 1e-3}, 3)
    assert t.chosen == 2
    t.__exit__()
    other = BlasThreads("auto", flops_per_step=10 * MIN_FLOPS, same_bits=lambda n: False)
    other.candidates = [1, 2]
    other.chosen = 2  # what the memory gave it (on a machine whose BLAS has two threads)
    other.__enter__()
    assert other.current == 1 and other.candidates == [1]
    other.__exit__()


def test_training_threads_checks_the_products_the_fit_runs(monkeypatch):
    from types import SimpleNamespace

    seen = []
    monkeypatch.setattr(threads_module, "same_bits", lambda products, dtype, n: seen.append((set(products), dtype)) or False)

    def trainer(batch_size, full_batch=False, dtype=np.float32, curvature=False):
        return SimpleNamespace(net=SimpleNamespace(sizes=[64, 256, 256, 10], dtype=np.dtype(dtype)), batch_size=batch_size,
                               optimizer=SimpleNamespace(full_batch=full_batch, needs_curvature=curvature))

    def products(train_rows, forward_rows, curvature=False):
        layers = [(64, 256), (256, 256), (256, 10)]
        found = set()
        for n_in, n_out in layers:
            for b in train_rows:
                found |= {("nn", b, n_in + 1, n_out), ("tn", n_in + 1, b, n_out), ("nt", b, n_out, n_in)}
                if curvature:
                    found |= {("nn", b, n_in, n_out), ("tn", n_in, b, n_out)}
            found |= {("nn", b, n_in + 1, n_out) for b in forward_rows}
        return found

    for t in (threads_module.training_threads("auto", trainer(500), rows=1437, val_rows=5000),
              threads_module.training_threads("auto", trainer(None, dtype=np.float64), rows=5000),  # adam, batch full: one product
              threads_module.training_threads("auto", trainer(None, True, np.float64, True), rows=5000)):  # newton_cg: chunks of 2048
        t._same_bits(2)
    assert seen == [(products({500, 437}, {2048, 904}), "float32"),
                    (products({5000}, set()), "float64"),
                    (products({2048, 904}, set(), curvature=True), "float64")]


@pytest.mark.slow
def test_auto_on_shapes_whose_products_change_bits_gives_one_threads_bits(tmp_path, monkeypatch):
    """A fit whose batch (500 rows, and the last one of 437) and 256-unit layers make OpenBLAS
    block some sums differently with two threads: auto must give exactly threads: 1's weights.
    The kernel is made to report two free cores, so without the check auto would try two
    threads after its first window (it did, before same_bits existed)."""
    monkeypatch.setattr(threads_module, "_spare_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "_usable_cores", lambda: 2)
    monkeypatch.setattr(BlasThreads, "_memory", {})
    if not _blas_products_differ(256, 500, 256, "float32"):
        pytest.skip("this BLAS computes these products with the same bits on 1 and 2 threads")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1437 + 360, 32))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = [",".join(f"f{i}" for i in range(32)) + ",label"]
    lines += [",".join(f"{v:.4f}" for v in row) + f",c{label}" for row, label in zip(x, y)]
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text("seed: 1\ndata: {train: w.csv, target: label, val_split: 0}\n"
                                     "model: {hidden: [256, 256]}\noptimizer: {name: adam, lr: 0.001}\n"
                                     "training: {epochs: 25, batch_size: 500}\n")
    assert step_flops([32, 256, 256, 2], 500) > MIN_FLOPS and 3 * 25 > 3 * WINDOW_STEPS
    bits = {}
    for threads in ("1", "2", "auto"):
        r = run_cli(["train", "c.yaml", "--name", f"t{threads}", "--quiet", "--set", f"training.threads={threads}"], tmp_path)
        assert r.exit_code == 0, r.stderr
        bits[threads] = checkpoint_bits(tmp_path / "runs" / f"t{threads}")
    assert bits["auto"] == bits["1"]
    assert bits["2"] != bits["1"]  # the refusal above was needed: two threads do change these bits
