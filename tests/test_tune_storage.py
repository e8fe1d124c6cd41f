"""nnclf tune's start-up and end: the SQLite storage opened without alembic (new or current
files only), the command ending without the interpreter's teardown, and --jobs workers waking
each other at the end of a study."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT, merged, write_config

optuna = pytest.importorskip("optuna")

from nnclf.tune import sqlite_schema  # noqa: E402
from nnclf.tune.study import _wait_for_a_trial  # noqa: E402

BASE = f"""
seed: 3
data:
  train: {DATA / 'iris.csv'}
  target: species
model:
  hidden: [4]
training:
  epochs: 2
  batch_size: 16
tune:
  metric: val_loss
  trials: 3
  sampler: random
  pruner: none
  space:
    optimizer.lr: {{type: loguniform, low: 1.0e-3, high: 1.0e-1}}
"""
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _schema(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall(),
                      key=lambda r: (r[0], r[1]))
    finally:
        con.close()


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_head_revision_is_alembics_own_answer(tmp_path):
    standard = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'standard.db'}")
    assert sqlite_schema.alembic_head() == standard.get_head_version()
    assert sqlite_schema.alembic_head() in standard.get_all_versions()


def test_a_new_study_database_is_the_one_optuna_makes(cli, tmp_path):
    path = write_config(tmp_path, BASE, "s.yaml")
    result = cli(f"tune {path} --study s")
    assert result.exit_code == 0, result.stderr
    ours = tmp_path / "runs" / "s" / "study.db"
    theirs = tmp_path / "standard.db"
    optuna.create_study(study_name="x", storage=optuna.storages.RDBStorage(f"sqlite:///{theirs}"))
    assert _schema(ours) == _schema(theirs)
    assert _rows(ours, "SELECT * FROM alembic_version") == _rows(theirs, "SELECT * FROM alembic_version")
    assert _rows(ours, "SELECT * FROM version_info") == _rows(theirs, "SELECT * FROM version_info")
    # Optuna's standard path, with its schema check, reads the study nnclf made
    storage = optuna.storages.RDBStorage(f"sqlite:///{ours}")
    assert storage.get_current_version() == storage.get_head_version()
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    # and the study continues from it
    result = cli(f"tune {path} --study s --trials 5")
    assert result.exit_code == 0, result.stderr
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{ours}").trials) == 5


def test_schema_states(tmp_path):
    head = sqlite_schema.alembic_head()
    db = tmp_path / "a.db"
    assert sqlite_schema.schema_state(db, head) == "new"
    db.write_bytes(b"")
    assert sqlite_schema.schema_state(db, head) == "new"
    db.unlink()
    optuna.storages.RDBStorage(f"sqlite:///{db}")
    assert sqlite_schema.schema_state(db, head) == "current"
    assert sqlite_schema.schema_state(db, "v0.0.0.x") == "other"
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    assert sqlite_schema.schema_state(bad, head) == "other"
    assert sqlite_schema.schema_state(tmp_path, head) == "other"  # a folder
    assert sqlite_schema.sqlite_file("sqlite:////tmp/x.db") == Path("/tmp/x.db")
    assert sqlite_schema.sqlite_file("sqlite:///:memory:") is None
    assert sqlite_schema.sqlite_file("sqlite:////tmp/x.db?timeout=3") is None
    assert sqlite_schema.sqlite_file("postgresql://u@h/db") is None


def test_an_older_schema_gets_optunas_own_message(cli, tmp_path):
    db = tmp_path / "old.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")  # a revision before the head
    con.commit()
    con.close()
    path = write_config(tmp_path, BASE, "s.yaml")
    result = cli(f"tune {path} --study s --storage sqlite:///{db}")
    assert result.exit_code == 1
    assert "cannot open the study storage" in result.stderr and "optuna storage upgrade" in result.stderr
    assert _rows(db, "SELECT * FROM alembic_version") == [("v3.0.0.d",)]  # left as it was


def _run_in_process_and_list_modules(args: list[str], cwd: Path) -> dict:
    code = (
        "import json, sys\n"
        "from nnclf.cli import app\n"
        f"code = app({args!r}, standalone_mode=False)\n"
        "print(json.dumps({'code': code, 'alembic': any(m == 'alembic' or m.startswith('alembic.') for m in sys.modules)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_study_imports_no_alembic(tmp_path):
    path = write_config(tmp_path, BASE, "s.yaml")
    for trials in ("3", "4"):  # a new study database, then a current one
        seen = _run_in_process_and_list_modules(["tune", str(path), "--study", "s", "-q", "--trials", trials], tmp_path)
        assert seen["code"] in (0, None) and seen["alembic"] is False
    db = tmp_path / "runs" / "s" / "study.db"
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials) == 4


@pytest.mark.slow
def test_the_command_ends_fast_with_its_output_code_and_a_whole_database(tmp_path):
    path = write_config(tmp_path, BASE, "s.yaml")
    folder = tmp_path / "runs" / "s"
    for jobs in ("1", "2"):
        result = subprocess.run([sys.executable, "-m", "nnclf", "tune", str(path), "--study", "s", "-q", "--jobs", jobs,
                                 "--trials", "3" if jobs == "1" else "5"],
                                cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(Path("runs") / "s" / "best.yaml")
        # the write-ahead log was copied into study.db when the connections closed
        assert not (folder / "study.db-wal").exists() and not (folder / "study.db-shm").exists()
        # (two workers asking for the budget's last trial at once may leave a surplus one, marked
        # skipped: a documented race of --jobs, not a trial run twice)
        ran = _rows(folder / "study.db", "SELECT number FROM trials WHERE trial_id NOT IN "
                                         "(SELECT trial_id FROM trial_user_attributes WHERE key = 'skipped')")
        assert len(ran) == int("3" if jobs == "1" else "5")
    # an error still ends with its one line and exit code 1
    bad = write_config(tmp_path, BASE.replace("optimizer.lr:", "optimizer.lrr:"), "bad.yaml")
    result = subprocess.run([sys.executable, "-m", "nnclf", "tune", str(bad)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "optimizer.lrr" in result.stderr and "Traceback" not in result.stderr


def test_a_waiting_worker_wakes_when_another_ends_a_trial():
    import multiprocessing as mp

    ended, stop = mp.get_context("fork").Value("l", 0), threading.Event()
    threading.Timer(0.1, lambda: setattr(ended, "value", ended.value + 1)).start()
    t0 = time.monotonic()
    _wait_for_a_trial(stop, ended, 30.0)
    assert 0.09 <= time.monotonic() - t0 < 5.0
    t0 = time.monotonic()
    _wait_for_a_trial(stop, ended, 0.2)  # nothing ends: the whole wait
    assert time.monotonic() - t0 >= 0.19
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    _wait_for_a_trial(stop, ended, 30.0)  # Ctrl-C
    assert time.monotonic() - t0 < 5.0
    t0 = time.monotonic()
    _wait_for_a_trial(threading.Event(), None, 0.2)  # a worker alone (or on another machine) sleeps the poll
    assert time.monotonic() - t0 >= 0.19


def test_a_small_runs_test_products_use_the_steps_thread_count(tmp_path, monkeypatch):
    """After training, the summary's products run on the count the steps chose (one for a
    small network), not the process's default, whose idle threads would spin after them."""
    from nnclf import runs
    from nnclf.threads import _blas_libraries

    libraries = _blas_libraries()
    if not libraries:
        pytest.skip("no BLAS library that threadpoolctl can see")
    default = [lib.num_threads for lib in libraries]
    seen = []
    real = runs._summary

    def summary(*args, **kwargs):
        seen.append([lib.num_threads for lib in libraries])
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "_summary", summary)
    path = write_config(tmp_path, merged(BASE, "tune: null\ndata: {test_split: 0.2}\n"), "t.yaml")
    runs.train(path, [], tmp_path / "runs", "t")
    assert seen and all(counts == [1] * len(libraries) for counts in seen)
    assert [lib.num_threads for lib in libraries] == default  # given back afterwards
