"""Export the best (or top K) trials of a study to JSON.

    python -m sweeps.export --study rebalance --out best.json
    python -m sweeps.train --params best.json      # re-run it

A study of several metrics exports its Pareto front: by default the front's best trial in
the first metric, ``--top K`` the first K of the front in that order, ``--trial N`` the
complete trial N; each document lists the front.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from sweeps import checks
from sweeps.cli.common import Parser, add_study_options, guarded
from sweeps.errors import UsageError
from sweeps.study.config import SweepConfig

__all__ = ["main"]


def build_parser() -> Parser:
    p = Parser(prog="sweeps.export", description=__doc__.split("\n")[0])
    add_study_options(p)
    p.add_argument("--out", required=True, metavar="PATH", help="output file, or - for stdout")
    p.add_argument("--top", type=int, default=1, metavar="K",
                   help="export the K best trials as a list under 'trials' (default: 1)")
    p.add_argument("--trial", type=int, metavar="N",
                   help="export complete trial N instead (e.g. one of a Pareto front)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--plots", action="store_true",
                   help="also write the sweep's plots (PNG) next to the file, named after it")
    p.add_argument("--tracking-uri", default=SweepConfig().tracking_uri,
                   help="MLflow tracking URI the curves are read from, with --plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.export", lambda: _export(args))


def _export(args: Any) -> int:
    from sweeps.study.results import best_documents, dumps, opened_study, write_json

    checks.at_least("top", args.top, 1)
    if args.trial is not None and args.top != 1:
        raise UsageError("top", args.top, "export one trial with --trial, or the top K")
    if args.plots and args.out == "-":
        raise UsageError("plots", "--out -", "give --out a file path to write plots beside")
    if args.out != "-" and Path(args.out).exists() and not args.force:
        raise UsageError("out", args.out, "the file exists; use --force to overwrite it")
    if args.plots:
        from tracking.preflight import check_tracking

        check_tracking(args.tracking_uri)
    with opened_study(args.storage, args.study) as study:
        docs = best_documents(study, args.top, args.trial)
        data = docs[0] if args.top == 1 else {"study": args.study, "trials": docs}
        if args.out == "-":
            sys.stdout.write(dumps(data))
            return 0
        write_json(args.out, data, force=args.force)
        if args.plots:
            for path in _plots(study, args.storage, args.tracking_uri, args.out):
                print(path)
    return 0


def _plots(study: Any, storage: str, tracking_uri: str, out: str) -> list[Path]:
    """The sweep's plots, as ``<out stem>.<plot>.png`` beside ``out``."""
    import tempfile

    from mlflow import MlflowClient

    from objectives import build
    from sweeps.cli.sweep_plots import write_report
    from sweeps.storage.backends import absolute_uri
    from sweeps.study.results import SETTINGS_ATTR

    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    args = {k: str(v) for k, v in settings.get("objective_args", {}).items()}
    objective = build(settings["objective"], args, from_file=True)
    client = MlflowClient(tracking_uri=absolute_uri(tracking_uri))
    target = Path(out)
    written = []
    with tempfile.TemporaryDirectory() as folder:
        for path in write_report(study, storage, client, objective, settings["epochs"], folder,
                                 precision=settings.get("precision", "fp32")):
            destination = target.with_name(f"{target.stem}.{path.name}")
            shutil.move(str(path), destination)
            written.append(destination)
    return written

