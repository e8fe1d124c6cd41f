"""The command line: each command parses arguments, calls one library function and renders
the result. Library errors (NnclfError) become one line on stderr and exit code 1."""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from .errors import NnclfError

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click
    from click import exceptions as click_exceptions
# some typer releases' copy of click has no Abort (0.29.1): then there is nothing to catch
_ABORT = getattr(click_exceptions, "Abort", ())


class _Group(TyperGroup):
    """Usage errors (an unknown option, a bad choice, a missing argument) as one line on stderr
    with exit code 2, like every other nnclf error, instead of a framed box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as e:
            print(e.format_message())
            code = 0
        except click_exceptions.ClickException as e:
            command = f" {e.ctx.info_name}" if getattr(e, "ctx", None) is not None and e.ctx.parent is not None else ""
            message = one_line(e.format_message()).replace("Value error, ", "")
            print(f"error: {message} (see: nnclf{command} --help)", file=sys.stderr)
            code = e.exit_code
        except _ABORT:
            print("aborted", file=sys.stderr)
            code = EXIT_ERROR
        if not standalone_mode:
            return code
        sys.exit(code or 0)


def _plain_help_types() -> None:
    """typer prints a type after each argument and option (``run <path>``, ``--overwrite
    <bool>``, ``--set <list[str]>``); nnclf's help shows only the metavars it names."""
    from typer import core

    if hasattr(core.TyperArgument, "display_type_rich"):
        core.TyperArgument.display_type_rich = lambda self, ctx: None
    if hasattr(core.TyperOption, "display_type_rich"):
        original = core.TyperOption.display_type_rich
        core.TyperOption.display_type_rich = lambda self, ctx: (
            None if getattr(self, "is_flag", False) and self.metavar is None else original(self, ctx)
        )


_plain_help_types()

app = typer.Typer(
    cls=_Group,
    add_completion=True,
    no_args_is_help=True,
    help="Train, evaluate and use neural-network classifiers from YAML configs and CSV files.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _choice(*choices: str):
    """An option callback: a value outside ``choices`` is a usage error (exit 2)."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    return check


CHECKPOINTS = dict(metavar="auto|best|last|calibrated|refit", callback=_choice("auto", "best", "last", "calibrated", "refit"))


def _given_checkpoint(ctx: typer.Context, run: Path, checkpoint: str) -> str:
    """``checkpoint``, after refusing ``--checkpoint`` given with a checkpoint file as RUN: it
    chooses among a run folder's checkpoints, and with a file it would be silently ignored."""
    # (by the enum's name: typer may bring its own copy of click's ParameterSource)
    given = getattr(ctx.get_parameter_source("checkpoint"), "name", None) == "COMMANDLINE"
    if given and run.is_file():
        raise NnclfError(f"--checkpoint {checkpoint}: {run} is a checkpoint file, the model used as it is; "
                         "--checkpoint chooses among a run folder's checkpoints (leave it out, or give the run folder)")
    return checkpoint


def _example(*lines: str) -> str:
    """A help epilog of example commands, printed as written (``\\b``: no rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _tolerance(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):  # nan would pass every comparison
        raise typer.BadParameter(f"expected a finite number >= 0, got {value}")
    return value

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def one_line(message: str) -> str:
    """Escape control characters: a newline in a CSV header or a config key must not break the
    one-line message (and a right-to-left override must not disguise it)."""
    return "".join(ch if ch.isprintable() or ch == "\t" else ch.encode("unicode_escape").decode("ascii") for ch in message)


def _report(kind: str, style: str, message: str) -> None:
    """``kind: message`` on stderr, coloured on a terminal, as one line."""
    message = one_line(message)
    if sys.stderr.isatty():
        from rich.markup import escape  # a '[/]' in a column name is text, not markup

        _stderr().print(f"[{style}]{kind}:[/] {escape(message)}", soft_wrap=True)
    else:
        print(f"{kind}: {message}", file=sys.stderr)


def fail(message: str, code: int = EXIT_ERROR):
    _report("error", "bold red", message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    _report("warning", "yellow", message)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (docker stop, Kubernetes, Slurm, a closed terminal), raised like
    Ctrl-C so every ``finally`` and temporary-file cleanup runs; exit code 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _termination_signals():
    import signal

    return [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]


def errors_to_exit(command):
    """NnclfError -> one line on stderr, exit 1; Ctrl-C outside training -> exit 130;
    SIGTERM / SIGHUP -> exit 143 / 129 after the same cleanup as Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import signal
        import warnings

        previous = {s: signal.signal(s, _raise_terminated) for s in _termination_signals()}
        try:
            # a RuntimeWarning from numpy next to a clean one-line error is noise; the checks
            # that matter (NaN outputs, divergence) are explicit
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = command(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # a full or closed pipe on stdout fails here, where it is handled
            return result
        except NnclfError as e:
            fail(str(e))
        except BrokenPipeError:  # `nnclf ... | head`: the reader has what it wanted
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE)
        except OSError as e:  # e.g. stdout is a full disk (> /dev/full)
            _silence_stdout()
            fail(f"{e.filename or 'stdout'}: could not write ({e.strerror or e})")
        except Terminated as e:
            print(f"terminated ({_signal_name(e.signum)})", file=sys.stderr)
            raise typer.Exit(128 + e.signum)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED)
        except MemoryError:
            fail(f"out of memory; {MEMORY_ADVICE.get(command.__name__, 'free some memory or use smaller inputs')}")
        finally:
            for s, handler in previous.items():
                if signal.getsignal(s) is _raise_terminated:  # a command that ignores a signal until exit keeps it so
                    signal.signal(s, handler)

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail a second time."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (tests capture stdout)
        pass


MEMORY_ADVICE = {
    "train": "lower training.batch_size or model.hidden, or use a smaller training file",
    "predict": "use a smaller --chunk-rows",
    "evaluate": "evaluate on a smaller file",
}


def _version(value: bool):
    if value:
        from . import __version__

        print(f"nnclf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    """Train, evaluate and use neural-network classifiers from YAML configs and CSV files."""


# -- train ------------------------------------------------------------------------------------
@app.command(epilog=_example('nnclf train configs/iris.yaml', "nnclf train my.yaml --set 'model.hidden=[128,64]' --set optimizer.lr=0.01 --name wide", 'nnclf train --resume runs/iris-20261126-101500 --set training.epochs=200'))
@errors_to_exit
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config file (not needed with --resume)."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key: --set optimizer.lr=0.01 (value parsed as YAML; quote lists for the shell: --set 'model.hidden=[128,64]'). Repeatable."),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name (default: config stem + UTC time)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder that holds run folders."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder from its last checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the run folder's path."),
    log_every: int = typer.Option(0, "--log-every", min=0, metavar="N", help="Print an epoch line every N epochs (and the first and the last); 0: about 50 lines a run."),
    mpi: bool = typer.Option(False, "--mpi", help="Data-parallel over MPI: refuse to run unless started by mpirun -n K (K >= 2). Under a launcher MPI is used anyway."),
):
    """Train a model from CONFIG into a new run folder (under mpirun -n K: K processes share every batch)."""
    from .distributed import communicator

    if (config is None) == (resume is None):
        raise NnclfError("give either CONFIG or --resume RUN (not both)")
    comm = communicator(mpi)
    if comm.size == 1:
        return _train(config, set_, name, runs_dir, resume, quiet, comm, log_every)
    try:
        return _train(config, set_, name, runs_dir, resume, quiet or comm.rank != 0, comm, log_every)
    except typer.Exit as e:
        if e.exit_code in (0, EXIT_INTERRUPTED):  # every rank got here together
            raise
        comm.abort(e.exit_code)
    except BaseException as e:
        # one rank failing alone would leave the others waiting for it: end them all
        code = EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_ERROR
        if isinstance(e, NnclfError):
            _report("error", "bold red", str(e) if comm.rank == 0 else f"rank {comm.rank}: {e}")
        elif isinstance(e, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            import traceback

            traceback.print_exc()
        comm.abort(code)


def _train(config, set_, name, runs_dir, resume, quiet, comm, log_every=0):
    import signal
    import threading

    from . import runs
    from .ui import TrainingDisplay, render_summary

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):
        # the first Ctrl-C, SIGTERM or SIGHUP: finish the batch, save, exit; a second one: now
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    signals = [signal.SIGINT, *_termination_signals()]
    previous = {s: signal.signal(s, on_signal) for s in signals}
    display = TrainingDisplay(quiet=quiet, log_every=log_every)
    result = None
    try:
        with display:
            if resume is not None:
                result = runs.resume(resume, set_, [display], warn, stop, comm=comm)
            else:
                result = runs.train(config, set_, runs_dir, name, [display], warn, stop, comm=comm)
    except runs.NothingToDo as e:
        print(e, file=sys.stderr)
        return
    except KeyboardInterrupt as e:
        # a second signal mid-batch: the weights may be half-updated, so nothing more is saved;
        # runs.py marked the run as abandoned in summary.json (runs.Abandoned says how it stands)
        print(f"interrupted again: stopped at once; {e}" if isinstance(e, runs.Abandoned) else "interrupted", file=sys.stderr)
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT))
    finally:
        # Under mpirun the launcher forwards a Ctrl-C or SIGTERM to each rank in turn, and a loaded
        # machine can delay a rank's copy past the batch where every rank agreed to stop: a rank
        # that stopped on another's signal ignores its own late copy from here to its exit (the
        # run is already saved, or being saved by rank 0), rather than dying of it mid-report
        late_copy_due = comm.size > 1 and not received and result is not None and result.interrupted
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_IGN if late_copy_due else handler)
    if comm.rank != 0:  # rank 0 reports
        raise typer.Exit(EXIT_INTERRUPTED if result.interrupted else 0)
    if result.interrupted:
        how = "interrupted" if not received or received[0] == signal.SIGINT else f"stopped by {_signal_name(received[0])}"
        print(
            f"{how} after epoch {result.summary['epochs_run']}; checkpoint saved. "
            f"Resume with: nnclf train --resume {result.folder}",
            file=sys.stderr,
        )
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT))
    if quiet:
        print(result.folder)
    else:
        render_summary(result)


# -- evaluate ---------------------------------------------------------------------------------
@app.command(epilog=_example("nnclf evaluate runs/iris-20261126-101500            # the run's held-out test rows", 'nnclf evaluate runs/iris-20261126-101500 new.csv --json', 'zcat new.csv.gz | nnclf evaluate runs/iris-20261126-101500 -'))
@errors_to_exit
def evaluate(
    ctx: typer.Context,
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint .npz file."),
    data: Optional[Path] = typer.Argument(None, metavar="DATA", help="Labelled CSV, or - for standard input (default: the run's held-out test data)."),
    checkpoint: str = typer.Option("auto", "--checkpoint", **CHECKPOINTS, help="Which checkpoint of RUN: auto (refit.npz if training.refit made one, else best), best, last, calibrated (see nnclf calibrate) or refit."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Score a trained model on labelled data."""
    from .predict import evaluate as evaluate_model
    from .ui import render_report

    report = evaluate_model(run, data, _given_checkpoint(ctx, run, checkpoint), warn)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        render_report(report)


# -- predict ----------------------------------------------------------------------------------
@app.command(epilog=_example('nnclf predict runs/iris-20261126-101500 data/iris.csv -o predictions.csv', 'nnclf predict runs/iris-20261126-101500 new.csv | head', 'cat new.csv | nnclf predict runs/iris-20261126-101500 - --checkpoint last'))
@errors_to_exit
def predict(
    ctx: typer.Context,
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint .npz file."),
    data: Path = typer.Argument(..., metavar="DATA", help="CSV with the feature columns (extra columns are ignored), or - for standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output CSV (default or -: stdout; a FIFO or device is written into, an input file is refused)."),
    checkpoint: str = typer.Option("auto", "--checkpoint", **CHECKPOINTS, help="Which checkpoint of RUN: auto (refit.npz if training.refit made one, else best), best, last, calibrated (see nnclf calibrate) or refit."),
    chunk_rows: int = typer.Option(100_000, "--chunk-rows", min=1, help="At most about this many rows read and predicted at a time."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
):
    """Predict every row of DATA: labels and class probabilities, regression values, or reconstruction errors."""
    from .predict import predict_csv

    n = predict_csv(run, data, output, _given_checkpoint(ctx, run, checkpoint), chunk_rows, overwrite, warn)  # a closed stdout: errors_to_exit
    if output is not None and str(output) != "-":
        print(f"wrote {n} predictions to {output}", file=sys.stderr)


# -- calibrate --------------------------------------------------------------------------------
@app.command()
@errors_to_exit
def calibrate(
    ctx: typer.Context,
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint .npz file."),
    data: Optional[Path] = typer.Argument(None, help="Labelled CSV to fit on (default: the run's validation rows)."),
    checkpoint: str = typer.Option("best", "--checkpoint", **CHECKPOINTS, help="Which checkpoint of RUN."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="New checkpoint file (default: RUN/checkpoints/calibrated.npz)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Fit a temperature (minimising NLL) into a new checkpoint file; the original is kept."""
    from .calibration import calibrate_run

    result = calibrate_run(run, data, _given_checkpoint(ctx, run, checkpoint), output, overwrite, warn)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    print(
        f"temperature {result['temperature']:.4g} fitted on {result['fitted_on']} ({result['rows']} rows): "
        f"NLL {result['nll_before']:.4f} -> {result['nll_after']:.4f}, ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}"
    )
    print(f"wrote {result['output']} (use it with --checkpoint calibrated, or give the file as RUN)")


# -- export -----------------------------------------------------------------------------------
@app.command()
@errors_to_exit
def export(
    ctx: typer.Context,
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint .npz file."),
    data: Optional[Path] = typer.Argument(None, help="With --check: a CSV to compare onnxruntime and nnclf predict on."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="ONNX file (default: RUN/model.onnx; with --check only if given)."),
    checkpoint: str = typer.Option("best", "--checkpoint", **CHECKPOINTS, help="Which checkpoint of RUN."),
    check: bool = typer.Option(False, "--check", help="Run the graph in onnxruntime on DATA and compare with nnclf predict."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="With --check: print the comparison as JSON."),
):
    """Write one ONNX graph from raw feature columns to label and probabilities."""
    from . import export as exporter

    checkpoint = _given_checkpoint(ctx, run, checkpoint)
    if check != (data is not None):
        raise NnclfError("--check needs DATA.csv (nnclf export --check RUN DATA.csv)" if check else f"{data}: DATA is only read with --check")
    if not check:
        print(f"wrote {exporter.export(run, output, checkpoint, overwrite)}")
        return
    result = exporter.check(run, data, checkpoint, output, overwrite, warn=warn)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        where = f" (line {result['worst_line']})" if result["worst_line"] else ""
        if result["task"] == "classification":
            print(f"{result['rows']} rows: largest probability difference onnxruntime vs nnclf predict {result['max_abs_diff']:.3g}{where}; "
                  f"labels differing {result['label_mismatches']}")
        elif result["task"] == "regression":
            print(f"{result['rows']} rows: largest prediction difference onnxruntime vs nnclf predict {result['max_abs_diff']:.3g} "
                  f"in units of the target's scale{where} ({result['max_raw_diff']:.3g} in the target's units)")
        else:
            print(f"{result['rows']} rows: largest reconstruction_error difference onnxruntime vs nnclf predict {result['max_abs_diff']:.3g}{where}")
        if result["output"]:
            print(f"wrote {result['output']}")
    if not result["ok"]:
        fail(f"the ONNX graph disagrees with nnclf predict beyond {result['tolerance']:g}")


# -- encode -----------------------------------------------------------------------------------
@app.command()
@errors_to_exit
def encode(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder or checkpoint .npz file of a reconstruction model."),
    data: Path = typer.Argument(..., metavar="DATA", help="CSV with the feature columns (extra columns are ignored), or - for standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output CSV (default: stdout)."),
    checkpoint: str = typer.Option("best", "--checkpoint", metavar="best|last", callback=_choice("best", "last"), help="Which checkpoint of RUN."),
    chunk_rows: int = typer.Option(100_000, "--chunk-rows", min=1, help="At most about this many rows read and encoded at a time."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
):
    """Write the code layer's activations (code_0 .. code_k-1) of an autoencoder for every row of DATA."""
    from .predict import encode_csv

    try:
        n = encode_csv(run, data, output, _given_checkpoint(ctx, run, checkpoint), chunk_rows, overwrite, warn)
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE)
    if output is not None:
        print(f"wrote {n} codes to {output}", file=sys.stderr)


# -- gradcheck --------------------------------------------------------------------------------
@app.command(epilog=_example('nnclf gradcheck configs/iris.yaml', 'nnclf gradcheck my.yaml --samples 4 --set model.activation=tanh'))
@errors_to_exit
def gradcheck(
    config: Path = typer.Argument(..., metavar="CONFIG", help="YAML config file."),
    samples: int = typer.Option(16, "--samples", min=1, help="Training rows to check on."),
    tolerance: float = typer.Option(1e-6, "--tolerance", metavar="T", callback=_tolerance, help="Largest relative error that passes (finite, >= 0)."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key, as in train."),
    curvature: bool = typer.Option(False, "--curvature", help="Also check the Hessian- and Gauss-Newton-vector products (newton_cg) against differences of the gradient, along 3 random directions."),
):
    """Compare backprop gradients with central finite differences (float64) on real rows."""
    from .gradcheck import gradient_check
    from .ui import render_gradcheck

    checks, note = gradient_check(config, set_, samples, warn, curvature)
    worst = max(c.relative_error for c in checks)
    render_gradcheck(checks, tolerance, note)
    if worst > tolerance:
        fail(f"gradient check failed: worst relative error {worst:.3g} > tolerance {tolerance:g}")


# -- optimizers -------------------------------------------------------------------------------
@app.command("optimizers")
@errors_to_exit
def optimizers(
    function: str = typer.Option("quadratic", "--function", help="quadratic (0.1 x1^2 + 2 x2^2) or rosenbrock."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the first-order methods (default: 0.4 quadratic, 0.001 rosenbrock)."),
    steps: int = typer.Option(200, "--steps", help="Most steps (outer iterations for lbfgs, cg, newton_cg)."),
    tol: float = typer.Option(1e-6, "--tol", help="Converged when f(x) - f* <= TOL."),
    plot_file: Optional[Path] = typer.Option(None, "--plot", help="Draw the paths over the contours into this .png/.svg/.pdf (needs the plot extra)."),
):
    """Run every optimizer from the same start on a 2-D function: steps to converge, or diverged."""
    from .landscape import plot, run_all
    from .ui import render_landscape

    fn, used_lr, traces = run_all(function, lr, steps, tol)
    render_landscape(fn, used_lr, steps, tol, traces)
    if plot_file is not None:
        plot(fn, traces, plot_file)
        print(f"wrote {plot_file}")


# -- runs -------------------------------------------------------------------------------------
@app.command("runs")
@errors_to_exit
def list_runs(
    runs_dir: Path = typer.Argument(Path("runs"), help="Folder that holds run folders."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout."),
):
    """List run folders, newest first."""
    from .runs import list_runs as collect
    from .ui import render_runs

    rows = collect(runs_dir)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        render_runs(rows, runs_dir)


# -- report -----------------------------------------------------------------------------------
@app.command()
@errors_to_exit
def report(
    ctx: typer.Context,
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder, or a study folder of nnclf tune."),
    checkpoint: str = typer.Option("best", "--checkpoint", **CHECKPOINTS, help="Which checkpoint is scored on the test rows."),
):
    """Write RUN/report.html: one self-contained page with the run, its metrics and plots (for a
    study folder: optimisation history, parameter importances, the metric against each parameter)."""
    from .tune.report import is_study_folder

    if is_study_folder(run):
        from .tune.report import make_study_report

        result = make_study_report(run, warn)
        print(f"wrote {result['html']}")
        return
    from .report import make_report

    result = make_report(run, warn, _given_checkpoint(ctx, run, checkpoint))
    print("loss per epoch (t = train, v = validation)")
    print(result["chart"])
    print(f"wrote {result['html']}")


# -- tune -------------------------------------------------------------------------------------
@app.command()
@errors_to_exit
def tune(
    config: Path = typer.Argument(..., help="YAML config with a tune: section."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials the study should hold in all (default: tune.trials)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Start no trial after this many seconds."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=256, help="Worker processes on this machine."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name, the folder under --runs-dir (default: config stem)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: sqlite in the study folder); postgresql://... to share a study between machines."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder that holds the study folder."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, as in train. Repeatable."),
    heartbeat: float = typer.Option(10.0, "--heartbeat", min=1.0, help="Seconds between a running trial's heartbeats; silent for 3 of them, it is failed and retried once."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live table; print only the best config's path."),
):
    """Search the tune.space of CONFIG: each trial a run folder in RUNS_DIR/STUDY/; continues an existing study."""
    import signal
    import threading

    from .tune.study import close_storages, prepare_study, tune as run_study
    from .tune.display import StudyDisplay, render_result
    from .tune.prepared import process_memo

    global _exit_fast
    _exit_fast = True
    try:
        setup = prepare_study(config, set_, runs_dir, study, storage, trials, timeout, heartbeat, prefetch=True)
        stop = threading.Event()
        received: list[int] = []

        def on_signal(signum, frame):
            # Ctrl-C, SIGTERM (docker stop, Kubernetes, Slurm) or SIGHUP: the running trials
            # finish their batch and are marked interrupted, trials.csv and best.yaml are
            # written; a second one: stop now
            if stop.is_set():
                raise KeyboardInterrupt
            received.append(signum)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in [signal.SIGINT, *_termination_signals()]}
        try:
            with StudyDisplay(setup, quiet) as display:
                result = run_study(setup, jobs, stop, warn, None if quiet else display.update)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        process_memo().cancel()  # (a data prefetch nothing took in: the command failed before the trials)
        close_storages()  # study.db whole on disk before main() ends the process
    for message in result.errors:
        warn(message)
    if quiet:
        if result.best_yaml is not None:
            print(result.best_yaml)
    else:
        render_result(result)
    if result.interrupted:
        how = "interrupted" if not received or received[0] == signal.SIGINT else f"stopped by {_signal_name(received[0])}"
        print(f"{how}; finished trials are kept. Continue with the same command (study {setup.name})", file=sys.stderr)
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT))
    if result.errors:
        raise typer.Exit(EXIT_ERROR)


# -- lr-find ----------------------------------------------------------------------------------
@app.command("lr-find")
@errors_to_exit
def lr_find(
    config: Path = typer.Argument(..., help="YAML config file."),
    steps: int = typer.Option(200, "--steps", min=10, help="Optimizer steps (one mini-batch each)."),
    min_lr: float = typer.Option(1e-7, "--min-lr", help="Learning rate of the first step."),
    max_lr: float = typer.Option(10.0, "--max-lr", help="Learning rate of the last step."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write loss against lr as a PNG here (needs nnclf[plot])."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (lrs, losses, suggestion) on stdout."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, as in train."),
):
    """The learning-rate range test: train with an exponentially growing lr and suggest one."""
    from .lrfind import lr_find as run, plot as draw
    from .report import text_chart

    result = run(config, set_, steps, min_lr, max_lr, warn)
    if plot is not None:
        draw(result, plot)
    if as_json:
        print(json.dumps(result.__dict__, indent=2))
        return
    print(f"loss against lr ({result.lrs[0]:.2g} .. {result.lrs[-1]:.2g}, log scale, {len(result.lrs)} steps; s = smoothed)")
    print(text_chart({"s": result.smoothed}))
    if result.diverged_at is not None:
        print(f"the loss diverged at lr {result.diverged_at:.3g}; the test stopped there")
    if result.suggestion is None:
        print("no suggestion: the loss did not fall; widen the range (--min-lr, --max-lr) or take more --steps")
    else:
        print(f"lowest smoothed loss at lr {result.min_loss_lr:.3g}")
        print(f"suggested lr (steepest descent): {result.suggestion:.3g}   e.g. nnclf train {config} --set optimizer.lr={result.suggestion:.3g}")
    if plot is not None:
        print(f"wrote {plot}")


# -- config -----------------------------------------------------------------------------------
@app.command("config")
@errors_to_exit
def show_config(
    config: Path = typer.Argument(..., metavar="CONFIG", help="YAML config file."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key, as in train."),
):
    """Print the fully resolved config, defaults included."""
    from .config import load_config

    print(load_config(config, set_).to_yaml(), end="")


# Set by a command whose process should end without the interpreter's teardown (see main).
_exit_fast = False


def main() -> None:
    """The console entry point. After ``nnclf tune`` the process ends with ``os._exit`` once
    the command's files are closed, stdout/stderr flushed and the atexit handlers run: tearing
    down the modules a study loads (pandas, SQLAlchemy, Optuna) is CPU work of a few tenths of
    a second that nothing needs (benchmarks/RESULTS.md), and it is the serial end of every
    study. In-process callers (tests, ``app()``) and a process under a profiler or a tracer
    never take this path."""
    code = 0
    try:
        app()
    except SystemExit as e:
        code = e.code
    if not _exit_fast or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or debugger (python -m cProfile) reports after main returns
    import atexit
    import os

    if not isinstance(code, int):  # sys.exit("message") prints it and exits with 1
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: what could be written was
            code = code or EXIT_BROKEN_PIPE
    os._exit(code)
