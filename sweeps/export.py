"""Export the best (or top K) trials of a study to JSON.

    python -m sweeps.export --study rebalance --out best.json
    python -m sweeps.train --params best.json      # re-run it
"""

from __future__ import annotations

import sys

from .cli import Parser, add_study_options, guarded
from .errors import UsageError

__all__ = ["main"]


def build_parser() -> Parser:
    p = Parser(prog="sweeps.export", description=__doc__.split("\n")[0])
    add_study_options(p)
    p.add_argument("--out", required=True, metavar="PATH", help="output file, or - for stdout")
    p.add_argument("--top", type=int, default=1, metavar="K",
                   help="export the K best trials as a list under 'trials' (default: 1)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.export", lambda: _export(args.study, args.storage, args.out,
                                                    args.top, args.force))


def _export(study_name: str, storage: str, out: str, top: int, force: bool) -> int:
    from .results import best_documents, dumps, opened_study, write_json

    if top < 1:
        raise UsageError("top", top, "use an integer >= 1")
    if out != "-":
        from pathlib import Path

        if Path(out).exists() and not force:
            raise UsageError("out", out, "the file exists; use --force to overwrite it")
    with opened_study(storage, study_name) as study:
        docs = best_documents(study, top)
    data = docs[0] if top == 1 else {"study": study_name, "trials": docs}
    if out == "-":
        sys.stdout.write(dumps(data))
    else:
        write_json(out, data, force=force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
