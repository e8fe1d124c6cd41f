"""The same config and seed give the same bits: checkpoints (weights and optimizer state) and
prediction files, in float32 and float64, with dropout and shuffling on, and across --resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

CSV = "a,b,tone,label\n" + "".join(
    f"{((i * 37) % 101) / 10 - 5:.2f},{(i * 13) % 7 - 3},{['red', 'green', 'blue'][(i * 5) % 3]},{'xyz'[((i * 37) % 101) * 3 // 101]}\n"
    for i in range(90)
)
CONFIG = """\
seed: 11
data: {{train: d.csv, target: label}}
model: {{hidden: [6, 5], dropout: 0.3}}
optimizer: {{name: {optimizer}, lr: 0.02}}
training: {{epochs: 4, batch_size: 8, shuffle: true, dtype: {dtype}}}
"""


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def meta(path: Path) -> dict:
    document = json.loads(str(arrays(path)["meta"]))
    document.pop("saved_at")
    document.pop("started_at")  # wall-clock times differ, everything else must not
    return document


def assert_same_checkpoint(a: Path, b: Path) -> None:
    x, y = arrays(a), arrays(b)
    assert x.keys() == y.keys()
    assert {k for k in x if k.startswith("optimizer.")} - {"optimizer.t"}, "no optimizer state saved?"
    for key in x:
        if key == "meta":
            continue
        assert x[key].dtype == y[key].dtype, key
        assert x[key].tobytes() == y[key].tobytes(), key  # bits, not approximately
    assert meta(a) == meta(b)


def metrics_without_time(run: Path) -> list[list[str]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    return [line.split(",")[:-1] for line in lines]  # the last column is seconds


def train(folder: Path, name: str, *sets: str):
    args = ["train", "c.yaml", "--name", name, "--quiet"]
    for item in sets:
        args += ["--set", item]
    r = run_cli(args, folder)
    assert r.exit_code == 0, r.stderr
    return folder / "runs" / name


def predict_bytes(folder: Path, run: Path, which: str, out: str) -> bytes:
    r = run_cli(["predict", run, "d.csv", "-o", out, "--checkpoint", which], folder)
    assert r.exit_code == 0, r.stderr
    return (folder / out).read_bytes()


@pytest.mark.parametrize("optimizer", ["adam", "nesterov"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_runs_of_the_same_config_are_bit_identical(tmp_path, dtype, optimizer):
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG.format(dtype=dtype, optimizer=optimizer))
    a, b = train(tmp_path, "a"), train(tmp_path, "b")
    for which in ("best.npz", "last.npz"):
        assert_same_checkpoint(a / "checkpoints" / which, b / "checkpoints" / which)
    assert arrays(a / "checkpoints" / "last.npz")["params"].dtype == np.dtype(dtype)
    assert metrics_without_time(a) == metrics_without_time(b)
    assert (a / "splits.npz").read_bytes() == (b / "splits.npz").read_bytes()
    assert (a / "schema.json").read_bytes() == (b / "schema.json").read_bytes()
    for which in ("best", "last"):
        pa = predict_bytes(tmp_path, a, which, f"a-{which}.csv")
        pb = predict_bytes(tmp_path, b, which, f"b-{which}.csv")
        assert pa == pb and pa.count(b"\n") == 91
    ea = json.loads(run_cli(["evaluate", a, "--json"], tmp_path).stdout)
    eb = json.loads(run_cli(["evaluate", b, "--json"], tmp_path).stdout)
    assert {k: v for k, v in ea.items() if k != "checkpoint"} == {k: v for k, v in eb.items() if k != "checkpoint"}


def test_the_identity_above_is_not_trivial(tmp_path):
    """Dropout and shuffling really draw from the seeded stream: turning either off, or changing
    the seed, changes the weights (so the equality above is not equality of untouched arrays)."""
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG.format(dtype="float32", optimizer="adam"))
    reference = arrays(train(tmp_path, "ref") / "checkpoints" / "last.npz")["params"]
    for name, change in [("no-dropout", "model.dropout=0.0"), ("no-shuffle", "training.shuffle=false"), ("seed", "seed=12")]:
        other = arrays(train(tmp_path, name, change) / "checkpoints" / "last.npz")["params"]
        assert not np.array_equal(reference, other), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resuming_a_finished_run_with_the_same_epochs_changes_no_bit(tmp_path, dtype):
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG.format(dtype=dtype, optimizer="adam"))
    run = train(tmp_path, "r")
    before = {p.name: arrays(p) for p in (run / "checkpoints").glob("*.npz")}
    before_meta = {p.name: meta(p) for p in (run / "checkpoints").glob("*.npz")}
    metrics = (run / "metrics.csv").read_bytes()
    predictions = {w: predict_bytes(tmp_path, run, w, f"before-{w}.csv") for w in ("best", "last")}
    summary = json.loads((run / "summary.json").read_text())

    for attempt, extra in enumerate((["--set", "training.epochs=4"], [])):
        r = run_cli(["train", "--resume", run, "--quiet", *extra], tmp_path)
        assert r.exit_code == 0, r.stderr
        for path in (run / "checkpoints").glob("*.npz"):
            now = arrays(path)
            assert now.keys() == before[path.name].keys()
            for key, value in now.items():
                if key != "meta":
                    assert value.tobytes() == before[path.name][key].tobytes(), (path.name, key)
            assert meta(path) == before_meta[path.name]
        assert (run / "metrics.csv").read_bytes() == metrics
        for w in ("best", "last"):
            assert predict_bytes(tmp_path, run, w, f"after-{attempt}-{w}.csv") == predictions[w]
        again = json.loads((run / "summary.json").read_text())
        assert again["status"] == "finished" and again["epochs_run"] == summary["epochs_run"] == 4
        assert again["best_epoch"] == summary["best_epoch"] and again["test"] == summary["test"]


def test_extending_a_finished_run_equals_training_that_long_at_once(tmp_path):
    """Constant schedule: 2 epochs then --resume to 5 is the same bits as 5 epochs straight
    (the optimizer state, RNG stream and best-epoch tracking all carry over)."""
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG.format(dtype="float32", optimizer="adam"))
    straight = train(tmp_path, "straight", "training.epochs=5")
    short = train(tmp_path, "short", "training.epochs=2")
    r = run_cli(["train", "--resume", short, "--set", "training.epochs=5", "--quiet"], tmp_path)
    assert r.exit_code == 0, r.stderr
    for which in ("best.npz", "last.npz"):
        x, y = arrays(straight / "checkpoints" / which), arrays(short / "checkpoints" / which)
        for key in x:
            if key != "meta":
                assert x[key].tobytes() == y[key].tobytes(), (which, key)
    assert metrics_without_time(straight) == metrics_without_time(short)
    assert predict_bytes(tmp_path, straight, "best", "s.csv") == predict_bytes(tmp_path, short, "best", "r.csv")


def test_a_copied_run_folder_resumes_to_the_same_bits(tmp_path):
    """A run folder is self-contained: a copy elsewhere, resumed, matches the original resumed."""
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "c.yaml").write_text(CONFIG.format(dtype="float64", optimizer="adam"))
    run = train(tmp_path, "orig", "training.epochs=2")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(run, copy)
    for folder in (run, copy):
        r = run_cli(["train", "--resume", folder, "--set", "training.epochs=3", "--quiet"], tmp_path)
        assert r.exit_code == 0, r.stderr
    for which in ("best.npz", "last.npz"):
        assert arrays(run / "checkpoints" / which)["params"].tobytes() == arrays(copy / "checkpoints" / which)["params"].tobytes()
