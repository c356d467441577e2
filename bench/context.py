"""What the sections share: the sizes, a scratch folder, how to start Python subprocesses, and
product sweeps run once and reused (the memory section reads the peaks of the sweeps the
throughput and workers sections ran)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import CommandRun, run_measured
from .sizes import Sizes

__all__ = ["REPO", "Context", "SweepRun"]

REPO = Path(__file__).resolve().parent.parent
STUDY = "bench"


@dataclass(frozen=True)
class SweepRun:
    run: CommandRun  # the sweeps.run command, timed and memory-sampled
    storage: str  # its fresh Optuna storage URL
    tracking_uri: str  # its fresh MLflow store
    study: str  # the study name
    n_trials: int
    epochs: int
    workers: int


class Context:
    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self._count = itertools.count()
        self._sweeps: dict[tuple[Any, ...], SweepRun] = {}
        self.careful_run: CommandRun | None = None  # the careful baseline, once it ran

    def fresh_dir(self, name: str) -> Path:
        path = self.workdir / f"{next(self._count):02d}-{name}"
        path.mkdir(parents=True)
        return path

    @property
    def env(self) -> dict[str, str]:
        """The environment of subprocesses: this one, with the repository importable."""
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def run(self, argv: list[str], cwd: Path) -> CommandRun:
        return run_measured(argv, cwd=cwd, env=self.env)

    def product_sweep(self, n_trials: int, epochs: int, *, workers: int = 1,
                      pruner: str = "median", storage: str = "sqlite",
                      batch: int | None = None, prune_stalled: bool = True,
                      trials: tuple[dict[str, Any], ...] = (), repeat: int = 0,
                      log_every: int = 1) -> SweepRun:
        """``python -m sweeps.run`` on fresh stores (run once per distinct configuration);
        ``batch`` None: the product's default. ``trials``: Optuna params enqueued in the
        study (created beforehand as the command would) so that it runs them first;
        ``repeat`` tells repetitions of one configuration apart."""
        key = (n_trials, epochs, workers, pruner, storage, batch, prune_stalled,
               json.dumps(trials, sort_keys=True), repeat, log_every)
        if key not in self._sweeps:
            where = self.fresh_dir(f"sweep-{n_trials}x{epochs}-w{workers}-{pruner}-{storage}"
                                   f"-b{batch or 'default'}-l{log_every}")
            url = (f"journal:///{where}/optuna.journal" if storage == "journal"
                   else f"sqlite:///{where}/optuna.db")
            tracking = f"sqlite:///{where}/mlflow.db"
            argv = self.python("-m", "sweeps.run", "--n-trials", str(n_trials),
                               "--epochs", str(epochs), "--study", STUDY, "--storage", url,
                               "--tracking-uri", tracking, "--quiet", "--seed", "0",
                               "--workers", str(workers), "--pruner", pruner,
                               *(["--batch", str(batch)] if batch else []),
                               *(["--log-every", str(log_every)] if log_every != 1 else []),
                               *([] if prune_stalled else ["--no-prune-stalled"]))
            if trials:
                _enqueue(argv[3:], trials)
            run = self.run(argv, where).check()
            self._sweeps[key] = SweepRun(run, url, tracking, STUDY, n_trials, epochs, workers)
        return self._sweeps[key]


def _enqueue(args: list[str], trials: tuple[dict[str, Any], ...]) -> None:
    """Create the study of ``sweeps.run args`` as the command would, with ``trials`` waiting."""
    import torch

    from objectives import build
    from sweeps.cli.run import build_parser, config_from_args
    from sweeps.storage.backends import dispose_engine, open_storage
    from sweeps.study.goals import study_goals
    from sweeps.study.metric import reported_metrics
    from sweeps.study.opening import open_study, search_space

    config = config_from_args(build_parser().parse_args(args))
    objective = build(config.objective, config.objective_args)
    epochs = config.epochs or objective.default_epochs
    goals = study_goals(config.metric, config.direction, config.metric_at, config.constraints,
                        reported_metrics(objective, torch.device("cpu")))
    storage = open_storage(config.storage)
    try:
        study = open_study(config, objective, epochs, goals, search_space(config, epochs),
                           storage)
        for params in trials:
            study.enqueue_trial(params)
    finally:
        dispose_engine(storage)
