"""Writes that must not destroy (issue 13): an output that is an input is refused; a FIFO, a
device or stdout is written into, never replaced; a replaced file keeps its permissions; new
files (predictions, reports, every run-folder file) honour the umask. Through the real CLI,
checking the exit code, the message and what is on disk afterwards."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from conftest import run_cli, SMALL_CONFIG, SMALL_CSV, train_small_run, write_config

CSV, CONFIG = SMALL_CSV, SMALL_CONFIG


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("writes"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(r) -> str:
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


# -- an output that is an input -----------------------------------------------------------------
@pytest.mark.parametrize("how", ["same path", "hard link", "symlink", "the checkpoint"])
def test_an_output_that_is_an_input_is_refused_and_nothing_changes(trained, tmp_path, how):
    data = tmp_path / "d.csv"
    data.write_text(CSV)
    checkpoint = trained / "runs" / "r" / "checkpoints" / "best.npz"
    target = {
        "same path": lambda: data,
        "hard link": lambda: (os.link(data, tmp_path / "h.csv"), tmp_path / "h.csv")[1],
        "symlink": lambda: (os.symlink(data, tmp_path / "s.csv"), tmp_path / "s.csv")[1],
        "the checkpoint": lambda: checkpoint,
    }[how]()
    before = {p: digest(p) for p in (data, checkpoint)}
    r = run_cli(["predict", trained / "runs" / "r", data, "-o", target, "--overwrite"], tmp_path)
    line = one_line_error(r)
    assert line.startswith(f"error: {target}: is an input of this command") and "nothing was written" in line, line
    assert {p: digest(p) for p in before} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- outputs that are not regular files ----------------------------------------------------------
def test_a_fifo_is_written_into_and_stays_a_fifo(trained, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # the read end opened first (non-blocking open, then blocking reads): predict's open for
    # writing finds a reader, and its 1 KB fits in the pipe buffer, so no thread is needed
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", fifo], tmp_path)
        assert r.exit_code == 0, r.stderr
        os.set_blocking(reader, True)
        received = b""
        while chunk := os.read(reader, 1 << 16):
            received += chunk
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    lines = received.decode().splitlines()
    assert lines[0] == "prediction,proba_0,proba_1" and len(lines) == 41
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary file beside it


def test_a_character_device_is_written_into_not_replaced(trained, tmp_path):
    device = tmp_path / "null"
    try:  # a private copy of /dev/null: a regression must not replace the machine's
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    before = device.stat()
    r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", device], tmp_path)
    assert r.exit_code == 0, r.stderr
    after = device.stat()
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_dash_is_stdout(trained, tmp_path):
    r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", "-"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == "prediction,proba_0,proba_1" and len(r.stdout.splitlines()) == 41
    assert list(tmp_path.iterdir()) == []  # no file called '-'


def test_a_folder_as_output_is_an_error(trained, tmp_path):
    (tmp_path / "out").mkdir()
    line = one_line_error(run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", "out", "--overwrite"], tmp_path))
    assert line == "error: out: is a folder, expected a file name (nothing was written)"


# -- permissions -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o600])
def test_replacing_a_file_keeps_its_permissions(trained, tmp_path, mode):
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    out.chmod(mode)
    r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", out, "--overwrite"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert out.read_text().startswith("prediction,")


def test_replacing_through_a_symlink_keeps_the_link(trained, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    (tmp_path / "link.csv").symlink_to(real)
    r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", "link.csv", "--overwrite"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "link.csv").is_symlink() and real.read_text().startswith("prediction,")


def test_a_hard_linked_output_is_replaced_under_its_name_only_as_documented(trained, tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    os.link(out, tmp_path / "other.csv")
    r = run_cli(["predict", trained / "runs" / "r", trained / "d.csv", "-o", out, "--overwrite"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert out.read_text().startswith("prediction,")
    assert (tmp_path / "other.csv").read_text() == "old\n"  # README: the other names keep the old bytes


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_honour_the_umask(trained, tmp_path, umask, mask, expected):
    (tmp_path / "d.csv").write_text(CSV)
    write_config(tmp_path, CONFIG, "c.yaml")
    umask(mask)
    r = run_cli(["predict", trained / "runs" / "r", "d.csv", "-o", "p.csv"], tmp_path)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "p.csv").stat().st_mode) == expected
    r = run_cli("train c.yaml --name fresh --quiet", tmp_path)
    assert r.exit_code == 0, r.stderr
    run = tmp_path / "runs" / "fresh"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"config.yaml", "schema.json", "splits.npz", "metrics.csv", "summary.json", "best.npz", "last.npz"} <= {p.name for p in files}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(expected) for p in files}
