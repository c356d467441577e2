"""One training run with fixed hyperparameters, tracked like a trial.

    python -m sweeps.train --optimizer sgd --lr 0.01 --epochs 10000   # the seed's frozen run
    python -m sweeps.train --params best.json                         # re-run an export

An export re-runs at the precision its sweep trained at (``--precision``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps import checks
from sweeps.cli.common import Parser, guarded, setup_logging
from sweeps.errors import UsageError
from sweeps.optim.optimizers import ADAM_SETTINGS, COMMON, OPTIMIZERS, takes
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.study.config import SweepConfig, parse_kv
from sweeps.study.metric import StudyMetric
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import Observer

if TYPE_CHECKING:
    from sweeps.batched.replay import StackRecord

__all__ = ["RunSpec", "main"]

DEFAULTS = SweepConfig()


@dataclass(frozen=True)
class RunSpec:
    objective: str  # registered name or pkg.module:attr
    objective_args: dict[str, str]  # objective arguments as strings
    hp: Hyperparams  # optimizer, lr, scheduler, sub-parameters
    epochs: int | None  # None: the objective's default
    expected: float | None = None  # value the export recorded, to compare with
    metric: StudyMetric = StudyMetric()  # the study's metric that ``expected`` is a value of
    stack: StackRecord | None = None  # the stack the trial ran in (None: it ran alone)
    precision: str = "fp32"  # fp32, bf16 or fp16 (sweeps.training.precision)


def build_parser() -> Parser:
    p = Parser(prog="sweeps.train", description=__doc__.split("\n")[0])
    p.add_argument("--params", metavar="JSON", help="a file written by sweeps.export")
    p.add_argument("--objective", default=DEFAULTS.objective,
                   help="objective name or pkg.module:attr (default: rebalance)")
    p.add_argument("--objective-arg", metavar="K=V", action="append", default=[],
                   help="objective argument, repeatable")
    p.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--scheduler", default="none", help=f"one of {', '.join(SCHEDULERS)}")
    p.add_argument("--option", metavar="K=V", action="append", default=[],
                   help="optimizer/scheduler sub-parameter, e.g. momentum=0.9 (repeatable)")
    p.add_argument("--epochs", type=int, help="epochs (default: the objective's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:K")
    p.add_argument("--precision", help="fp32, bf16 or fp16: a mini-batch objective's forward "
                                       "pass under torch.autocast (default: fp32; with "
                                       "--params, the export's)")
    p.add_argument("--tracking-uri", default=DEFAULTS.tracking_uri, help="MLflow tracking URI")
    p.add_argument("--experiment", default="train", help="MLflow experiment (default: train)")
    p.add_argument("--per-tensor", action=argparse.BooleanOptionalAction, default=True,
                   help="log grad_abs_mean/<tensor> and update_ratio/<tensor> per epoch for "
                        "objectives of 2 to 64 parameter tensors (default: on)")
    p.add_argument("--log-steps", action=argparse.BooleanOptionalAction, default=False,
                   help="for mini-batch objectives, also log every step's loss and learning "
                        "rate (step_loss, step_lr; MLflow step = the step's index from 0 "
                        "across the run) (default: off)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.train", lambda: _train(args))


def spec_from_args(args: Any) -> RunSpec:
    if args.params:
        spec = spec_from_export(args.params)
        if args.precision not in (None, spec.precision):
            raise UsageError("precision", args.precision, f"the export's sweep trained at "
                             f"{spec.precision}: leave --precision out to re-run it so")
        return spec
    if args.optimizer is None or args.lr is None:
        raise UsageError("optimizer", args.optimizer, "give --optimizer and --lr, or --params")
    options = {k: checks.number(f"option {k}", v)
               for k, v in parse_kv(args.option, "option").items()}
    hp = Hyperparams(args.optimizer, args.lr, args.scheduler, options)
    return RunSpec(args.objective, parse_kv(args.objective_arg), hp, args.epochs,
                   precision=args.precision or "fp32")


def spec_from_export(path: str) -> RunSpec:
    """The run an export describes (plain JSON: nothing in it is executed)."""
    from sweeps.batched.replay import StackRecord

    text = checks.readable_text("params", path, "JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError("params", path, f"use valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("trials"), list) and data["trials"]:
        data = data["trials"][0]
    try:
        objective, params = data["objective"], data["params"]
        args = objective.get("args", {})
        if not isinstance(params, dict) or not isinstance(args, dict):
            raise TypeError("'params' and 'objective.args' must be JSON objects")
        hp = Hyperparams.from_dict(params)
        metric = StudyMetric(**data.get("metric", {}))  # older exports: the training loss
        stack = data.get("stack")  # older exports, and trials that ran alone: none
        return RunSpec(str(objective["name"]), {str(k): str(v) for k, v in args.items()},
                       hp, int(data["epochs"]), float(data["value"]), metric,
                       None if stack is None else StackRecord.from_dict(stack),
                       data.get("precision", "fp32"))  # older exports: fp32
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError("params", path, f"use a file written by sweeps.export ({exc!r})")


def validate(spec: RunSpec) -> None:
    """``UsageError`` for the first bad hyperparameter (before anything is written)."""
    hp = spec.hp
    checks.choice("optimizer", hp.optimizer, OPTIMIZERS)
    checks.choice("scheduler", hp.scheduler, SCHEDULERS)
    checks.positive("lr", hp.lr)
    checks.choice("precision", spec.precision, checks.PRECISIONS)
    if spec.epochs is not None:
        checks.at_least("epochs", spec.epochs, 1)
    allowed = (*OPTIMIZERS[hp.optimizer].searched, *SCHEDULERS[hp.scheduler].searched,
               *(k for k in (*COMMON, *ADAM_SETTINGS) if takes(hp.optimizer, k)))
    for key, value in hp.options.items():
        if key not in allowed:
            names = ", ".join(allowed) or "no sub-parameters"
            raise UsageError("option", key, f"{hp.optimizer} with {hp.scheduler} takes {names}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise UsageError(f"option {key}", value, "use a finite number")
    _check_buildable(hp, spec.epochs or 1)


def _check_buildable(hp: Hyperparams, epochs: int) -> None:
    """torch's own checks of the sub-parameters (momentum >= 0, ...), on a dummy tensor."""
    import torch

    from sweeps.optim.optimizers import build_optimizer
    from sweeps.optim.schedulers import build_scheduler

    try:
        optimizer = build_optimizer(hp.optimizer, [torch.zeros(1, requires_grad=True)], hp.lr,
                                    hp.options)
        build_scheduler(hp.scheduler, optimizer, epochs, hp.options)
    except (ValueError, TypeError) as exc:
        raise UsageError("option", hp.options, f"torch refuses it ({exc})") from None


def _train(args: Any) -> int:
    import torch

    from objectives import build, evaluate
    from sweeps.training.precision import at_precision

    setup_logging(args.quiet)
    spec = spec_from_args(args)
    try:
        validate(spec)
    except UsageError as exc:
        if not args.params:
            raise
        raise UsageError("params", args.params, f"its {exc.field} {exc.value!r} is not valid; "
                                                f"{exc.allowed}") from None
    objective = build(spec.objective, spec.objective_args, from_file=bool(args.params))
    epochs = spec.epochs or objective.default_epochs
    device = checks.resolve_device(args.device)
    checks.check_precision(spec.precision, device)
    objective = at_precision(objective, spec.precision)
    observers: tuple[Observer, ...] = ()
    tracker = run = None
    if not args.no_track:
        tracker, run = _start_run(args, objective, spec, epochs)
        observers = (run,)
    initial = objective.init_params(torch.device(device))
    before = {k: float(v.double().mean()) for k, v in initial.items()}
    result = _run(objective, spec, epochs, device, observers, args)
    after = {k: float(v.double().mean()) for k, v in (result.params or {}).items()}
    if tracker is not None and run is not None:
        _log_param_means(tracker, run.run_id, before, after, result.epochs_run)
        tracker.close()
    scores = (evaluate(objective, result.params, result.buffers) if result.params is not None
              else {})
    _report(spec, result, before, after, scores, run.run_id if run else None)
    return 0 if result.status == "complete" else 1


def _run(objective: Any, spec: RunSpec, epochs: int, device: str,
         observers: tuple[Observer, ...], args: Any) -> Any:
    """The run: an exported trial as its sweep ran it (its row of the same stack, so that a
    float32 trial ends where the study recorded it), anything else alone."""
    import logging

    from sweeps.batched.replay import replay
    from sweeps.training.loop import train

    if spec.stack is not None:
        rows = len(spec.stack.rows)
        logging.getLogger(__name__).info(
            "replaying the trial as row %d of its stack of %d row%s, on %d thread(s), as the "
            "sweep ran it", spec.stack.row, rows, "s" * (rows > 1), spec.stack.threads)
        result = replay(objective, spec.stack, epochs, device=device, observers=observers,
                        per_tensor=args.per_tensor, log_steps=args.log_steps)
        if result is not None:
            return result
    return train(objective, spec.hp, epochs, device=device, observers=observers,
                 per_tensor=args.per_tensor, log_steps=args.log_steps)


def _start_run(args: Any, objective: Any, spec: RunSpec, epochs: int) -> tuple[Any, Any]:
    from mlflow import MlflowClient

    from objectives import evaluate
    from sweeps.storage.backends import absolute_uri
    from tracking.preflight import check_tracking
    from tracking.study_run import StudyTracker

    check_tracking(args.tracking_uri)
    uri = absolute_uri(args.tracking_uri, create_folder=True)
    tracker = StudyTracker(MlflowClient(tracking_uri=uri), args.experiment)
    params = {**spec.hp.to_dict(), "epochs": epochs, "objective": objective.name,
              **{f"objective.{k}": v for k, v in objective.arguments().items()},
              "precision": spec.precision}
    run = tracker.start_run(params, {"role": "train"},
                            evaluate=lambda result: evaluate(objective, result.params,
                                                             result.buffers))
    return tracker, run


def _log_param_means(tracker: Any, run_id: str, before: dict[str, float],
                     after: dict[str, float], epochs: int) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"param_mean.{k}", v, now, 0) for k, v in before.items()]
    metrics += [Metric(f"param_mean.{k}", v, now, epochs) for k, v in after.items()]
    tracker.client.log_batch(run_id, metrics=metrics)


def _report(spec: RunSpec, result: Any, before: dict[str, float], after: dict[str, float],
            scores: dict[str, float], run_id: str | None) -> None:
    h = result.history
    hp = spec.hp
    print(f"{hp.optimizer} lr={hp.lr:g} scheduler={hp.scheduler} epochs={result.epochs_run} "
          f"status={result.status}")
    if len(h):
        print(f"epoch 0: loss={h.loss[0]:.4e} grad_abs_mean={h.grad_abs_mean[0]:.4e} "
              f"update_abs_mean={h.update_abs_mean[0]:.4e} update_ratio={h.update_ratio[0]:.2e}")
    for name, value in before.items():
        if name in after:
            print(f"mean {name}: {value:.4f} -> {after[name]:.4f}")
    print(f"final_loss={result.final_loss:.4e} best_loss={result.best_loss:.4e}")
    held_out = {k: v[-1] for k, v in h.extra.items() if k.startswith("val_") and len(v)}
    for name, value in {**held_out, **scores}.items():
        print(f"{name}={value:.4f}")
    if result.failure:
        print(f"failed at epoch {result.failure_epoch}: {result.failure}")
    value = spec.metric.value(result) if result.status == "complete" else math.nan
    if spec.expected is not None and math.isfinite(value):
        rel = abs(value - spec.expected) / max(abs(spec.expected), 1e-300)
        print(f"exported value ({spec.metric.name}) {spec.expected:.6e}: this run "
              f"{value:.6e}, relative difference {rel:.1e}")
    if run_id:
        print(f"mlflow run: {run_id}")

