"""Scale-out: the default sweep against a tracking server, ``--workers 2`` against 1, and two
machines simulated on one.

    python -m bench.scale_out                      # every part (about 15 minutes on 2 cores)
    python -m bench.scale_out --only tracking      # or: workers, machines
    python -m bench.scale_out --before ../old      # also time another checkout, side by side

``tracking``: the 20-trial default sweep (``python -m sweeps.run --n-trials 20``) on the local
SQLite store, in a fresh folder (a first sweep, which creates MLflow's tables) and where
``mlruns/mlflow.db`` exists already (its tables created untimed, as a server's are); then
against a real ``mlflow server`` on 127.0.0.1 whose database is PostgreSQL, with
``--tracking-db`` naming that database (the README's recipe), then through the server's
``log_batch`` with ``--log-every 10`` (what a setup that reaches only the HTTP endpoint
pays, for a tenth of the rows). Each server run is checked to hold every epoch of every trial
it should (``loss`` rows per run, read in the server's database). Needs PostgreSQL's server
binaries (``initdb``, ``pg_ctl``).

``workers``: end to end with ``--workers 1`` and ``--workers 2`` (default settings otherwise:
what a user runs), fresh stores each: the default 50-trial sweep, and 20 trials of
``--objective digits-cnn``; with the CPU seconds that other work on the machine used meanwhile
(the machine's busy time less the sweep's processes').

``machines``: two ``sweeps.run`` processes pinned to a core each, on one PostgreSQL study and
one tracking server, against one pinned process running the same trials (``bench.machines``).

Commands of a part run in turn, ``--repeats`` times; each figure is the median. ``--before``
runs every command a second time with another checkout on ``PYTHONPATH`` (a ``git worktree``
of an older commit), so before and after are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import REPO
from .cpu import family_cpu_s, machine_busy_s, postmaster_pid
from .procs import CommandRun, run_measured
from .server_rows import loss_rows_complete

__all__ = ["main"]

TRACKING_TRIALS = 20
# the sweeps the workers part times: a name, then the arguments of sweeps.run
WORKER_SWEEPS = {"default, 50 trials": ("--n-trials", "50"),
                 "digits-cnn, 20 trials": ("--objective", "digits-cnn", "--n-trials", "20")}


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1"}


def _sweep(repo: Path, where: Path, *args: str) -> CommandRun:
    """``python -m sweeps.run --quiet args``, run in ``where`` and measured."""
    where.mkdir(parents=True, exist_ok=True)
    return run_measured([sys.executable, "-m", "sweeps.run", "--quiet", *args], cwd=where,
                        env=_env(repo)).check()


def _existing_store(repo: Path, where: Path) -> Path:
    """``where``, holding the default local MLflow store with its tables created (a sweep
    there pays no schema set-up, like one against a running server)."""
    (where / "mlruns").mkdir(parents=True)
    code = ("import sys; from mlflow import MlflowClient; "
            "MlflowClient(sys.argv[1]).search_runs(['0'])")
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{where}/mlruns/mlflow.db"],
                   env=_env(repo), check=True, stdout=subprocess.DEVNULL)
    return where


def _median(times: list[float]) -> float:
    return statistics.median(times)


def tracking(repos: dict[str, Path], repeats: int, scratch: Path) -> dict[str, Any]:
    """Each repetition runs every variant of every checkout in turn (A B A B), so that a
    change in the machine's load falls on all of them alike."""
    sys.path.insert(0, str(REPO))
    from tests.servers import PostgresCluster

    variants = ("local", "local, existing store", "tracking-db", "log_batch, --log-every 10")
    times: dict[str, dict[str, list[float]]] = {
        label: {v: [] for v in variants} for label in repos}
    cpu: dict[str, dict[str, list[dict[str, float]]]] = {
        label: {v: [] for v in variants} for label in repos}
    with PostgresCluster() as postgres:
        for i in range(repeats):
            for label, repo in repos.items():
                for variant in variants:
                    where = scratch / f"{label}-{variants.index(variant)}-{i}"
                    wall, used = _tracking_variant(variant, repo, where, postgres,
                                                   f"{label}_{i}_{variants.index(variant)}")
                    times[label][variant].append(wall)
                    cpu[label][variant].append(used)
                    print(f"{label}, {variant}: {wall:.1f} s, CPU s {used}", file=sys.stderr,
                          flush=True)
    out: dict[str, Any] = {}
    for label in repos:
        medians = {k: _median(v) for k, v in times[label].items()}
        out[label] = {"seconds": times[label], "median_s": medians, "cpu_s": cpu[label], **{
            f"ratio_to_{base}": {k: v / medians[base] for k, v in medians.items()}
            for base in ("local", "local, existing store")}}
    return out


def _tracking_variant(variant: str, repo: Path, where: Path, postgres: Any,
                      tag: str) -> tuple[float, dict[str, float]]:
    """One 20-trial sweep of ``variant``: its wall seconds, and the CPU seconds of the
    sweep's processes, of the tracking server and of PostgreSQL while it ran."""
    from tests.servers import MlflowServer

    trials = ("--n-trials", str(TRACKING_TRIALS))
    if variant.startswith("local"):
        if variant == "local, existing store":
            _existing_store(repo, where)
        run = _sweep(repo, where, *trials)
        return run.wall_s, {"sweep": sum(p.cpu_s for p in run.processes)}
    database = postgres.create_database(f"mlflow_{tag}")
    study = postgres.create_database(f"study_{tag}")
    with MlflowServer(database) as server:
        assert server.proc is not None
        postmaster = postmaster_pid(postgres.data_dir)
        before = family_cpu_s(server.proc.pid), family_cpu_s(postmaster)
        extra = ("--tracking-db", database) if variant == "tracking-db" else ("--log-every", "10")
        run = _sweep(repo, where, *trials, "--storage", study, "--tracking-uri", server.url,
                     *extra)
        after = family_cpu_s(server.proc.pid), family_cpu_s(postmaster)
        if variant == "tracking-db" and not loss_rows_complete(database, "rebalance"):
            raise RuntimeError("the server's database misses epochs")
    return run.wall_s, {"sweep": sum(p.cpu_s for p in run.processes),
                        "server": after[0] - before[0], "postgres": after[1] - before[1]}


def workers(repos: dict[str, Path], repeats: int, scratch: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, repo in repos.items():
        out[label] = {}
        for name, args in WORKER_SWEEPS.items():
            times: dict[str, list[float]] = {"workers 1": [], "workers 2": []}
            other: dict[str, list[float]] = {"workers 1": [], "workers 2": []}
            for i in range(repeats):
                for n in (1, 2):
                    where = scratch / f"{label}-{args[1]}-w{n}-{i}"
                    busy = machine_busy_s()
                    run = _sweep(repo, where, *args, "--workers", str(n))
                    times[f"workers {n}"].append(run.wall_s)
                    other[f"workers {n}"].append(machine_busy_s() - busy
                                                 - sum(p.cpu_s for p in run.processes))
                    print(f"{label}, {name}, --workers {n}: {run.wall_s:.1f} s (other work "
                          f"{other[f'workers {n}'][-1]:.1f} CPU s)", file=sys.stderr, flush=True)
            medians = {k: _median(v) for k, v in times.items()}
            out[label][name] = {"seconds": times, "median_s": medians,
                                "other_work_cpu_s": other,
                                "speedup": medians["workers 1"] / medians["workers 2"]}
    return out


def machines(repos: dict[str, Path], repeats: int, scratch: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))  # tests.servers
    from .machines import measure

    return measure(repos, repeats, scratch)


PARTS: dict[str, Callable[[dict[str, Path], int, Path], dict[str, Any]]] = {
    "tracking": tracking, "workers": workers, "machines": machines}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_out",
                                description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=tuple(PARTS), help="run one part")
    p.add_argument("--repeats", type=int, default=1, help="runs of each command (median)")
    p.add_argument("--before", type=Path, help="another checkout to time side by side")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale_out.json")
    args = p.parse_args(argv)
    repos = {"this": REPO}
    if args.before:
        repos["before"] = args.before.resolve()
    results: dict[str, Any] = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="scale-out-") as scratch:
        for name, part in PARTS.items():
            if args.only in (None, name):
                results[name] = part(repos, args.repeats, Path(scratch) / name)
                print(json.dumps({name: results[name]}, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
