"""Run or resume a learning-rate sweep.

    python -m sweeps.run                       # the default sweep: rebalance, 50 trials
    python -m sweeps.run --config my.toml --n-trials 100

Re-running the same command continues the study until it holds ``--n-trials`` finished
trials. Every option is also a key of the TOML file given with ``--config``; the command
line wins.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from sweeps.cli.common import Parser, guarded, setup_logging
from sweeps.cli.progress import SweepProgress, interactive
from sweeps.errors import first_line
from sweeps.storage.backends import WORKERS_STORAGE, redact
from sweeps.study.config import SweepConfig, coerce, load_toml, parse_kv, split_names

if TYPE_CHECKING:
    from sweeps.cli.session import SweepSession
    from sweeps.parallel.threads import TorchThreads
    from sweeps.parallel.workers import Helpers

__all__ = ["build_parser", "config_from_args", "main", "run_config"]

log = logging.getLogger("sweeps.run")


def build_parser() -> Parser:
    p = Parser(prog="sweeps.run", description=__doc__.split("\n")[0],
               argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    p.add_argument("--objective", metavar="NAME|pkg.module:attr",
                   help="objective to optimise (default: rebalance)")
    p.add_argument("--objective-arg", metavar="K=V", action="append", dest="objective_arg",
                   help="objective argument, repeatable (e.g. size=16)")
    p.add_argument("--metric", type=split_names, metavar="a,b,..",
                   help="per-epoch metric to optimise (default: val_loss where the objective "
                        "has validation data, else loss); several, comma-separated, for a "
                        "Pareto front, the later ones may be costs: trial_seconds, "
                        "trial_epochs, param_count")
    p.add_argument("--direction", type=split_names, metavar="a,b,..",
                   help="minimize or maximize, one per metric (default: maximize for a name "
                        "ending in accuracy, else minimize)")
    p.add_argument("--constraint", type=split_names, action="append", metavar="M<=X",
                   help="a bound every chosen trial keeps, on any metric above, e.g. "
                        "trial_seconds<=30 or val_accuracy>=0.9; repeatable")
    p.add_argument("--metric-at", help="read a trial's value at its last epoch (default: what "
                                       "the exported configuration reproduces) or best epoch")
    p.add_argument("--study", help="study name (default: from the objective)")
    p.add_argument("--n-trials", type=int, help="target number of finished trials (default: 50)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the objective's)")
    p.add_argument("--optimizers", type=split_names, metavar="a,b,..",
                   help="optimizers to search (default: all)")
    p.add_argument("--schedulers", type=split_names, metavar="a,b,..",
                   help="schedulers to search (default: all)")
    p.add_argument("--lr-min", type=float, help="lower lr bound for every optimizer")
    p.add_argument("--lr-max", type=float, help="upper lr bound for every optimizer")
    p.add_argument("--lr-range", help="fixed (the objective's declared intervals, else "
                                      "per-optimizer defaults) or auto (centred on an LR range "
                                      "test); default: the objective's, else auto; "
                                      "--lr-min/--lr-max win")
    p.add_argument("--sampler", help="tpe (default), random, grid, cmaes or qmc")
    p.add_argument("--pruner", help="halving (default), median, hyperband or none")
    p.add_argument("--prune-stalled", action=argparse.BooleanOptionalAction,
                   help="stop a trial whose parameters have not moved since it started, "
                        "checked from a tenth of its epochs on (default: on)")
    p.add_argument("--per-tensor", action=argparse.BooleanOptionalAction,
                   help="log grad_abs_mean/<tensor> and update_ratio/<tensor> per epoch for "
                        "objectives of 2 to 64 parameter tensors (default: on)")
    p.add_argument("--log-steps", action=argparse.BooleanOptionalAction,
                   help="for mini-batch objectives, also log every step's loss and learning "
                        "rate (step_loss, step_lr; MLflow step = the step's index from 0 "
                        "across the run) (default: off)")
    p.add_argument("--seed", type=int, help="sampler seed (default: 0)")
    p.add_argument("--weight-decay", type=float, metavar="W",
                   help="every trial's weight decay (L2; AdamW's decoupled one, then not "
                        "searched) (default: none)")
    p.add_argument("--weight-decay-range", metavar="LOW,HIGH",
                   help="search every trial's weight decay on a log scale in LOW..HIGH "
                        "instead of fixing it")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="scale every trial's gradient down to this norm before each step "
                        "(default: none)")
    p.add_argument("--adam-beta1", type=float, metavar="B",
                   help="adam and adamw trials' beta1 (default: torch's, 0.9)")
    p.add_argument("--adam-beta2", type=float, metavar="B",
                   help="adam and adamw trials' beta2 (default: torch's, 0.999)")
    p.add_argument("--adam-eps", type=float, metavar="EPS",
                   help="adam and adamw trials' eps (default: torch's, 1e-8)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///mlruns/optuna.db)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI "
                                          "(default: sqlite:///mlruns/mlflow.db)")
    p.add_argument("--tracking-db", metavar="URL",
                   help="with an http(s) --tracking-uri: the server's own database "
                        "(--backend-store-uri); per-epoch metrics are written into it directly "
                        "once it is shown to hold the server's runs (default: through the "
                        "server)")
    p.add_argument("--experiment", help="MLflow experiment (default: the study name)")
    p.add_argument("--log-every", type=int, help="log every Nth epoch to MLflow (default: 1)")
    p.add_argument("--workers", type=int, help="worker processes (default: 1; with more, the "
                                               f"default storage is {WORKERS_STORAGE})")
    p.add_argument("--threads", type=int, help="torch intra-op threads of each worker process "
                   "(default: OMP_NUM_THREADS where set, else the cores divided by --workers)")
    p.add_argument("--batch", type=int, help="trials that run together, pruned against each "
                   "other in lockstep, as stacks of rows of a measured width (default: 25; 1: "
                   "one at a time)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:K; with several GPUs, "
                   "cuda puts worker i of --workers on GPU i mod their count")
    p.add_argument("--precision", help="fp32 (default), bf16 or fp16: a mini-batch "
                   "objective's forward pass under torch.autocast (fp16: its loss scaled); "
                   "parameters and optimizer state stay float32")
    p.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    p.add_argument("--export", metavar="PATH", help="write the best trial's JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not log the sweep's plots to the parent run")
    return p


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """Defaults, then the TOML file, then the command line."""
    values: dict[str, Any] = {}
    options = vars(args)
    if "config" in options:
        values.update(load_toml(options.pop("config")))
    if "objective_arg" in options:
        values["objective_args"] = {**values.get("objective_args", {}),
                                    **parse_kv(options.pop("objective_arg"))}
    if "weight_decay_range" in options:
        values["weight_decay_range"] = coerce("weight_decay_range",
                                              options.pop("weight_decay_range"),
                                              "weight-decay-range")
    if "constraint" in options:
        values["constraints"] = tuple(c for given in options.pop("constraint") for c in given)
    values.update(options)
    if values.get("workers", 1) > 1 and "storage" not in values:
        values["storage"] = WORKERS_STORAGE  # several writers: Optuna's journal file
    return SweepConfig().with_overrides(values).validated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.run", lambda: run_config(config_from_args(args)))


def run_config(config: SweepConfig) -> int:
    """The sweep ``config`` describes, run to its end: the command's exit status (a store
    that fails mid-sweep: one line on stderr, 1); bad input raises ``UsageError``."""
    import optuna
    import sqlalchemy
    from mlflow.exceptions import MlflowException

    from sweeps.study.sweep import TrackingFailed

    setup_logging(config.quiet or interactive(config.quiet))
    try:
        return _sweep(config)
    except TrackingFailed as exc:
        return _stopped(f"tracking-uri {redact(config.tracking_uri)}", exc)
    except MlflowException as exc:  # its first line is often a wrapper's; say the cause
        return _stopped(f"tracking-uri {redact(config.tracking_uri)}", _innermost(exc))
    except optuna.exceptions.StorageInternalError as exc:  # a wrapper: say what it wraps
        return _stopped("writing the study or the runs", exc.__cause__ or exc)
    except (sqlalchemy.exc.OperationalError, OSError) as exc:
        return _stopped("writing the study or the runs", exc)


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of ``exc``'s chain of causes."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def _stopped(what: str, exc: BaseException) -> int:
    """One line for a store that failed mid-sweep: what failed, and how to go on."""
    cause = " ".join(first_line(exc).split())[:300]
    print(f"sweeps.run: error: {what} failed ({type(exc).__name__}: {cause}); finished trials "
          "are kept in the study: fix it (space, server) and run the same command again to "
          "resume", file=sys.stderr)
    return 1


def _sweep(config: SweepConfig) -> int:
    """Open the sweep and drive it, torch running this worker's share of the cores
    (``sweeps.parallel.threads``); a program that called ``main`` gets its own count back."""
    import torch

    from sweeps.parallel.threads import use_threads, worker_threads

    command = _started_as_command()
    threads = worker_threads(config.workers, config.threads, fresh=command)
    before = torch.get_num_threads()
    try:
        return _open_and_drive(config, threads, command)
    finally:
        if not command:
            use_threads(before, own=False)


def _open_and_drive(config: SweepConfig, threads: TorchThreads, command: bool) -> int:
    from sweeps.cli.session import open_session, run_helper
    from sweeps.errors import UsageError
    from sweeps.parallel.threads import use_threads
    from sweeps.parallel.workers import Helpers
    from sweeps.training.loop import ObjectiveStartError

    helpers = None
    if config.workers > 1:  # forked before any store is opened (see sweeps.parallel.workers)
        helpers = Helpers(config, config.workers - 1, run_helper, fork=command,
                          threads=threads.count)
    if not threads.user_choice:
        use_threads(threads.count, own=command)
    try:
        session = open_session(config)
    except BaseException as exc:
        if helpers is not None:
            helpers.cancel()
        if isinstance(exc, ObjectiveStartError):  # its range test could not compute a loss
            raise UsageError("objective", config.objective,
                             f"its first loss could not be computed ({exc})") from None
        raise
    log.info("%s", threads.describe())
    try:
        return _drive(config, session, helpers)
    finally:
        session.close_stores()  # last: the summary reads the study too


def _drive(config: SweepConfig, session: SweepSession, helpers: Helpers | None) -> int:
    """Run the opened sweep to its end, close its parent run, print the summary. Ctrl-C or
    SIGTERM closes every run as KILLED and exits with the shell's status for the signal."""
    from sweeps.cli.summary import sweep_summary
    from sweeps.errors import UsageError
    from sweeps.parallel.signals import Terminated, exit_status, terminate_as_exception
    from sweeps.study.results import counted_trials
    from sweeps.training.loop import ObjectiveStartError

    sweep = session.sweep
    progress = SweepProgress(config.n_trials, len(counted_trials(sweep.study)), sweep.epochs,
                             interactive(config.quiet), sweep.metric)
    sweep.listeners.append(progress)
    with terminate_as_exception():
        try:
            if helpers is not None:
                helpers.run_with(sweep)
            else:
                sweep.run()
        except (KeyboardInterrupt, Terminated) as exc:
            progress.close()
            session.finish("KILLED")
            log.warning("interrupted; run the same command again to resume the study")
            return exit_status(exc)
        except ObjectiveStartError as exc:
            progress.close()
            session.finish("FAILED")
            raise UsageError("objective", config.objective,
                             f"its first loss could not be computed ({exc})") from None
        finally:
            progress.close()
    session.finish("FINISHED")
    if not config.quiet:
        print(sweep_summary(sweep.study, config, session.tracker.experiment_id))
    return 0


def _started_as_command() -> bool:
    """True in ``python -m sweeps.run`` (nothing is open before ``main``), False where another
    program called ``main``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "sweeps.run"

