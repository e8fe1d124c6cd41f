"""A study: trials of ordinary training runs, sampled and pruned by Optuna, kept in a storage.

    DIR/STUDY/study.yaml        the config the study searches around (paths resolved, --set applied)
    DIR/STUDY/study.json        name, storage URL (password hidden), metric, direction, space
    DIR/STUDY/study.db          the Optuna storage (SQLite) unless --storage names another
    DIR/STUDY/trial-0007/       one run folder per trial, plus trial.json (state, params, value)
    DIR/STUDY/trials.csv        every trial of the study (all workers and machines), rewritten
    DIR/STUDY/best.yaml         the best trial's complete config (no tune: section)
    DIR/STUDY/final-0007/       with tune.cv and tune.refit: best.yaml trained, with the final
                                model on every training-pool row (checkpoints/refit.npz)

A trial is ``nnclf.runs.train`` on study.yaml with overrides: its parameters, ``seed`` derived
from the config's seed and the trial number, ``data.split_seed`` fixed at the config's seed (so
every trial is scored on the same validation rows) and ``tune: null``. The trial's value is
the metric at the epoch whose weights the run keeps (checkpoints/best.npz, the trainer's
monitored best), so the number in the table is the one ``nnclf evaluate`` reproduces. With
``tune.cv: K`` the value is the mean of that number over K folds (``nnclf.tune.folds``; fold 0
is the trial's run folder, the others train in memory).

Optuna is imported here only: ``pip install "nnclf[tune]"``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml

from ..files import write_text as atomic_write_text
from ..config import _resolve_paths, apply_override, key_path, load_config, parse_yaml
from ..errors import NnclfError
from .prepared import process_memo
from .space import TuneSpec, parse_tune
from .sqlite_schema import open_rdb_storage

INSTALL_HINT = 'nnclf tune needs Optuna: pip install ".[tune]" in a clone, or pip install "nnclf[tune]"'
STATES = ("complete", "pruned", "failed", "running", "waiting")
WAIT_POLL = 0.2  # seconds between a waiting worker's looks at the study (one cheap query each)
WAKE_POLL = 0.01  # seconds between a waiting local worker's looks at its siblings' trial counter (no query)


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise NnclfError(INSTALL_HINT) from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # heartbeats are "experimental" in Optuna's words; the warning would print on every start
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``: a 32-bit word of NumPy's SeedSequence([seed, number]), so
    trials draw independent initialisations, shuffles and dropout masks, and a study run again
    from scratch repeats them."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def hidden_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- the study's config ---------------------------------------------------------------------------
@dataclass
class StudySetup:
    """Everything a worker needs, plain data (handed to forked worker processes)."""

    config_path: str  # the user's config
    folder: str  # DIR/STUDY
    name: str
    storage_url: str
    spec: TuneSpec
    base_seed: int
    split_seed: int
    raw: dict  # study.yaml's content
    heartbeat: float = 10.0
    timeout: Optional[float] = None
    trials: int = 20

    @property
    def study_yaml(self) -> Path:
        return Path(self.folder) / "study.yaml"

    def trial_folder(self, number: int) -> Path:
        return Path(self.folder) / f"trial-{number:04d}"


def load_study_config(config_path: str | Path, overrides: list[str]) -> tuple[dict, TuneSpec, Any]:
    """The config as ``nnclf train`` would read it (errors named the same way), its raw mapping
    (paths resolved, overrides applied) and the checked tune section."""
    cfg = load_config(config_path, overrides)
    path = Path(config_path)
    text = path.read_text(encoding="utf-8")
    raw = parse_yaml(text, str(path))
    _resolve_paths(raw, path.resolve().parent)
    overridden = []
    for item in overrides:
        overridden.append(key_path(raw, item.partition("=")[0].strip()))  # (before: it reads the space as it is)
        apply_override(raw, item)
    spec = parse_tune(raw, cfg, str(path), text, overridden)
    return raw, spec, cfg


def prepare_study(
    config_path: str | Path,
    overrides: list[str] = (),
    runs_dir: str | Path = "runs",
    study: Optional[str] = None,
    storage: Optional[str] = None,
    trials: Optional[int] = None,
    timeout: Optional[float] = None,
    heartbeat: float = 10.0,
    prefetch: bool = False,
) -> StudySetup:
    """Check everything, create (or find) the study folder and the Optuna study.

    ``prefetch``: once the config is checked, prepare the trials' data in a helper process
    (``PreparedMemo.prefetch``) while this one imports Optuna and opens the storage; the
    first trial (or the workers' fork) takes it in. For a caller that goes on to ``tune``
    (which lets it go at its end, as it does the kept data); ``nnclf tune`` sets it."""
    from ..runs import check_run_name

    raw, spec, cfg = load_study_config(config_path, overrides)
    if study is not None:
        name = check_run_name(study, "--study", "a study name")
    else:  # the config file's name: a stem with a space or other character needs --study
        name = check_run_name(Path(config_path).stem or "study", f"{config_path}: the study name (the file's, without --study)", "a study name")
    folder = Path(runs_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    setup = StudySetup(
        config_path=str(config_path), folder=str(folder), name=name, storage_url=url, spec=spec,
        base_seed=cfg.seed, split_seed=cfg.data.split_seed if cfg.data.split_seed is not None else cfg.seed,
        raw=raw, heartbeat=heartbeat, timeout=timeout if timeout is not None else spec.timeout,
        trials=trials if trials is not None else spec.trials,
    )
    _write_or_check_study_yaml(setup)
    if prefetch and _small_inputs(cfg.data) and _a_core_is_free():
        process_memo().prefetch(lambda: trial_data(setup))
    try:
        _create_study(setup, config_path)
    except BaseException:
        process_memo().cancel()
        raise
    return setup


# Inputs larger than this (compressed files and Parquet counted 5x) are not prefetched: the
# helper's arrays and their copy here exist together for a moment, and the read itself, not
# the imports it overlaps, is then most of the start.
PREFETCH_MAX_BYTES = 64 * 2**20


def _a_core_is_free() -> bool:
    """Whether a core is free for the prefetch helper now. The helper gains only by running
    beside this process's imports; on a machine whose other cores are busy it only adds a fork
    and a copy of the data (measured: up to 0.14 s more start-up pinned to one core,
    benchmarks/RESULTS.md), so it is not started then. Unknown (not Linux): as if free."""
    from ..threads import _spare_cores

    spare = _spare_cores()
    return spare is None or spare >= 1


def _small_inputs(data) -> bool:
    from ..data.reading import is_parquet
    from ..inputs import inferred_compression

    total = 0
    for path in (data.train, data.val, data.test):
        if path is None:
            continue
        try:
            size = os.stat(path).st_size
        except (OSError, ValueError):
            return False  # (a trial names the problem)
        total += size * (5 if is_parquet(Path(path)) or inferred_compression(str(path)) is not None else 1)
    return total <= PREFETCH_MAX_BYTES


def _create_study(setup: StudySetup, config_path) -> None:
    name, url, spec, folder = setup.name, setup.storage_url, setup.spec, Path(setup.folder)
    optuna = import_optuna()
    storage_obj = open_storage(setup)
    optuna.create_study(study_name=name, storage=storage_obj, direction=spec.direction, load_if_exists=True)
    existing = optuna.load_study(study_name=name, storage=storage_obj)
    if existing.direction.name.lower() != spec.direction:
        raise NnclfError(f"study '{name}' in {hidden_password(url)} is to {existing.direction.name.lower()}, the config says {spec.direction}; use another --study")
    _check_trial_folders(folder, existing, url)
    meta = {
        "name": name, "storage": hidden_password(url), "config": str(Path(config_path).resolve()),
        "metric": spec.metric, "direction": spec.direction, "sampler": spec.sampler, "pruner": spec.pruner,
        "cv": spec.cv, "refit": spec.refit,
        "space": {k: {kk: vv for kk, vv in p.__dict__.items() if vv not in (None, ())} for k, p in spec.space.items()},
    }
    atomic_write_text(folder / "study.json", json.dumps(meta, indent=2, default=list) + "\n")


def _check_trial_folders(folder: Path, study, url: str) -> None:
    """Refuse a study folder holding trial folders its storage has no trial for (study.db
    deleted, emptied or replaced, or --storage naming another database): the new trials would
    take those numbers, fail on the existing folders, and trials.csv, the last record of the
    old trials, would be rewritten. A worker makes a trial's folder only after the storage gave
    it the number, so listing the folders before reading the trials is free of races."""
    folders = sorted(p.name for p in folder.glob("trial-[0-9][0-9][0-9][0-9]*") if p.is_dir() and p.name[6:].isdigit())
    if not folders:
        return
    known = {t.number for t in study.get_trials(deepcopy=False)}
    orphans = [f for f in folders if int(f[6:]) not in known]
    if orphans:
        shown = ", ".join(orphans[:3]) + (f" and {len(orphans) - 3} more" if len(orphans) > 3 else "")
        raise NnclfError(
            f"{folder}: {shown} {'is a trial' if len(orphans) == 1 else 'are trials'} of a study that the storage "
            f"{hidden_password(url)} does not hold (was study.db deleted or replaced?); no trial was run: "
            f"restore the storage, or start another study with --study NAME or --runs-dir DIR"
        )


def _comparable(raw: dict) -> dict:
    """study.yaml without the keys that may change between runs of one study."""
    out = copy.deepcopy(raw)
    tune = out.get("tune")
    if isinstance(tune, dict):
        tune.pop("trials", None)
        tune.pop("timeout", None)
    return out


def _write_or_check_study_yaml(setup: StudySetup) -> None:
    path = setup.study_yaml
    if path.is_file():
        old = yaml.safe_load(path.read_text(encoding="utf-8"))
        if _comparable(old) != _comparable(setup.raw):
            changed = sorted(_differences(_comparable(old), _comparable(setup.raw)))
            raise NnclfError(
                f"{path}: the study was started with another config ({', '.join(changed[:3])} changed); "
                f"continue it with the same config and --set values, or start another with --study NAME"
            )
    header = f"# the config study '{setup.name}' searches around (from {setup.config_path}); trials override tune.space and seed\n"
    atomic_write_text(path, header + yaml.safe_dump(setup.raw, sort_keys=False, allow_unicode=True))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out.extend(_differences(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return [] if a == b else [prefix.rstrip(".") or "the config"]


# -- storage --------------------------------------------------------------------------------------
_STORAGES: dict[tuple[str, int], Any] = {}


def _sqlite_pragmas(dbapi_connection, record) -> None:
    """SQLite in write-ahead-log mode with synchronous=NORMAL: readers do not block the writer
    and a commit does not wait for the disk (a crashed process loses nothing; a power cut may
    lose the last trials' records). Optuna commits about 20 times per trial, each an fsync (its cost is in benchmarks/RESULTS.md)."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def open_storage(setup: StudySetup):
    """The process's RDB storage for the study (made once per process) with heartbeats: a trial
    whose worker stops beating for 3 intervals is marked failed by the next worker to start a
    trial, and queued again once."""
    key = (setup.storage_url, os.getpid())
    if key not in _STORAGES:
        _STORAGES[key] = _inherited_storage(setup.storage_url) or _open_storage(setup)
    return _STORAGES[key]


def _inherited_storage(url: str):
    """In a process forked from the one that opened the storage (a ``--jobs`` worker): the
    parent's storage object with a pool of this process's own. The parent closed its pooled
    connections before forking (``start_workers``) and ``dispose(close=False)`` leaves any of
    the parent's alone, so no connection is shared; what is kept is what opening it again
    would only redo: the schema check and SQLAlchemy's compiled statements."""
    storage = _STORAGES.get((url, os.getppid()))
    engine = getattr(storage, "engine", None)
    if engine is None:
        return None
    try:
        engine.dispose(close=False)
    except TypeError:  # (SQLAlchemy < 1.4.33 has no close=)
        return None
    return storage


def _open_storage(setup: StudySetup):
    optuna = import_optuna()
    url = setup.storage_url
    if url.startswith("sqlite"):
        import sqlalchemy

        if not sqlalchemy.event.contains(sqlalchemy.pool.Pool, "connect", _sqlite_pragmas):
            sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", _sqlite_pragmas)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}  # workers wait for each other's writes
    else:
        engine_kwargs = {"pool_pre_ping": True}
    interval = max(1, int(round(setup.heartbeat)))
    retry = _StaleTrials(setup)
    kwargs = dict(heartbeat_interval=interval, grace_period=3 * interval)
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        kwargs["heartbeat_stale_trial_callback"] = retry
    else:  # optuna < 5
        kwargs["failed_trial_callback"] = retry
    try:
        for attempt in range(5):
            try:
                return open_rdb_storage(url, engine_kwargs, **kwargs)
            except ImportError:
                raise
            except Exception:
                # machines that start together on a new database race to create its tables;
                # the loser finds them made a moment later
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError as e:
        raise NnclfError(
            f"--storage {hidden_password(url)}: the database driver is missing ({e}); install it, e.g. "
            f"pip install psycopg2-binary and a postgresql+psycopg2:// URL, or pip install \"psycopg[binary]\" for postgresql://"
        ) from None
    except Exception as e:  # sqlalchemy's errors: a wrong URL, a refused connection
        raise NnclfError(f"--storage {hidden_password(url)}: cannot open the study storage ({str(e).splitlines()[0]})") from None


def dispose(storage) -> None:
    """Close the storage's pooled connections (before a fork; it reconnects when used again)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def close_storages() -> None:
    """Close this process's storage connections. SQLite copies its write-ahead log into
    study.db when the last connection closes, so afterwards study.db alone holds the study
    (no study.db-wal beside it) even if the process then ends without the interpreter's
    teardown (``nnclf.cli.main``)."""
    for key, storage in list(_STORAGES.items()):
        if key[1] == os.getpid():
            dispose(storage)


class _StaleTrials:
    """Heartbeat callback: queue a stale trial again (once) and mark its run folder failed."""

    def __init__(self, setup: StudySetup):
        self.setup = setup

    def __call__(self, study, trial) -> None:
        optuna = import_optuna()
        cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
        cls(max_retry=1)(study, trial)
        folder = self.setup.trial_folder(trial.number)
        if folder.is_dir():
            _write_trial_json(folder, {**_trial_json(self.setup, trial.number, trial.params, {}),
                                       "state": "failed", "error": "its worker stopped (no heartbeat); the trial was queued again once"})


def _trial_json(setup: StudySetup, number: int, params: dict, extra: dict) -> dict:
    return {
        "study": setup.name, "number": number, "metric": setup.spec.metric, "direction": setup.spec.direction,
        "params": params, "seed": trial_seed(setup.base_seed, number), "worker": f"{socket.gethostname()}:{os.getpid()}", **extra,
    }


def _write_trial_json(folder: Path, data: dict) -> None:
    # atomic but not forced to disk: the storage is the study's record, these files mirror it
    atomic_write_text(folder / "trial.json", json.dumps(data, indent=2, default=str) + "\n", durable=False)


# -- one worker -----------------------------------------------------------------------------------
class TrialInterrupted(Exception):
    """Ctrl-C during a trial: the trial is marked failed (interrupted), the worker stops."""


class TrialSkipped(Exception):
    """Another worker took the last trial of the budget between our count and our ask."""


class _Reporter:
    """Trainer callback: the metric to Optuna after every epoch; stops training when pruned.
    Without a pruner nothing reads the per-epoch values, and each report is a storage write
    (a commit, and with several workers a wait for the database lock), so none is made."""

    def __init__(self, trial, metric: str, prunes: bool = True):
        self.trial, self.metric, self.pruned, self.prunes = trial, metric, False, prunes

    def on_epoch_end(self, trainer, record: dict, improved: bool) -> None:
        if not self.prunes:
            return
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), int(record["epoch"]))
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop_requested = True


def _yaml_value(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML; floats in repr form read back exactly


def trial_overrides(setup: StudySetup, number: int, params: dict[str, Any]) -> list[str]:
    out = ["tune=null", f"seed={trial_seed(setup.base_seed, number)}", f"data.split_seed={setup.split_seed}"]
    out.extend(f"{key}={_yaml_value(value)}" for key, value in params.items())
    return out


def suggest(trial, spec: TuneSpec) -> dict[str, Any]:
    """Values for every dimension. Optuna's categorical values must be scalars: a choice
    among lists (model.hidden) is suggested as the JSON text of each value."""
    params: dict[str, Any] = {}
    for key, p in spec.space.items():
        if p.type == "uniform":
            params[key] = trial.suggest_float(key, p.low, p.high)
        elif p.type == "loguniform":
            params[key] = trial.suggest_float(key, p.low, p.high, log=True)
        elif p.type == "int":
            params[key] = trial.suggest_int(key, p.low, p.high, step=p.step or 1)
        else:
            params[key] = decode_choice(trial.suggest_categorical(key, encode_choices(p.values)), encoded(p.values))
    return params


def encoded(values) -> bool:
    """Whether ``encode_choices`` gives Optuna these values as JSON texts (one of them is not
    a scalar); then every value is one, scalars too."""
    return not all(v is None or isinstance(v, (bool, int, float, str)) for v in values)


def encode_choices(values) -> list:
    if not encoded(values):
        return list(values)
    return [json.dumps(v) for v in values]


def decode_choice(value, was_encoded: bool):
    """A suggested choice back as the config value: the JSON text decoded when the dimension's
    values were encoded (a scalar among lists, such as null or 'balanced' beside a mapping of
    loss.class_weights, is JSON text too), else as Optuna gave it (a string value is the string,
    even one that starts with '[')."""
    return json.loads(value) if was_encoded and isinstance(value, str) else value


def decoded_params(trial, spec: TuneSpec) -> dict[str, Any]:
    out = {}
    for key, value in trial.params.items():
        p = spec.space.get(key)
        out[key] = decode_choice(value, p is not None and p.type == "choice" and encoded(p.values))
    return out


def make_sampler(setup: StudySetup, seed: Optional[int]):
    optuna = import_optuna()
    spec = setup.spec
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        space = {k: encode_choices(v) for k, v in spec.grid_space().items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, setup.trials // 3)))


def make_pruner(setup: StudySetup, epochs: int):
    optuna = import_optuna()
    if setup.spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, setup.trials // 4)), n_warmup_steps=min(5, max(1, epochs // 5)))
    if setup.spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


@dataclass
class WorkerResult:
    ran: int = 0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


def _counted(trial) -> bool:
    """Trials that use up the budget: complete, pruned and diverged ones (a study whose every
    trial diverges must end); interrupted, killed and skipped ones do not."""
    name = trial.state.name
    return name in ("COMPLETE", "PRUNED") or (name == "FAIL" and bool(trial.user_attrs.get("diverged")))


def _counts(study, trials=None) -> dict[str, int]:
    optuna = import_optuna()
    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    return {
        "done": sum(_counted(t) for t in trials),
        "running": sum(t.state == S.RUNNING for t in trials),
        "waiting": sum(t.state == S.WAITING for t in trials),
    }


def run_worker(
    setup: StudySetup,
    stop: threading.Event,
    warn: Callable[[str], None] = lambda m: None,
    on_trial: Callable[[Any], None] = lambda study: None,
    worker: int = 0,
    callbacks: list = (),
    ended=None,
) -> WorkerResult:
    """Run trials until the study holds ``setup.trials`` complete or pruned trials, the
    timeout passes, or ``stop`` is set. Many workers (processes, machines) may share a study.
    ``ended``: a counter shared by the workers of one ``--jobs`` command (a
    ``multiprocessing.Value``), raised by each at the end of each of its trials, so a worker
    waiting for the study's last trials looks again as soon as one ends instead of up to
    ``WAIT_POLL`` later (the command ends when its last worker does)."""
    from .. import runs
    from ..trainer import TrainingDiverged

    optuna = import_optuna()
    storage = open_storage(setup)
    # one process alone draws from the config's seed (a study is then reproducible); several
    # workers must not draw the same sequence, so each mixes in its index and process id
    counts0 = None
    result = WorkerResult()
    seen_warnings: set[str] = set()

    def once(message: str) -> None:  # the same data warning for every trial: say it once
        if message not in seen_warnings:
            seen_warnings.add(message)
            result.warnings.append(message)
            warn(message)

    study = optuna.load_study(study_name=setup.name, storage=storage)
    counts0 = _counts(study)
    solo = worker < 0
    done_before = sum(counts0.values())
    seed = int(np.random.SeedSequence([setup.base_seed, done_before] + ([] if solo else [worker, os.getpid()])).generate_state(1)[0])
    epochs = int(load_config(setup.study_yaml).training.epochs)
    study = optuna.load_study(study_name=setup.name, storage=storage, sampler=make_sampler(setup, seed), pruner=make_pruner(setup, epochs))
    started = time.monotonic()

    def objective(trial):
        S = optuna.trial.TrialState
        # another worker may have taken the budget's last trial between our count and our ask
        # (one process alone cannot race itself: the check would only cost a query). Trial
        # numbers count every earlier trial, so below the budget no query is needed either.
        if not solo and trial.number >= setup.trials:
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and (_counted(t) or t.state in (S.RUNNING, S.WAITING))]
            if len(earlier) >= setup.trials:
                trial.set_user_attr("skipped", "the study had its trials when this one started")
                raise TrialSkipped()
        params = suggest(trial, setup.spec)
        # (the overrides and the folder follow from the number and the params: not stored)
        overrides = trial_overrides(setup, trial.number, params)
        folder = setup.trial_folder(trial.number)
        reporter = _Reporter(trial, setup.spec.metric, prunes=setup.spec.pruner != "none")
        prepared: list = []  # the run's data, kept for the other folds

        def prepare_data(*args, **kwargs):
            prepared.append(process_memo().prepare(*args, **kwargs))
            return prepared[-1]

        t0 = time.time()
        try:
            run = runs.train(setup.study_yaml, overrides, setup.folder, folder.name, [reporter, *callbacks], once, stop,
                             durable=False, deferred=True, prepare_data=prepare_data)
        except TrainingDiverged as e:
            _diverged(setup, trial, folder, params, str(e))
            raise
        seconds = time.time() - t0
        if run.interrupted and not reporter.pruned:
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            _write_trial_json(folder, _trial_json(setup, trial.number, params, {"state": "interrupted", "seconds": seconds}))
            raise TrialInterrupted()
        summary = run.summary
        record = summary.get("best") or summary.get("final") or {}
        if reporter.pruned:
            _mark_summary(folder, "pruned")
            last = run.history[-1].get(setup.spec.metric) if run.history else None
            _write_trial_json(folder, _trial_json(setup, trial.number, params, {"state": "pruned", "epochs": summary["epochs_run"], "last_value": last, "seconds": seconds}))
            raise optuna.TrialPruned()
        value = record.get(setup.spec.metric)
        if value is None or not math.isfinite(value):
            raise NnclfError(f"trial {trial.number}: metric '{setup.spec.metric}' was not logged")
        test = (summary.get("test") or {}).get("accuracy")
        result = {"epochs": summary["epochs_run"], "test_accuracy": test}
        extra = {}
        if setup.spec.cv:
            cv = _other_folds(setup, trial.number, overrides, prepared[-1], float(value), summary, stop)
            if cv.get("interrupted"):
                trial.set_user_attr("error", "interrupted (Ctrl-C)")
                _write_trial_json(folder, _trial_json(setup, trial.number, params, {"state": "interrupted", "seconds": time.time() - t0}))
                raise TrialInterrupted()
            if cv.get("error"):
                _diverged(setup, trial, folder, params, cv["error"])
                raise TrainingDiverged(cv["error"])
            result["cv"] = {k: cv[k] for k in ("values", "best_epochs")}
            extra = {"fold_0_value": value, "cv": cv}
            value = cv["mean"]
            seconds = time.time() - t0
        # one storage write for all (each set_user_attr is a commit)
        trial.set_user_attr("result", result)
        _write_trial_json(folder, _trial_json(setup, trial.number, params, {
            "state": "complete", "value": value, "best_epoch": summary["best_epoch"], "epochs": summary["epochs_run"],
            "test_accuracy": test, "seconds": seconds, **extra}))
        return float(value)

    trials = None  # the study's trials as on_trial read them: the next count needs no query
    while not stop.is_set():
        if setup.timeout is not None and time.monotonic() - started >= setup.timeout:
            break
        counts = _counts(study, trials)
        trials = None
        if counts["done"] >= setup.trials:
            break
        if counts["done"] + counts["running"] >= setup.trials and not counts["waiting"]:
            # the last trials are running elsewhere; wait: a killed worker's trial comes back.
            # A short wait: the command ends when its last worker does, so a worker that slept
            # a second here after the study's last trial made the whole study a second longer.
            optuna.storages.fail_stale_trials(study)
            _wait_for_a_trial(stop, ended, min(WAIT_POLL, setup.heartbeat / 2))
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(TrainingDiverged, TrialSkipped, TrialInterrupted), gc_after_trial=False)
        finally:
            trials = on_trial(study)
            if ended is not None:
                with ended.get_lock():
                    ended.value += 1
        result.ran += 1
    result.interrupted = stop.is_set()
    return result


def _wait_for_a_trial(stop: threading.Event, ended, seconds: float) -> None:
    """Sleep ``seconds``, or less: until ``stop`` is set or another local worker ends a trial."""
    if ended is None:
        stop.wait(seconds)
        return
    seen, until = ended.value, time.monotonic() + seconds
    while not stop.is_set() and ended.value == seen:
        left = until - time.monotonic()
        if left <= 0:
            return
        stop.wait(min(WAKE_POLL, left))


def _diverged(setup: StudySetup, trial, folder: Path, params: dict, error: str) -> None:
    trial.set_user_attr("error", error)
    trial.set_user_attr("diverged", True)
    if folder.is_dir():
        _write_trial_json(folder, _trial_json(setup, trial.number, params, {"state": "diverged", "error": error}))


def _other_folds(setup: StudySetup, number: int, overrides: list[str], prepared, value0: float, summary: dict, stop) -> dict:
    """Folds 1..K-1 of trial ``number`` (fold 0 is its run, value ``value0``): trained in
    memory, each on its own prepared data (``folds.prepare_fold``). Returns the trial.json
    ``cv`` record: values, best epochs, epochs and seeds per fold, their mean and (population)
    standard deviation;
    ``interrupted`` or ``error`` (a fold diverged) instead when the folds did not all finish."""
    from ..config import load_config
    from ..trainer import TrainingDiverged
    from .folds import check_folds, fold_seed, prepare_fold, train_fold

    k = setup.spec.cv
    check_folds(prepared, k, f"{setup.config_path}: tune.cv")
    cfg = load_config(setup.study_yaml, overrides)
    values, best, epochs, seeds = [value0], [summary["best_epoch"] or summary["epochs_run"]], [summary["epochs_run"]], [cfg.seed]
    for fold in range(1, k):
        fold_cfg = cfg.model_copy(deep=True)
        fold_cfg.seed = fold_seed(cfg.seed, fold)
        try:
            r = train_fold(fold_cfg, prepare_fold(cfg, prepared, fold, k, setup.split_seed), setup.spec.metric, stop)
        except TrainingDiverged as e:
            return {"error": f"fold {fold}: {e}"}
        if r["interrupted"]:
            return {"interrupted": True}
        if r["value"] is None:
            return {"error": f"fold {fold}: metric '{setup.spec.metric}' is not finite"}
        values.append(r["value"])
        best.append(r["best_epoch"])
        epochs.append(r["epochs"])
        seeds.append(fold_cfg.seed)
    mean = float(np.mean(values))
    return {"folds": k, "values": values, "best_epochs": best, "epochs": epochs, "seeds": seeds,
            "mean": mean, "std": float(np.std(values))}


def _mark_summary(folder: Path, status: str) -> None:
    path = folder / "summary.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        summary["status"] = status
        atomic_write_text(path, json.dumps(summary, indent=2) + "\n", durable=False)


# -- many workers ---------------------------------------------------------------------------------
def _worker_main(setup: StudySetup, index: int, threads: Optional[int], ended=None) -> None:
    """A forked worker process: its own storage connection, Ctrl-C stops it after its trial."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    if hasattr(signal, "SIGHUP"):  # a closed terminal signals the whole group: as the parent's Ctrl-C
        signal.signal(signal.SIGHUP, lambda *a: stop.set())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (the parent's terminate() on a second Ctrl-C)
    code = 0
    try:
        from contextlib import nullcontext

        limiter = nullcontext()
        if threads is not None:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=threads, user_api="blas")
        with limiter:
            run_worker(setup, stop, worker=index, ended=ended)
    except NnclfError as e:
        import sys

        print(f"error: worker {index}: {e}", file=sys.stderr)
        code = 1
    os._exit(code)  # no atexit handlers of the parent (rich, the CLI) in a forked child


def warm_up(setup: StudySetup, warn: Callable[[str], None] = lambda m: None) -> bool:
    """Before forking: import the data layer (pandas) and prepare the study's data once in
    this process, so forked workers share both instead of each paying for them (on a busy
    machine the two imports and reads cost more than one). Returns whether data was prepared.
    A problem is left to the trials to report (they name it as ``nnclf train`` would)."""
    try:
        args = trial_data(setup)
        if args is None:
            return False
        data, seed, dtype, task = args
        process_memo().prepare(data, seed, dtype, warn, task)
    except (NnclfError, OSError, MemoryError):
        return False
    return True


def trial_data(setup: StudySetup) -> Optional[tuple]:
    """``(data, seed, dtype, task)`` the trials prepare their data from (the config's data
    section, ``data.split_seed`` fixed), or None when they read it from the memory-mapped
    cache (nothing kept in memory)."""
    from .. import runs

    cfg = load_config(setup.study_yaml, trial_overrides(setup, 0, {}))
    if runs._cache_mode(cfg, lambda m: None) == "mmap":
        return None
    return cfg.data, cfg.seed, cfg.training.dtype, cfg.task


def check_cv(setup: StudySetup, warn: Callable[[str], None] = lambda m: None) -> None:
    """Before any trial: the data can be cut into ``tune.cv`` stratified folds (the data is
    prepared as the trials will, into this process's memo, so the first trial reads no CSV)."""
    from .. import runs
    from ..config import load_config
    from .folds import check_folds

    cfg = load_config(setup.study_yaml, trial_overrides(setup, 0, {}))
    if runs._cache_mode(cfg, lambda m: None) == "mmap":
        return  # (checked by each trial instead: no second copy of a cached data set here)
    prepared = process_memo().prepare(cfg.data, cfg.seed, cfg.training.dtype, lambda m: None, cfg.task)
    check_folds(prepared, setup.spec.cv, f"{setup.config_path}: tune.cv")


def start_workers(setup: StudySetup, jobs: int, warn: Callable[[str], None] = lambda m: None) -> list:
    """``jobs`` worker processes (fork where available: no second import of nnclf and Optuna)."""
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "fork":
        warm_up(setup, warn)
    # one BLAS thread per worker when the workers fill the cores: more would oversubscribe them
    from ..threads import _usable_cores

    threads = max(1, _usable_cores() // jobs)
    for storage in _STORAGES.values():  # no connection of this process shared with a child
        dispose(storage)
    ended = ctx.Value("l", 0)  # trials ended by these workers (wakes a waiting one)
    procs = []
    for index in range(jobs):
        p = ctx.Process(target=_worker_main, args=(setup, index, threads, ended), name=f"nnclf-tune-{index}")
        p.start()
        procs.append(p)
    return procs


# -- results --------------------------------------------------------------------------------------
def state_name(trial) -> str:
    name = trial.state.name.lower()
    if name == "fail":
        if trial.user_attrs.get("skipped"):
            return "skipped"
        if trial.user_attrs.get("diverged"):
            return "diverged"
        return "interrupted" if trial.user_attrs.get("error", "").startswith("interrupted") else "failed"
    return name


def _result(trial) -> dict:
    """epochs and test_accuracy of a finished trial (one user attribute; studies made before
    kept them as two)."""
    result = trial.user_attrs.get("result")
    if isinstance(result, dict):
        return result
    return {"epochs": trial.user_attrs.get("epochs"), "test_accuracy": trial.user_attrs.get("test_accuracy")}


def trial_rows(study, spec: TuneSpec, trials=None) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, params (as config values: ``spec`` says which
    choices were encoded), epochs, test accuracy, seconds."""
    rows = []
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        # Optuna stores a pruned trial's last reported value as its value: shown as such
        value = t.value if t.values and t.state.name == "COMPLETE" else None
        value_last = t.intermediate_values[max(t.intermediate_values)] if value is None and t.intermediate_values else None
        rows.append({
            "number": t.number, "state": state_name(t), "value": value, "last_value": value_last,
            "params": decoded_params(t, spec), "epochs": _result(t).get("epochs") or (max(t.intermediate_values) if t.intermediate_values else None),
            "test_accuracy": _result(t).get("test_accuracy"), "seconds": seconds,
            "error": t.user_attrs.get("error"), "cv": _result(t).get("cv"),
        })
    return rows


def best_row(rows: list[dict], direction: str) -> Optional[dict]:
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    pick = max if direction == "maximize" else min
    return pick(complete, key=lambda r: (r["value"], -r["number"]) if direction == "maximize" else (r["value"], r["number"]))


def write_trials_csv(setup: StudySetup, rows: list[dict]) -> None:
    keys = list(setup.spec.space)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    # with tune.cv the metric column is the folds' mean; fold_values / fold_best_epochs list
    # each fold's (fold 0 first: the trial's run folder); epochs and test_accuracy are fold 0's
    folds = ["fold_values", "fold_best_epochs"] if setup.spec.cv else []
    w.writerow(["number", "state", setup.spec.metric, "epochs", "test_accuracy", "seconds", *folds, *keys])
    for r in rows:
        value = r["value"] if r["value"] is not None else r["last_value"]  # pruned: the last reported
        cv = r.get("cv") or {}
        w.writerow([r["number"], r["state"], "" if value is None else repr(value), r["epochs"] if r["epochs"] is not None else "",
                    "" if r["test_accuracy"] is None else repr(r["test_accuracy"]), "" if r["seconds"] is None else f"{r['seconds']:.3f}",
                    *([json.dumps(cv["values"]) if cv else "", json.dumps(cv["best_epochs"]) if cv else ""] if folds else []),
                    *(json.dumps(r["params"][k]) if k in r["params"] else "" for k in keys)])
    atomic_write_text(Path(setup.folder) / "trials.csv", out.getvalue(), durable=False)


def write_best_yaml(setup: StudySetup, best: dict) -> Path:
    """The best trial's complete config: study.yaml with the trial's overrides, validated,
    every default written out and no tune: section; ``nnclf train`` on it repeats the trial."""
    from ..config import load_config

    overrides = trial_overrides(setup, best["number"], best["params"]) + final_overrides(setup, best)
    cfg = load_config(setup.study_yaml, overrides)
    path = Path(setup.folder) / "best.yaml"
    what = f"mean of {setup.spec.cv} folds" if setup.spec.cv else "its run"
    header = (
        f"# best trial {best['number']} of study '{setup.name}': {setup.spec.metric} {best['value']!r} ({what})\n"
        f"# run folder {setup.trial_folder(best['number'])}; `nnclf train {path}` repeats it bit for bit\n"
    )
    if final_overrides(setup, best):
        header += (f"# and then trains the final model on every training-pool row for {cfg.training.refit_epochs} epochs "
                   f"(the folds' mean best epoch; checkpoints/refit.npz): {final_folder(setup, best)}\n")
    atomic_write_text(path, header + cfg.to_yaml())
    return path


def final_overrides(setup: StudySetup, best: dict) -> list[str]:
    """With tune.cv and tune.refit: training.refit on, for the folds' mean best epoch count."""
    from .folds import cv_epochs

    cv = best.get("cv")
    if not (setup.spec.cv and setup.spec.refit and cv) or setup.raw.get("task") == "reconstruction":
        return []  # (training.refit does not refit reconstruction yet)
    return ["training.refit=true", f"training.refit_epochs={cv_epochs(cv['best_epochs'])}"]


def final_folder(setup: StudySetup, best: dict) -> Path:
    return Path(setup.folder) / f"final-{best['number']:04d}"


def train_final(setup: StudySetup, best: dict, best_yaml: Path, stop, warn) -> Optional[Path]:
    """``nnclf train best.yaml`` into DIR/STUDY/final-NNNN (once per best trial: a study
    continued without a new best keeps its final run): the best trial's run again, then the
    refit on every training-pool row, the study's deliverable (refit.npz, which evaluate and
    predict use by default)."""
    from .. import runs

    folder = final_folder(setup, best)
    if (folder / "summary.json").is_file():
        return folder
    if folder.exists():
        warn(f"{folder}: an unfinished final run is in the way (nothing was overwritten); remove it and run the command again")
        return None
    runs.train(best_yaml, [], setup.folder, folder.name, [], warn, stop, prepare_data=process_memo().prepare)
    return folder


@dataclass
class StudyResult:
    setup: StudySetup
    rows: list[dict]
    best: Optional[dict]
    best_yaml: Optional[Path]
    interrupted: bool
    ran: int  # trials that ended during this command (any worker, any machine)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    final: Optional[Path] = None  # with tune.cv and tune.refit: the final run folder (refit.npz)


def read_rows(setup: StudySetup) -> list[dict]:
    optuna = import_optuna()
    return trial_rows(optuna.load_study(study_name=setup.name, storage=open_storage(setup)), setup.spec)


def tune(setup: StudySetup, jobs: int = 1, *args, **kwargs) -> StudyResult:
    """Run the study (``_tune``); the data kept for its trials is let go when it ends (a
    program that runs a study and goes on must not keep the arrays)."""
    try:
        return _tune(setup, jobs, *args, **kwargs)
    finally:
        process_memo().clear()
        close_storages()


def _tune(
    setup: StudySetup,
    jobs: int = 1,
    stop: Optional[threading.Event] = None,
    warn: Callable[[str], None] = lambda m: None,
    on_update: Optional[Callable[[list[dict]], None]] = lambda rows: None,
    callbacks: list = (),
    poll: float = 0.5,
) -> StudyResult:
    """Run the study with ``jobs`` workers (1: in this process) and finish it: trials.csv,
    best.yaml. ``on_update(rows)`` is called whenever a trial ends (and while workers run);
    None: nobody watches, so with ``jobs`` > 1 this process does not read the study while
    the workers run (each read is queries against the storage they write to)."""
    from multiprocessing.connection import wait as wait_for

    stop = stop or threading.Event()
    if setup.spec.cv:
        check_cv(setup, warn)
    watched = on_update is not None
    on_update = on_update or (lambda rows: None)
    errors: list[str] = []
    before = {r["number"] for r in read_rows(setup) if r["state"] not in ("running", "waiting")}
    if jobs <= 1:
        def on_trial(study):
            trials = study.get_trials(deepcopy=False)
            rows = trial_rows(study, setup.spec, trials)
            write_trials_csv(setup, rows)
            on_update(rows)
            return trials

        worker = run_worker(setup, stop, warn, on_trial, worker=-1 if setup.storage_url.startswith("sqlite") else 0, callbacks=callbacks)
        warnings = worker.warnings
    else:
        procs = start_workers(setup, jobs, warn)
        warnings = []
        forwarded = False
        last_rows = None
        study = import_optuna().load_study(study_name=setup.name, storage=open_storage(setup)) if watched else None
        try:
            while any(p.is_alive() for p in procs):
                if stop.is_set() and not forwarded:
                    import signal

                    for p in procs:
                        if p.is_alive():
                            os.kill(p.pid, signal.SIGINT)
                    forwarded = True
                # wakes when a worker exits (the end of the study is not a poll interval late)
                wait_for([p.sentinel for p in procs if p.is_alive()], timeout=poll)
                if study is not None:
                    rows = trial_rows(study, setup.spec)
                    if rows != last_rows:
                        last_rows = rows
                        on_update(rows)
        except KeyboardInterrupt:  # a second Ctrl-C: the workers stop now, their trials fail
            for p in procs:
                if p.is_alive():
                    p.terminate()
            raise
        finally:
            for p in procs:
                p.join()
        for i, p in enumerate(procs):
            if p.exitcode not in (0, None):
                errors.append(f"worker {i} exited with code {p.exitcode}")
    rows = read_rows(setup)
    write_trials_csv(setup, rows)
    on_update(rows)
    ran = sum(r["number"] not in before and r["state"] not in ("running", "waiting", "skipped") for r in rows)
    best = best_row(rows, setup.spec.direction)
    best_yaml = write_best_yaml(setup, best) if best is not None else None
    final = None
    if best_yaml is not None and final_overrides(setup, best) and not stop.is_set():
        final = train_final(setup, best, best_yaml, stop, warn)
    return StudyResult(setup, rows, best, best_yaml, stop.is_set(), ran, warnings, errors, final)
