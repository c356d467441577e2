"""The trials of a study side by side.

    python -m sweeps.compare --study rebalance --sort final_loss --top 10
"""

from __future__ import annotations

from .cli import Parser, add_study_options, guarded
from .errors import UsageError
from .results import COLUMNS

__all__ = ["main"]


def build_parser() -> Parser:
    p = Parser(prog="sweeps.compare", description=__doc__.split("\n")[0])
    add_study_options(p)
    p.add_argument("--sort", default="final_loss", help="column to sort by (default: final_loss)")
    p.add_argument("--top", type=int, metavar="K", help="show only the first K rows")
    p.add_argument("--csv", metavar="PATH", help="also save the table as CSV")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.compare", lambda: _compare(args))


def _compare(args) -> int:  # type: ignore[no-untyped-def]
    import pandas as pd

    from .results import load_study, trials_frame

    if args.sort not in COLUMNS:
        raise UsageError("sort", args.sort, f"use one of {', '.join(COLUMNS)}")
    if args.top is not None and args.top < 1:
        raise UsageError("top", args.top, "use an integer >= 1")
    if args.csv:
        from pathlib import Path

        if Path(args.csv).is_dir() or not Path(args.csv).parent.is_dir():
            raise UsageError("csv", args.csv, "use a file path in an existing folder")
    frame = trials_frame(load_study(args.storage, args.study))
    frame = frame.sort_values(args.sort, na_position="last", kind="stable")
    if args.top:
        frame = frame.head(args.top)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(frame[COLUMNS].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
