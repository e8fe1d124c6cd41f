"""nnclf speed benchmark: nnclf vs scikit-learn, PyTorch and the GEMM-only ceiling, side by side.

    python benchmarks/bench.py            # full run (several minutes)
    python benchmarks/bench.py --quick    # smaller data, fewer rounds (under a minute)
    python benchmarks/bench.py --cases wide,tiny --rounds 7

Method
------
* Every case runs its contestants in *interleaved rounds*: round r runs each contestant once,
  in an order rotated every round, so slow phases of a noisy machine hit everyone alike.
  The table shows the median over rounds, the spread (min-max as +-% of the median) and the
  ratio competitor / nnclf: the median of the per-round ratios (paired, so robust to drift).
  For the GEMM ceiling the ratio is ceiling / nnclf, i.e. the fraction of the ceiling reached.
* Every sample starts from a freshly initialised model (untimed for nnclf and torch).
* nnclf is used as a library user would: ``MLP`` + ``CrossEntropy`` + ``Adam`` + ``Trainer.fit``
  for one epoch (shuffle, batch gather, forward, loss, accuracy count, backward, Adam), with its
  defaults: for batches of >= 128 rows a forked worker process computes half of every batch
  (its start, the fork, is inside the timed fit of every sample).
* scikit-learn: a fresh ``MLPClassifier(solver="adam", alpha=0, batch_size=B,
  max_iter=E, tol=0, n_iter_no_change=huge, shuffle=True)``; ``fit`` time / E, i.e. its own
  epoch loop including its per-fit input check and initialisation (E=1 on the wide data, where
  those are < 1% of an epoch; E=20 on digits). alpha=0 because nnclf adds no L2 term either.
  Run on float32 input (sklearn keeps float32) and on float64 (its default use).
* PyTorch: ``nn.Sequential`` of Linear/ReLU, ``nn.CrossEntropyLoss``, ``torch.optim.Adam``
  defaults with the same lr, on tensors shuffled once before timing; one epoch = the plain
  zero_grad/forward/loss/backward/step loop over contiguous slices (torch's default threads).
* GEMM ceiling: exactly the matrix products of one training step (3 forward, 3 weight
  gradients, 2 deltas) on preallocated float32 arrays with ``np.matmul(out=)``, for the same
  sequence of batch sizes as one epoch. Nothing else: no activations, loss, gather or update.
* End to end, predict and start-up run the real ``nnclf`` command in a subprocess; wall time
  is measured outside, peak RSS comes from ``os.wait4`` of that one child.

Generated data lives in a temporary folder that is deleted at the end. scikit-learn and torch
are optional: without them their columns are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

try:
    import sklearn  # noqa: F401

    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False
try:
    import torch

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

from nnclf.engine.losses import CrossEntropy
from nnclf.engine.network import MLP
from nnclf.engine.optimizers import Adam
from nnclf.engine.schedules import SCHEDULES
from nnclf.threads import BlasThreads, step_flops
from nnclf.trainer import Trainer

PY = sys.executable


# -- measuring --------------------------------------------------------------------------------
class Contestant:
    """``setup()`` once (untimed), then ``run()`` returns the seconds of one sample."""

    def __init__(self, name, run, setup=None, kind="time"):
        self.name, self._run, self._setup, self.kind = name, run, setup, kind
        self.samples: list[float] = []
        self.extra: dict = {}

    def setup(self):
        if self._setup:
            self._setup()

    def run(self):
        self.samples.append(self._run())


def interleave(contestants, rounds, warmup=True):
    live = []
    for c in contestants:
        try:
            c.setup()
            if warmup:
                c._run()
            live.append(c)
        except Exception as e:  # a broken competitor must not kill the benchmark
            print(f"  ! {c.name}: {type(e).__name__}: {e}", flush=True)
    for r in range(rounds):
        order = live[r % len(live):] + live[: r % len(live)] if live else []
        for c in order:
            c.run()
    return live


def fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s"


def spread(samples):
    med = statistics.median(samples)
    if len(samples) < 2 or med == 0:
        return ""
    return f"+{(max(samples) - med) / med * 100:.0f}/-{(med - min(samples)) / med * 100:.0f}%"


def paired_ratio(a, b):
    """median over rounds of a[r] / b[r]."""
    n = min(len(a), len(b))
    return statistics.median(x / y for x, y in zip(a[:n], b[:n]))


ROWS: list[dict] = []


def report(case, contestants, base_name="nnclf", targets=None, unit="s/epoch"):
    targets = targets or {}
    base = next((c for c in contestants if c.name == base_name), None)
    print(f"\n### {case}  ({unit}, {len(base.samples) if base else 0} rounds)")
    print(f"| {'contestant':<34} | {'median':>10} | {'spread':>9} | {'ratio':>8} | target |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 11}|{'-' * 10}|--------|")
    for c in contestants:
        med = statistics.median(c.samples)
        ratio, shown_target = "", ""
        if base is not None and c is not base:
            r = paired_ratio(c.samples, base.samples)
            if c.kind == "ceiling":
                ratio = f"{r * 100:.0f}%"
            else:
                ratio = f"{r:.2f}x"
            t = targets.get(c.name)
            if t is not None:
                ok = r >= t
                shown_target = (f">={t * 100:.0f}%" if c.kind == "ceiling" else f">={t:g}x") + (" ok" if ok else " MISS")
        print(f"| {c.name:<34} | {fmt_time(med):>10} | {spread(c.samples):>9} | {ratio:>8} | {shown_target} |")
        ROWS.append({"case": case, "name": c.name, "median": med, "samples": c.samples, "ratio": ratio, "target": shown_target, **c.extra})
    sys.stdout.flush()


# -- nnclf / sklearn / torch / GEMM training loops ---------------------------------------------
BASELINE = None  # (MLP, CrossEntropy, Adam, SCHEDULES, Trainer) of an older nnclf, from --baseline


def load_baseline(folder: Path):
    """Import an older nnclf copied into FOLDER/nnclf_base (e.g. ``git archive <rev> nnclf``)."""
    import importlib

    sys.path.insert(0, str(folder))
    names = ("engine.network:MLP", "engine.losses:CrossEntropy", "engine.optimizers:Adam", "engine.schedules:SCHEDULES", "trainer:Trainer")
    return tuple(getattr(importlib.import_module(f"nnclf_base.{n.split(':')[0]}"), n.split(":")[1]) for n in names)


def nnclf_epoch(x, y, sizes, batch, lr=1e-3, epochs=1, threads=None, impl=None):
    """Contestant: nnclf's Trainer over ``epochs`` epochs, its BLAS threads chosen as
    ``nnclf train`` chooses them (``training.threads``, default auto); sample = seconds per epoch.
    A ``--baseline`` version runs as it did then (its own threads handling)."""
    state = {}
    MLP_, CE_, Adam_, SCHEDULES_, Trainer_ = impl or (MLP, CrossEntropy, Adam, SCHEDULES, Trainer)

    def setup():
        rng = np.random.default_rng(0)
        net = MLP_(sizes, "relu")
        net.initialize("auto", rng)
        state.update(net=net, rng=rng, loss=CE_(sizes[-1]), opt=Adam_(net.params.size, net.dtype))

    def run():
        setup()  # every sample starts from the same fresh network (untimed)
        s = state
        trainer = Trainer_(s["net"], s["loss"], s["opt"], SCHEDULES_.get("constant")(lr, epochs), epochs=epochs,
                          batch_size=batch, rng=s["rng"], monitor="train_loss")
        if impl is None:
            speed = trainer.speed = BlasThreads(threads or "auto", step_flops(sizes, batch))
            with speed:
                t = time.perf_counter()
                trainer.fit(x, y)
                return (time.perf_counter() - t) / epochs
        if threads is not None:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=threads, user_api="blas"):
                t = time.perf_counter()
                trainer.fit(x, y)
                return (time.perf_counter() - t) / epochs
        t = time.perf_counter()
        trainer.fit(x, y)
        return (time.perf_counter() - t) / epochs

    return run, setup


def sklearn_epoch(x, y, hidden, batch, lr=1e-3, epochs=1):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def run():
        clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam", alpha=0.0, batch_size=batch,
                            learning_rate_init=lr, max_iter=epochs, tol=0.0, n_iter_no_change=10**9, shuffle=True,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t = time.perf_counter()
            clf.fit(x, y)
            return (time.perf_counter() - t) / epochs

    return run


def torch_epoch(x, y, sizes, batch, lr=1e-3, epochs=1):
    state = {}

    def setup():
        torch.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
        state.update(model=model, opt=torch.optim.Adam(model.parameters(), lr=lr), lossf=torch.nn.CrossEntropyLoss(),
                     x=torch.from_numpy(x)[perm].contiguous(), y=torch.from_numpy(y.astype(np.int64))[perm].contiguous())

    def run():
        setup()  # every sample starts from the same fresh model (untimed)
        s = state
        model, opt, lossf, xt, yt = s["model"], s["opt"], s["lossf"], s["x"], s["y"]
        n = len(yt)
        t = time.perf_counter()
        for _ in range(epochs):
            for lo in range(0, n, batch):
                opt.zero_grad()
                loss = lossf(model(xt[lo:lo + batch]), yt[lo:lo + batch])
                loss.backward()
                opt.step()
        return (time.perf_counter() - t) / epochs

    return run, setup


def gemm_ceiling(n, sizes, batch, epochs=1):
    """The matrix products of one epoch's steps, nothing else (float32, preallocated)."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    ws = [rng.standard_normal((a, b)).astype(f32) * f32(0.05) for a, b in zip(sizes[:-1], sizes[1:])]
    gs = [np.empty_like(w) for w in ws]
    x = rng.standard_normal((batch, sizes[0])).astype(f32)
    acts = [np.empty((batch, s), f32) for s in sizes[1:]]
    deltas = [rng.standard_normal((batch, s)).astype(f32) * f32(0.01) for s in sizes[1:]]
    steps = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    L = len(ws)

    def run():
        t = time.perf_counter()
        for _ in range(epochs):
            for size in steps:
                a = x[:size]
                for l in range(L):
                    a = np.matmul(a, ws[l], out=acts[l][:size])
                for l in range(L - 1, -1, -1):
                    prev = x[:size] if l == 0 else acts[l - 1][:size]
                    np.matmul(prev.T, deltas[l][:size], out=gs[l])
                    if l:
                        np.matmul(deltas[l][:size], ws[l].T, out=deltas[l - 1][:size])
        return (time.perf_counter() - t) / epochs

    return run


# -- cases ------------------------------------------------------------------------------------
def wide_data(n):
    if HAVE_SKLEARN:
        from sklearn.datasets import make_classification

        x, y = make_classification(n_samples=n, n_features=100, n_informative=60, n_classes=10, random_state=0)
    else:
        print("  (scikit-learn absent: wide data is random normal with random labels)")
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((n, 100)), rng.integers(0, 10, n)
    return x.astype(np.float32), y.astype(np.int64), x.astype(np.float64)


def case_wide(args):
    n = 20_000 if args.quick else 100_000
    x32, y, x64 = wide_data(n)
    sizes = [100, 256, 256, 10]
    for batch in (128, 512):
        cs = [Contestant("nnclf", *nnclf_epoch(x32, y, sizes, batch)),
              Contestant("GEMM-only ceiling", gemm_ceiling(n, sizes, batch), kind="ceiling")]
        if BASELINE:
            cs.append(Contestant("nnclf baseline (--baseline)", *nnclf_epoch(x32, y, sizes, batch, impl=BASELINE)))
        targets = {"GEMM-only ceiling": 0.6 if batch == 128 else 0.7}
        if HAVE_SKLEARN:
            cs += [Contestant("sklearn MLPClassifier float32", sklearn_epoch(x32, y, (256, 256), batch)),
                   Contestant("sklearn MLPClassifier float64", sklearn_epoch(x64, y, (256, 256), batch))]
            targets.update({"sklearn MLPClassifier float32": 2.0, "sklearn MLPClassifier float64": 2.8})
        else:
            print("  scikit-learn not installed: sklearn comparison skipped")
        if HAVE_TORCH:
            cs.append(Contestant(f"torch {torch.__version__} CPU loop", *torch_epoch(x32, y, sizes, batch)))
            targets[f"torch {torch.__version__} CPU loop"] = 1.5 if batch == 128 else 1.2
        else:
            print("  torch not installed: PyTorch comparison skipped")
        print(f"\n[wide] {n}x100, 100-256-256-10 ReLU, Adam 1e-3, batch {batch} ...", flush=True)
        live = interleave(cs, args.rounds)
        report(f"wide MLP {n}x100 100-256-256-10 batch {batch}", live, targets=targets)


def case_threads(args):
    """The default (``threads: auto``) against two and one fixed BLAS threads: the same numbers
    all three ways (tests/test_threads.py), only the speed differs."""
    n = 20_000 if args.quick else 100_000
    x32, y, _ = wide_data(n)
    sizes = [100, 256, 256, 10]
    for batch in (128, 512):
        cs = [Contestant("nnclf", *nnclf_epoch(x32, y, sizes, batch)),
              Contestant("nnclf threads=2", *nnclf_epoch(x32, y, sizes, batch, threads=2)),
              Contestant("nnclf threads=1", *nnclf_epoch(x32, y, sizes, batch, threads=1))]
        print(f"\n[threads] wide batch {batch}: auto, 2 BLAS threads, 1 ...", flush=True)
        report(f"threads auto/2/1, wide batch {batch} (ratio = its time / nnclf's)",
               interleave(cs, args.rounds))


def digits_data():
    if HAVE_SKLEARN:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data / 16.0, digits.target.astype(np.int64)
    print("  (scikit-learn absent: random 1797x64 data instead of digits)")
    rng = np.random.default_rng(0)
    return rng.random((1797, 64)), rng.integers(0, 10, 1797)


def nnclf_cv(x, y, hidden, batch, epochs, folds=5, threads=None):
    """Contestant: ``folds`` fits of nnclf's Trainer, each on (folds-1)/folds of the rows (a
    cross-validation's training work, in this process); sample = seconds for all fits."""
    sizes = [x.shape[1], *hidden, int(y.max()) + 1]
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), folds)

    def run():
        t = time.perf_counter()
        for k in range(folds):
            rows = np.concatenate([p for i, p in enumerate(parts) if i != k])
            rng = np.random.default_rng(k)
            net = MLP(sizes, "relu")
            net.initialize("auto", rng)
            trainer = Trainer(net, CrossEntropy(sizes[-1]), Adam(net.params.size, net.dtype),
                              SCHEDULES.get("constant")(1e-3, epochs), epochs=epochs, batch_size=batch, rng=rng,
                              monitor="train_loss")
            speed = trainer.speed = BlasThreads(threads or "auto", step_flops(sizes, batch))
            with speed:
                trainer.fit(x[rows], y[rows])
        return time.perf_counter() - t

    return run, None


def sklearn_cv(x, y, hidden, batch, epochs, folds=5):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), folds)

    def run():
        t = time.perf_counter()
        for k in range(folds):
            rows = np.concatenate([p for i, p in enumerate(parts) if i != k])
            clf = MLPClassifier(hidden, batch_size=batch, max_iter=epochs, learning_rate_init=1e-3, tol=0,
                                n_iter_no_change=epochs + 1, random_state=k)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x[rows], y[rows])
        return time.perf_counter() - t

    return run


def case_cv(args):
    """Five fits of 64-100-10 on digits (batch 200, 50 epochs): the work of a 5-fold
    cross-validation, nnclf's Trainer against MLPClassifier with the same settings."""
    x64, y = digits_data()
    x32 = x64.astype(np.float32)
    epochs = 10 if args.quick else 50
    cs = [Contestant("nnclf", *nnclf_cv(x32, y, (100,), 200, epochs))]
    targets = {}
    if HAVE_SKLEARN:
        cs.append(Contestant("sklearn MLPClassifier float64", sklearn_cv(x64, y, (100,), 200, epochs)))
        targets["sklearn MLPClassifier float64"] = 1.8
    print(f"\n[cv] digits, 5 fits of 64-100-10, batch 200, {epochs} epochs ...", flush=True)
    report(f"cross-validation digits 5 x 64-100-10 batch 200 {epochs} epochs", interleave(cs, args.rounds),
           targets=targets, unit="s/5 fits")


_BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def case_contention(args):
    """A busy machine: one CPU-bound competing process runs beside every contestant. The
    default (threads auto) against one BLAS thread and scikit-learn, on the wide network at
    batch 128 and 512 and on the digits cross-validation."""
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    try:
        n = 20_000 if args.quick else 100_000
        x32, y, x64 = wide_data(n)
        sizes = [100, 256, 256, 10]
        for batch in (128, 512):
            cs = [Contestant("nnclf", *nnclf_epoch(x32, y, sizes, batch)),
                  Contestant("nnclf threads=1", *nnclf_epoch(x32, y, sizes, batch, threads=1))]
            targets = {"nnclf threads=1": 0.95}
            if HAVE_SKLEARN:
                cs.append(Contestant("sklearn MLPClassifier float32", sklearn_epoch(x32, y, (256, 256), batch)))
                targets["sklearn MLPClassifier float32"] = 1.5
            print(f"\n[contention] wide batch {batch}, one competing busy process ...", flush=True)
            report(f"busy machine: wide {n}x100 batch {batch}, one competing process", interleave(cs, args.rounds),
                   targets=targets)
        dx64, dy = digits_data()
        epochs = 10 if args.quick else 50
        cs = [Contestant("nnclf", *nnclf_cv(dx64.astype(np.float32), dy, (100,), 200, epochs)),
              Contestant("nnclf threads=1", *nnclf_cv(dx64.astype(np.float32), dy, (100,), 200, epochs, threads=1))]
        targets = {"nnclf threads=1": 0.95}
        if HAVE_SKLEARN:
            cs.append(Contestant("sklearn MLPClassifier float64", sklearn_cv(dx64, dy, (100,), 200, epochs)))
            targets["sklearn MLPClassifier float64"] = 1.8
        print("\n[contention] digits cross-validation, one competing busy process ...", flush=True)
        report(f"busy machine: digits 5 x 64-100-10 batch 200 {epochs} epochs", interleave(cs, args.rounds),
               targets=targets, unit="s/5 fits")
    finally:
        busy.kill()
        busy.wait()


def case_tiny(args):
    x64, y = digits_data()
    x32 = x64.astype(np.float32)
    sizes, batch, epochs = [64, 32, 10], 32, 20
    cs = [Contestant("nnclf", *nnclf_epoch(x32, y, sizes, batch, epochs=epochs))]
    if BASELINE:
        cs.append(Contestant("nnclf baseline (--baseline)", *nnclf_epoch(x32, y, sizes, batch, epochs=epochs, impl=BASELINE)))
    targets = {}
    if HAVE_SKLEARN:
        cs += [Contestant("sklearn MLPClassifier float32", sklearn_epoch(x32, y, (32,), batch, epochs=epochs)),
               Contestant("sklearn MLPClassifier float64", sklearn_epoch(x64, y, (32,), batch, epochs=epochs))]
        targets.update({"sklearn MLPClassifier float32": 4.0, "sklearn MLPClassifier float64": 4.0})
    else:
        print("  scikit-learn not installed: sklearn comparison skipped")
    if HAVE_TORCH:
        cs.append(Contestant(f"torch {torch.__version__} CPU loop", *torch_epoch(x32, y, sizes, batch, epochs=epochs)))
        targets[f"torch {torch.__version__} CPU loop"] = 8.0
    else:
        print("  torch not installed: PyTorch comparison skipped")
    cs.append(Contestant("GEMM-only ceiling", gemm_ceiling(len(y), sizes, batch, epochs), kind="ceiling"))
    print(f"\n[tiny] digits 1797x64, 64-32-10, batch 32 ({epochs} epochs per sample) ...", flush=True)
    report("tiny MLP digits 1797x64 64-32-10 batch 32", interleave(cs, args.rounds * 2), targets=targets)


# -- subprocess helpers -------------------------------------------------------------------------
RSS_WRAPPER = r"""
import os, sys, time, json, threading
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
samples, done = [], threading.Event()

def sample():  # (seconds, resident MB) of the child every 20 ms
    while not done.wait(0.02):
        try:
            with open(f"/proc/{pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            samples.append((time.perf_counter() - t, kb / 1024))
        except (OSError, StopIteration):
            pass

threading.Thread(target=sample, daemon=True).start()
_, status, usage = os.wait4(pid, 0)
done.set()
wall = time.perf_counter() - t
late = sorted(mb for s, mb in samples if s > wall / 2)
print(json.dumps({"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "late_rss_mb": late[len(late) // 2] if late else None,
                  "status": status}))
"""


def measure(cmd, cwd=None, late=None):
    """Wall seconds and peak RSS (MB) of exactly this command (its stdout is discarded). With a
    list ``late``, appends the median resident size over the second half of the run (Linux)."""
    p = subprocess.run([PY, "-c", RSS_WRAPPER, *cmd], cwd=cwd, capture_output=True, text=True)
    info = json.loads(p.stdout.strip().splitlines()[-1])
    if info["status"] != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed: {p.stderr.strip()[-600:]}")
    if late is not None and info["late_rss_mb"] is not None:
        late.append(info["late_rss_mb"])
    return info["wall"], info["rss_mb"]


NNCLF = [PY, "-m", "nnclf"]

SKLEARN_E2E = r"""
import sys, time, json
t0 = time.perf_counter()
import numpy as np, pandas as pd
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
frame = pd.read_csv(sys.argv[1])
split = np.load(sys.argv[2])
y = frame.pop("target").to_numpy()
x = frame.to_numpy()
scaler = StandardScaler().fit(x[split["train"]])
clf = MLPClassifier(hidden_layer_sizes=(100,), solver="adam", random_state=0)
clf.fit(scaler.transform(x[split["train"]]), y[split["train"]])
acc = clf.score(scaler.transform(x[split["test"]]), y[split["test"]])
print(json.dumps({"accuracy": acc, "epochs": clf.n_iter_, "seconds": time.perf_counter() - t0}))
"""

E2E_CONFIG = """\
# nnclf's answer to the end-to-end case (benchmarks/bench.py)
seed: 0
data:
  train: {csv}
  target: target
  test_split: 0.2
  val_split: 0.0
model:
  hidden: {hidden}
optimizer:
  name: adam
  lr: {lr}
schedule:
  name: cosine
training:
  epochs: {epochs}
  batch_size: {batch}
"""


def write_e2e_csv(folder: Path, n: int) -> Path:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=40, n_informative=25, n_classes=7, class_sep=1.0, flip_y=0.02,
                               random_state=1)
    import pandas as pd

    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(40)])
    frame["target"] = y
    path = folder / "e2e.csv"
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def case_e2e(args, tmp: Path):
    if not HAVE_SKLEARN:
        print("\n[e2e] scikit-learn not installed: end-to-end comparison skipped (it needs make_classification)")
        return
    n = 40_000 if args.quick else 200_000
    print(f"\n[e2e] writing {n}x40 7-class CSV ...", flush=True)
    csv_path = write_e2e_csv(tmp, n)
    cfg = tmp / "e2e.yaml"
    cfg.write_text(E2E_CONFIG.format(csv=csv_path, hidden=args.e2e_hidden, lr=args.e2e_lr, epochs=args.e2e_epochs, batch=args.e2e_batch))
    runs = tmp / "runs"
    # one untimed run makes splits.npz (so sklearn trains and tests on the same rows) and warms the file cache
    subprocess.run([*NNCLF, "train", str(cfg), "--runs-dir", str(runs), "--name", "warm", "--quiet"], check=True,
                   capture_output=True)
    split = runs / "warm" / "splits.npz"
    counter = {"i": 0}
    accs = {"nnclf": [], "sklearn": []}
    rss = {"nnclf": [], "late": []}

    def nn_run():
        counter["i"] += 1
        name = f"r{counter['i']}"
        wall, peak = measure([*NNCLF, "train", str(cfg), "--runs-dir", str(runs), "--name", name, "--quiet"], late=rss["late"])
        summary = json.loads((runs / name / "summary.json").read_text())
        accs["nnclf"].append(summary["test"]["accuracy"])
        rss["nnclf"].append(peak)
        return wall

    def sk_run():
        t = time.perf_counter()
        out = subprocess.run([PY, "-c", SKLEARN_E2E, str(csv_path), str(split)], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
        info = json.loads(out.stdout.strip().splitlines()[-1])
        accs["sklearn"].append(info["accuracy"])
        sk.extra["epochs"] = info["epochs"]
        return wall

    nn = Contestant("nnclf train (CLI, wall)", nn_run)
    sk = Contestant("sklearn MLP (100,) adam defaults (wall)", sk_run)
    rounds = 1 if args.quick else max(2, args.rounds // 2)
    live = interleave([nn, sk], rounds, warmup=False)
    report(f"end to end {n}x40 7 classes (CSV load + train + test)", live, base_name="nnclf train (CLI, wall)",
           targets={"sklearn MLP (100,) adam defaults (wall)": 4.0}, unit="s wall")
    a_nn, a_sk = statistics.median(accs["nnclf"]), statistics.median(accs["sklearn"])
    print(f"test accuracy: nnclf {a_nn:.4f} (config: hidden {args.e2e_hidden}, batch {args.e2e_batch}, "
          f"{args.e2e_epochs} epochs, adam lr {args.e2e_lr}, cosine)  vs  sklearn {a_sk:.4f} "
          f"({sk.extra.get('epochs')} epochs)  -> {'ok' if a_nn >= a_sk else 'MISS'}")
    ROWS.append({"case": "e2e accuracy", "nnclf": a_nn, "sklearn": a_sk})
    # memory: peak RSS of training vs the float32 training array
    n_train = int(round(n * 0.8))
    array_mb = n_train * 40 * 4 / 2**20
    base_wall, base_rss = measure([PY, "-c", "import numpy, pandas, nnclf.runs, nnclf.data.dataset, nnclf.cli"])
    peak = statistics.median(rss["nnclf"])
    print(f"\n### memory: training peak RSS {peak:.0f} MB; interpreter + imports alone {base_rss:.0f} MB; "
          f"CSV on disk {csv_path.stat().st_size / 2**20:.0f} MB; float32 training array {array_mb:.1f} MB "
          f"-> (peak - imports) = {(peak - base_rss) / array_mb:.1f}x the training array")
    row = {"case": "train memory", "peak_rss_mb": peak, "imports_rss_mb": base_rss, "train_array_mb": array_mb}
    if rss["late"]:  # the second half of the run is training: the data is held as float32 arrays
        late = statistics.median(rss["late"])
        held_mb = n * 40 * 4 / 2**20  # the training and test splits, float32
        print(f"    while training (median RSS over the second half of the run): {late:.0f} MB -> (that - imports) = "
              f"{(late - base_rss) / array_mb:.1f}x the training array (training + test splits: {held_mb / array_mb:.2f}x)")
        row["training_rss_mb"] = late
    ROWS.append(row)


def case_startup(args):
    print("\n[startup] nnclf --help ...", flush=True)
    help_ = Contestant("nnclf --help", lambda: measure([*NNCLF, "--help"])[0])
    bare = Contestant("python -c pass (interpreter alone)", lambda: measure([PY, "-c", "pass"])[0])
    live = interleave([help_, bare], 5 if args.quick else 15)
    report("start-up", live, base_name="nnclf --help", unit="s wall")
    med = statistics.median(help_.samples)
    print(f"nnclf --help median {med:.3f} s -> target < 0.25 s {'ok' if med < 0.25 else 'MISS'}")
    # which commands pull in pandas?
    probe = (
        "import sys\nsys.argv = ['nnclf'] + sys.argv[1:]\nfrom nnclf.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('PANDAS_IMPORTED=%s' % ('pandas' in sys.modules), file=sys.stderr)\n"
    )
    help_text = subprocess.run([*NNCLF, "--help"], capture_output=True, text=True).stdout
    for argv in (["--help"], ["config", "--help"], ["config", str(Path(__file__).resolve().parent.parent / "configs" / "iris.yaml")]):
        if argv[0] == "config" and " config " not in help_text:
            print(f"nnclf {' '.join(argv)}: no 'config' command in this version")
            break
        p = subprocess.run([PY, "-c", probe, *argv], capture_output=True, text=True)
        line = [l for l in p.stderr.splitlines() if l.startswith("PANDAS_IMPORTED=")]
        print(f"nnclf {' '.join(argv)}: imports pandas: {line[0].split('=')[1] if line else '?'}")
        ROWS.append({"case": "pandas import", "argv": argv, "pandas": line[0] if line else "?"})


def case_predict(args, tmp: Path):
    import pandas as pd

    n = 100_000 if args.quick else 1_000_000
    d = 100
    print(f"\n[predict] writing {n}x{d} CSV ...", flush=True)
    rng = np.random.default_rng(2)
    block = pd.DataFrame(rng.standard_normal((10_000, d)).astype(np.float32), columns=[f"f{i}" for i in range(d)])
    block["target"] = rng.integers(0, 3, len(block))
    train_csv = tmp / "pred_train.csv"
    block.to_csv(train_csv, index=False, float_format="%.6g")
    body = block.to_csv(index=False, header=False, float_format="%.6g")
    big = tmp / "pred_big.csv"
    with open(big, "w") as f:
        f.write(",".join(block.columns) + "\n")
        for _ in range(n // len(block)):
            f.write(body)
    cfg = tmp / "pred.yaml"
    cfg.write_text(f"seed: 0\ndata:\n  train: {train_csv}\n  target: target\nmodel:\n  hidden: [64]\ntraining:\n  epochs: 1\n")
    runs = tmp / "pred_runs"
    subprocess.run([*NNCLF, "train", str(cfg), "--runs-dir", str(runs), "--name", "m", "--quiet"], check=True, capture_output=True)
    out = tmp / "pred_out.csv"
    rss = {}

    def nn_run():
        wall, peak = measure([*NNCLF, "predict", str(runs / "m"), str(big), "-o", str(out), "--overwrite"])
        rss.setdefault("nnclf", []).append(peak)
        return wall

    def pd_run():
        wall, peak = measure([PY, "-c", "import sys, pandas; pandas.read_csv(sys.argv[1])", str(big)])
        rss.setdefault("pandas", []).append(peak)
        return wall

    nn = Contestant("nnclf predict (CLI, wall)", nn_run)
    pdc = Contestant("pandas.read_csv alone (wall)", pd_run)
    live = interleave([nn, pdc], 1 if args.quick else 3, warmup=False)
    report(f"streaming predict {n}x{d} CSV ({big.stat().st_size / 2**20:.0f} MB)", live, base_name="nnclf predict (CLI, wall)", unit="s wall")
    ratio = paired_ratio(nn.samples, pdc.samples)
    print(f"nnclf predict / pandas read_csv time: {ratio:.2f}x; rows/s: nnclf {n / statistics.median(nn.samples):,.0f}, "
          f"pandas {n / statistics.median(pdc.samples):,.0f}; peak RSS: nnclf {statistics.median(rss['nnclf']):.0f} MB, "
          f"pandas read_csv {statistics.median(rss['pandas']):.0f} MB")
    ROWS.append({"case": "predict rss", "nnclf_mb": statistics.median(rss["nnclf"]), "pandas_mb": statistics.median(rss["pandas"])})


# -- main -------------------------------------------------------------------------------------
def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    blas = "?"
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')} x{i['num_threads']} threads"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        pass
    versions = f"numpy {np.__version__}"
    if HAVE_SKLEARN:
        import sklearn

        versions += f", scikit-learn {sklearn.__version__}"
    if HAVE_TORCH:
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return f"CPU {cpu}, {os.cpu_count()} cores; BLAS {blas}; Python {platform.python_version()}, {versions}"


CASES = ("wide", "tiny", "threads", "cv", "contention", "e2e", "startup", "predict")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data, few rounds (under a minute)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 5; 3 with --quick)")
    ap.add_argument("--cases", default=None, help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--json", type=Path, default=None, help="also write all rows to this JSON file")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="folder holding an older copy of the package as nnclf_base/, timed side by side "
                         "(mkdir B && git archive REV nnclf | tar -x -C B && mv B/nnclf B/nnclf_base)")
    ap.add_argument("--e2e-hidden", default="[256, 128]")
    ap.add_argument("--e2e-batch", type=int, default=512)
    ap.add_argument("--e2e-epochs", type=int, default=8)
    ap.add_argument("--e2e-lr", type=float, default=4e-3)
    ap.add_argument("--threads", type=int, default=None,
                    help="limit BLAS (numpy, scikit-learn) and torch to N threads for every contestant")
    args = ap.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
        if HAVE_TORCH:
            torch.set_num_threads(args.threads)
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)  # subprocesses
    global BASELINE
    if args.baseline:
        BASELINE = load_baseline(args.baseline)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    cases = args.cases.split(",") if args.cases else (["wide", "tiny", "e2e", "startup"] if args.quick else list(CASES))
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    print(f"# nnclf benchmark {time.strftime('%Y-%m-%d %H:%M')}{' (quick)' if args.quick else ''}")
    print(f"# {machine()}")
    print(f"# command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(f"# OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r} OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '')!r}")
    if not HAVE_SKLEARN:
        print("# scikit-learn not installed: its comparisons are skipped (pip install scikit-learn)")
    if not HAVE_TORCH:
        print("# torch not installed: PyTorch comparisons are skipped (pip install torch)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnclf-bench-") as tmp:
        tmp = Path(tmp)
        for c in cases:
            if c == "wide":
                case_wide(args)
            elif c == "tiny":
                case_tiny(args)
            elif c == "threads":
                case_threads(args)
            elif c == "cv":
                case_cv(args)
            elif c == "contention":
                case_contention(args)
            elif c == "e2e":
                case_e2e(args, tmp)
            elif c == "startup":
                case_startup(args)
            elif c == "predict":
                case_predict(args, tmp)
    print(f"\n# total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(ROWS, indent=1, default=str))


if __name__ == "__main__":
    main()
