"""Why don't my parameters update? Probe one configuration and suggest a learning rate.

    python -m sweeps.diagnose                                  # the seed: sgd at lr 0.01
    python -m sweeps.diagnose --optimizer adam --lr 0.1 --plot range.png
    python -m sweeps.diagnose --objective examples.my_objective:objective

Prints, per parameter tensor, mean |theta|, |grad|, |delta theta|, the update ratio and the
epochs needed to move it by 1% of its size; the verdict on the probe run; and learning rates
from two independent methods: the update-ratio rule (scale the lr so the update ratio lands
on ``--target-ratio``) and an LR range test (steepest, valley and edge of its loss curve).
No learning rate is suggested where the lr is not the problem: where the verdict says so
(``flat``, ``memorizing``, ``overfitting``: a blind or dead layer, the data, the labels) or
where the range test's loss has no real descent at any lr it tried (it did not fall by more
than its smoothed noise); the report says which instead of printing a number.
A mini-batch objective is probed by the training loop itself (its epochs are passes over its
batches; the validation metrics are printed too), and its range test takes one step per batch
and reads a smoothed curve (``sweeps.diagnostics.range_test``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps import checks
from sweeps.cli.common import Parser, guarded
from sweeps.errors import UsageError
from sweeps.optim.optimizers import OPTIMIZERS
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.study.config import SweepConfig, parse_kv
from sweeps.training.hparams import Hyperparams

if TYPE_CHECKING:
    from sweeps.diagnostics.probe import ProbeResult
    from sweeps.diagnostics.range_test import RangeTestResult
    from sweeps.diagnostics.suggestion import LrSuggestion
    from sweeps.training.verdicts import Verdict

__all__ = ["DiagnoseSpec", "Diagnosis", "build_parser", "main"]

FULL_BATCH_EPOCHS = 200  # epochs of the probe of a full-batch objective, unless told


@dataclass(frozen=True)
class DiagnoseSpec:
    """What to probe and how to look for a better learning rate."""

    objective: str  # registered name or pkg.module:attr
    objective_args: dict[str, str]  # objective arguments as strings
    hp: Hyperparams  # the configuration probed
    epochs: int | None  # epochs of the probe run; None: 200, or a mini-batch objective's own
    target_ratio: float  # update ratio the ratio rule aims at
    range_steps: int  # steps of the range test
    range_min: float | None  # first lr of the range test; None: the optimizer's default
    range_max: float | None  # last lr of the range test; None: the optimizer's default
    plot: str | None  # PNG of the range test, if given
    device: str  # auto, cpu or cuda


@dataclass(frozen=True)
class Diagnosis:
    """Everything ``sweeps.diagnose`` found."""

    probe: ProbeResult  # per-tensor statistics of the probe run
    verdict: Verdict  # the verdict on the probe run
    ratio_lr: float  # the update-ratio rule's lr (inf if nothing moved)
    range_test: RangeTestResult  # the range test of the probed optimizer
    suggestion: LrSuggestion | None  # the combined suggestion
    epochs: int  # epochs the probe was to run
    why_none: str | None = None  # why there is no suggestion (None: there is one)


def build_parser() -> Parser:
    p = Parser(prog="sweeps.diagnose", description=__doc__.split("\n")[0])
    p.add_argument("--objective", default="rebalance",
                   help="objective name or pkg.module:attr (default: rebalance)")
    p.add_argument("--objective-arg", metavar="K=V", action="append", default=[],
                   help="objective argument, repeatable")
    p.add_argument("--optimizer", default="sgd", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate probed (default 0.01)")
    p.add_argument("--scheduler", default="none", help=f"one of {', '.join(SCHEDULERS)}")
    p.add_argument("--option", metavar="K=V", action="append", default=[],
                   help="optimizer/scheduler sub-parameter, e.g. momentum=0.9 (repeatable)")
    p.add_argument("--epochs", type=int,
                   help="epochs of the probe (default 200; a mini-batch objective's own "
                        "default epochs)")
    p.add_argument("--target-ratio", type=float, default=1e-3,
                   help="update ratio the ratio rule aims at (default 1e-3)")
    p.add_argument("--range-steps", type=int, default=200,
                   help="steps of the LR range test (default 200)")
    p.add_argument("--range-min", type=float,
                   help="first lr of the range test (default 1e-6)")
    p.add_argument("--range-max", type=float,
                   help="last lr of the range test (default 1e8 for SGD-like optimizers, "
                        "1e3 for adaptive ones)")
    p.add_argument("--plot", metavar="PNG", help="write the range test's curve to this PNG")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:K")
    p.add_argument("--tracking-uri", default=SweepConfig().tracking_uri,
                   help="MLflow tracking URI (default: sqlite:///mlruns/mlflow.db)")
    p.add_argument("--experiment", default="diagnose",
                   help="MLflow experiment (default: diagnose)")
    p.add_argument("--no-track", action="store_true",
                   help="do not log the probe and the range test to MLflow")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.diagnose", lambda: _diagnose(args))


def spec_from_args(args: Any) -> DiagnoseSpec:
    """The validated spec; ``UsageError`` names the first bad option."""
    checks.choice("optimizer", args.optimizer, OPTIMIZERS)
    checks.choice("scheduler", args.scheduler, SCHEDULERS)
    checks.check_device(args.device)
    for field, value in (("lr", args.lr), ("target-ratio", args.target_ratio),
                         ("range-min", args.range_min), ("range-max", args.range_max)):
        if value is not None:
            checks.positive(field, value)
    if args.epochs is not None:
        checks.at_least("epochs", args.epochs, 1)
    checks.at_least("range-steps", args.range_steps, 10)
    low, high = _range_bounds(args)
    if low >= high:
        raise UsageError("range-min", low, f"use a value below range-max ({high:g})")
    if args.plot is not None:
        checks.writable_file("plot", args.plot, suffix=".png")
    options = {k: checks.number(f"option {k}", v)
               for k, v in parse_kv(args.option, "option").items()}
    return DiagnoseSpec(args.objective, parse_kv(args.objective_arg),
                        Hyperparams(args.optimizer, args.lr, args.scheduler, options),
                        args.epochs, args.target_ratio, args.range_steps, args.range_min,
                        args.range_max, args.plot, args.device)


def diagnose(spec: DiagnoseSpec) -> Diagnosis:
    """Probe, judge, range-test and combine (no output)."""
    from objectives import build, is_minibatch
    from sweeps.diagnostics.probe import probe
    from sweeps.diagnostics.range_test import range_test
    from sweeps.training.verdicts import Thresholds, judge, ratio_rule

    objective = build(spec.objective, spec.objective_args)
    device = checks.resolve_device(spec.device)
    epochs = spec.epochs
    if epochs is None:
        epochs = objective.default_epochs if is_minibatch(objective) else FULL_BATCH_EPOCHS
    probed = probe(objective, spec.hp, epochs, device=device)
    verdict = judge(probed.history, failed=probed.failure,
                    thresholds=Thresholds(target_ratio=spec.target_ratio))
    ratio_lr = ratio_rule(spec.hp.lr, probed.update_ratio, spec.target_ratio)
    tested = range_test(objective, spec.hp.optimizer, lr_min=spec.range_min,
                        lr_max=spec.range_max, steps=spec.range_steps, device=device,
                        options=spec.hp.options)
    suggestion, why = suggest(verdict, tested, ratio_lr)
    return Diagnosis(probed, verdict, ratio_lr, tested, suggestion, epochs, why)


def suggest(verdict: Verdict, tested: RangeTestResult, ratio_lr: float
            ) -> tuple[LrSuggestion | None, str | None]:
    """The combined suggestion, or None and why: the verdict says the lr is not the problem,
    or the range test's loss did not fall at any lr it tried, or no method found one."""
    from sweeps.diagnostics.suggestion import combine
    from sweeps.training.verdicts import NOT_THE_LR

    if verdict.name in NOT_THE_LR:
        return None, (f"the learning rate is not the problem (verdict {verdict.name}); fix what "
                      "the verdict names first")
    if not tested.descends:
        tried = (f"the loss did not fall at any lr the range test tried ({tested.lr_min:g} .. "
                 f"{tested.lrs[-1] if len(tested.lrs) else tested.lr_min:.2g})")
        if tested.stopped_early and len(tested.lrs) <= max(10, tested.warmup):
            return None, f"{tried}: it diverged from the start; lower --range-min"
        return None, f"{tried}: the lr is not what holds it up"
    suggestion = combine(tested, ratio_lr)
    return suggestion, None if suggestion is not None else "no method found a learning rate"


def _diagnose(args: Any) -> int:
    spec = spec_from_args(args)
    if not args.no_track:
        from tracking.preflight import check_tracking

        check_tracking(args.tracking_uri)
    found = diagnose(spec)
    for line in report(spec, found):
        print(line)
    if spec.plot is not None:
        from tracking.plots.range_test import plot_range_test

        plot_range_test(found.range_test, spec.plot,
                        title=f"LR range test: {spec.objective}, {spec.hp.optimizer}")
        print(f"range test plot: {spec.plot}")
    if not args.no_track:
        print(f"mlflow run: {log_diagnosis(args.tracking_uri, args.experiment, spec, found)}")
    return 0


def log_diagnosis(tracking_uri: str, experiment: str, spec: DiagnoseSpec,
                  found: Diagnosis) -> str:
    """One MLflow run: the probe's per-epoch metrics, the verdict, the suggestions, and the
    range test's curve (PNG) and numbers (CSV) as artifacts."""
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    from sweeps.storage.backends import absolute_uri
    from tracking.plots.range_test import plot_range_test
    from tracking.study_run import StudyTracker

    client = MlflowClient(tracking_uri=absolute_uri(tracking_uri, create_folder=True))
    tracker = StudyTracker(client, experiment)
    params = {"objective": spec.objective, **spec.hp.to_dict(), "epochs": found.epochs,
              **{f"objective.{k}": v for k, v in spec.objective_args.items()}}
    run = tracker.start_run(params, {"role": "diagnose"}, run_name="diagnose")
    tracker.writer.put(run.run_id, found.probe.history)
    metrics: dict[str, float] = {}
    if found.suggestion is not None:
        metrics = {"ratio_rule_lr": found.ratio_lr, "suggested_lr": found.suggestion.lr,
                   **{f"range_test_{k}_lr": v for k, v in found.range_test.suggestions.items()}}
    tracker.writer.flush()
    with tempfile.TemporaryDirectory() as folder:
        plot_range_test(found.range_test, Path(folder) / "range_test.png",
                        title=f"LR range test: {spec.objective}, {spec.hp.optimizer}")
        found.range_test.to_frame().to_csv(Path(folder) / "range_test.csv", index=False)
        client.log_artifacts(run.run_id, folder)
    tags = {"verdict": found.verdict.name, "verdict_reason": found.verdict.reason}
    if found.why_none is not None:
        tags["no_lr_suggestion"] = found.why_none
    run.close("complete", tags, {k: v for k, v in metrics.items() if math.isfinite(v)})
    tracker.close()
    return run.run_id


def report(spec: DiagnoseSpec, found: Diagnosis) -> list[str]:
    """The lines ``sweeps.diagnose`` prints."""
    from sweeps.diagnostics.range_curve import DESCENT_FLOOR, DESCENT_Z

    hp, probed, tested = spec.hp, found.probe, found.range_test
    epochs = len(probed.history)
    ran = f"{epochs} epochs" + (f" of {probed.steps_per_epoch} batches" if probed.minibatch
                                else "")
    stopped = f"stopped: {probed.failure}" if probed.failure else ran
    head = f"probe: {spec.objective}, {hp.optimizer} lr={hp.lr:g} scheduler={hp.scheduler}"
    lines = [f"{head}, {stopped}", "",
             probed.to_frame().to_string(float_format=lambda v: f"{v:.4g}"), "",
             *_validation_lines(probed),
             f"verdict: {found.verdict.name}: {found.verdict.reason}", ""]
    picks = ", ".join(f"{k} {v:.2g}" for k, v in tested.suggestions.items()) or "none"
    if not tested.descends:
        noise = (f"{DESCENT_Z:g}x its noise ({tested.noise:.2g}) or " if tested.minibatch
                 else "")
        picks = (f"no real descent: the smoothed loss fell {tested.drop:.2g}, less than "
                 f"{noise}{DESCENT_FLOOR:.0%} of the loss")
    early = ", stopped early (diverging)" if tested.stopped_early else ""
    kind = f" of one batch, smoothed {tested.beta:g}" if tested.minibatch else ""
    range_line = (f"  range test ({tested.lr_min:g} .. {tested.lr_max:g}, {len(tested.lrs)} "
                  f"steps{kind}{early}): {picks}")
    if found.suggestion is None:
        return [*lines, f"suggested learning rates for {hp.optimizer}: none, {found.why_none}",
                range_line]
    lines.append(f"suggested learning rates for {hp.optimizer}:")
    ratio = (f"{found.ratio_lr:.2g}" if math.isfinite(found.ratio_lr)
             else "none (the parameters do not move)")
    lines.append(f"  update-ratio rule (target ratio {spec.target_ratio:g}, seen "
                 f"{probed.update_ratio:.2g} at lr {hp.lr:g}): {ratio}")
    lines.append(range_line)
    s = found.suggestion
    lines.append(f"  combined: lr {s.lr:.2g} ({s.basis}); methods span {s.low:.2g} .. "
                 f"{s.high:.2g}")
    return lines


def _validation_lines(probed: ProbeResult) -> list[str]:
    """The validation metrics after the first and the last epoch of the probe, if any."""
    scores = probed.validation
    if not scores or not len(probed.history):
        return []
    last = len(probed.history) - 1
    values = ", ".join(f"{name} {v[0]:.4g} -> {v[-1]:.4g}" for name, v in scores.items())
    return [f"validation (after epoch 0 -> {last}): {values}", ""]


def _range_bounds(args: Any) -> tuple[float, float]:
    from sweeps.diagnostics.range_test import default_lr_bounds

    low, high = default_lr_bounds(args.optimizer)
    return (args.range_min or low), (args.range_max or high)
