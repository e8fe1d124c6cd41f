"""What a resume may change (issue 13): only what can change mid-run; anything else is refused
before anything is written, naming the key, whether it comes from --set or from an edit to
RUN/config.yaml; a resume with nothing to do says so; a run folder being trained in is locked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli, write_config

CSV = "a,b,tone,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{'dark' if i % 3 else 'pale'},{i % 2}\n" for i in range(60))
CONFIG = """\
seed: 3
data: {train: d.csv, target: label}
model: {hidden: [4]}
optimizer: {name: adam, lr: 0.01}
training: {epochs: 3, batch_size: 8}
"""


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG, "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", tmp_path)
    assert r.exit_code == 0, r.stderr
    return tmp_path / "runs" / "r"


FIXED = {
    "model.hidden=[8]": ("model.hidden", "[4] -> [8]", "it changes the network mid-run"),
    "model.activation=tanh": ("model.activation", "relu -> tanh", "it changes the network mid-run"),
    "seed=4": ("seed", "3 -> 4", "the split and the initial weights come from it"),
    "data.val_split=0.3": ("data.val_split", "0.1 -> 0.3", "the run was trained on this data and split"),
    "optimizer.name=sgd": ("optimizer.name", "adam -> sgd", "a resume continues the same training"),
    "training.batch_size=4": ("training.batch_size", "8 -> 4", "a resume continues the same training"),
    "training.dtype=float64": ("training.dtype", "float32 -> float64", "a resume continues the same training"),
}


@pytest.mark.parametrize("override", list(FIXED))
def test_a_fixed_key_is_refused_by_name_before_anything_is_written(run, override):
    key, change, why = FIXED[override]
    before = snapshot(run)
    r = run_cli(["train", "--resume", run, "--set", override, "--set", "training.epochs=5"], run.parent.parent)
    assert r.exit_code == 1, r.stderr
    assert r.stderr.startswith(f"error: --set: {key}: a resume cannot change it ({change}; {why})"), r.stderr
    assert "nothing was changed" in r.stderr and len(r.stderr.splitlines()) == 1
    assert snapshot(run) == before


def test_an_edit_to_config_yaml_of_a_fixed_key_is_refused_not_ignored(run):
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("activation: relu", "activation: tanh"))
    before = snapshot(run)
    r = run_cli(["train", "--resume", run, "--set", "training.epochs=5"], run.parent.parent)
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {config}: model.activation: a resume cannot change it"), r.stderr
    assert snapshot(run) == before


def test_an_edit_to_config_yaml_of_a_resumable_key_is_honoured_and_said(run):
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 3", "epochs: 5").replace("lr: 0.01", "lr: 0.002"))
    r = run_cli(["train", "--resume", run, "--quiet"], run.parent.parent)
    assert r.exit_code == 0, r.stderr
    assert "resuming with your edit training.epochs: 3 -> 5" in r.stderr
    assert "resuming with your edit optimizer.lr: 0.01 -> 0.002" in r.stderr
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r.split(",")[1]) for r in rows] == [0.01, 0.01, 0.01, 0.002, 0.002]  # the lr actually used


@pytest.mark.parametrize("override", ["optimizer.lr=0.001", "schedule.name=cosine", "training.checkpoint_every=2",
                                      "training.threads=1", "training.early_stopping={monitor: val_loss, patience: 2}"])
def test_what_may_change_mid_run_is_accepted(run, override):
    r = run_cli(["train", "--resume", run, "--set", override, "--set", "training.epochs=5", "--quiet"], run.parent.parent)
    assert r.exit_code == 0, r.stderr
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 5 or "early" in override


def test_a_resume_with_nothing_to_do_says_so_and_writes_nothing(run):
    before = snapshot(run)
    r = run_cli(["train", "--resume", run], run.parent.parent)
    assert r.exit_code == 0
    assert r.stderr == (f"nothing to do: run {run} already trained 3 of 3 epochs; "
                        f"to train longer: nnclf train --resume {run} --set training.epochs=N (N > 3)\n")
    assert snapshot(run) == before


def test_a_changed_data_file_is_reported_as_such(run):
    (run.parent.parent / "d.csv").write_text(CSV.replace("pale", "grey"))
    r = run_cli(["train", "--resume", run, "--set", "training.epochs=5"], run.parent.parent)
    assert r.exit_code == 1
    assert "the training data changed since run r started" in r.stderr


# -- the lock --------------------------------------------------------------------------------------
def test_a_second_trainer_in_a_locked_run_folder_is_refused(run):
    project = run.parent.parent
    long = project / "long.yaml"
    write_config(project, CONFIG.replace("epochs: 3", "epochs: 100000").replace("batch_size: 8", "batch_size: 2"), "long.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "nnclf", "train", long, "--name", "busy", "--quiet"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = project / "runs" / "busy"
    try:
        deadline = time.time() + 120
        while not (busy / "checkpoints" / "last.npz").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        r = run_cli(["train", "--resume", "runs/busy"], project)
        assert r.exit_code == 1
        assert r.stderr == (f"error: runs/busy: another nnclf process (pid {proc.pid}) is training in this run folder; "
                            "wait for it to finish or stop it first (nothing was changed)\n")
        listed = json.loads(run_cli("runs --json", project).stdout)
        assert {row["run"]: row["status"] for row in listed}["busy"] == "training"
    finally:
        proc.kill()
        proc.communicate()
    # the kernel drops the lock with the process, however it died: the run resumes
    r = run_cli(["train", "--resume", "runs/busy", "--set", "training.epochs=1"], project)
    assert r.exit_code == 0 and r.stderr.startswith("nothing to do: run runs/busy already trained"), r.stderr


def test_the_lock_holder_is_read_from_proc_locks_and_absent_without_it(tmp_path):
    from nnclf.runfolder import lock_holder

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.fstat(fd)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
        table = tmp_path / "locks"
        table.write_text(f"1: POSIX  ADVISORY  WRITE 11 {dev}:{st.st_ino} 0 EOF\n"  # a POSIX lock: not ours
                         f"2: FLOCK  ADVISORY  WRITE 4242 {dev}:{st.st_ino + 1} 0 EOF\n"  # another inode
                         f"3: FLOCK  ADVISORY  WRITE 777 {dev}:{st.st_ino} 0 EOF\n"
                         "4: garbage\n")
        assert lock_holder(fd, str(table)) == 777
        table.write_text("")
        assert lock_holder(fd, str(table)) is None
        assert lock_holder(fd, str(tmp_path / "absent")) is None
    finally:
        os.close(fd)
