"""Several trainings started at the same moment, in separate processes, with the same config.

Without --name they share the timestamp prefix (the clock is frozen in the child processes so
the collision is certain, not a matter of luck): each must get its own folder, complete and
self-consistent, with nothing of another run mixed in. With the same --name exactly one wins
and the others are refused without touching its files.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from nnclf.checkpoint import load_checkpoint

CSV = "a,b,label\n" + "".join(f"{(i * 7) % 11 / 3:.3f},{(i * 5) % 13 - 6},{'xyz'[(i * 7) % 11 % 3]}\n" for i in range(60))
CONFIG = "data: {train: d.csv, target: label}\nmodel: {hidden: [5]}\ntraining: {batch_size: 8}\n"
FROZEN = "20300102-030405"

# A child: imports everything first, freezes the clock, waits for the start signal, then runs
# the real CLI. The wait is a barrier, not a timing assumption: every child is fully loaded
# before any of them creates a folder.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from datetime import datetime, timezone
    import pandas, numpy
    import nnclf.cli, nnclf.runs, nnclf.runfolder, nnclf.data.dataset

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    nnclf.runs.datetime = nnclf.runfolder.datetime = Frozen
    ready, go = sys.argv[1], sys.argv[2]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    sys.argv = ["nnclf", *sys.argv[3:]]
    nnclf.cli.main()
    """
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "child.py").write_text(CHILD)
    return tmp_path


def start_together(folder: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    go = folder / "go"
    procs = []
    for i, args in enumerate(commands):
        ready = folder / f"ready-{i}"
        procs.append((ready, subprocess.Popen([sys.executable, "child.py", ready, go, *args], cwd=folder, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for ready, proc in procs:  # every child loaded and waiting
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
    go.touch()
    results = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def check_run_is_one_piece(run: Path, seed: int, epochs: int) -> None:
    """Every file of the folder belongs to the same training: seed and epochs agree everywhere."""
    config = (run / "config.yaml").read_text()
    assert f"seed: {seed}\n" in config and f"epochs: {epochs}\n" in config
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["seed"] == seed and summary["epochs_run"] == epochs
    assert summary["final"]["train_loss"] == float(rows[-1]["train_loss"])
    _, meta, _ = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["trainer"]["epoch"] == epochs and meta["config"]["seed"] == seed
    assert meta["config"]["training"]["epochs"] == epochs
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_simultaneous_trainings_get_distinct_complete_folders(project):
    n = 4
    commands = [["train", "c.yaml", "--quiet", "--set", f"seed={i}", "--set", f"training.epochs={3 + i}"] for i in range(n)]
    results = start_together(project, commands)
    for r in results:
        assert r.returncode == 0, r.stderr
    printed = [Path(r.stdout.strip()) for r in results]
    assert len(set(printed)) == n
    names = sorted(p.name for p in (project / "runs").iterdir())
    assert names == sorted([f"c-{FROZEN}"] + [f"c-{FROZEN}-{k}" for k in range(2, n + 1)])
    for i, path in enumerate(printed):
        check_run_is_one_piece(project / path, seed=i, epochs=3 + i)

    # nothing interleaved: each folder's weights are exactly those of the same training run alone
    for i, path in enumerate(printed):
        alone = run_cli(["train", "c.yaml", "--quiet", "--name", f"alone-{i}", "--set", f"seed={i}", "--set", f"training.epochs={3 + i}"], project)
        assert alone.exit_code == 0, alone.stderr
        for which in ("best.npz", "last.npz"):
            ours = load_checkpoint(project / path / "checkpoints" / which)
            reference = load_checkpoint(project / "runs" / f"alone-{i}" / "checkpoints" / which)
            assert np.array_equal(ours[0], reference[0]), (path, which)
            assert ours[2].keys() == reference[2].keys()
            for key in ours[2]:
                assert np.array_equal(ours[2][key], reference[2][key]), (path, which, key)


def test_simultaneous_trainings_with_the_same_name_one_wins_and_nothing_is_overwritten(project):
    n = 3
    commands = [["train", "c.yaml", "--quiet", "--name", "same", "--set", f"seed={i}", "--set", "training.epochs=3"] for i in range(n)]
    results = start_together(project, commands)
    winners = [i for i, r in enumerate(results) if r.returncode == 0]
    assert len(winners) == 1, [r.stderr for r in results]
    for i, r in enumerate(results):
        if i != winners[0]:
            assert r.returncode == 1
            assert r.stderr == "error: runs/same: run folder already exists; choose another --name (nothing was overwritten)\n"
    assert [p.name for p in (project / "runs").iterdir()] == ["same"]
    check_run_is_one_piece(project / "runs" / "same", seed=winners[0], epochs=3)
