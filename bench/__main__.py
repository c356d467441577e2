"""Run the benchmark suite and print its table; the JSON goes to ``--out``.

    python -m bench                 # the full suite (about 25 minutes on 2 cores)
    python -m bench --quick         # reduced sizes: a smoke run of every section
    python -m bench --only tracking,cli
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .context import REPO, Context
from .sizes import FULL, QUICK
from .suite import SECTIONS, run_suite

__all__ = ["main"]

log = logging.getLogger("bench")
DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes (2,000 epochs, 8 trials) for a smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON results file (default: {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--only", type=_sections, default=list(SECTIONS), metavar="a,b,..",
                   help=f"sections to run (default: all): {', '.join(SECTIONS)}")
    p.add_argument("--keep", action="store_true", help="keep the scratch stores")
    return p


def _sections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {bad[0] if bad else text!r}: use one or more of "
            f"{', '.join(SECTIONS)}")
    return [n for n in SECTIONS if n in names]  # always in suite order


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    sizes = QUICK if args.quick else FULL
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="lrsweep-bench-"))
    try:
        report = run_suite(Context(sizes, workdir), args.only)
    finally:
        if args.keep:
            log.info("scratch stores kept in %s", workdir)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report.meta = _meta(argv, args.quick, asdict(sizes), started)
    print(report.table())
    report.write(args.out)
    print(f"\nresults: {args.out}")
    return 1 if any(row.error for row in report.rows) else 0


def _meta(argv: list[str] | None, quick: bool, sizes: dict[str, Any],
          started: float) -> dict[str, Any]:
    from importlib.metadata import version

    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    return {
        "command": command.strip(), "quick": quick, "sizes": sizes,
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": time.time() - started, "python": platform.python_version(),
        "versions": {pkg: version(pkg) for pkg in ("torch", "optuna", "mlflow", "numpy")},
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "machine": platform.machine(),
    }


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them after)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
