"""`nnclf runs` and the run folder's own files (issue 13, issue 11's RunFolder): one damaged run
is marked and the rest listed; --json is strict JSON (never NaN); runs sort by start time, not
by modification time; the run name is never cut; damaged run-folder files are one-line errors;
a bad --runs-dir or run name is refused before anything is made."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from conftest import run_cli, write_config

CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))
CONFIG = "seed: 1\ndata: {train: d.csv, target: label}\nmodel: {hidden: [4]}\ntraining: {epochs: 2, batch_size: 8}\n"


def strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG, "c.yaml")
    for name in ("good", "bad"):
        r = run_cli(["train", "c.yaml", "--name", name, "--quiet"], tmp_path)
        assert r.exit_code == 0, r.stderr
    return tmp_path


DAMAGE = {
    "summary not JSON": ("summary.json", b"{not json", "line 1: not valid JSON"),
    "summary a list": ("summary.json", b"[1, 2]", "expected a JSON object, found a list"),
    "status a number": ("summary.json", b'{"status": 3}', "'status' should be a str, found a number"),
    "epochs a list": ("summary.json", b'{"status": "finished", "epochs_run": [1]}', "'epochs_run' should be a int, found a list"),
    "test a string": ("summary.json", b'{"status": "finished", "test": "x"}', "'test' should be an object"),
    "deep nesting": ("summary.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "NaN in summary": ("summary.json", b'{"status": "finished", "best_value": NaN}', "NaN is not JSON"),
    "binary summary": ("summary.json", b"\xff\xfe\x00garbage", "cannot read"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_one_damaged_run_is_marked_and_the_others_listed(project, damage):
    name, content, reason = DAMAGE[damage]
    (project / "runs" / "bad" / name).write_bytes(content)
    for args in (["runs"], ["runs", "--json"]):
        r = run_cli(args, project)
        assert r.exit_code == 0, r.stderr
        assert "Traceback" not in r.stderr
    rows = {row["run"]: row for row in strict_json(run_cli("runs --json", project).stdout)}
    assert rows["good"]["status"] == "finished" and rows["good"]["epochs"] == 2
    assert rows["bad"]["status"].startswith("damaged (") and reason in rows["bad"]["status"], rows["bad"]["status"]
    assert "bad" in run_cli("runs", project).stdout


def test_a_checkpoint_that_is_garbage_marks_only_its_run(project):
    (project / "runs" / "bad" / "summary.json").unlink()
    (project / "runs" / "bad" / "checkpoints" / "last.npz").write_bytes(b"PK\x03\x04garbage")
    rows = {row["run"]: row for row in strict_json(run_cli("runs --json", project).stdout)}
    assert rows["good"]["status"] == "finished"
    assert rows["bad"]["status"].startswith("damaged (") and "not a valid checkpoint" in rows["bad"]["status"]


def test_a_killed_run_is_described_from_its_checkpoint(project):
    (project / "runs" / "bad" / "summary.json").unlink()
    rows = {row["run"]: row for row in strict_json(run_cli("runs --json", project).stdout)}
    assert rows["bad"]["status"] == "incomplete (killed; resumable)" and rows["bad"]["epochs"] == 2 and rows["bad"]["config"] == "c"


def test_runs_json_never_prints_nan(project):
    summary = project / "runs" / "good" / "summary.json"
    data = json.loads(summary.read_text())
    data["test"]["accuracy"] = float("nan")  # written by something else than nnclf
    summary.write_text(json.dumps(data))  # json.dumps writes NaN
    r = run_cli("runs --json", project)
    rows = {row["run"]: row for row in strict_json(r.stdout)}
    assert rows["good"]["status"].startswith("damaged (") and "NaN" in rows["good"]["status"]


def test_runs_sort_by_start_time_not_modification_time(project):
    r = run_cli(["train", "c.yaml", "--name", "third", "--quiet"], project)
    assert r.exit_code == 0
    later = time.time() + 3600
    for path in [project / "runs" / "good", *(project / "runs" / "good").rglob("*")]:  # e.g. `report` wrote into it
        os.utime(path, (later, later))
    rows = strict_json(run_cli("runs --json", project).stdout)
    assert [r["run"] for r in rows] == ["third", "bad", "good"]
    assert all(r["started"] == r["date"] and r["started"] for r in rows)


def test_the_run_name_is_never_cut(project):
    name = "a-rather-long-run-name-that-someone-will-copy-and-paste-into-the-resume-command-" + "x" * 40
    r = run_cli(["train", "c.yaml", "--name", name, "--quiet"], project)
    assert r.exit_code == 0, r.stderr
    table = run_cli("runs", project).stdout  # 80 columns: not a terminal
    assert any(name in line for line in table.splitlines()), table


@pytest.mark.parametrize("name", ["r\n", "r\r", "\nr", "r\x00"])
def test_a_run_name_with_a_control_character_is_refused(project, name):
    r = run_cli(["train", "c.yaml", "--name", name], project)
    assert r.exit_code == 1
    assert "a run name may use letters, digits" in r.stderr and len(r.stderr.splitlines()) == 1
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["bad", "good"]


def test_a_runs_dir_that_is_a_file_is_refused(project):
    (project / "afile").write_text("x")
    r = run_cli("train c.yaml --runs-dir afile", project)
    assert r.exit_code == 1 and r.stderr == "error: --runs-dir afile: is a file, expected a folder for run folders\n"
    r = run_cli("train c.yaml --runs-dir afile/sub", project)
    assert r.exit_code == 1 and r.stderr == "error: --runs-dir afile/sub: a part of the path is a file, expected folders\n"
    r = run_cli("runs afile", project)
    assert r.exit_code == 1 and r.stderr == "error: afile: is a file, not a runs folder\n"
    assert (project / "afile").read_text() == "x"


def test_a_read_only_runs_dir_is_refused(project, monkeypatch):
    import nnclf.runfolder

    (project / "ro").mkdir()
    # tests run as root, for whom every folder is writable: simulate the permission answer
    monkeypatch.setattr(nnclf.runfolder, "_writable", lambda path: False)
    r = run_cli("train c.yaml --runs-dir ro", project)
    monkeypatch.undo()
    assert r.exit_code == 1
    assert r.stderr == "error: --runs-dir ro: not writable (permission denied); choose another --runs-dir\n"
    assert list((project / "ro").iterdir()) == []


# -- damaged run-folder files used by evaluate / resume / report -----------------------------------
SPLITS_DAMAGE = {
    "not a zip": lambda p: p.write_bytes(b"garbage"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "floats for rows": lambda p: np.savez(p, train=np.zeros(3), test=np.array([0.5, 1.5])),
    "a matrix": lambda p: np.savez(p, train=np.zeros(3, dtype=np.int64), test=np.zeros((2, 2), dtype=np.int64)),
    "pickled": lambda p: np.savez(p, test=np.array([object()], dtype=object)),
    "negative rows": lambda p: np.savez(p, train=np.zeros(3, dtype=np.int64), test=np.array([-5])),
}


@pytest.mark.parametrize("damage", list(SPLITS_DAMAGE))
def test_a_damaged_splits_file_is_one_line(project, damage):
    splits = project / "runs" / "good" / "splits.npz"
    SPLITS_DAMAGE[damage](splits)
    r = run_cli("evaluate runs/good", project)
    assert r.exit_code == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runs/good/splits.npz: "), r.stderr


@pytest.mark.parametrize("content, reason", [
    ("epoch,lr\n1,abc\n", "line 2: a value is not a number"),
    ("epoch,lr\n1,0.1,7\n", "line 2: expected 2 fields like the header, saw 3"),
    ("what,ever\n", "line 1: not an nnclf metrics header"),
    ("epoch,lr\n2,0.1\n", "line 2: expected epoch 1"),
])
def test_damaged_metrics_are_one_line_for_report_and_resume(project, content, reason):
    (project / "runs" / "good" / "metrics.csv").write_text(content)
    for args in (["train", "--resume", "runs/good", "--set", "training.epochs=3"], ["report", "runs/good"]):
        r = run_cli(args, project)
        assert r.exit_code == 1, (args, r.stderr)
        assert r.stderr.startswith("error: runs/good/metrics.csv, " + reason) and len(r.stderr.splitlines()) == 1, r.stderr
