"""The careful user's sweep of a mini-batch objective: plain Optuna, a plain ``nn.Module`` loop
and ``MlflowClient``; no part of the product trains or logs.

    python -m bench.baseline_minibatch --objective digits-cnn \\
        --storage sqlite:///b/optuna.db --tracking-uri sqlite:///b/mlflow.db

From the product's objective (found by name with ``objectives.build``) it takes only what a user
brings to any sweep: the module (a copy, in the objective's initial state), the training,
validation and test data (tensors, or the ``DataLoader`` each split is loaded through: the one
given, or a ``Dataset`` in a ``DataLoader`` of the objective's batch size), the loss function, batch size, seed and default epochs, and the lr
intervals the objective declares (``lr_ranges``; ``--lr-range`` gives others, e.g. those that
the product's LR range test found for an objective that declares none). The rest is what a
careful PyTorch user writes:

- the product's search space, mirrored (``bench.careful_space``: same names, ranges and order
  of suggestions, so TPE sees the same space): the seven optimizers, a log-scale
  ``lr_<optimizer>`` each, the six schedulers with their sub-parameters; the schedulers are
  ``torch.optim.lr_scheduler`` classes stepped where the product steps them (once an epoch;
  ``onecycle`` after every batch over the run's steps; ``plateau`` on the epoch's mean
  training loss);
- ``TPESampler(seed=0)`` and ``MedianPruner()`` with Optuna's defaults; the validation loss is
  reported and the pruner asked after every epoch; trials one at a time;
- an epoch: the training rows in a seeded random order, in batches (from a ``DataLoader``: its
  batches as it yields them, its random draws from torch's generator, seeded once a trial); ``zero_grad(set_to_none=
  True)``, forward, loss, backward, step; the statistics (mean training loss, mean |grad|, mean
  |delta param|, update ratio, lr) summed as tensors, with no host read per step; validation in
  eval mode under ``no_grad``. The one host read an epoch is the validation loss the pruner needs;
- per trial, one MLflow run nested under the study's parent run (tag ``mlflow.parentRunId``),
  created when the trial starts and sent its params, tags and every per-epoch metric by one
  ``log_batch`` (1,000 metrics a call) when it ends: three calls to the store a trial;
- the best trial so far keeps its ``state_dict`` in memory (nothing is retrained); at the end its
  test accuracy (eval mode, its own BatchNorm statistics) is computed once and logged to its run.

Why this is the careful user's best on one CPU process: no host synchronisation inside an
epoch, the fewest round trips to either store, no second pass to evaluate a trial, and one trial
at a time with torch's default thread count (not set here), which already spreads each operation
over the cores. A trial whose training or validation loss is not finite stops there, failed.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from torch import nn
from torch.utils.data import DataLoader

from .careful_space import DEFAULT_LR, OPTIMIZERS, make_optimizer, make_scheduler, suggest

__all__ = ["CarefulSweep", "Problem", "main", "problem_of"]

BATCH = 1000  # metrics per log_batch call (MLflow's limit)
PARENT_TAG = "mlflow.parentRunId"
STATS = ("loss", "grad_abs_mean", "update_abs_mean", "update_ratio", "lr", "val_loss",
         "val_accuracy")  # per epoch, in the order of a row of statistics
Pair = tuple[torch.Tensor, torch.Tensor]
Split = Pair | DataLoader  # tensors, or the loader a user iterates


@dataclass(frozen=True)
class Problem:
    """What the sweep takes from the objective."""

    module: nn.Module  # in its initial state: copied for each trial
    train: Split  # (inputs, targets), or a DataLoader of (inputs, targets) batches
    validation: Split
    test: Split | None  # None where the objective holds no test split
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int
    shuffle: bool  # a new order of the training rows every epoch
    drop_last: bool
    seed: int  # batch order and dropout stream, the same for every trial
    epochs: int
    lr_ranges: dict[str, tuple[float, float]]


def problem_of(name: str, epochs: int | None = None,
               lr_ranges: dict[str, tuple[float, float]] | None = None) -> Problem:
    """The model, data and intervals of objective ``name`` (a mini-batch ``DatasetObjective``);
    ``lr_ranges`` replace the intervals it declares."""
    from objectives import build

    objective: Any = build(name)
    sources = objective._sources
    if "validation" not in sources:
        raise ValueError(f"objective {name!r} has no validation data to sweep on")

    def split(key: str, tensors: Pair | None) -> Split | None:
        if tensors is not None or key not in sources:
            return tensors
        return sources[key].loader

    module = copy.deepcopy(objective._module)
    module.load_state_dict({**objective._initial, **objective._buffers})
    splits = getattr(objective, "_splits", None)
    test = splits.test if splits is not None else split("test", objective._test)
    return Problem(module, split("train", objective._train),
                   split("validation", objective._validation), test, objective._loss_fn,
                   objective.batch_size, objective.shuffle, objective.drop_last, objective.seed,
                   epochs or objective.default_epochs,
                   {**DEFAULT_LR, **(objective.lr_ranges or {}), **(lr_ranges or {})})


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, problem: Problem,
                order: torch.Generator, per_step: Any) -> torch.Tensor:
    """One pass over the training rows; the means of loss, |grad|, |delta param|, the update
    ratio and the lr over its steps, as one tensor (no host read)."""
    params = [p for p in model.parameters() if p.requires_grad]
    to_vector = nn.utils.parameters_to_vector
    sums = torch.zeros(4)  # loss, mean |grad|, mean |delta|, mean |theta| over steps
    lr_sum, steps = 0.0, 0
    model.train()
    for inputs, targets in training_batches(problem, order):
        optimizer.zero_grad(set_to_none=True)
        loss = problem.loss_fn(model(inputs), targets)
        loss.backward()
        with torch.no_grad():
            before = to_vector(params)
            grad = to_vector([p.grad for p in params])  # type: ignore[misc]
        lr_sum += optimizer.param_groups[0]["lr"]
        optimizer.step()
        with torch.no_grad():
            delta = to_vector(params) - before
            sums += torch.stack([loss.detach(), grad.abs().mean(), delta.abs().mean(),
                                 before.abs().mean()])
        steps += 1
        if per_step is not None:
            per_step.step()
    means = sums / steps
    return torch.stack([means[0], means[1], means[2], sums[2] / sums[3],
                        torch.tensor(lr_sum / steps)])


def training_batches(problem: Problem, order: torch.Generator) -> Iterator[Pair]:
    """An epoch's training batches: the loader's, or the tensors' rows in ``order``."""
    if isinstance(problem.train, DataLoader):
        yield from problem.train
        return
    inputs, targets = problem.train
    rows = (torch.randperm(len(inputs), generator=order) if problem.shuffle
            else torch.arange(len(inputs)))
    for batch in rows.split(problem.batch_size):
        if problem.drop_last and len(batch) < problem.batch_size:
            break
        yield inputs[batch], targets[batch]


def scores(model: nn.Module, data: Split, problem: Problem) -> torch.Tensor:
    """(loss, accuracy) of ``data`` in eval mode, as one tensor."""
    if isinstance(data, DataLoader):
        pairs = list(data)
        inputs, targets = (torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
    else:
        inputs, targets = data
    model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(chunk) for chunk in inputs.split(problem.batch_size)])
        correct = (outputs.argmax(dim=1) == targets).float().mean()
        return torch.stack([problem.loss_fn(outputs, targets), correct])


@dataclass
class CarefulSweep:
    problem: Problem
    client: MlflowClient
    experiment_id: str
    parent_run_id: str
    best: dict[str, Any] = field(default_factory=dict)  # value, run_id, state of the best trial

    def objective(self, trial: optuna.Trial) -> float:
        p = self.problem
        hp = suggest(trial, p.epochs, p.lr_ranges)
        run_id = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                        tags={PARENT_TAG: self.parent_run_id}).info.run_id
        model = copy.deepcopy(p.module)
        torch.manual_seed(p.seed)  # the dropout stream
        order = torch.Generator().manual_seed(p.seed)
        optimizer = make_optimizer(hp, list(model.parameters()))
        if isinstance(p.train, DataLoader):
            steps = len(p.train)
        else:
            steps = (len(p.train[0]) // p.batch_size if p.drop_last
                     else -(-len(p.train[0]) // p.batch_size))
        scheduler = make_scheduler(hp, optimizer, p.epochs, steps)
        per_step = scheduler if hp["scheduler"] == "onecycle" else None
        rows: list[torch.Tensor] = []
        state, val_loss = "complete", math.nan
        for epoch in range(p.epochs):
            rows.append(torch.cat([train_epoch(model, optimizer, p, order, per_step),
                                   scores(model, p.validation, p)]))
            train_loss, val_loss = rows[-1][[0, 5]].tolist()  # the epoch's one host read
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                state = "failed"
                break
            if hp["scheduler"] == "plateau":
                scheduler.step(train_loss)
            elif scheduler is not None and per_step is None:
                scheduler.step()
            trial.report(val_loss, epoch)
            if trial.should_prune():
                state = "pruned"
                break
        self.log(run_id, hp, rows, state)
        trial.set_user_attr("epochs_run", len(rows))
        trial.set_user_attr("mlflow_run_id", run_id)
        if state == "pruned":
            raise optuna.TrialPruned()
        if state == "failed":
            return math.nan  # Optuna records the trial as failed
        if val_loss < self.best.get("value", math.inf):
            self.best = {"value": val_loss, "run_id": run_id, "state": copy.deepcopy(
                model.state_dict())}
        return val_loss

    def log(self, run_id: str, hp: dict[str, Any], rows: list[torch.Tensor], state: str) -> None:
        """Every per-epoch statistic, the params and the state, in one ``log_batch`` (more
        only past 1,000 metrics); then the run is closed."""
        now = int(time.time() * 1000)
        table = torch.stack(rows).tolist() if rows else []
        metrics = [Metric(key, value, now, epoch) for epoch, row in enumerate(table)
                   for key, value in zip(STATS, row, strict=True)]
        for start in range(0, max(1, len(metrics)), BATCH):
            first = start == 0
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH],
                                  params=[Param(k, str(v)) for k, v in hp.items()] if first
                                  else [], tags=[RunTag("state", state)] if first else [])
        status = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}[state]
        self.client.set_terminated(run_id, status=status)

    def finish(self) -> None:
        """The best trial's test accuracy, from its kept state, logged to its run and the
        parent's; the parent run closed."""
        p = self.problem
        if self.best and p.test is not None:
            model = copy.deepcopy(p.module)
            model.load_state_dict(self.best["state"])
            accuracy = float(scores(model, p.test, p)[1])
            metrics = [Metric("test_accuracy", accuracy, int(time.time() * 1000), 0)]
            for run_id in (self.best["run_id"], self.parent_run_id):
                self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(self.parent_run_id)


def run(problem: Problem, n_trials: int, storage: str, tracking_uri: str,
        study_name: str) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner())
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(study_name)
    parent = client.create_run(experiment_id, run_name=study_name, tags={"role": "study"})
    sweep = CarefulSweep(problem, client, experiment_id, parent.info.run_id)
    study.optimize(sweep.objective, n_trials=n_trials)
    sweep.finish()
    return study


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"use a whole number of at least 1, not {text!r}")
    return int(text)


def _interval(text: str) -> tuple[str, tuple[float, float]]:
    name, _, bounds = text.partition("=")
    try:
        low, high = (float(b) for b in bounds.split(":"))
    except ValueError:
        low = high = 0.0
    if name not in OPTIMIZERS or not 0 < low < high:
        raise argparse.ArgumentTypeError(f"use OPTIMIZER=LOW:HIGH, 0 < LOW < HIGH, OPTIMIZER "
                                         f"one of {', '.join(OPTIMIZERS)}; not {text!r}")
    return name, (low, high)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_minibatch",
                                description=__doc__.split("\n")[0])
    p.add_argument("--objective", default="digits-cnn", help="objective name or pkg.module:attr")
    p.add_argument("--n-trials", type=_count, default=50, help="trials (default: 50)")
    p.add_argument("--epochs", type=_count, help="epochs per trial (default: the objective's)")
    p.add_argument("--storage", required=True, help="a fresh Optuna storage URL")
    p.add_argument("--tracking-uri", required=True, help="a fresh MLflow tracking URI")
    p.add_argument("--study", default="careful", help="study and MLflow experiment name")
    p.add_argument("--lr-range", type=_interval, action="append", default=[],
                   metavar="OPT=LOW:HIGH", help="an optimizer's lr interval, repeatable "
                   "(default: the objective's, else the product's fixed defaults)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(problem_of(args.objective, args.epochs, dict(args.lr_range)), args.n_trials,
        args.storage, args.tracking_uri, args.study)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
