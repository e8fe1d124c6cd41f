"""Shared test helpers: run the real CLI in-process, paths to shipped data."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnclf.cli import app

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
CONFIGS = ROOT / "configs"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(args, cwd: Path | None = None, input: str | bytes | None = None) -> CliResult:
    """Invoke ``nnclf ARGS`` in-process (a list or a shell-like string), ``input`` on its
    standard input; never raises."""
    if isinstance(args, str):
        args = shlex.split(args)
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=True)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a bug: let the test fail loudly
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli(tmp_path):
    """``cli("train cfg.yaml")`` runs in tmp_path, so run folders land in tmp_path/runs."""
    return lambda args, cwd=None, input=None: run_cli(args, cwd or tmp_path, input)


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def merged(*texts: str) -> str:
    """YAML documents deep-merged left to right (later keys win), as one config text.

    Configs refuse a key written twice, so tests that vary a base config merge instead of
    appending a second block."""
    import yaml

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for key, value in b.items():
            out[key] = merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
        return out

    result: dict = {}
    for text in texts:
        result = merge(result, yaml.safe_load(text) or {})
    return yaml.safe_dump(result, sort_keys=False)


# a small two-class project: a CSV, a config, and (from ``train_small_run``) a trained run "r"
SMALL_CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))
SMALL_CONFIG = "seed: 1\ndata: {train: d.csv, target: label}\nmodel: {hidden: [4]}\ntraining: {epochs: 2, batch_size: 8}\n"


def train_small_run(folder: Path) -> Path:
    """``folder`` with d.csv, c.yaml and runs/r trained from them (through the CLI)."""
    (folder / "d.csv").write_text(SMALL_CSV)
    write_config(folder, SMALL_CONFIG, "c.yaml")
    r = run_cli("train c.yaml --name r --quiet", folder)
    assert r.exit_code == 0, r.stderr
    return folder


class CountingPrepare:
    """``nnclf.data.dataset.prepare`` that counts its calls in this process (the tune tests
    swap it into the prepared-data memo to see when data is read again)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        from nnclf.data.dataset import prepare

        self.calls += 1
        return prepare(*args, **kwargs)
