"""The product's default sweep beside the careful user's hand-written one, on a mini-batch
objective, with the same budget.

    python -m bench.careful_minibatch                         # digits-cnn, 50 trials each
    python -m bench.careful_minibatch --objective digits-cnn \\
        --objective examples.dataset_objective:objective
    python -m bench.careful_minibatch --quick                 # 6 trials of 3 epochs: a smoke run
    python -m bench.careful_minibatch --only careful --also-no-plots

Each side runs as a subprocess on fresh SQLite stores (Optuna and MLflow) in its own temporary
folder, its working directory, and is timed from start to exit: interpreter start, imports,
building the objective and the stores, the trials and whatever the side does at the end. The
CPU seconds of its process tree and its peak memory are kept too (on a shared machine the wall
time also counts the waits for a core).

- careful: ``python -m bench.baseline_minibatch`` (see there what it does, and why it is the
  careful user's best), which uses no part of the product to train or to log;
- lrsweep: ``python -m sweeps.run --objective NAME --study bench --storage ... --tracking-uri
  ...`` with every other setting the product's default (50 trials, the objective's epochs, its
  default pruner, batching where it measures that it pays, the plots at the end);
- lrsweep --no-plots (with ``--also-no-plots``): the same, without the plots.

Same budget: the same number of trials of the same epochs over the same search space, with the
same sampler and seed. The lr intervals are those the objective declares; for an objective that
declares none the product finds them by an LR range test, so the product's sweep runs first and
the careful side is given the intervals it found (the range test's time is the product's alone,
and so are the trials it enqueues at the range test's suggestions). Not the same trials: the
sides prune differently (Optuna's default median pruner asked every epoch, against the
product's default pruner), and TPE's later suggestions follow every earlier outcome, so the work
done differs; the table shows the trial-epochs each side trained.

Afterwards each study is read the same way: trials by state (the product's surplus trials left
out), trial-epochs (the sum of the trials' ``epochs_run``), the best complete trial by validation
loss at its last epoch, its params, and its MLflow run's ``val_accuracy`` and ``test_accuracy``
(only objectives with a test split have one). Prints a table per objective and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .context import REPO
from .procs import CommandRun, run_measured
from .report import write_json

__all__ = ["Outcome", "main", "measure"]

DEFAULT_OUT = REPO / "bench" / "results" / "careful_minibatch.json"
SIDES = ("careful", "lrsweep")
STUDY = "bench"
QUICK = (6, 3)  # trials, epochs of a smoke run
_TRIAL_LINE = re.compile(r"^trial \d+ (complete|pruned|failed)")  # the product's per-trial log


@dataclass(frozen=True)
class Outcome:
    """One side's sweep of one objective: its cost and what it found."""

    side: str
    objective: str
    epochs: int  # per trial
    wall_s: float  # start to exit
    cpu_s: float  # user + system seconds of the process tree
    peak_mib: float  # the largest resident set of any of its processes
    load: tuple[float, float]  # the machine's 1-minute load average before and after
    lr_ranges: dict[str, list[float]] | None  # from the product's range test; None: declared
    states: dict[str, int]  # complete, pruned, failed
    trial_epochs: int  # epochs trained, summed over the trials
    best_trial: int | None  # by validation loss at the last epoch
    best_params: dict[str, Any]
    val_loss: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    log: list[str]  # the command's log lines other than one per trial


def command(side: str, objective: str, folder: Path, n_trials: int, epochs: int | None,
            lr_ranges: dict[str, list[float]] | None) -> list[str]:
    stores = ["--study", STUDY, "--storage", f"sqlite:///{folder}/optuna.db",
              "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
    budget = ["--n-trials", str(n_trials), *(["--epochs", str(epochs)] if epochs else [])]
    if side == "careful":
        given = [f"--lr-range={k}={lo!r}:{hi!r}" for k, (lo, hi) in (lr_ranges or {}).items()]
        return [sys.executable, "-m", "bench.baseline_minibatch", "--objective", objective,
                *stores, *budget, *given]
    plots = ["--no-plots"] if side.endswith("--no-plots") else []
    return [sys.executable, "-m", "sweeps.run", "--objective", objective, *stores, *budget,
            *plots]


def measure(side: str, objective: str, folder: Path, n_trials: int, epochs: int | None,
            default_epochs: int, lr_ranges: dict[str, list[float]] | None = None) -> Outcome:
    """Run ``side``'s sweep of ``objective`` in ``folder`` (the careful one over
    ``lr_ranges`` where given) and read what it left."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    before = os.getloadavg()[0]
    run = run_measured(command(side, objective, folder, n_trials, epochs, lr_ranges),
                       cwd=folder, env=env).check()
    outcome = read(side, objective, folder, run, epochs or default_epochs,
                   (before, os.getloadavg()[0]))
    return replace(outcome, lr_ranges=lr_ranges) if lr_ranges else outcome


def read(side: str, objective: str, folder: Path, run: CommandRun, epochs: int,
         load: tuple[float, float]) -> Outcome:
    """The outcome of the sweep ``run`` left in ``folder``, read the same way for each side."""
    import optuna
    from mlflow import MlflowClient

    from sweeps.study.results import INTERRUPTED_ATTR

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder}/optuna.db")
    trials = [t for t in study.get_trials(deepcopy=False)
              if INTERRUPTED_ATTR not in t.user_attrs]
    states = {name.lower(): sum(t.state.name == name for t in trials)
              for name in ("COMPLETE", "PRUNED", "FAIL")}
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None
                and math.isfinite(t.value)]
    best = min(complete, key=lambda t: (t.value, t.number), default=None)
    metrics: dict[str, float] = {}
    if best is not None:
        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
        metrics = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics
    log = [line for path in sorted(folder.glob("stderr-*.log"))
           for line in path.read_text(errors="replace").splitlines()
           if line.strip() and not _TRIAL_LINE.match(line)]
    return Outcome(
        side, objective, epochs, run.wall_s, sum(p.cpu_s for p in run.processes), run.peak_mib,
        load, study.user_attrs.get("lr_ranges"), states,
        sum(t.user_attrs.get("epochs_run") or 0 for t in trials),
        best.number if best else None, dict(best.params) if best else {},
        best.value if best else None, metrics.get("val_accuracy"), metrics.get("test_accuracy"),
        log)


def table(rows: list[Outcome]) -> str:
    """The sides of one objective, one line each, their params below; then the wall ratio.
    ``s/ep``: wall seconds per trial-epoch, fixed costs (start-up, stores, plots) included."""
    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    head = (f"{'side':<19}{'wall s':>8}{'cpu s':>8}{'MiB':>6}{'trial-ep':>10}{'s/ep':>6}"
            f"{'C/P/F':>10}{'best':>6}{'val_loss':>10}{'val_acc':>9}{'test_acc':>10}")
    lines = [f"{rows[0].objective}: {rows[0].epochs} epochs a trial", head, "-" * len(head)]
    for r in rows:
        states = "/".join(str(r.states[k]) for k in ("complete", "pruned", "fail"))
        lines.append(f"{r.side:<19}{r.wall_s:>8.1f}{r.cpu_s:>8.1f}{r.peak_mib:>6.0f}"
                     f"{r.trial_epochs:>10}{r.wall_s / max(1, r.trial_epochs):>6.2f}{states:>10}"
                     f"{num(r.best_trial, 'd'):>6}"
                     f"{num(r.val_loss, '.4f'):>10}{num(r.val_accuracy, '.4f'):>9}"
                     f"{num(r.test_accuracy, '.4f'):>10}")
    for r in rows:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r.best_params.items())
        lines.append(f"  {r.side} best params: {params or '-'}  (load {r.load[0]:.1f} before, "
                     f"{r.load[1]:.1f} after)")
    by_side = {r.side: r for r in rows}
    if "careful" in by_side and "lrsweep" in by_side:
        careful, product = by_side["careful"], by_side["lrsweep"]
        per_epoch = ((careful.wall_s / max(1, careful.trial_epochs))
                     / (product.wall_s / max(1, product.trial_epochs)))
        lines.append(f"  wall time careful/lrsweep: {careful.wall_s / product.wall_s:.2f} "
                     f"(per trial-epoch: {per_epoch:.2f})")
    return "\n".join(lines)


def _revision() -> str:
    """The product's commit, with ``+changes`` where its code differs from it (the sweeps
    measured ran the working tree)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout
    changed = git("status", "--porcelain", "--", "sweeps", "objectives", "tracking").strip()
    return git("rev-parse", "--short", "HEAD").strip() + ("+changes" if changed else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.careful_minibatch",
                                description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--objective", action="append",
                   help="objective name or pkg.module:attr, repeatable (default: digits-cnn)")
    p.add_argument("--n-trials", type=int, help="trials per sweep (default: 50)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the objective's)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK[0]} trials of {QUICK[1]} epochs unless given")
    p.add_argument("--only", choices=SIDES, help="run one side only (default: both)")
    p.add_argument("--also-no-plots", action="store_true",
                   help="also run the product's sweep with --no-plots")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON results file (default: {DEFAULT_OUT.relative_to(REPO)})")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    n_trials = args.n_trials or (QUICK[0] if args.quick else 50)
    epochs = args.epochs or (QUICK[1] if args.quick else None)
    for flag, value in (("n-trials", n_trials), ("epochs", epochs)):
        if value is not None and value < 1:
            p.error(f"--{flag} must be at least 1 but got {value}")
    sides = [] if args.only == "careful" else ["lrsweep"]  # first: it may find the intervals
    if args.also_no_plots and args.only != "careful":
        sides.append("lrsweep --no-plots")
    sides += [] if args.only == "lrsweep" else ["careful"]
    from objectives import build

    rows: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lrsweep-careful-") as tmp:
        for objective in args.objective or ["digits-cnn"]:
            default_epochs = build(objective).default_epochs
            found: list[Outcome] = []
            for i, side in enumerate(sides):
                folder = Path(tmp) / f"{len(rows) + i}-{side.split()[0]}"
                folder.mkdir()
                ranges = next((r.lr_ranges for r in found if r.lr_ranges), None)
                found.append(measure(side, objective, folder, n_trials, epochs,
                                     default_epochs, ranges))
            print(table(found), end="\n\n", flush=True)
            rows += found
    write_json(args.out, {"command": " ".join(["python -m bench.careful_minibatch",
                                                *(sys.argv[1:] if argv is None else argv)]),
                          "n_trials": n_trials, "revision": _revision(), "cpus": os.cpu_count(),
                          "load_average": os.getloadavg(), "rows": [asdict(r) for r in rows]})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
