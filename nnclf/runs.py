"""Training into a run folder, resuming one, listing them. The folder's files and their
writers and readers are in ``nnclf.runfolder`` (README, "Run folder").
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import __version__
from .build import build_early_stopping, build_network, build_optimizer, build_schedule, build_task_loss, check_full_batch_memory, curvature_factory
from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, load_config, validate
from .errors import NnclfError
from .memory import check_training_fits
from .registry import did_you_mean
from .metrics import classification_report
from .data.cache import DiskCache, resolve_mode as resolve_cache_mode
from .engine.fullbatch import FULL_BATCH
from .distributed import AgreedStop, DataParallelStep, SingleProcess, blas_threads_per_rank
from .runfolder import (  # noqa: F401  (re-exported: older imports use nnclf.runs)
    METRIC_COLUMNS, METRICS_HEADER, RunFolder, check_run_name, list_runs, metrics_line, now_iso,
)
from .threads import BlasThreads, on_one_thread, training_threads
from .trainer import Trainer, TrainingDiverged
from .seeds import model_rng


# the validation metrics each task logs (metrics.csv columns are val_<name>), and its headline test metric
TASK_METRICS = {"classification": ["accuracy", "f1"], "regression": ["rmse", "mae", "r2"], "reconstruction": ["mse"]}
HEADLINE = {"classification": "accuracy", "regression": "rmse", "reconstruction": "mse"}


def metric_columns(task: str) -> list[str]:
    """metrics.csv's columns for ``task`` (classification's are METRIC_COLUMNS)."""
    if task == "classification":
        return METRIC_COLUMNS
    return ["epoch", "lr", "train_loss", "val_loss", *(f"val_{m}" for m in TASK_METRICS[task]), "evaluations", "products", "seconds"]


class Abandoned(KeyboardInterrupt):
    """A second Ctrl-C (or SIGTERM) stopped training mid-batch; ``str()`` says what is left."""


class NothingToDo(Exception):
    """A resume that would train no epoch; ``str()`` says why (the CLI prints it, exit 0)."""


def create_run_folder(runs_dir: Path, name: Optional[str], stem: str) -> Path:
    """A new, locked run folder (see ``RunFolder.create``); kept for older callers."""
    return RunFolder.create(runs_dir, name, stem).path


def versions() -> dict[str, str]:
    import numpy

    return {"nnclf": __version__, "numpy": numpy.__version__, "python": platform.python_version()}


@dataclass
class RunResult:
    folder: Path
    history: list[dict[str, float]]
    summary: dict[str, Any]
    interrupted: bool


class StopWatcher:
    """The trainer's callback that asks it to stop after the current batch once ``stop`` (a
    ``threading.Event`` set by a signal handler, or None) is set."""

    def __init__(self, stop):
        self.stop = stop

    def on_batch_end(self, trainer: Trainer, *args) -> None:
        if self.stop is not None and self.stop.is_set():
            trainer.stop_requested = True


class _Checkpointer:
    """Writes metrics.csv and checkpoints after each epoch (the trainer's callback).

    metrics.csv is rewritten every epoch (a watcher of the run folder sees every epoch, and it
    never holds fewer epochs than last.npz, which ``--resume`` needs). Checkpoints are written at
    most every ``WRITE_SECONDS`` (the first epoch's at once): an epoch that ends sooner after
    the last write keeps its best.npz / last.npz in memory (copies of that epoch's complete
    state) and the next write, or the end of training, writes them. The end of training (the last epoch,
    early stopping, a method that converged), Ctrl-C / SIGTERM / SIGHUP and divergence always
    write what is held, so only a ``kill -9`` (or power loss) can lose it: then the files on
    disk are at most ``WRITE_SECONDS`` of epochs older than metrics.csv, and ``--resume``
    trains those epochs again, bit for bit. For epochs longer than ``WRITE_SECONDS`` every
    epoch writes, as before; for full-batch methods an epoch is a few milliseconds and each
    checkpoint write about as long (benchmarks/RESULTS.md)."""

    SYNC_SECONDS = 10.0  # force files to disk at most this often (an fsync's cost: benchmarks/RESULTS.md)
    WRITE_SECONDS = 2.0  # write checkpoints at most this often while epochs are short

    def __init__(self, run: "TrainingRun", every: int):
        self.run, self.every = run, every
        self.last_sync = time.monotonic()
        self.last_write = -math.inf  # the first epoch writes

    def on_epoch_end(self, trainer: Trainer, record, improved: bool) -> None:
        # Every write is atomic (a killed process leaves old or new files, never partial ones);
        # forcing them to disk, which only matters on power loss, happens every SYNC_SECONDS
        # and at the end of training, so small models are not slowed down by the disk.
        now = time.monotonic()
        durable = self.run.durable and now - self.last_sync >= self.SYNC_SECONDS
        if durable:
            self.last_sync = now
        final = trainer.epoch == trainer.epochs or trainer.stopped_early or getattr(trainer.optimizer, "converged", False)
        write = final or now - self.last_write >= self.WRITE_SECONDS
        if not self.run.deferred:  # every epoch, before the checkpoints: never behind last.npz
            self.run.write_metrics(trainer.history, durable)
        if improved:
            self.run.save("best", trainer, trainer.net.params, durable, hold=not write)
        if trainer.epoch % self.every == 0 or final:
            self.run.save("last", trainer, trainer.net.params, durable, hold=not write)
        if write and not self.run.deferred:
            self.run.flush_checkpoints(durable)  # a best.npz held from an earlier epoch
            self.last_write = now


class TrainingRun:
    """One run folder being trained into (locked by this process while it trains)."""

    def __init__(self, folder: RunFolder, cfg: Config, prepared, config_name: str, started_at: Optional[str] = None, comm=None):
        self.files, self.cfg, self.prepared, self.config_name = folder, cfg, prepared, config_name
        self.comm = comm if comm is not None else SingleProcess()
        self.writes = self.comm.rank == 0  # under MPI only rank 0 writes the run folder
        self.folder = folder.path
        self.started_at = started_at or now_iso()
        self.last_saved_epoch: Optional[int] = None  # the epoch checkpoints/last.npz holds
        # False: writes stay atomic but are not forced to disk (nnclf tune's trials: the study's
        # storage is their record, and ~13 fsyncs were most of a small trial's cost)
        self.durable = True
        # True: checkpoints and metrics.csv are kept in memory during training and written once
        # at its end (``flush``), the same bytes; nnclf tune's small trials, where writing them
        # after every epoch (~27 file replacements for 8 epochs) cost more than the training.
        # A run killed mid-way then leaves no checkpoint (a killed trial is run again anyway).
        self.deferred = False
        self._pending: dict[str, tuple] = {}
        self._history = None
        self._static: Optional[dict[str, Any]] = None  # static_meta, copied once (deferred saves)
        folder.columns = metric_columns(cfg.task)
        if cfg.task == "reconstruction":
            from .data.targets import code_layer

            self.code_layer = code_layer(cfg.model.hidden, cfg.model.code_layer)
        if self.writes:
            (self.folder / "checkpoints").mkdir(exist_ok=True)

    def checkpoint_meta(self, trainer: Trainer, state: dict[str, Any], static: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The checkpoint's JSON: ``static`` (what cannot change while the run trains, from
        ``static_meta``) with the trainer's progress, the schedule's state and the time."""
        static = static if static is not None else self.static_meta(trainer)
        head = {k: v for k, v in static.items() if k != "optimizer"}
        return {
            **head,
            "trainer": state["progress"],
            "schedule": state["schedule"],
            "optimizer": static["optimizer"],
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def static_meta(self, trainer: Trainer) -> dict[str, Any]:
        p = self.prepared
        return {
            "config_name": self.config_name,
            "started_at": self.started_at,
            "ranks": self.comm.size,  # MPI processes that shared each batch
            "rows": {"train": len(p.train)},  # bounds trainer.permutation before it is read
            "network": {"sizes": trainer.net.sizes, "activation": trainer.net.activation_name, "dropout": trainer.net.dropout, "dtype": str(trainer.net.dtype)},
            "loss": {"name": self.cfg.loss.name, **({"delta": self.cfg.loss.delta} if self.cfg.loss.name == "huber" else {})},
            "task": self.cfg.task,
            "labels": p.labels.values if p.labels is not None else [],
            **({"targets": p.targets.state} if p.targets is not None else {}),
            **({"code_layer": self.code_layer} if self.cfg.task == "reconstruction" else {}),
            "preprocessor": p.preprocessor.state,
            "data_files": p.files,
            "config": self.cfg.to_dict(),
            "optimizer": {"name": trainer.optimizer.name, "state": list(trainer.optimizer.state_names)},
        }

    def save(self, which: str, trainer: Trainer, params: np.ndarray, durable: bool = True, hold: bool = False,
             rows: Optional[int] = None) -> None:
        """Write checkpoints/``which``.npz from the trainer's state now, or with ``hold`` (and
        always when ``deferred``) keep a copy of it in memory for ``flush_checkpoints``; a
        write replaces what was held for the same file. ``rows``: the rows ``trainer`` trained
        on when they are not the run's training rows (the refit: training + validation)."""
        if not self.writes:
            return
        state = trainer.state_dict()
        arrays = {f"optimizer.{k}": v for k, v in state["optimizer"].items()}
        if state["permutation"] is not None:
            arrays["trainer.permutation"] = state["permutation"]
        if self.prepared.pca is not None:
            arrays["pca.mean"], arrays["pca.components"] = self.prepared.pca.mean, self.prepared.pca.components
        if (self.deferred or hold) and which in ("best", "last"):
            import copy

            # copies: training goes on updating the arrays and the progress in place. The static
            # part (config, preprocessor, labels: most of the JSON) is copied once per run and
            # shared by the kept checkpoints; copying it at every save was most of a small
            # trial's bookkeeping (a profile in benchmarks/RESULTS.md).
            if self._static is None:
                self._static = copy.deepcopy(self.static_meta(trainer))
            dynamic = copy.deepcopy({"progress": state["progress"], "schedule": state["schedule"]})
            meta = self.checkpoint_meta(trainer, dynamic, self._static)
            self._pending[which] = (params.copy(), meta, {k: np.array(v, copy=True) for k, v in arrays.items()}, trainer.epoch)
            self._history = trainer.history
            return
        meta = self.checkpoint_meta(trainer, state)
        if rows is not None:
            meta["rows"] = {"train": int(rows)}
        save_checkpoint(self.folder / "checkpoints" / f"{which}.npz", params, meta, arrays, durable)
        self._pending.pop(which, None)  # what was held for this file is older
        if which == "last":
            self.last_saved_epoch = trainer.epoch

    def flush(self, history=None) -> None:
        """Write what was kept back: with ``deferred`` metrics.csv, then the checkpoints held
        (``deferred``, or ``save(hold=True)``)."""
        if not self.writes:
            return
        if self.deferred:
            history = history if history is not None else self._history
            if history is not None:
                self.files.write_metrics(history, self.durable)
        self.flush_checkpoints(self.durable)

    def flush_checkpoints(self, durable: bool = True) -> None:
        """Write the checkpoints held in memory (each is a complete epoch's state)."""
        for which, (params, meta, arrays, epoch) in list(self._pending.items()):
            save_checkpoint(self.folder / "checkpoints" / f"{which}.npz", params, meta, arrays, durable)
            if which == "last":
                self.last_saved_epoch = epoch
            del self._pending[which]

    def write_metrics(self, history, durable: bool = True) -> None:
        if self.writes:
            self.files.write_metrics(history, durable)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.writes:
            self.files.write_summary(summary, self.durable)

    def sync(self) -> None:
        """Force every file of the run to disk (the end of training)."""
        if self.durable and self.writes:
            self.files.sync()

    def write_static_files(self) -> None:
        if not self.writes:
            return
        p = self.prepared
        self.files.write_text(RunFolder.CONFIG, self.cfg.to_yaml(), self.durable)
        self.files.write_text(RunFolder.SCHEMA, json.dumps(p.preprocessor.state, indent=2) + "\n", self.durable)
        splits = {"train": p.train.rows}
        if p.val is not None:
            splits["val"] = p.val.rows
        if p.test is not None:
            splits["test"] = p.test.rows
        self.files.write_bytes(RunFolder.SPLITS, lambda f: np.savez(f, **splits), self.durable)


def validation_metrics(cfg: Config, prepared):
    """The trainer's ``metrics`` for the task: None (classification's accuracy and F1), RMSE, MAE
    and R^2 in the targets' units (means over targets), or the reconstruction's mean squared
    error per input column in the preprocessed space. Picklable (module-level functions under
    ``functools.partial``): the estimators pickle their trainer."""
    if cfg.task == "regression":
        from functools import partial

        return partial(_regression_metrics, prepared.targets)
    if cfg.task == "reconstruction":
        return _reconstruction_metrics
    return None


def _regression_metrics(targets, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from .metrics import regression_means

    return regression_means(targets.decode(y), targets.decode(outputs))


def _reconstruction_metrics(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"mse": float(np.mean(np.square(outputs - y, dtype=np.float64)))}


def _make_trainer(cfg: Config, prepared, callbacks) -> Trainer:
    train = prepared.train
    loss = build_task_loss(cfg, prepared)
    net = build_network(cfg, train.x.shape[1], loss)
    rng = model_rng(cfg.seed)
    net.initialize(cfg.model.init, rng, full_batch=cfg.optimizer.name in FULL_BATCH)
    batch = None if cfg.training.batch_size == "full" else cfg.training.batch_size
    has_val = prepared.val is not None and len(prepared.val) > 0
    optimizer = build_optimizer(cfg, net)
    if getattr(optimizer, "full_batch", False):
        check_full_batch_memory(cfg, optimizer, net, len(train.y))
    trainer = Trainer(
        net,
        loss,
        optimizer,
        build_schedule(cfg),
        epochs=cfg.training.epochs,
        batch_size=batch,
        rng=rng,
        shuffle=cfg.training.shuffle,
        weight_decay=cfg.loss.weight_decay,
        clip_norm=cfg.training.clip_norm,
        early_stopping=build_early_stopping(cfg),
        monitor="val_loss" if has_val else "train_loss",
        callbacks=callbacks,
        metrics=validation_metrics(cfg, prepared),
    )
    trainer.curvature_factory = curvature_factory(cfg)
    return trainer


def _cache_mode(cfg: Config, warn) -> str:
    """data.cache resolved: the disk cache serves classification; auto picks memory otherwise."""
    if cfg.task != "classification" and cfg.data.cache == "auto":
        return "memory"
    return resolve_cache_mode(cfg.data, cfg.training.dtype, warn)


def _check_monitor(cfg: Config, prepared, give_val: str = "set data.val_split > 0 or data.val") -> None:
    """Early stopping and reduce_on_plateau watch a logged metric: check its name before any
    folder is made (an unknown one would fail after epoch 1, or never lower the lr, silently).
    ``give_val``: how to get validation rows (the estimators' validation_fraction)."""
    validation = ["val_loss", *(f"val_{m}" for m in TASK_METRICS[cfg.task])]
    has_val = prepared.val is not None and len(prepared.val) > 0
    trained = ["lr", "train_loss", *(["train_accuracy"] if cfg.task == "classification" else [])]
    logged = [*trained, *(validation if has_val else [])]
    watched = []
    if cfg.training.early_stopping is not None:
        watched.append(("training.early_stopping.monitor", cfg.training.early_stopping.monitor))
    if "monitor" in cfg.schedule.hyperparameters():
        watched.append(("schedule.monitor", cfg.schedule.hyperparameters()["monitor"]))
    if cfg.training.calibration == "temperature" and not has_val:
        raise NnclfError(f"training.calibration: temperature is fitted on validation data; {give_val}")
    for key, metric in watched:
        if metric in logged:
            continue
        if metric in validation:
            raise NnclfError(f"{key}: '{metric}' needs validation data; {give_val}")
        raise NnclfError(f"{key}: metric '{metric}' is not logged{did_you_mean(metric, logged)}; logged: {', '.join(logged)}")


def train(
    config_path: str | Path | dict,
    overrides: list[str] = (),
    runs_dir: str | Path = "runs",
    name: Optional[str] = None,
    callbacks: list = (),
    warn: Callable[[str], None] = lambda m: None,
    stop=None,
    durable: bool = True,
    values: dict[str, Any] | None = None,
    comm=None,
    prepare_data: Optional[Callable] = None,
    deferred: bool = False,
) -> RunResult:
    """Validate, read data, make the run folder, train, test, summarise. ``durable=False``: the
    run's files are written atomically but not forced to disk (for many small runs).

    ``config_path``: a YAML file or an already-read mapping; ``values``: dotted key -> Python
    value applied after the ``KEY=VALUE`` ``overrides``; ``deferred=True``: checkpoints and
    metrics.csv are written once when training ends (``TrainingRun.deferred``); ``prepare_data``: a stand-in for
    ``nnclf.data.dataset.prepare`` with its signature (nnclf tune's trials pass one that keeps
    the arrays of earlier trials, ``nnclf.tune.prepared``)."""
    from .data.dataset import prepare

    prepare = prepare_data or prepare

    comm = comm if comm is not None else SingleProcess()
    if comm.rank != 0:
        return _follow(comm, config_path, overrides, callbacks, stop)
    cfg = load_config(config_path, overrides, values)
    stem = "config" if isinstance(config_path, dict) else Path(config_path).stem
    if name is not None:
        check_run_name(name)
    cache, folder = None, None
    from .data.reading import check_file

    from .inputs import read_errors

    check_file(Path(cfg.data.train))  # before the cache sizes it: a damaged file is one line
    with read_errors(Path(cfg.data.train)):
        mode = _cache_mode(cfg, warn)
    if mode == "mmap":
        if cfg.data.cache_dir is None:  # the cache lives in the run folder: make it first
            folder = RunFolder.create(Path(runs_dir), name, stem)
        cache = DiskCache(cfg.data.cache_dir or folder.path / "cache", cfg.data, cfg.seed, cfg.training.dtype)
    try:
        prepared = _prepare(prepare, cfg, warn, cache)
        _check_monitor(cfg, prepared)
        _fit_baseline(cfg, prepared)
        check_training_fits(cfg, prepared.train.x.shape[1], _n_outputs(cfg, prepared), len(prepared.train))
        trainer = _make_trainer(cfg, prepared, [])  # before the folder: a network too big to allocate is an error
    except BaseException:
        if folder is not None:  # nothing but the cache in it yet
            import shutil

            folder.unlock()
            shutil.rmtree(folder.path, ignore_errors=True)
        raise
    if folder is None:
        folder = RunFolder.create(Path(runs_dir), name, stem)
    try:
        run = TrainingRun(folder, cfg, prepared, stem, comm=comm)
        run.durable = durable
        run.deferred = deferred
        if comm.size > 1:
            comm.broadcast((str(folder.path), mode))
        run.write_static_files()
        return _fit(run, trainer, callbacks, stop, started=time.time(), warn=warn)
    finally:
        folder.unlock()


def _prepare(prepare, cfg: Config, warn, cache=None):
    """The data, with running out of memory while reading it named as such (a gzip bomb, or
    a file far larger than memory), not as advice about training settings."""
    try:
        return prepare(cfg.data, cfg.seed, cfg.training.dtype, warn, cfg.task, cache=cache)
    except MemoryError:
        raise NnclfError(
            f"{cfg.data.train}: out of memory while reading the data (decompressed, it is larger than the memory "
            f"available); use a smaller file or a machine with more memory"
        ) from None


# What a resume may change: what the run can take mid-way without becoming another training.
# Anything else (the data, the split, the seed, the network, the loss, the optimizer and its
# other settings, batch size, dtype...) would make the resumed run a different model.
RESUMABLE_KEYS = (
    "training.epochs", "optimizer.lr", "schedule", "training.early_stopping",
    "training.checkpoint_every", "training.threads", "training.workers",
)


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [(prefix[:-1], old, new)]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


WHY_FIXED = {
    "seed": "the split and the initial weights come from it",
    "data": "the run was trained on this data and split",
    "model": "it changes the network mid-run",
    "loss": "it changes what is minimised mid-run",
    "task": "it changes what is learnt",
}


def _refuse_fixed(changes: list[tuple[str, Any, Any]], source: str) -> None:
    fixed = [c for c in changes if not _resumable(c[0])]
    if not fixed:
        return
    key, old, new = fixed[0]
    why = WHY_FIXED.get(key.split(".")[0], "a resume continues the same training")
    more = f" (and {len(fixed) - 1} more: {', '.join(k for k, _, _ in fixed[1:4])})" if len(fixed) > 1 else ""
    raise NnclfError(
        f"{source}: {key}: a resume cannot change it ({_short(old)} -> {_short(new)}; {why}){more}; "
        f"a resume may change {', '.join(RESUMABLE_KEYS)}; start a new run for anything else (nothing was changed)"
    )


def _resume_config(folder: Path, meta: dict, overrides: list[str], warn) -> Config:
    """The config to resume with: the checkpoint's, with the user's edits to RUN/config.yaml
    and the --set overrides applied under the same rule (only RESUMABLE_KEYS may change)."""
    import copy

    from .config import apply_override, read_yaml

    source = f"{folder / 'checkpoints' / 'last.npz'} (config)"
    try:
        trained = validate(copy.deepcopy(meta["config"]), source)
    except KeyError:
        raise NnclfError(f"{folder / 'checkpoints' / 'last.npz'}: not a valid checkpoint (missing entry 'config')") from None
    base = trained.to_dict()
    raw = copy.deepcopy(base)
    config_file = folder / RunFolder.CONFIG
    if config_file.is_file():
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise NnclfError(f"{config_file}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        parsed, lines = read_yaml(text, str(config_file))
        _refuse_fixed(_differences(base, parsed), str(config_file))  # before validating: name the key
        edited = validate(parsed, str(config_file), lines=lines).to_dict()
        edits = _differences(base, edited)
        _refuse_fixed(edits, str(config_file))
        for key, old, new in edits:
            warn(f"{config_file}: resuming with your edit {key}: {_short(old)} -> {_short(new)}")
        raw = edited
    for item in overrides:
        apply_override(raw, item)
    _refuse_fixed(_differences(base, raw), "--set" if overrides else str(config_file))
    cfg = validate(raw, "--set" if overrides else str(config_file), overridden=[o.split("=", 1)[0] for o in overrides])
    _refuse_fixed(_differences(base, cfg.to_dict()), "--set" if overrides else str(config_file))
    return cfg


def _follow(comm, config_path, overrides, callbacks, stop, resuming: bool = False) -> RunResult:
    """Ranks other than 0: wait for rank 0's run folder and data decision, then prepare the same
    data and train with it, writing nothing (rank 0 reports any problem with the config or data:
    these ranks only start once rank 0 got through them)."""
    from .data.dataset import prepare

    folder, mode = comm.broadcast(None)
    folder = Path(folder)
    if resuming:
        _, meta, _ = load_checkpoint(folder / "checkpoints" / "last.npz")
        raw = meta["config"]
        from .config import apply_override

        for item in overrides:
            apply_override(raw, item)
        cfg, config_name = validate(raw, str(folder)), meta.get("config_name", folder.name)
    else:
        cfg, config_name = load_config(config_path, overrides), Path(config_path).stem
    cache = DiskCache(cfg.data.cache_dir or folder / "cache", cfg.data, cfg.seed, cfg.training.dtype) if mode == "mmap" else None
    prepared = prepare(cfg.data, cfg.seed, cfg.training.dtype, lambda m: None, cfg.task, cache=cache)
    _fit_baseline(cfg, prepared)
    trainer = _make_trainer(cfg, prepared, [])
    run = TrainingRun(RunFolder(folder), cfg, prepared, config_name, comm=comm)
    if resuming:
        _load_state(trainer, folder)
    return _fit(run, trainer, callbacks, stop, started=time.time())


def _load_state(trainer: Trainer, folder: Path, last=None) -> None:
    """Weights, optimizer, schedule, progress and RNG from ``checkpoints/last.npz`` (``last``:
    its contents, already loaded), the history from metrics.csv, the best weights."""
    params, meta, arrays = last if last is not None else load_checkpoint(folder / "checkpoints" / "last.npz")
    trainer.net.params[...] = params
    trainer.load_state_dict({
        "progress": meta["trainer"],
        "schedule": meta["schedule"],
        "optimizer": {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer.")},
        "permutation": arrays.get("trainer.permutation"),
    })
    trainer.history = RunFolder(folder).read_metrics(trainer.epoch)
    best = folder / "checkpoints" / "best.npz"
    trainer.best_params = load_checkpoint(best, state=False)[0] if best.is_file() else None


def resume(run_folder: str | Path, overrides: list[str] = (), callbacks: list = (), warn=lambda m: None, stop=None,
           comm=None) -> RunResult:
    """Continue a run from ``checkpoints/last.npz``: weights, optimizer, schedule, early stopping,
    RNG and position (mid-epoch too), so the result equals an uninterrupted run bit for bit.

    The folder is locked first (a second trainer is refused); everything is checked before
    anything is written: only RESUMABLE_KEYS may change, from --set or from edits to
    RUN/config.yaml; a resume with nothing to do raises NothingToDo."""
    from .data.dataset import prepare

    comm = comm if comm is not None else SingleProcess()
    if comm.rank != 0:
        return _follow(comm, None, overrides, callbacks, stop, resuming=True)
    folder = Path(run_folder)
    if not folder.is_dir():
        raise NnclfError(f"{folder}: no such run folder")
    files = RunFolder(folder)
    files.lock()
    try:
        return _resume(files, overrides, callbacks, warn, stop, prepare, comm)
    finally:
        files.unlock()


def _resume(files: RunFolder, overrides, callbacks, warn, stop, prepare, comm) -> RunResult:
    folder = files.path
    last = files.checkpoint("last")
    if not last.is_file():
        summary = _summary_or_none(files)
        if summary is not None and summary.get("status") == "abandoned":
            raise NnclfError(f"{folder}: the run was abandoned (stopped twice) before its first checkpoint; "
                             f"there is nothing to resume: start a new training")
        raise NnclfError(f"{folder}: no checkpoints/last.npz to resume from (is it a run folder?)")
    params, meta, arrays = load_checkpoint(last)
    cfg = _resume_config(folder, meta, overrides, warn)
    mode = _cache_mode(cfg, warn)
    cache = DiskCache(cfg.data.cache_dir or folder / "cache", cfg.data, cfg.seed, cfg.training.dtype) if mode == "mmap" else None
    prepared = _prepare(prepare, cfg, warn, cache)
    if meta.get("ranks", 1) != comm.size:
        warn(f"{folder}: trained by {meta.get('ranks', 1)} process(es), resumed by {comm.size}: the same batches, "
             f"so the run goes on within float rounding, not bit for bit as with {meta.get('ranks', 1)}")
    labels = prepared.labels.values if prepared.labels is not None else []
    targets = prepared.targets.state if prepared.targets is not None else None
    if prepared.preprocessor.state != meta.get("preprocessor") or labels != meta.get("labels") or targets != meta.get("targets"):
        raise NnclfError(f"{cfg.data.train}: the training data changed since run {folder.name} started; resume needs the same data")
    _check_monitor(cfg, prepared)
    _fit_baseline(cfg, prepared)
    check_training_fits(cfg, prepared.train.x.shape[1], _n_outputs(cfg, prepared), len(prepared.train))
    run = TrainingRun(files, cfg, prepared, meta.get("config_name") or folder.name, meta.get("started_at"), comm=comm)
    trainer = _make_trainer(cfg, prepared, [])
    trained = validate(json.loads(json.dumps(meta["config"])), str(last))
    try:
        trainer.net.params[...] = params
        trainer.load_state_dict({
            "progress": meta["trainer"],
            # a new schedule starts from its own state (schedules are functions of the epoch)
            "schedule": meta["schedule"] if cfg.schedule.name == trained.schedule.name else trainer.schedule.state(),
            "optimizer": {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer.")},
            "permutation": arrays.get("trainer.permutation"),
        })
    except NnclfError as e:
        raise NnclfError(f"{last}: not a valid checkpoint ({e})") from None
    except KeyError as e:
        raise NnclfError(f"{last}: not a valid checkpoint (missing entry {e})") from None
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise NnclfError(f"{last}: not a valid checkpoint (malformed trainer state: {e})") from None
    if trainer.batch > 0 and trainer.permutation is not None and trainer.permutation.shape != (len(prepared.train),):
        raise NnclfError(f"{last}: not a valid checkpoint (trainer.permutation does not match the {len(prepared.train)} training rows)")
    if trainer.stopped_early and _differences(trained.to_dict()["training"].get("early_stopping"),
                                              cfg.to_dict()["training"].get("early_stopping")):
        trainer.stopped_early, trainer.improvement.bad_epochs = False, 0  # new early-stopping rules: judge from here on
    if trainer.epoch >= cfg.training.epochs or trainer.stopped_early:
        done = trainer.epoch
        why = "stopped early" if trainer.stopped_early and done < cfg.training.epochs else f"trained {done} of {cfg.training.epochs} epochs"
        raise NothingToDo(
            f"nothing to do: run {folder} already {why}; to train longer: "
            f"nnclf train --resume {folder} --set training.epochs=N (N > {done})"
        )
    trainer.history = files.read_metrics(trainer.epoch)
    best = files.checkpoint("best")
    trainer.best_params = load_checkpoint(best, state=False)[0] if best.is_file() else None
    run.last_saved_epoch = trainer.epoch
    # checked everything: from here on the folder is written. The old summary goes first, so
    # a resumed run killed with -9 is listed from its checkpoint, not by a stale summary.
    try:
        (folder / RunFolder.SUMMARY).unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NnclfError(f"{folder / RunFolder.SUMMARY}: cannot replace it ({e.strerror})") from None
    run.files.write_text(RunFolder.CONFIG, cfg.to_yaml())
    run.write_metrics(trainer.history)
    if comm.size > 1:
        comm.broadcast((str(folder), mode))
    return _fit(run, trainer, callbacks, stop, started=time.time(), warn=warn)


def _n_outputs(cfg: Config, prepared) -> int:
    """Output units, for the memory estimate (an upper bound is enough)."""
    if prepared.labels is not None:
        return len(prepared.labels)
    if prepared.targets is not None:
        return len(prepared.targets.names)
    return prepared.train.x.shape[1]  # reconstruction: the inputs


def _fit_baseline(cfg: Config, prepared) -> None:
    """Reconstruction: PCA with as many components as the code layer, on the training rows
    (saved with the checkpoint, so evaluate reports pca_mse on any data)."""
    if cfg.task == "reconstruction":
        from .data.targets import PCABaseline, code_layer

        k = cfg.model.hidden[code_layer(cfg.model.hidden, cfg.model.code_layer)]
        prepared.pca = PCABaseline.fit(prepared.train.x, k)


def _summary_or_none(files: RunFolder):
    try:
        return files.read_summary()
    except NnclfError:
        return None


def _fit(run: TrainingRun, trainer: Trainer, callbacks, stop, started: float, warn=lambda m: None) -> RunResult:
    cfg, prepared, comm = run.cfg, run.prepared, run.comm
    threads = cfg.training.threads
    if comm.size > 1:
        # every rank computes its part of each batch and the others wait for it: the rows are
        # split, and the ranks sharing a machine split its cores (no measuring: a rank trying
        # two threads would slow every rank down)
        trainer.parallel = DataParallelStep(trainer.step, comm, stop, cfg.seed)
        stop = AgreedStop(stop, trainer.parallel)
        if threads == "auto":
            threads = blas_threads_per_rank(comm)

    trainer.callbacks = [*([_Checkpointer(run, cfg.training.checkpoint_every)] if run.writes else []), StopWatcher(stop), *callbacks]
    val_rows = len(prepared.val) if prepared.val is not None else 0
    threads = training_threads(threads, trainer, len(prepared.train), val_rows)
    trainer.speed = threads
    if run.writes:
        trainer._emit("on_train_start", run.folder)
    val = prepared.val if prepared.val is not None and len(prepared.val) > 0 else None
    try:
        try:
            # overflow in a diverging run is detected and reported by the trainer; no numpy noise
            with threads, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                trainer.fit(prepared.train.x, prepared.train.y, val.x if val else None, val.y if val else None)
        except TrainingDiverged as e:
            run.flush(trainer.history)
            run.sync()
            run.write_summary(_summary(run, trainer, started, status="diverged", error=str(e)))
            last = run.folder / "checkpoints" / "last.npz"
            kept = f"; the last good checkpoint is {last}" if last.exists() else ""
            raise TrainingDiverged(f"{e}{kept}") from None
        if trainer.interrupted:
            run.save("last", trainer, trainer.net.params)
        run.flush(trainer.history)
        temperature = 1.0
        if not trainer.interrupted and cfg.training.calibration == "temperature" and run.writes:
            temperature = _calibrate(run, warn)
        run.sync()
        try:
            # the test and validation products on one thread, as predict and evaluate run them:
            # the summary's numbers are then the same bits on any machine (the test rows' shapes
            # were not checked by training_threads), and no idle OpenBLAS thread spins on another
            # core after them (measured in benchmarks/RESULTS.md, "nnclf tune"; once per tune trial)
            with BlasThreads(1):
                summary = _summary(run, trainer, started, status="interrupted" if trainer.interrupted else "finished", temperature=temperature)
        except TrainingDiverged as e:  # the trained weights give NaN on the test rows
            run.write_summary(_summary(run, trainer, started, "diverged", str(e)))
            raise
        if cfg.training.refit and summary["status"] == "finished" and run.writes:  # (under MPI: rank 0 alone)
            _refit(run, trainer, summary, stop, warn)
        run.write_summary(summary)
    except KeyboardInterrupt:  # a second interrupt, during a batch or while the files are written
        raise _abandon(run, trainer, started) from None
    return RunResult(run.folder, trainer.history, summary, trainer.interrupted)


def _abandon(run: TrainingRun, trainer: Trainer, started: float) -> Abandoned:
    """A second interrupt arrived mid-batch: the weights may be half-updated, so no checkpoint
    is written from them; summary.json says the run was abandoned and what is left."""
    import signal

    saved = run.last_saved_epoch
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C must not cut this write short
    try:
        summary = _summary(run, trainer, started, status="abandoned")
        summary["checkpoint_epoch"] = saved
        summary["epochs_run"] = saved or 0
        run.write_summary(summary)
        run.sync()
    except (NnclfError, OSError):
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    if saved:
        return Abandoned(f"run {run.folder} keeps its checkpoint of epoch {saved}; resume with: nnclf train --resume {run.folder}")
    return Abandoned(f"run {run.folder} was abandoned before its first checkpoint (marked so in summary.json); nothing to resume")


def _calibrate(run: TrainingRun, warn) -> float:
    """training.calibration: temperature: fit T on the validation rows for each checkpoint's own
    weights and store it in that checkpoint; returns the best checkpoint's T."""
    from .calibration import bound_warning, calibrate_checkpoint

    val = run.prepared.val
    temperatures = {}
    for which in ("best", "last"):
        path = run.folder / "checkpoints" / f"{which}.npz"
        if path.is_file():
            entry = calibrate_checkpoint(path, val.x, val.y, "validation split")
            temperatures[which] = entry["temperature"]
            if which == "best" and bound_warning(entry, f"{path}: training.calibration"):
                warn(bound_warning(entry, f"{path}: training.calibration"))
    return temperatures.get("best", temperatures.get("last", 1.0))


def _refit(run: TrainingRun, trainer: Trainer, summary: dict, stop, warn) -> None:
    """``training.refit``: train a fresh network (the same initialisation, optimizer and
    schedule) on training + validation rows for the best epoch's count, no early stopping,
    into checkpoints/refit.npz; the summary's test metrics become the refit model's (those of
    best.npz move to ``test_before_refit``)."""
    from types import SimpleNamespace

    cfg, p = run.cfg, run.prepared
    epochs = cfg.training.refit_epochs or trainer.best_epoch or trainer.epoch
    if cfg.task == "reconstruction":
        warn("training.refit: classification and regression only so far (this run is reconstruction); the run keeps best.npz only")
        return
    if p.val is None or len(p.val) == 0:
        warn("training.refit: no validation rows, so nothing to add; the run keeps best.npz only")
        return
    if epochs < 1:
        return
    start = time.perf_counter()
    x = np.concatenate([p.train.x, p.val.x])
    y = np.concatenate([p.train.y, p.val.y])
    refit_cfg = cfg.model_copy(deep=True)
    refit_cfg.training.epochs = epochs
    refit_cfg.training.early_stopping = None
    both = SimpleNamespace(labels=p.labels, targets=p.targets, train=SimpleNamespace(x=x, y=y), val=None)
    refitter = _make_trainer(refit_cfg, both, [])

    refitter.callbacks = [StopWatcher(stop)]
    threads = training_threads(cfg.training.threads, refitter, len(y))
    refitter.speed = threads
    with threads, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            refitter.fit(x, y)
        except TrainingDiverged as e:
            warn(f"training.refit: {e}; the run keeps best.npz")
            summary["refit"] = {"status": "diverged", "epochs": epochs, "error": str(e)}
            return
    if refitter.interrupted:
        warn("training.refit: interrupted; the run keeps best.npz only")
        summary["refit"] = {"status": "interrupted", "epochs": epochs}
        return
    run.save("refit", refitter, refitter.net.params, rows=len(y))
    summary["refit"] = {"status": "finished", "epochs": epochs, "rows": int(len(y)), "train_loss": refitter.history[-1]["train_loss"],
                        "seconds": time.perf_counter() - start}
    test = p.test
    if test is not None and len(test) > 0 and "test" in summary:
        with np.errstate(over="ignore", invalid="ignore"):
            logits = on_one_thread(refitter.net.logits, test.x)
            if cfg.task == "classification":
                classes, proba = refitter.loss.predict_classes(logits), refitter.loss.predict_proba(logits)
            else:  # regression: the outputs themselves, decoded to target units by _test_metrics
                classes, proba = None, logits
        if np.all(np.isfinite(proba)):
            summary["test_before_refit"] = summary["test"]
            summary["test"] = _test_metrics(cfg.task, p, test, proba, classes)
            summary["test"]["checkpoint"] = "refit"
            summary["headline"]["value"] = summary["test"].get(HEADLINE[cfg.task])


def _summary(run: TrainingRun, trainer: Trainer, started: float, status: str, error: str | None = None, temperature: float = 1.0) -> dict[str, Any]:
    cfg, prepared, history = run.cfg, run.prepared, trainer.history
    summary: dict[str, Any] = {
        "status": status,
        "config_name": run.config_name,
        "started_at": run.started_at,
        "epochs_run": trainer.epoch,
        "stopped_early": trainer.stopped_early,
        **({"optimizer_stopped": trainer.optimizer.reason} if getattr(trainer.optimizer, "reason", None) else {}),
        "monitor": trainer.monitor,
        "best_epoch": trainer.best_epoch,
        "best_value": trainer.best_value,
        "final": history[-1] if history else None,
        "best": history[trainer.best_epoch - 1] if trainer.best_epoch else None,
        "rows": {"train": len(prepared.train), "val": len(prepared.val) if prepared.val else 0, "test": len(prepared.test) if prepared.test else 0},
        "features": {"columns": len(prepared.preprocessor.features), "inputs": prepared.train.x.shape[1]},
        "columns": [{"name": c.name, "kind": c.kind, "reason": c.reason} for c in prepared.preprocessor.columns],
        "task": cfg.task,
        **({"classes": prepared.labels.values} if prepared.labels is not None else {}),
        **({"targets": prepared.targets.names} if prepared.targets is not None else {}),
        "seed": cfg.seed,
        "ranks": run.comm.size,  # MPI processes that shared each batch
        "seconds": {"train": sum(r["seconds"] for r in history), "wall": time.time() - started},
        "versions": versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if temperature != 1.0 or (status == "finished" and cfg.training.calibration == "temperature"):
        summary["temperature"] = temperature
    if error:
        summary["error"] = error
    test = prepared.test
    if status == "finished" and test is not None and len(test) > 0:
        params = trainer.best_params if trainer.best_params is not None else trainer.net.params
        saved = trainer.net.params.copy()
        trainer.net.params[...] = params
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = trainer.net.logits(test.x)
            if cfg.task == "classification":
                classes = trainer.loss.predict_classes(outputs)
                if temperature != 1.0:  # as TrainedModel.predict does
                    outputs /= outputs.dtype.type(temperature)
                proba = trainer.loss.predict_proba(outputs)
            else:
                classes, proba = None, outputs
        trainer.net.params[...] = saved
        if not np.all(np.isfinite(proba)):  # no validation data caught it: the last steps blew up
            raise TrainingDiverged(
                f"training diverged: the trained model's outputs on the test rows are NaN or infinite "
                f"(lr {trainer.lr:g}); lower optimizer.lr, or set training.clip_norm"
            )
        summary["test"] = _test_metrics(cfg.task, prepared, test, proba, classes)
        summary["test"]["checkpoint"] = "best" if trainer.best_params is not None else "last"
    summary["headline"] = {"metric": f"test_{HEADLINE[cfg.task]}", "value": (summary.get("test") or {}).get(HEADLINE[cfg.task])}
    return summary


def _test_metrics(task: str, prepared, test, outputs: np.ndarray, classes=None) -> dict[str, Any]:
    """summary.json's ``test``: the task's metrics on the held-out rows (targets' units)."""
    if task == "classification":
        report = classification_report(test.y, outputs, prepared.labels.values, classes)
        return {k: report[k] for k in ("n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss", "ece", "mce", "brier")}
    if task == "regression":
        from .metrics import regression_report

        decode = prepared.targets.decode
        report = regression_report(test.values, decode(outputs), prepared.targets.names)
        return {k: report[k] for k in ("n", "rmse", "mae", "r2", "per_target")}
    squared = np.square(outputs - test.x, dtype=np.float64)
    pca = np.square(prepared.pca.reconstruct(test.x) - test.x).mean()
    return {"n": len(test), "mse": float(squared.mean()), "pca_mse": float(pca)}
