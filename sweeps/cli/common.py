"""What every command line shares: one-line errors with exit status 2, a quick exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from objectives import ObjectiveError
from sweeps.errors import UsageError, one_line

__all__ = ["Parser", "add_study_options", "guarded", "run_command", "setup_logging"]


class Parser(argparse.ArgumentParser):
    """``argparse`` with the error as one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


# MLflow's HTTP retries, bounded (its defaults retry a call to a dead server for minutes); a
# command sets them for its process unless the user has.
HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` as command ``prog``: a bad input becomes one stderr line and exit status
    2. MLflow's HTTP retries are bounded first (``HTTP_RETRIES``)."""
    for name, value in HTTP_RETRIES.items():
        os.environ.setdefault(name, value)
    try:
        return body()
    except (UsageError, ObjectiveError) as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run_command(main: Callable[[], int]) -> NoReturn:
    """``raise SystemExit(main())`` for a ``python -m`` command, less the interpreter's
    teardown: with torch and mlflow loaded, its garbage collection passes over all their
    objects after the work is done (the README has the time it took). ``gc.freeze`` leaves
    those objects out of them; atexit handlers still run, and objects are still freed by
    reference counting."""
    import gc

    status = main()
    gc.freeze()
    raise SystemExit(status)


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    # the level also where a handler exists already (a forked worker inherits its parent's)
    logging.getLogger().setLevel(logging.WARNING if quiet else logging.INFO)
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them after)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # quiet: the command's own one-line messages say what failed; the libraries stay silent
    level = logging.CRITICAL if quiet else logging.WARNING
    for noisy in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(noisy).setLevel(level)


def add_study_options(parser: argparse.ArgumentParser) -> None:
    """``--study`` and ``--storage``, as ``sweeps.run`` names them."""
    from sweeps.study.config import SweepConfig

    default = SweepConfig()
    parser.add_argument("--study", default=default.study_name,
                        help=f"study name (default: {default.study_name})")
    parser.add_argument("--storage", default=default.storage,
                        help=f"Optuna storage URL (default: {default.storage})")
