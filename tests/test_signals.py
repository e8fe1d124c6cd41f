"""SIGTERM and SIGHUP (docker stop, Kubernetes, Slurm, a closed terminal) are handled like
Ctrl-C: train finishes the batch, saves, prints the resume command and exits 143 / 129;
predict removes its temporary file. A second interrupt mid-batch marks the run abandoned so
`nnclf runs` and resume say so plainly. Real processes, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli, write_config
from nnclf.checkpoint import load_checkpoint

CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(60))
LONG = "seed: 1\ndata: {train: d.csv, target: label}\nmodel: {hidden: [8]}\ntraining: {epochs: 1000000, batch_size: 2}\n"


def start(args, cwd: Path) -> subprocess.Popen:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-m", "nnclf", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, LONG, "long.yaml")
    return tmp_path


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_a_termination_signal_saves_and_says_how_to_resume(project, signum, code, name):
    proc = start(["train", "long.yaml", "--name", "t", "--quiet"], project)
    run = project / "runs" / "t"
    wait_for(lambda: (run / "checkpoints" / "last.npz").exists(), proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"stopped by {name} after epoch " in stderr and "checkpoint saved. Resume with: nnclf train --resume runs/t" in stderr
    assert "Traceback" not in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    _, meta, _ = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["trainer"]["epoch"] == summary["epochs_run"]
    resumed = run_cli(["train", "--resume", run, "--set", f"training.epochs={summary['epochs_run'] + 2}", "--quiet"], project)
    assert resumed.exit_code == 0, resumed.stderr


def test_predict_killed_by_sigterm_leaves_no_temporary_file(project, tmp_path):
    r = run_cli("train long.yaml --name p --quiet --set training.epochs=1", project)
    assert r.exit_code == 0, r.stderr
    rng = np.random.default_rng(0)
    big = project / "big.csv"
    rows = rng.integers(0, 9, size=(400_000, 2))
    big.write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    proc = start(["predict", "runs/p", "big.csv", "-o", "out.csv", "--chunk-rows", "1000"], project)
    wait_for(lambda: any(p.name.endswith(".tmp") for p in project.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "terminated (SIGTERM)"
    assert not [p for p in project.iterdir() if p.name.endswith(".tmp")]
    assert not (project / "out.csv").exists()


def test_a_second_interrupt_mid_batch_marks_the_run_abandoned(project):
    # one slow full batch per epoch made of many short matrix products (a signal is handled
    # between them), so the second Ctrl-C lands inside a batch
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, 20))
    (project / "wide.csv").write_text(
        ",".join(f"f{i}" for i in range(20)) + ",label\n"
        + "\n".join(",".join(f"{v:.3f}" for v in row) + f",{int(row[0] > 0)}" for row in x) + "\n"
    )
    write_config(project, "data: {train: wide.csv, target: label}\nmodel: {hidden: [256, 256, 256, 256, 256, 256, 256, 256, 256, 256, 256, 256]}\n"
                          "training: {epochs: 1000, batch_size: full, checkpoint_every: 1000}\n", "wide.yaml")
    proc = start(["train", "wide.yaml", "--name", "a", "--quiet"], project)
    run = project / "runs" / "a"
    wait_for(lambda: (run / "splits.npz").exists(), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted again: stopped at once; run runs/a was abandoned before its first checkpoint" in stderr, stderr
    assert "Traceback" not in stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "abandoned"
    assert not (run / "checkpoints" / "last.npz").exists()
    listed = {r["run"]: r["status"] for r in json.loads(run_cli("runs --json", project).stdout)}
    assert listed["a"] == "abandoned (no checkpoint)"
    r = run_cli(["train", "--resume", "runs/a"], project)
    assert r.exit_code == 1
    assert r.stderr == ("error: runs/a: the run was abandoned (stopped twice) before its first checkpoint; "
                        "there is nothing to resume: start a new training\n")
