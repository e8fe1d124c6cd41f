"""The prepared data of a study's trials, kept in the worker process between trials.

Why: a trial is an ordinary ``nnclf.runs.train`` run, which reads the CSV, splits it, fits the
preprocessor and transforms every row. Trials of one study usually change only the network
and the optimizer, so that work gives the same arrays every time; for a small data set it was
the largest part of a trial's overhead. ``PreparedMemo.prepare`` has the signature of
``nnclf.data.dataset.prepare`` (``runs.train(..., prepare=memo.prepare)``) and returns the
arrays of an earlier call when everything preparation depends on is unchanged:

- the ``data`` section (every key, defaults included: a trial parameter such as
  ``data.scaling`` gives another entry),
- the seed the split is drawn from (``data.split_seed``, else ``seed``),
- the dtype (``training.dtype``) and the task,
- the cross-validation fold (``tune.cv``: each fold's split and preprocessing is its own entry),
- each input file's identity: resolved path, device, inode, size and modification time in
  nanoseconds (a file rewritten between trials, even to the same size, is read again).

Inputs that are not regular files (stdin, pipes) and the memory-mapped cache are never kept.

``PreparedMemo.prefetch`` prepares the first entry in a forked helper process while this one
goes on (``nnclf tune`` opens the study's storage meanwhile: importing Optuna and SQLAlchemy
and importing pandas and reading the CSV are the two largest parts of the command's start,
and they do not depend on each other). The helper runs the same ``prepare`` on the same
inputs, so the arrays are the same bits; it sends them back through a pipe (pickle protocol 5,
each array's bytes as one message), and the entry is taken in the next time ``prepare`` (or
``collect``) is called. A helper that fails, finds nothing to keep, or is not possible (no
fork) leaves the memo as it was: the trial then prepares the data itself, with its errors.
The arrays handed out are marked read-only, so a trial that wrote into them would fail
loudly instead of changing the next trial's data; each call gets its own shallow copy of the
``Prepared`` record (``pca`` and other per-run attributes are set on the copy). Warnings of a
preparation are repeated on every hit, as a fresh read would give them.
"""

from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

# Entries kept: the latest always; older ones while all of them together stay under this
# many bytes of arrays. A trial with tune.cv: K asks for K entries in turn (fold 0, the
# ordinary split, then each other fold), and a choice over data.scaling multiplies them: with
# fewer places than that, least-recently-used eviction would drop each entry just before its
# next use and every trial would read the CSV K times.
MAX_ENTRIES = 32
MAX_BYTES = 256 * 2**20


def _file_identity(path: Optional[str]) -> Optional[tuple]:
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return ("missing", str(p))  # prepare names the problem; never a hit
    import stat

    if not stat.S_ISREG(st.st_mode):
        return None
    return (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def memo_key(data, seed: int, dtype: str, task: str, fold: Optional[tuple[int, int]] = None) -> Optional[str]:
    """The key of a preparation, or None when it must not be kept (an input that is not a
    regular file, or the memory-mapped cache)."""
    if getattr(data, "cache", "memory") == "mmap":
        return None
    files = {}
    for role in ("train", "val", "test"):
        path = getattr(data, role, None)
        if path is None:
            continue
        ident = _file_identity(path)
        if ident is None or ident[0] == "missing":
            return None
        files[role] = ident
    split_seed = getattr(data, "split_seed", None)
    return json.dumps(
        {"data": data.model_dump(mode="json"), "split_seed": split_seed if split_seed is not None else int(seed),
         "dtype": str(dtype), "task": task, "files": files, **({"fold": [int(fold[0]), int(fold[1])]} if fold else {})},
        sort_keys=True, default=str,
    )


def _arrays(prepared) -> list[np.ndarray]:
    out = []
    for split in (prepared.train, prepared.val, prepared.test):
        if split is None:
            continue
        for name in ("x", "y", "rows", "values"):
            a = getattr(split, name, None)
            if isinstance(a, np.ndarray):
                out.append(a)
    return out


def _nbytes(prepared) -> int:
    seen, total = set(), 0
    for a in _arrays(prepared):
        if id(a) not in seen:
            seen.add(id(a))
            total += a.nbytes
    return total


def _shallow(prepared):
    """A copy of the record and of its splits (attributes set by a run stay on the copy); the
    arrays themselves are shared and read-only."""
    out = copy.copy(prepared)
    for role in ("train", "val", "test"):
        split = getattr(prepared, role)
        if split is not None:
            setattr(out, role, copy.copy(split))
    return out


class PreparedMemo:
    """``prepare`` with the results of earlier calls kept (see the module docstring)."""

    def __init__(self, prepare: Optional[Callable] = None):
        if prepare is None:
            from ..data.dataset import prepare
        self._prepare = prepare
        self._entries: "OrderedDict[str, tuple[Any, list[str]]]" = OrderedDict()
        self._pending = None  # (helper process, read end of its pipe) of a prefetch
        self.hits = 0
        self.misses = 0

    def prepare(self, data, seed: int, dtype: str = "float32", warn: Callable[[str], None] = lambda m: None,
                task: str = "classification", cache=None, fold: Optional[tuple[int, int]] = None):
        self.collect()
        key = None if cache is not None else memo_key(data, seed, dtype, task, fold)
        if key is not None and key in self._entries:
            self._entries.move_to_end(key)
            prepared, warnings = self._entries[key]
            for message in warnings:
                warn(message)
            self.hits += 1
            return _shallow(prepared)
        self.misses += 1
        warnings: list[str] = []

        def record(message: str) -> None:
            warnings.append(message)
            warn(message)

        prepared = self._prepare(data, seed, dtype, record, task, cache=cache, fold=fold)
        if key is None:
            return prepared
        return _shallow(self._keep(key, prepared, warnings))

    def _keep(self, key: str, prepared, warnings: list[str]):
        if prepared.pca is not None:  # (set by a run; not part of the preparation)
            prepared = copy.copy(prepared)
            prepared.pca = None
        for a in _arrays(prepared):
            a.flags.writeable = False
        self._entries[key] = (prepared, warnings)
        self._trim()
        return prepared

    def prefetch(self, inputs: Callable[[], Optional[tuple]]) -> bool:
        """Start preparing one entry in a forked helper process. ``inputs()`` runs there and
        returns ``(data, seed, dtype, task)`` for ``prepare``, or None when nothing should be
        kept (it may import and read what it needs: the helper's work is what overlaps).
        Returns whether a helper started (not without ``fork``, not while one is pending)."""
        import multiprocessing as mp

        if self._pending is not None or "fork" not in mp.get_all_start_methods():
            return False
        ctx = mp.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        helper = ctx.Process(target=_prefetch_main, args=(self, inputs, send, receive), name="nnclf-prepare", daemon=True)
        try:
            helper.start()
        except OSError:  # no process to spare (EAGAIN, ENOMEM): prepared here when needed
            receive.close()
            return False
        finally:
            send.close()  # the helper's end: if it dies, receiving here ends (EOFError)
        self._pending = (helper, receive)
        return True

    def collect(self) -> bool:
        """Take in a prefetched entry, waiting for the helper if it is not done yet (its
        warnings are kept with it and given by each ``prepare`` that finds it). Returns whether
        an entry came in. A helper that failed or died leaves the memo unchanged."""
        if self._pending is None:
            return False
        helper, receive = self._pending
        self._pending = None
        import pickle

        done = False
        try:
            message = receive.recv()
            done = message[0] != "ok"
            if done:
                return False
            _, key, head, count = message
            buffers = [receive.recv_bytes() for _ in range(count)]
            done = True
            prepared, warnings = pickle.loads(head, buffers=buffers)
        except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
            return False
        finally:  # (Ctrl-C while waiting: the helper is ended at once, not waited for)
            receive.close()
            _end(helper, kill=not done)
        self._keep(key, prepared, warnings)
        return True

    def cancel(self) -> None:
        """Stop a pending prefetch (its entry is not wanted)."""
        if self._pending is not None:
            helper, receive = self._pending
            self._pending = None
            receive.close()
            _end(helper, kill=True)

    def _trim(self) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > MAX_ENTRIES or sum(_nbytes(p) for p, _ in self._entries.values()) > MAX_BYTES
        ):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self.cancel()
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _prefetch_main(memo: PreparedMemo, inputs, send, receive) -> None:
    """The helper process of ``PreparedMemo.prefetch``: prepare, send, end without the
    parent's atexit handlers or buffered output (``os._exit``)."""
    import pickle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends this one
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    receive.close()
    code = 0
    try:
        args = inputs()
        key = memo_key(*args) if args is not None else None
        if key is None:
            send.send(("skip",))
        else:
            warnings: list[str] = []
            data, seed, dtype, task = args
            prepared = memo._prepare(data, seed, dtype, warnings.append, task, cache=None)
            buffers: list = []
            head = pickle.dumps((prepared, warnings), protocol=5, buffer_callback=buffers.append)
            send.send(("ok", key, head, len(buffers)))
            for buffer in buffers:
                send.send_bytes(buffer.raw())
    except BaseException:  # noqa: BLE001 (the trial prepares again and reports the problem itself)
        code = 1
        try:
            send.send(("failed",))
        except BaseException:  # noqa: BLE001 (the parent is gone or stopped listening)
            pass
    finally:
        try:
            send.close()
        finally:
            os._exit(code)


def _end(helper, kill: bool = False) -> None:
    if kill and helper.is_alive():
        helper.kill()
    helper.join(timeout=5)
    if helper.is_alive():  # (it has sent everything; only its exit is left)
        helper.kill()
        helper.join()


_PROCESS_MEMO: dict[int, PreparedMemo] = {}


def process_memo() -> PreparedMemo:
    """This process's memo (a forked worker starts with a copy of its parent's entries, so
    data the parent prepared before forking is not read again by each worker)."""
    pid = os.getpid()
    memo = _PROCESS_MEMO.get(pid)
    if memo is None:
        parent = next(iter(_PROCESS_MEMO.values()), None)
        memo = PreparedMemo()
        if parent is not None:
            memo._entries = OrderedDict(parent._entries)
        _PROCESS_MEMO.clear()
        _PROCESS_MEMO[pid] = memo
    return memo
