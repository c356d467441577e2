"""What one per-epoch metric row costs the writer, and how much of it is MLflow's indexes.

    python -m bench.row_cost                # 16 runs x 10,000 epochs x 5 metrics, 3 repetitions
    python -m bench.row_cost --runs 4 --repeats 1

The product's writer (``tracking.sql_metrics.SqlMetricSink``, one transaction per 500-epoch
chunk, as a sweep writes them) inserts the same rows into three copies of a fresh MLflow
SQLite store: as MLflow creates it (``metrics`` has a six-column primary key and two more
indexes), without the two indexes, and without the primary key either. CPU seconds per row
(the writer's process time, JSON encoding included), the median over the repetitions, which
run in a rotated order. Only the first is MLflow's schema: the others show what its indexes
cost, which no writer of that table can avoid. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import write_json

__all__ = ["main"]

CHUNK = 500  # epochs per chunk, as a 10,000-epoch trial sends them
VARIANTS = ("MLflow's schema (primary key + 2 indexes)", "without the 2 indexes",
            "without any index")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.row_cost", description=__doc__)
    p.add_argument("--runs", type=int, default=16, help="runs (trials) written, 10,000 "
                   "epochs each")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/results/row_cost.json")
    args = p.parse_args(argv)
    import logging

    import mlflow  # noqa: F401  (it sets its own log level when imported)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    us: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for i in range(len(VARIANTS)):
                variant = VARIANTS[(i + rep) % len(VARIANTS)]
                folder = Path(tmp) / f"{rep}-{VARIANTS.index(variant)}"
                us[variant].append(_cpu_per_row(folder, variant, args.runs))
                print(f"  {variant}: {us[variant][-1]:.2f} us a row", flush=True)
    median = {v: statistics.median(t) for v, t in us.items()}
    full = median[VARIANTS[0]]
    for v, m in median.items():
        print(f"{v:<45} {m:5.2f} us a row  ({m / full:4.0%})")
    write_json(args.out, {"runs": args.runs, "epochs": 10_000, "chunk": CHUNK,
                          "us_per_row": us, "median_us_per_row": median})
    return 0


def _cpu_per_row(folder: Path, variant: str, runs: int) -> float:
    import numpy as np
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from sweeps.storage.sqlite import tune_sqlite
    from sweeps.training.stats import EPOCH_METRICS, EpochStats
    from tracking.sql_metrics import SqlMetricSink

    folder.mkdir(parents=True)
    path = folder / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("row-cost")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]
    _strip(path, VARIANTS.index(variant))
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.NullPool)
    tune_sqlite(engine)
    sink = SqlMetricSink(engine)
    rng = np.random.default_rng(0)
    chunks = [(run, EpochStats(start, *(rng.random(CHUNK) for _ in EPOCH_METRICS)))
              for run in run_ids for start in range(0, 10_000, CHUNK)]
    rows = 0
    started = time.process_time()
    for run, stats in chunks:
        rows += sink.write(run, stats, 1, EPOCH_METRICS, int(time.time() * 1000))
    seconds = time.process_time() - started
    sink.close()
    return seconds / rows * 1e6


def _strip(path: Path, level: int) -> None:
    """Drop the two secondary indexes of ``metrics`` (level 1), and its primary key (2)."""
    if level == 0:
        return
    with sqlite3.connect(path) as db:
        indexes: list[Any] = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'metrics' "
            "AND sql IS NOT NULL").fetchall()
        for (name,) in indexes:
            db.execute(f'DROP INDEX "{name}"')
        if level == 2:
            (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'metrics'").fetchone()
            bare = re.sub(r",\s*CONSTRAINT metric_pk PRIMARY KEY \([^)]*\)", "", sql)
            if bare == sql:
                raise RuntimeError(f"no primary key clause found in {sql!r}")
            db.execute("DROP TABLE metrics")
            db.execute(bare)


if __name__ == "__main__":
    raise SystemExit(main())
