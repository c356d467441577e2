"""The trials of a study side by side.

    python -m sweeps.compare --study rebalance --top 10
    python -m sweeps.compare --study rebalance --verdict stalled,slow --optimizer sgd
    python -m sweeps.compare --study rebalance --csv trials.csv --json trials.json
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeps import checks
from sweeps.cli.common import Parser, add_study_options, guarded
from sweeps.cli.summary import ranked
from sweeps.errors import UsageError
from sweeps.study.config import split_names
from sweeps.study.results import shown_columns

if TYPE_CHECKING:
    from sweeps.study.goals import Goals

__all__ = ["build_parser", "main"]

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "INTERRUPTED")


def build_parser() -> Parser:
    p = Parser(prog="sweeps.compare", description=__doc__.split("\n")[0])
    add_study_options(p)
    p.add_argument("--sort", help="column to sort by (default: value, the study's metric, "
                                  "best first)")
    p.add_argument("--descending", action="store_true", help="sort from the largest value")
    p.add_argument("--state", type=split_names, metavar="a,b,..",
                   help=f"only trials in these states ({', '.join(STATES)})")
    p.add_argument("--verdict", type=split_names, metavar="a,b,..",
                   help="only trials with these verdicts (stalled, slow, flat, healthy, "
                        "overfitting, memorizing, unstable, diverged)")
    p.add_argument("--optimizer", type=split_names, metavar="a,b,..",
                   help="only trials of these optimizers")
    p.add_argument("--top", type=int, metavar="K", help="show only the first K rows")
    p.add_argument("--csv", metavar="PATH", help="also save the table as CSV")
    p.add_argument("--json", metavar="PATH", help="also save the table as JSON (records)")
    p.add_argument("--ui", default="http://127.0.0.1:5000", metavar="URL",
                   help="MLflow UI base for the links (default: http://127.0.0.1:5000)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.compare", lambda: _compare(args))


def _check(args: Any) -> None:
    if args.top is not None:
        checks.at_least("top", args.top, 1)
    for name in args.state or ():
        if name.upper() not in STATES:
            raise UsageError("state", name, f"use one or more of {', '.join(STATES)}")
    for label in ("csv", "json"):
        path = getattr(args, label)
        if path:
            checks.writable_file(label, path)


def select(frame: Any, args: Any, goals: Goals) -> Any:
    """The rows the filters keep, sorted (by default best first: ``ranked``), cut to
    ``--top``."""
    if args.sort is not None:
        checks.choice("sort", args.sort, shown_columns(frame))
    if args.state:
        frame = frame[frame["state"].isin([s.upper() for s in args.state])]
    if args.verdict:
        frame = frame[frame["verdict"].isin(args.verdict)]
    if args.optimizer:
        frame = frame[frame["optimizer"].isin(args.optimizer)]
    if args.sort is None and not args.descending:
        frame = ranked(frame, goals)
    else:
        frame = frame.sort_values(args.sort or "value", ascending=not args.descending,
                                  na_position="last", kind="stable")
    return frame.head(args.top) if args.top else frame


def describe(goals: Goals) -> str:
    """What the value columns hold: the study's metrics, and its constraints."""
    metric = goals.primary
    text = f"value: {metric.name} at the {metric.at} epoch ({metric.direction})"
    if goals.multi:
        each = ", ".join(f"{m.name} ({m.direction})" for m in goals.metrics)
        text = f"values: {each} at the {metric.at} epoch; pareto: on the front"
    if goals.constraints:
        text += f"; constraints: {', '.join(map(str, goals.constraints))}"
    return text


def _compare(args: Any) -> int:
    import pandas as pd

    from sweeps.study.results import opened_study, stored_goals, trials_frame

    _check(args)
    with opened_study(args.storage, args.study) as study:
        goals = stored_goals(study)
        frame = select(trials_frame(study), args, goals)
        experiment = study.user_attrs.get("mlflow_experiment_id")
    if args.csv:
        frame.to_csv(args.csv, index=False)
    if args.json:
        frame.to_json(args.json, orient="records", indent=2)
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(describe(goals))
        print(frame[shown_columns(frame)].to_string(index=False) if len(frame)
              else "no trials match")
    run_ids = [r for r in frame["mlflow_run_id"].head(10) if isinstance(r, str)]
    if experiment and run_ids:
        from tracking.links import sweep_links

        print("\nin the MLflow UI (python -m sweeps.ui):")
        for name, url in sweep_links(args.ui, experiment, run_ids).items():
            print(f"  {name}: {url}")
    return 0

