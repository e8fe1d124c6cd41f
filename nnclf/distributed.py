"""Data-parallel training over MPI (``mpirun -n K nnclf train CONFIG``): a speed mechanism outside
the engine, behind one small interface.

Every rank holds the same network, optimizer state and random generator, draws the same epoch
permutation and walks the same global batches of B = ``training.batch_size`` rows. Rank r of K
computes the gradient of its rows of each batch, positions [lo + floor(r n / K), lo + floor((r+1) n / K))
of the batch's n rows, scaled by its share n_r / n, so that the sum over ranks is the mean
gradient of the whole batch:

    g = sum_r (n_r / n) * mean_{i in rank r} dl_i/dtheta           (P floats, P = parameters)

The K vectors are exchanged with ``Allgather`` and added in rank order on every rank
(``Communicator.sum_in_rank_order``): the result does not depend on message timing, so it is the
same on every rank and bit-identical across runs with the same K, and every rank applies the same
optimizer update. (``MPI_Allreduce`` sends less, 2P(K-1)/K floats instead of P(K-1), but MPI does
not promise the order of its additions, nor the same bits on every rank.) The batch loss and the
correct count travel the same way, with a stop flag: training stops where any rank was asked to
(Ctrl-C), at the same batch on every rank.

Against one process at the same B the sum differs only by float rounding (the parts are added in
another order); with dropout the masks differ (each rank draws its rows' masks from its own
stream, seeded by the run's seed, the epoch, the batch and the rank, so runs with the same K
repeat and the shuffling stream every rank shares is left alone).
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from .errors import NnclfError

# environment variables an MPI launcher sets in every process it starts (MPICH/hydra, Open MPI,
# Intel MPI, Slurm's srun with PMI)
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")

INSTALL_HINT = 'pip install ".[mpi]" (from a clone) or pip install "nnclf[mpi]"'


def under_launcher() -> bool:
    """Whether this process was started by an MPI launcher (mpirun, mpiexec, srun)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


class SingleProcess:
    """The communicator of an ordinary run: one rank, sums are copies."""

    rank, size, local_size = 0, 1, 1

    def sum_in_rank_order(self, local: np.ndarray, out: np.ndarray) -> np.ndarray:
        if out is not local:
            out[...] = local
        return out

    def broadcast(self, value):
        return value

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> None:
        pass


class MpiCommunicator:
    """``mpi4py``'s COMM_WORLD: buffer calls on NumPy arrays (no pickling in the hot loop)."""

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError:
            raise NnclfError(f"training under MPI needs mpi4py and an MPI library: {INSTALL_HINT}") from None
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        # ranks on this machine (they share its cores)
        self.local_size = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
        self._gathered: dict = {}

    def sum_in_rank_order(self, local: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = local_0 + local_1 + ... + local_{K-1}`` (left to right) on every rank, where
        local_r is rank r's ``local`` (1-D, the same size and dtype everywhere). ``out`` may be
        ``local``."""
        key = (local.dtype.str, local.size)
        gathered = self._gathered.get(key)
        if gathered is None:
            gathered = self._gathered[key] = np.empty((self.size, local.size), dtype=local.dtype)
        self.comm.Allgather(np.ascontiguousarray(local), gathered)
        np.copyto(out, gathered[0])
        for r in range(1, self.size):
            out += gathered[r]
        return out

    def broadcast(self, value):
        """``value`` of rank 0 on every rank (small Python objects: a run folder's path)."""
        return self.comm.bcast(value, root=0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        """End every rank now (a rank that failed alone would leave the others waiting)."""
        self.comm.Abort(code)


def blas_threads_per_rank(comm) -> int:
    """The machine's usable cores shared among the ranks on it (at least one each)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, comm.local_size))


def communicator(mpi: bool) -> SingleProcess | MpiCommunicator:
    """The communicator for ``nnclf train``: MPI when started by a launcher (or asked for with
    ``--mpi``, which refuses to run without one), else a single process."""
    if not under_launcher():
        if mpi:
            raise NnclfError("--mpi: not started by an MPI launcher; run: mpirun -n K nnclf train CONFIG")
        return SingleProcess()
    comm = MpiCommunicator()
    if mpi and comm.size == 1:
        raise NnclfError("--mpi: the MPI launcher started a single process; run: mpirun -n K nnclf train CONFIG with K >= 2")
    return comm


class DataParallelStep:
    """``TrainingStep``'s ``step`` over K ranks: this rank's part of every global batch, the
    gradients summed in rank order, the same update everywhere (see the module docstring).

    Parameters
    ----------
    step : the rank's ``TrainingStep`` (its network, loss, optimizer; gradient and update apart).
    comm : a communicator (``sum_in_rank_order``).
    stop : an object with ``is_set()`` (this rank was asked to stop), or None.
    seed : the run's seed: dropout masks come from Generator([seed, 2, epoch, batch, rank]).
    """

    def __init__(self, step, comm, stop=None, seed: int = 0):
        self.inner, self.comm, self.stop, self.seed = step, comm, stop, int(seed)
        self.stop_agreed = False  # some rank was asked to stop: every rank stops after this batch
        self._scalars = np.zeros(3, dtype=np.float64)

    def part(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's positions [a, b) of the global batch [lo, hi)."""
        n, r, k = hi - lo, self.comm.rank, self.comm.size
        return lo + (n * r) // k, lo + (n * (r + 1)) // k

    def step(self, xs: np.ndarray, ys: np.ndarray, lr: float, rng, batch_rows: int, epoch: int, batch: int, ws=None):
        """Gradient of this rank's rows (xs (n_r, d), ys (n_r,)) of a global batch of
        ``batch_rows`` rows, summed over ranks, then the update. Returns the whole batch's
        (mean loss before the update, correct count)."""
        from .engine.step import BatchResult

        net = self.inner.net
        share = len(ys) / batch_rows
        dropout = None
        if rng is not None and getattr(net, "dropout", 0):
            dropout = np.random.default_rng([self.seed, 2, epoch, batch, self.comm.rank])
        if len(ys):
            local = self.inner.gradient(xs, ys, dropout, share=share, ws=ws)
            loss, correct = local.loss * share, local.correct
        else:  # a last batch smaller than K leaves some ranks without rows
            net.grads[...] = 0
            loss, correct = 0.0, 0
        asked = self.stop is not None and self.stop.is_set()
        self._scalars[:] = (loss, correct, 1.0 if asked else 0.0)
        self.comm.sum_in_rank_order(net.grads, net.grads)
        totals = self.comm.sum_in_rank_order(self._scalars, self._scalars.copy())
        self.stop_agreed = self.stop_agreed or totals[2] > 0
        result = BatchResult(float(totals[0]), int(round(totals[1])))
        if math.isfinite(result.loss):
            self.inner.update(lr)
        return result


class AgreedStop:
    """``is_set()`` once every rank has agreed to stop (the stop flag of the last exchange), so
    every rank ends the epoch loop at the same batch; ``set()`` asks for it locally."""

    def __init__(self, local, parallel: Optional[DataParallelStep] = None):
        self.local, self.parallel = local, parallel

    def is_set(self) -> bool:
        return self.parallel.stop_agreed if self.parallel is not None else self.local.is_set()

    def set(self) -> None:
        self.local.set()
