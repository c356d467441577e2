"""How good, and how fast, is the default sweep of the digits objectives?

    python -m bench.digits_accuracy                        # digits, the default sweep
    python -m bench.digits_accuracy --objective digits-cnn
    python -m bench.digits_accuracy --objective digits --objective digits-cnn --n-trials 10
    python -m bench.digits_accuracy --objective digits-cnn --no-plots

For each objective, ``python -m sweeps.run --objective NAME`` with the product's defaults (50
trials, the objective's epochs, the search space of every optimizer and scheduler) on fresh
stores in a temporary folder; then the best trial (by the study's metric: the validation loss)
exported with ``python -m sweeps.export``, and its run's ``test_accuracy`` read from MLflow.
Prints the best configuration, its validation loss, its test accuracy and the sweep's wall
time, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .context import REPO
from .procs import run_measured
from .report import write_json

OBJECTIVES = ("digits", "digits-cnn")
DEFAULT_OUT = REPO / "bench" / "results" / "digits_accuracy.json"


def measure(objective: str, folder: Path, n_trials: int | None,
            plots: bool = True) -> dict[str, Any]:
    """The default sweep of ``objective`` in ``folder`` and what its best trial scored."""
    from mlflow import MlflowClient

    storage, tracking = f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    stores = ["--study", objective, "--storage", storage]
    sweep = run_measured(
        [sys.executable, "-m", "sweeps.run", "--objective", objective, *stores,
         "--tracking-uri", tracking, "--quiet", *([] if plots else ["--no-plots"]),
         *(["--n-trials", str(n_trials)] if n_trials else [])], cwd=folder, env=env).check()
    run_measured([sys.executable, "-m", "sweeps.export", *stores, "--out", "best.json"],
                 cwd=folder, env=env).check()
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    run = MlflowClient(tracking_uri=tracking).get_run(best["mlflow_run_id"])
    return {"objective": objective, "arguments": best["objective"]["args"],
            "epochs": best["epochs"], "trial": best["trial"], "params": best["params"],
            "metric": best["metric"]["name"], "value": best["value"],
            "val_accuracy": run.data.metrics.get("val_accuracy"),
            "test_accuracy": run.data.metrics["test_accuracy"],
            "train_accuracy": run.data.metrics.get("train_accuracy"),
            "wall_s": sweep.wall_s, "peak_mib": sweep.peak_mib, "plots": plots}


def describe(row: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row["params"].items())
    return (f"{row['objective']}: best trial {row['trial']} ({params}; {row['epochs']} epochs): "
            f"{row['metric']} {row['value']:.4f}, val_accuracy {row['val_accuracy']:.4f}, "
            f"test_accuracy {row['test_accuracy']:.4f}; sweep {row['wall_s']:.0f} s wall")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.digits_accuracy",
                                description=__doc__.split("\n")[0])
    p.add_argument("--objective", action="append", choices=OBJECTIVES,
                   help="objective to sweep, repeatable (default: digits)")
    p.add_argument("--n-trials", type=int, help="trials per sweep (default: the product's)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip the plots a sweep draws at its end")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON results file (default: {DEFAULT_OUT.relative_to(REPO)})")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrsweep-digits-") as tmp:
        for objective in args.objective or ["digits"]:
            folder = Path(tmp) / objective
            folder.mkdir()
            rows.append(measure(objective, folder, args.n_trials, not args.no_plots))
            print(describe(rows[-1]), flush=True)
    write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
