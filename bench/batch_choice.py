"""Batched trials of mini-batch objectives: what batching gives, and what the sweep chooses.

    python -m bench.batch_choice                 # both parts, digits-cnn and the examples
    python -m bench.batch_choice --part rate     # trials/s only
    python -m bench.batch_choice --part sweep --objective digits-cnn

``rate``: 25 configurations (Adam, learning rates log-spaced over the objective's declared
Adam interval, cosine schedule) trained for ``--epochs`` epochs as one batch
(``train_batch``, batching forced) and one after another (``train``); trials per second of
each, and the largest relative difference of the final validation loss between a batched
trial and its sequential run.

``sweep``: ``python -m sweeps.run --objective NAME`` with the defaults (the batch size the
sweep measures and chooses) against the same command with ``--batch 1``, on fresh stores,
end to end (subprocesses, plots off): wall time, the batch the sweep chose (the parent run's
``trial_batch`` tag), the trial-epochs run and the best value. The two runs alternate, median
of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .context import REPO
from .procs import run_measured
from .report import write_json

OBJECTIVES = ("digits-cnn", "examples.dataset_objective:objective", "digits")
DEFAULT_OUT = REPO / "bench" / "results" / "batch_choice.json"
TRIALS = 25


def rate(spec: str, epochs: int) -> dict[str, Any]:
    """Trials per second, batched and sequential, of ``TRIALS`` configurations."""
    import math

    import torch

    from objectives import build
    from sweeps.batched.trials import train_batch
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    objective = build(spec)
    low, high = (getattr(objective, "lr_ranges", None) or {}).get("adam", (1e-4, 1e-1))
    lrs = [low * (high / low) ** (i / (TRIALS - 1)) for i in range(TRIALS)]
    hps = [Hyperparams("adam", lr, "cosine") for lr in lrs]
    train_batch(objective, hps[:2], 1)  # warm-up: first-call costs on both sides
    train(objective, hps[0], 1)
    start = time.perf_counter()
    batched = train_batch(objective, hps, epochs)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    sequential = [train(objective, hp, epochs) for hp in hps]
    sequential_s = time.perf_counter() - start
    worst = max(abs(b.history.metric("val_loss")[-1] / s.history.metric("val_loss")[-1] - 1)
                for b, s in zip(batched, sequential))
    return {"objective": spec, "epochs": epochs, "trials": TRIALS,
            "threads": torch.get_num_threads(),
            "batched_trials_per_s": TRIALS / batched_s,
            "sequential_trials_per_s": TRIALS / sequential_s,
            "speedup": sequential_s / batched_s,
            "max_rel_diff_final_val_loss": worst if math.isfinite(worst) else None}


def sweep(spec: str, folder: Path, batch: int | None) -> dict[str, Any]:
    """One default sweep of ``spec`` (``--batch batch`` if given) on fresh stores."""
    import optuna
    from mlflow import MlflowClient

    from sweeps.study.results import RUN_ID_ATTR

    folder.mkdir(parents=True)
    storage, tracking = f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    run = run_measured(
        [sys.executable, "-m", "sweeps.run", "--objective", spec, "--study", "bench",
         "--storage", storage, "--tracking-uri", tracking, "--quiet", "--no-plots",
         *(["--batch", str(batch)] if batch else [])], cwd=folder, env=env).check()
    study = optuna.load_study(study_name="bench", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    client = MlflowClient(tracking_uri=tracking)
    child = client.get_run(finished[0].user_attrs[RUN_ID_ATTR])
    tags = client.get_run(child.data.tags["mlflow.parentRunId"]).data.tags
    return {"wall_s": run.wall_s, "trial_batch": int(tags["trial_batch"]),
            "trial_batch_reason": tags["trial_batch_reason"],
            "trial_epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in finished),
            "best_value": study.best_value}


def compare_sweeps(spec: str, repeats: int, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "batch 1": []}
    for r in range(repeats):
        for name, batch in (("default", None), ("batch 1", 1)):
            runs[name].append(sweep(spec, tmp / f"{spec}-{name}-{r}".replace(":", "_")
                                    .replace(" ", ""), batch))
    walls = {name: statistics.median(x["wall_s"] for x in rows) for name, rows in runs.items()}
    return {"objective": spec, "repeats": repeats, "runs": runs,
            "default_wall_s": walls["default"], "batch1_wall_s": walls["batch 1"],
            "ratio_batch1_over_default": walls["batch 1"] / walls["default"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batch_choice",
                                description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("rate", "sweep", "both"), default="both")
    p.add_argument("--objective", action="append",
                   help=f"objective, repeatable (default: {', '.join(OBJECTIVES[:2])}; the "
                        f"rate part also {OBJECTIVES[2]})")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the rate part")
    p.add_argument("--repeats", type=int, default=1, help="sweeps of each kind (median)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    out: dict[str, Any] = {"rate": [], "sweep": []}
    if args.part in ("rate", "both"):
        for spec in args.objective or OBJECTIVES:
            row = rate(spec, args.epochs)
            out["rate"].append(row)
            print(f"{spec}: {row['batched_trials_per_s']:.3g} trials/s batched, "
                  f"{row['sequential_trials_per_s']:.3g} one at a time "
                  f"({row['speedup']:.2f}x; {row['epochs']} epochs, {TRIALS} trials, "
                  f"{row['threads']} threads); final val_loss differs by at most "
                  f"{row['max_rel_diff_final_val_loss']:.2g} (relative)", flush=True)
    if args.part in ("sweep", "both"):
        with tempfile.TemporaryDirectory(prefix="lrsweep-batch-") as tmp:
            for spec in args.objective or OBJECTIVES[:2]:
                row = compare_sweeps(spec, args.repeats, Path(tmp))
                out["sweep"].append(row)
                last = row["runs"]["default"][-1]
                print(f"{spec}: default sweep {row['default_wall_s']:.1f} s (batches of "
                      f"{last['trial_batch']}), --batch 1 {row['batch1_wall_s']:.1f} s: "
                      f"--batch 1 takes {row['ratio_batch1_over_default']:.2f}x the default's"
                      f" time; {last['trial_batch_reason']}", flush=True)
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
