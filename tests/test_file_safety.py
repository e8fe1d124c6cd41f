"""nnclf writes only where it is told to, and a failed write never costs a file.

Run names cannot escape the runs folder; a whole session (train, evaluate, predict, resume...)
changes nothing outside the runs folder and the predict output named on the command line; a
write that fails (disk full, permission denied: simulated, since tests run as root) leaves the
previous file intact, no temporary file behind, and one line saying which file failed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import nnclf.checkpoint
import nnclf.files
from conftest import run_cli, write_config
from nnclf.checkpoint import load_checkpoint

CSV = "a,b,tone,label\n" + "".join(
    f"{(i * 7) % 11 / 3:.3f},{(i * 5) % 13 - 6},{'dark' if i % 3 else 'pale'},{'yes' if i % 2 else 'no'}\n" for i in range(40)
)
CONFIG = "seed: 3\ndata: {train: d.csv, target: label}\nmodel: {hidden: [4]}\ntraining: {epochs: 3, batch_size: 8}\n"
NAME_RULE = "a run name may use letters, digits, '.', '_' and '-'"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: relative path -> (kind, size, mtime_ns, sha256)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            state[rel] = ("dir",)
        else:
            st = path.stat()
            state[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def changed(before: dict, after: dict) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG, "c.yaml")
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run (read-only for the tests that use it)."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "d.csv").write_text(CSV)
    write_config(folder, CONFIG, "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / "r", folder / "d.csv"


# -- run names ---------------------------------------------------------------------------------
UNSAFE_NAMES = [
    "..",
    "../escape",
    "../../escape",
    "/tmp/nnclf-absolute-run",
    "a/b",
    "a/../b",
    "./a",
    "a\\b",
    "",
    " ",
    "x" * 129,
    ".hidden",
    "-rf",
    "a..b",
    "a\nb",
    "a\x00b",
    "name with spaces",
    "ünïcode",
    "~",
    "$HOME",
    "a:b",
    "con*",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=lambda n: repr(n)[:20])
def test_unsafe_run_names_are_rejected_before_anything_is_written(project, name):
    before = snapshot(project.parent)
    r = run_cli(["train", "c.yaml", "--name", name], project)
    line = one_line_error(r)
    assert line.startswith("error: --name ") and NAME_RULE in line
    assert snapshot(project.parent) == before  # nothing created, here or next to the project
    assert not Path("/tmp/nnclf-absolute-run").exists()


def test_the_longest_allowed_name_works_and_stays_inside_the_runs_folder(project):
    name = "a" + "b.c-d_" * 21 + "e"  # 128 characters
    assert len(name) == 128
    r = run_cli(["train", "c.yaml", "--name", name, "--quiet"], project)
    assert r.exit_code == 0, r.stderr
    assert [p.name for p in (project / "runs").iterdir()] == [name]


@pytest.mark.parametrize(
    "stem",
    ["..", "...", "-rf", "a b;c", "$(touch pwned)", "ünïcødé", "x" * 200, "__", ".hidden", "a\\b"],
    ids=lambda s: repr(s)[:16],
)
def test_default_names_from_hostile_config_file_names_stay_one_safe_component(project, stem):
    config = project / f"{stem}.yaml"
    config.write_text(CONFIG.replace("d.csv", str(project / "d.csv")))
    before = snapshot(project)
    r = run_cli(["train", str(config), "--quiet"], project)
    assert r.exit_code == 0, r.stderr
    runs = list((project / "runs").iterdir())
    assert len(runs) == 1
    folder = runs[0]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", folder.name) and ".." not in folder.name
    assert len(folder.name) <= 128
    assert folder.resolve().parent == (project / "runs").resolve()
    assert not (project / "pwned").exists()
    assert all(p.startswith("runs") for p in changed(before, snapshot(project)))


# -- where a whole session writes -------------------------------------------------------------
def test_a_whole_session_writes_only_into_its_runs_folder_and_the_named_output(tmp_path):
    inputs, work = tmp_path / "inputs", tmp_path / "work"
    inputs.mkdir()
    work.mkdir()
    (work / "out").mkdir()
    (inputs / "d.csv").write_text(CSV)
    (inputs / "new.csv").write_text(CSV.replace(",yes\n", ",\n"))
    write_config(inputs, CONFIG, "c.yaml")
    before = snapshot(tmp_path)

    steps = [
        ["config", inputs / "c.yaml"],
        ["train", inputs / "c.yaml", "--name", "r", "--runs-dir", "store/runs", "--quiet"],
        ["evaluate", "store/runs/r"],
        ["evaluate", "store/runs/r", inputs / "d.csv", "--json", "--checkpoint", "last"],
        ["predict", "store/runs/r", inputs / "new.csv"],
        ["predict", "store/runs/r", inputs / "new.csv", "-o", "out/p.csv"],
        ["predict", "store/runs/r", inputs / "new.csv", "-o", "out/p.csv", "--overwrite", "--chunk-rows", "7"],
        ["gradcheck", inputs / "c.yaml", "--samples", "4"],
        ["runs", "store/runs"],
        ["train", "--resume", "store/runs/r", "--set", "training.epochs=5", "--quiet"],
    ]
    for args in steps:
        r = run_cli(args, work)
        assert r.exit_code == 0, (args, r.stderr)

    touched = changed(before, snapshot(tmp_path))
    allowed = {"work/store", "work/store/runs", "work/out/p.csv"}
    outside = {p for p in touched if p not in allowed and not p.startswith("work/store/runs/r")}
    assert outside == set()
    assert "work/out/p.csv" in touched and "work/store/runs/r/checkpoints/last.npz" in touched
    assert temp_files(tmp_path) == []
    assert (work / "out" / "p.csv").read_text().count("\n") == 41


# -- failing writes: predict output ------------------------------------------------------------
def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eacces(*_args, **_kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


class _FillingFile:
    """A file object whose disk fills up after ``room`` bytes."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            self._f.write(bytes(data)[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _disk_fills_after(room: int):
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        return _FillingFile(real(fd, *args, **kwargs), room)

    return fdopen


FAULTS = {
    # name: (what to patch, replacement, the reason the message must give)
    "disk full while writing": ("fdopen", _disk_fills_after(100), "No space left on device"),
    "disk full at fsync": ("fsync", _enospc, "No space left on device"),
    "permission denied at rename": ("replace", _eacces, "Permission denied"),
    "read-only folder (no temp file)": ("mkstemp", _eacces, "Permission denied"),
}


def _inject(monkeypatch, where: str, fake) -> None:
    target = nnclf.files.tempfile if where == "mkstemp" else nnclf.files.os
    monkeypatch.setattr(target, where, fake)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_predict_write_keeps_the_previous_file_and_says_why(tmp_path, trained, monkeypatch, fault):
    run, data = trained
    where, fake, reason = FAULTS[fault]
    (tmp_path / "p.csv").write_text("previous predictions\n")
    before = snapshot(tmp_path)
    _inject(monkeypatch, where, fake)
    r = run_cli(["predict", run, data, "-o", "p.csv", "--overwrite"], tmp_path)
    monkeypatch.undo()
    line = one_line_error(r)
    assert line.startswith("error: p.csv: could not write") and reason in line, line
    assert "previous file is unchanged" in line
    assert snapshot(tmp_path) == before  # the old file intact, no temp file left

    _inject(monkeypatch, where, fake)
    r = run_cli(["predict", run, data, "-o", "fresh.csv"], tmp_path)
    monkeypatch.undo()
    line = one_line_error(r)
    assert "fresh.csv: could not write" in line and reason in line and "nothing was written" in line
    assert snapshot(tmp_path) == before

    # and with the fault gone, the same command works: the failure left nothing in the way
    r = run_cli(["predict", run, data, "-o", "p.csv", "--overwrite"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p.csv").read_text().startswith("prediction,proba_no,proba_yes\n")


# -- failing writes during training ------------------------------------------------------------
def _epoch_of(path: Path) -> int:
    return load_checkpoint(path)[1]["trainer"]["epoch"]


def _fail_replace_on_second_write_of(names: set[str], error):
    real, seen = os.replace, {}

    def replace(src, dst, *args, **kwargs):
        name = Path(dst).name
        if name in names:
            seen[name] = seen.get(name, 0) + 1
            if seen[name] >= 2:
                raise error
        return real(src, dst, *args, **kwargs)

    return replace


def _fail_savez_from_epoch(epoch: int):
    """np.savez that writes half a checkpoint then hits a full disk, for checkpoints of ``epoch``+."""
    real = np.savez

    def savez(f, *args, **kwargs):
        meta = kwargs.get("meta")
        if meta is not None and json.loads(str(meta))["trainer"]["epoch"] >= epoch:
            f.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, *args, **kwargs)

    return savez


@pytest.mark.parametrize(
    "fault, failing, reason",
    [
        ("replace", "last.npz", "No space left on device"),
        ("replace", "metrics.csv", "Permission denied"),
        ("savez", "checkpoints/", "No space left on device"),
    ],
)
def test_a_failed_write_during_training_keeps_the_last_good_files_and_the_run_resumes(project, monkeypatch, fault, failing, reason):
    if fault == "replace":
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if reason.startswith("No space") else PermissionError(
            errno.EACCES, os.strerror(errno.EACCES)
        )
        monkeypatch.setattr(nnclf.files.os, "replace", _fail_replace_on_second_write_of({failing}, error))
    else:
        monkeypatch.setattr(nnclf.checkpoint.np, "savez", _fail_savez_from_epoch(2))
    r = run_cli("train c.yaml --name r --quiet", project)
    monkeypatch.undo()

    line = one_line_error(r)
    run = project / "runs" / "r"
    assert f"{Path('runs') / 'r'}/" in line and failing in line and reason in line, line
    assert "previous file is unchanged" in line
    assert temp_files(project) == []
    # the files of epoch 1 are complete and loadable
    assert _epoch_of(run / "checkpoints" / "last.npz") == 1
    epochs = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    # metrics.csv is written before the checkpoints, so it may already hold the epochs whose
    # checkpoints failed (short epochs are written together: here epochs 2 and 3 at the end)
    if failing == "metrics.csv":
        assert epochs == ["1"]
    else:
        assert epochs[:1] == ["1"] and epochs == [str(e) for e in range(1, len(epochs) + 1)] and len(epochs) >= 2
    # predict works from what is left, and --resume finishes the run
    assert run_cli(["predict", run, "d.csv"], project).exit_code == 0
    r = run_cli(["train", "--resume", run, "--quiet"], project)
    assert r.exit_code == 0, r.stderr
    assert _epoch_of(run / "checkpoints" / "last.npz") == 3
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_failed_write_of_the_run_folder_files_leaves_no_temp_file(project, monkeypatch):
    """The very first write (config.yaml) fails: a one-line error naming it, nothing half-written."""
    monkeypatch.setattr(nnclf.files.os, "fsync", _enospc)
    r = run_cli("train c.yaml --name r --quiet", project)
    monkeypatch.undo()
    line = one_line_error(r)
    assert "config.yaml: could not write (No space left on device)" in line
    assert temp_files(project) == []
    assert not (project / "runs" / "r" / "config.yaml").exists()
