"""Data-parallel training over MPI: ``mpirun -n K nnclf train CONFIG`` equals one process at the
same global batch within float rounding, repeats bit for bit with the same K, writes one run
folder, resumes, and ends every rank on Ctrl-C or when a rank dies, the checkpoint intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli, write_config

MPIRUN = Path(sys.executable).parent / "mpirun"
try:
    import mpi4py  # noqa: F401

    HAVE_MPI = MPIRUN.exists()
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpirun (pip install '.[mpi]')")

CONFIG = """\
seed: 5
data: {{train: d.csv, target: label}}
model: {{hidden: [12, 8], dropout: {dropout}}}
loss: {{weight_decay: 0.001}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: {epochs}, batch_size: 50, clip_norm: 5.0}}
"""


def _data(folder: Path, n: int = 1237) -> None:  # 865 training rows: the last batch of 15 is uneven too
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    tone = rng.choice(["red", "green", "blue"], n)
    label = np.where(a + (tone == "red") > b, "yes", np.where(a > 1, "maybe", "no"))
    pd.DataFrame({"a": a.round(4), "b": b.round(4), "tone": tone, "label": label}).to_csv(folder / "d.csv", index=False)


def _setup(tmp_path: Path, epochs: int = 3, dropout: float = 0.0) -> None:
    _data(tmp_path)
    write_config(tmp_path, CONFIG.format(epochs=epochs, dropout=dropout), "c.yaml")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def mpirun(folder: Path, args: list[str], n: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [str(MPIRUN), "-n", str(n), sys.executable, "-m", "nnclf", *args]
    return subprocess.run(command, cwd=folder, env=_env(), capture_output=True, text=True, timeout=timeout)


def _checkpoint(run: Path, which: str = "last") -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"{which}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "meta"}


def _metrics(run: Path) -> list[list[float]]:
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    return [[float(v) if v else float("nan") for v in row.split(",")[:-1]] for row in rows]  # without seconds


@needs_mpi
def test_two_processes_equal_one_and_repeat_bit_for_bit(tmp_path):
    _setup(tmp_path)
    one = run_cli(["train", "c.yaml", "--name", "one", "--quiet"], tmp_path)
    assert one.exit_code == 0, one.stderr
    for name in ("two", "two-again"):
        r = mpirun(tmp_path, ["train", "c.yaml", "--name", name, "--quiet"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(Path("runs") / name)  # rank 0 alone reports
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two", "two-again"]
    a, b, c = _checkpoint(runs / "one"), _checkpoint(runs / "two"), _checkpoint(runs / "two-again")
    for key in a:
        assert b[key].tobytes() == c[key].tobytes(), key  # same K: the same bits
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)  # one process: rounding only
    assert a["params"].tobytes() != b["params"].tobytes()  # (the parts are summed in another order)
    np.testing.assert_allclose(np.array(_metrics(runs / "two")), np.array(_metrics(runs / "one")), rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(np.array(_metrics(runs / "two")), np.array(_metrics(runs / "two-again")))
    summary = json.loads((runs / "two" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["status"] == "finished"
    assert json.loads((runs / "one" / "summary.json").read_text())["ranks"] == 1


@needs_mpi
def test_dropout_under_mpi_repeats_with_the_same_k(tmp_path):
    _setup(tmp_path, epochs=2, dropout=0.3)
    for name in ("a", "b"):
        r = mpirun(tmp_path, ["train", "c.yaml", "--name", name, "--quiet"])
        assert r.returncode == 0, r.stderr
    a, b = _checkpoint(tmp_path / "runs" / "a"), _checkpoint(tmp_path / "runs" / "b")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_mpi_flag_refuses_without_a_launcher(tmp_path):
    _setup(tmp_path)
    r = run_cli(["train", "c.yaml", "--mpi"], tmp_path)
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: --mpi: not started by an MPI launcher; run: mpirun -n K nnclf train CONFIG"
    assert not (tmp_path / "runs").exists()


@needs_mpi
def test_mpi_flag_refuses_a_single_process_launch(tmp_path):
    _setup(tmp_path)
    r = mpirun(tmp_path, ["train", "c.yaml", "--mpi"], n=1)
    assert r.returncode == 1 and "started a single process" in r.stderr
    assert "Traceback" not in r.stderr


@needs_mpi
def test_a_bad_config_is_reported_once(tmp_path):
    _setup(tmp_path)
    write_config(tmp_path, CONFIG.format(epochs=3, dropout=0.0).replace("adam", "adma"), "bad.yaml")
    r = mpirun(tmp_path, ["train", "bad.yaml"])
    assert r.returncode != 0
    assert r.stderr.count("unknown optimizer 'adma'") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@needs_mpi
def test_resume_with_the_same_k_continues_bit_for_bit(tmp_path):
    _setup(tmp_path, epochs=4)
    assert mpirun(tmp_path, ["train", "c.yaml", "--name", "straight", "--quiet"]).returncode == 0
    assert mpirun(tmp_path, ["train", "c.yaml", "--name", "cut", "--quiet", "--set", "training.epochs=2"]).returncode == 0
    r = mpirun(tmp_path, ["train", "--resume", "runs/cut", "--set", "training.epochs=4", "--quiet"])
    assert r.returncode == 0, r.stderr
    a, b = _checkpoint(tmp_path / "runs" / "straight"), _checkpoint(tmp_path / "runs" / "cut")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    np.testing.assert_array_equal(np.array(_metrics(tmp_path / "runs" / "straight")), np.array(_metrics(tmp_path / "runs" / "cut")))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rank_pids(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the Python processes below ``launcher_pid`` (from their PMI_RANK)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:" not in status:
            continue
        rank = next((v.split(b"=", 1)[1] for v in environ if v.startswith(b"PMI_RANK=")), None)
        if rank is not None and b"nnclf" in (entry / "cmdline").read_bytes() and _descends(int(entry.name), launcher_pid):
            found[int(rank)] = int(entry.name)
    return found


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return False


# An epoch of the test's data takes a few milliseconds: a run that a signal is to stop must be
# one that nothing else ends first (with 150 epochs, a loaded machine delivered the Ctrl-C after
# the run had finished, while the ranks were exiting, and they died of it)
ENDLESS = 1_000_000


@pytest.fixture
def long_run(tmp_path):
    """Start ``mpirun -n 2 nnclf train`` of ENDLESS epochs in the background; kill it at teardown."""
    jobs: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        command = [str(MPIRUN), "-n", "2", sys.executable, "-m", "nnclf", "train", "c.yaml", "--name", name, "--quiet",
                   "--set", f"training.epochs={ENDLESS}"]
        jobs.append(subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True))
        return jobs[-1]

    yield start
    for job in jobs:
        if job.poll() is None:  # a failed test left it running: end its ranks (each in a session of its own) and mpirun
            for pid in _rank_pids(job.pid).values():
                os.kill(pid, signal.SIGKILL)
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


@needs_mpi
@pytest.mark.slow
def test_ctrl_c_stops_every_rank_at_one_batch_and_resume_finishes_the_run(tmp_path, long_run):
    _setup(tmp_path)
    job = long_run("cut")
    last = tmp_path / "runs" / "cut" / "checkpoints" / "last.npz"
    _wait_for(last.exists, 120, "the first checkpoint")
    time.sleep(0.3)
    job.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does: mpirun forwards it to every rank
    out, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    assert "interrupted after epoch" in err and err.count("interrupted after epoch") == 1
    summary = json.loads((tmp_path / "runs" / "cut" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    # the stop came at the same batch on both ranks, or the resumed run would not match one that
    # ran the same epochs without a stop (nothing in this config depends on training.epochs)
    epochs = f"training.epochs={summary['epochs_run'] + 2}"
    r = mpirun(tmp_path, ["train", "--resume", "runs/cut", "--quiet", "--set", epochs], timeout=600)
    assert r.returncode == 0, r.stderr
    straight = mpirun(tmp_path, ["train", "c.yaml", "--name", "straight", "--quiet", "--set", epochs], timeout=600)
    assert straight.returncode == 0, straight.stderr
    a, b = _checkpoint(tmp_path / "runs" / "straight"), _checkpoint(tmp_path / "runs" / "cut")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


@needs_mpi
@pytest.mark.slow
def test_a_rank_whose_copy_of_the_signal_comes_late_ignores_it(tmp_path, long_run):
    # mpirun forwards Ctrl-C to each rank in turn; on a loaded machine one rank's copy can come
    # after every rank agreed (on the other's signal) to stop. Here rank 0 alone is signalled, and
    # rank 1 gets its copy 0.2 s later: whenever it lands, the run ends as one Ctrl-C would end it.
    _setup(tmp_path)
    job = long_run("late")
    _wait_for((tmp_path / "runs" / "late" / "checkpoints" / "last.npz").exists, 120, "the first checkpoint")
    pids: dict[int, int] = {}
    _wait_for(lambda: len(pids.update(_rank_pids(job.pid)) or pids) == 2, 30, "both ranks")
    os.kill(pids[0], signal.SIGINT)
    time.sleep(0.2)
    try:
        os.kill(pids[1], signal.SIGINT)
    except ProcessLookupError:  # it had ended already
        pass
    out, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    assert err.count("interrupted") == err.count("interrupted after epoch") == 1, err
    assert json.loads((tmp_path / "runs" / "late" / "summary.json").read_text())["status"] == "interrupted"


@needs_mpi
@pytest.mark.slow
def test_a_dying_rank_ends_every_rank_and_the_checkpoint_survives(tmp_path, long_run):
    _setup(tmp_path)
    job = long_run("dead")
    last = tmp_path / "runs" / "dead" / "checkpoints" / "last.npz"
    _wait_for(last.exists, 120, "the first checkpoint")
    pids: dict[int, int] = {}
    _wait_for(lambda: len(pids.update(_rank_pids(job.pid)) or pids) == 2, 30, "both ranks")
    os.kill(pids[1], signal.SIGKILL)
    started = time.monotonic()
    job.communicate(timeout=60)
    assert job.returncode != 0 and time.monotonic() - started < 30
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids.values()), 30, "every rank to end")
    from nnclf.checkpoint import load_checkpoint

    params, meta, _ = load_checkpoint(last)  # complete and valid (the writes are atomic)
    assert meta["ranks"] == 2 and np.all(np.isfinite(params))
    r = mpirun(tmp_path, ["train", "--resume", "runs/dead", "--set", f"training.epochs={meta['trainer']['epoch'] + 2}", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "runs" / "dead" / "summary.json").read_text())["status"] == "finished"


def test_a_launcher_without_mpi4py_names_the_extra(monkeypatch):
    from nnclf.distributed import communicator
    from nnclf.errors import NnclfError

    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails as if not installed
    with pytest.raises(NnclfError) as e:
        communicator(False)
    assert str(e.value) == ('training under MPI needs mpi4py and an MPI library: pip install ".[mpi]" (from a clone) '
                            'or pip install "nnclf[mpi]"')


def test_each_rank_reads_its_rows_of_the_batch():
    from nnclf.distributed import DataParallelStep

    class Comm:
        def __init__(self, rank, size):
            self.rank, self.size = rank, size

    for size in (1, 2, 3, 5):
        for lo, hi in [(0, 50), (50, 65), (10, 12)]:
            parts = [DataParallelStep(None, Comm(r, size)).part(lo, hi) for r in range(size)]
            assert parts[0][0] == lo and parts[-1][1] == hi
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, no overlap
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1  # as even as the rows allow
