"""The careful user's sweep: a plain Optuna objective around the seed article's loop, with
diagnostics read by ``.item()`` every epoch, metrics buffered and sent with
``MlflowClient.log_batch`` (1,000 per call) at the end of each trial, one MLflow run per trial
nested under a parent run. No part of the product is used to train or to log.

    python -m bench.baseline_careful --replay replay.json \\
        --storage sqlite:///b/optuna.db --tracking-uri sqlite:///b/mlflow.db

Same trials, by replay. The product's sweep is run first; ``bench.replay`` writes down its
trials (params, final state, epochs run) and this script runs exactly those: each is enqueued
with ``study.enqueue_trial`` so the objective's ``suggest_*`` calls (the product's search space,
mirrored below) return the product's values, and a trial the product pruned is run to the same
epoch and then pruned. Running with the same sampler seed instead would not give the same
trials: TPE's later suggestions depend on every earlier value and pruning decision, and pruned
and diverged trials cost from a few hundred to 10,000 epochs, so two independent sweeps can
differ in work by a large factor. With the replay both sides do the same epochs of the same
configurations and the ratio measures the machinery alone. The baseline still pays Optuna's
costs as the product does, at the same points: it reports the loss at the end of every chunk
of epochs (``sweeps.training.loop.default_chunk``) and asks the same pruner only at the
product's pruning checks (the first chunk end at or past each of ``PRUNE_CHECKS`` of the
epochs, as ``sweeps.study.reporter.OptunaReporter`` does). A careful user asks no more often:
each question reads every trial of the study. The pruner's answer is then ignored in favour of
the product's recorded decision. A trial that diverges stops at its first non-finite loss or
gradient, as the product's does, reporting the epochs of its last chunk that were finite.
The cadence is mirrored here, not imported (this script uses no part of the product);
``bench.sweep_throughput`` checks the mirror against the product before it runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from .careful_space import suggest_schedule
from .replay import Replay, ReplayTrial
from .seed_loop import SeedProblem, optimize, seed_problem

__all__ = ["CarefulSweep", "chunk_epochs", "main", "prune_checks"]

log = logging.getLogger("bench.baseline_careful")
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
PARENT_TAG = "mlflow.parentRunId"
QUESTIONS_ATTR = "pruning_questions"  # study attribute: how many times the pruner was asked

# The product's search space, mirrored: torch class, log-lr range, fixed kwargs, searched.
_SGD_LR = (1e-3, 1e7)
_ADAPTIVE_LR = (1e-5, 1e2)
OPTIMIZERS: dict[str, tuple[str, tuple[float, float], dict[str, Any], tuple[str, ...]]] = {
    "sgd": ("SGD", _SGD_LR, {}, ()),
    "momentum": ("SGD", _SGD_LR, {}, ("momentum",)),
    "nesterov": ("SGD", _SGD_LR, {"nesterov": True}, ("momentum",)),
    "adam": ("Adam", _ADAPTIVE_LR, {}, ()),
    "adamw": ("AdamW", _ADAPTIVE_LR, {}, ("weight_decay",)),
    "rmsprop": ("RMSprop", _ADAPTIVE_LR, {}, ("momentum",)),
    "adagrad": ("Adagrad", _ADAPTIVE_LR, {}, ()),
}
SCHEDULERS = ("none", "step", "exponential", "cosine", "onecycle", "plateau")

# The product's cadence, mirrored: sweeps.study.reporter.PRUNE_CHECKS (fractions of the epochs
# at which the pruner is asked) and sweeps.training.loop.default_chunk (epochs between reports).
PRUNE_CHECKS = (0.2, 0.4, 0.6, 0.8)


def chunk_epochs(epochs: int) -> int:
    """Epochs between two reports to Optuna (``default_chunk``)."""
    return max(1, min(500, epochs // 20))


def prune_checks(epochs: int) -> list[int]:
    """Epoch counts from which the pruner is asked, once each (``OptunaReporter.checks``)."""
    return sorted({max(1, int(f * epochs)) for f in PRUNE_CHECKS})


def suggest(trial: optuna.Trial, epochs: int) -> dict[str, Any]:
    """The product's search space, suggested the same way (names, ranges, order)."""
    name = trial.suggest_categorical("optimizer", list(OPTIMIZERS))
    scheduler = trial.suggest_categorical("scheduler", list(SCHEDULERS))
    _, (low, high), _, searched = OPTIMIZERS[name]
    hp: dict[str, Any] = {"optimizer": name, "scheduler": scheduler,
                          "lr": trial.suggest_float(f"lr_{name}", low, high, log=True)}
    if "momentum" in searched:
        hp["momentum"] = trial.suggest_float("momentum", 0.5, 0.99)
    if "weight_decay" in searched:
        hp["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    return {**hp, **suggest_schedule(trial, scheduler, epochs)}


def make_optimizer(hp: dict[str, Any], x: torch.Tensor) -> torch.optim.Optimizer:
    torch_name, _, fixed, searched = OPTIMIZERS[hp["optimizer"]]
    kwargs = {**fixed, **{k: hp[k] for k in searched}}
    cls: Callable[..., torch.optim.Optimizer] = getattr(torch.optim, torch_name)
    return cls([x], lr=hp["lr"], **kwargs)


def make_scheduler(hp: dict[str, Any], optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    from torch.optim import lr_scheduler as s

    name = hp["scheduler"]
    if name == "step":
        return s.StepLR(optimizer, step_size=hp["step_size"], gamma=hp["step_gamma"])
    if name == "exponential":
        return s.ExponentialLR(optimizer, gamma=hp["exp_gamma"])
    if name == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "onecycle":
        return s.OneCycleLR(optimizer, max_lr=hp["lr"], total_steps=max(2, epochs),
                            pct_start=hp["pct_start"], cycle_momentum=False)
    if name == "plateau":
        return s.ReduceLROnPlateau(optimizer, factor=hp["plateau_factor"],
                                   patience=hp["plateau_patience"])
    return None


@dataclass
class CarefulSweep:
    replay: Replay  # the trials to run
    client: MlflowClient
    experiment_id: str
    parent_run_id: str
    problem: SeedProblem

    questions: int = 0  # pruning questions asked (each reads the whole study)

    def report(self, trial: optuna.Trial, value: float, done: int, checks: list[int]) -> None:
        """Report the loss of epoch ``done - 1`` and ask the pruner if a check is due (the
        product's order); ``checks`` (those not yet passed) is updated in place."""
        trial.report(value, done - 1)
        if checks and done >= checks[0]:
            checks[:] = [c for c in checks if c > done]
            self.questions += 1
            trial.should_prune()  # asked where the product asks; the replay decides

    def objective(self, trial: optuna.Trial) -> float:
        planned: ReplayTrial = self.replay.trials[trial.number]
        epochs = self.replay.epochs
        hp = suggest(trial, epochs)
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                     tags={PARENT_TAG: self.parent_run_id})
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in hp.items()])

        x = torch.nn.Parameter(self.problem.starting_shares.clone(), requires_grad=True)
        optimizer = make_optimizer(hp, x)
        scheduler = make_scheduler(hp, optimizer, epochs)
        loss_func = torch.nn.MSELoss()
        stop_at = planned.epochs_run if planned.state == "PRUNED" else epochs
        chunk, checks = chunk_epochs(epochs), prune_checks(epochs)
        metrics: list[Metric] = []
        diverged = False
        last_loss = math.nan
        for epoch in range(stop_at):
            optimizer.zero_grad()
            loss = optimize(x, self.problem.target_weights, self.problem.prices, loss_func)
            loss.backward()
            loss_value = loss.item()
            grad_abs_mean = x.grad.abs().mean().item()  # type: ignore[union-attr]
            if not (math.isfinite(loss_value) and math.isfinite(grad_abs_mean)):
                diverged = True
                if epoch % chunk:  # the finite epochs of this chunk, reported as the product does
                    self.report(trial, last_loss, epoch, checks)
                break
            last_loss = loss_value
            before = x.detach().clone()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            update_abs_mean = (x.detach() - before).abs().mean().item()
            update_ratio = update_abs_mean / before.abs().mean().item()
            now = int(time.time() * 1000)
            metrics += [Metric("loss", loss_value, now, epoch),
                        Metric("grad_abs_mean", grad_abs_mean, now, epoch),
                        Metric("update_abs_mean", update_abs_mean, now, epoch),
                        Metric("update_ratio", update_ratio, now, epoch),
                        Metric("lr", lr, now, epoch)]
            if scheduler is not None:
                if hp["scheduler"] == "plateau":
                    scheduler.step(loss_value)
                else:
                    scheduler.step()
            if (epoch + 1) % chunk == 0 or epoch + 1 == epochs:
                self.report(trial, loss_value, epoch + 1, checks)
        with torch.no_grad():
            final = float(optimize(x, self.problem.target_weights, self.problem.prices,
                                   loss_func))
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH])
        epochs_run = len(metrics) // 5
        if diverged or not math.isfinite(final):
            state, status, value = "failed", "FAILED", math.nan
        elif planned.state == "PRUNED":
            state, status, value = "pruned", "KILLED", math.nan
        else:
            state, status, value = "complete", "FINISHED", final
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric("final_loss", final, now, 0),
                     Metric("epochs_run", float(epochs_run), now, 0)],
            tags=[RunTag("state", state)],
        )
        self.client.set_terminated(run_id, status=status)
        trial.set_user_attr("epochs_run", epochs_run)
        if state == "pruned":
            raise optuna.TrialPruned()
        return value  # NaN: Optuna records the trial as failed


def run(replay: Replay, storage: str, tracking_uri: str, experiment: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as quiet as the product's --quiet
    epochs = replay.epochs
    study = optuna.create_study(
        storage=storage, study_name="careful", direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs // 5),
    )
    for planned in replay.trials:
        study.enqueue_trial(planned.params)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name="careful", tags={"role": "study"})
    sweep = CarefulSweep(replay, client, experiment_id, parent.info.run_id, seed_problem())
    study.optimize(sweep.objective, n_trials=len(replay.trials))
    study.set_user_attr(QUESTIONS_ATTR, sweep.questions)  # for bench.sweep_throughput's check
    client.set_terminated(parent.info.run_id, status="FINISHED")
    return study


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.baseline_careful", description=__doc__.split("\n")[0])
    p.add_argument("--replay", type=Path, required=True, help="replay file (bench.replay)")
    p.add_argument("--storage", required=True, help="a fresh Optuna storage URL")
    p.add_argument("--tracking-uri", required=True, help="a fresh MLflow tracking URI")
    p.add_argument("--experiment", default="careful", help="MLflow experiment")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(Replay.load(args.replay), args.storage, args.tracking_uri, args.experiment)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
