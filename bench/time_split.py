"""Where the time of a default sweep goes: training, metric writing, Optuna, MLflow runs,
plots, and the fixed costs of start-up and end.

    python -m bench.time_split                 # the default 50-trial sweep (~3 minutes)
    python -m bench.time_split --n-trials 20

Three runs of the same sweep (same seed, so the same trials; fresh stores each), each timed
with the CPU seconds of every process of its tree (sampled from ``/proc``):

- ``default``: ``python -m sweeps.run --n-trials N`` as a user runs it;
- ``no plots``: with ``--no-plots``: its only child process is the metric writer, so that
  child's CPU is the metric writing, and the wall-time difference to ``default`` is the plots'
  cost at the end;
- ``no metric rows``: with ``--no-plots --log-every 100000`` (one row per metric and trial):
  the main process's CPU difference to ``no plots`` is what queueing the metric rows costs it.

The main process of a fourth run, identical to ``no metric rows``, runs under ``cProfile``,
which splits its time by where our code enters a library: Optuna (its import, ask, tell,
reports, pruning, attributes; its SQL included), MLflow (its import, creating and closing
runs, params, tags), and
training (``train_batch``, less the Optuna and MLflow calls made from inside it). The profiler
slows Python-heavy code, so these are shares of the profiled run's main process, printed
beside its wall time. Start-up and end come from the ``no plots`` run's study: from the
command's start to its first trial's start, and from its last trial's end to the command's
exit.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .context import REPO
from .procs import CommandRun, run_measured

__all__ = ["main"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _cpu(run: CommandRun) -> dict[str, float]:
    out: dict[str, float] = {}
    for proc in run.processes:
        out[proc.role] = out.get(proc.role, 0.0) + proc.cpu_s
    return {k: round(v, 2) for k, v in out.items()}


def _sweep(where: Path, n_trials: int, *extra: str,
           profile: Path | None = None) -> tuple[CommandRun, float]:
    """The sweep and the epoch time at which it started."""
    where.mkdir(parents=True)
    python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    argv = [*python, "-m", "sweeps.run", "--n-trials", str(n_trials), "--quiet", "--seed", "0",
            *extra]
    started = time.time()
    return run_measured(argv, cwd=where, env=_env()).check(), started


def _study_span(where: Path) -> tuple[float, float]:
    """Epoch seconds of the first trial's start and of the last trial's end."""
    import optuna

    storage = f"sqlite:///{where}/mlruns/optuna.db"
    study = optuna.load_study(study_name="rebalance", storage=storage)
    starts = [t.datetime_start.timestamp() for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete]
    return min(starts), max(ends)


def _package(filename: str) -> str | None:
    for name in ("optuna", "mlflow"):
        if f"/{name}/" in filename and "site-packages" in filename:
            return name
    return None


def _entries(stats: pstats.Stats, package: str, inside: str | None = None) -> float:
    """Seconds spent in ``package`` when called from this repository's code (from a
    function of file ``inside`` only, if given)."""
    total = 0.0
    for func, (_, _, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if _package(func[0]) != package:
            continue
        for caller, (_, _, _, cumulative) in callers.items():
            ours = caller[0].startswith(str(REPO)) and "site-packages" not in caller[0]
            if ours and (inside is None or caller[0].endswith(inside)):
                total += cumulative
    return total


def _cumulative(stats: pstats.Stats, filename: str, name: str) -> float:
    for func, (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func[0].endswith(filename) and func[2] == name:
            return float(cumulative)
    return 0.0


def profile_split(path: Path) -> dict[str, float]:
    stats = pstats.Stats(str(path))
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    training = _cumulative(stats, "sweeps/batched/trials.py", "train_batch")
    in_training = sum(_entries(stats, pkg, inside)
                      for pkg in ("optuna", "mlflow")
                      for inside in ("sweeps/study/reporter.py", "sweeps/study/prune_view.py",
                                     "sweeps/study/reaper.py", "tracking/study_run.py"))
    optuna_s = _entries(stats, "optuna")
    mlflow_s = _entries(stats, "mlflow")
    split = {"training": training - in_training, "optuna (import, ask, tell, reports)": optuna_s,
             "mlflow (import, runs, params, tags)": mlflow_s}
    split["other (torch import, start-up, our code)"] = total - sum(split.values())
    return {k: round(v, 2) for k, v in {"profiled main process": total, **split}.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.time_split",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n-trials", type=int, default=50)
    p.add_argument("--out", type=Path,
                   default=REPO / "bench" / "results" / "time_split.json")
    args = p.parse_args(argv)
    n = args.n_trials
    with tempfile.TemporaryDirectory(prefix="time-split-") as scratch:
        root = Path(scratch)
        default, _ = _sweep(root / "default", n)
        no_plots, started = _sweep(root / "no-plots", n, "--no-plots")
        first, last = _study_span(root / "no-plots")
        sparse = ("--no-plots", "--log-every", "100000")
        no_rows, _ = _sweep(root / "no-rows", n, *sparse)
        profiled, _ = _sweep(root / "profiled", n, *sparse, profile=root / "main.prof")
        split = profile_split(root / "main.prof")
    ended = started + no_plots.wall_s
    result: dict[str, Any] = {
        "n_trials": n, "cores": os.cpu_count(),
        "wall_s": {"default": round(default.wall_s, 2), "no plots": round(no_plots.wall_s, 2),
                   "no metric rows": round(no_rows.wall_s, 2),
                   "profiled (no metric rows)": round(profiled.wall_s, 2)},
        "cpu_s": {"default": _cpu(default), "no plots": _cpu(no_plots),
                  "no metric rows": _cpu(no_rows)},
        "fixed_s": {"start-up (command start to first trial)": round(first - started, 2),
                    "end (last trial to exit)": round(ended - last, 2)},
        "plots_s (wall, default - no plots)": round(default.wall_s - no_plots.wall_s, 2),
        "metric_writer_cpu_s (no plots' child)": _cpu(no_plots).get("child", 0.0),
        "main_profile_s": split,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
