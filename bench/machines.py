"""Two machines simulated on one: two independent ``python -m sweeps.run`` processes, each
pinned to its own core (``taskset -c 0``, ``taskset -c 1``), on one PostgreSQL study and one
``mlflow server`` (its database PostgreSQL too), against one such process pinned to one core
running the same total of trials.

Both sides follow the README's recipe: the study is created once by a one-trial run (not
timed), then the worker command (``--n-trials TOTAL --storage ... --tracking-uri ...
--tracking-db ...``) runs on each "machine"; once as it is, every epoch logged, then with
``--log-every 10``, a tenth of the rows for PostgreSQL to insert. Each process sees one core, so the thread rule
gives torch one intra-op thread there (checked: every timed trial's stack records 1 thread).
After each run the study and the server's database are checked: the study counts exactly
TOTAL finished trials, the server holds exactly one child run per trial that started one (the
same TOTAL, none RUNNING), and every logged epoch of every trial (``loss`` rows per run); the
metric rows in the server's database are counted.

Rates: trials per second end to end (the timed trials / the wall time from starting the
process(es) to the last exit) and steady state (the sum over the processes of each one's
trials / (its last trial's end - its first trial's start), from the study's timestamps), and
epochs per second end to end (epochs actually trained, which the pruner varies). The mlflow
server and PostgreSQL run on the same two cores as the workers: each run also records the CPU
seconds of the sweeps' processes, of the server, of PostgreSQL, and of the machine as a whole
(the rest is other work on the machine, which the two-core side misses more than the other).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .cpu import family_cpu_s, machine_busy_s, postmaster_pid
from .server_rows import loss_rows_complete, metric_rows

__all__ = ["CORES", "EVERY", "TOTAL", "measure"]

TOTAL = 51  # one trial when the study is created, then two batches of 25 (the default batch)
CORES = ("0", "1")  # one process per core: the "machines"
EVERY = (1, 10)  # --log-every of the worker command: every epoch (the recipe), then a tenth


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.run", "--quiet", *args]


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1"}


def _run_pinned(repo: Path, where: Path, cores: tuple[str, ...],
                args: list[str]) -> tuple[float, float]:
    """Start one ``sweeps.run`` per core of ``cores``, pinned there, each in its own folder;
    the wall seconds until the last one exits (each must succeed), and the CPU seconds of
    the processes (their children included)."""
    procs = []
    cpu = 0.0
    start = time.perf_counter()
    for core in cores:
        folder = where / f"core{core}"
        folder.mkdir(parents=True)
        log = open(folder / "stderr.log", "wb")  # closed below, once the process exits
        procs.append((subprocess.Popen(["taskset", "-c", core, *_command(*args)], cwd=folder,
                                       env=_env(repo), stdout=subprocess.DEVNULL,
                                       stderr=log), log, folder))
    for proc, log, _ in procs:
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, for its resource usage
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        log.close()
    wall = time.perf_counter() - start
    for proc, _, folder in procs:
        if proc.returncode != 0:
            tail = (folder / "stderr.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"sweeps.run in {folder} exited {proc.returncode}:\n{tail}")
    return wall, cpu


def _study_figures(storage: str, wall_s: float) -> dict[str, Any]:
    """Checks and rates read from the study: the timed trials are those of the workers (all
    but the creating run's)."""
    import optuna

    from sweeps.study.results import RUN_ID_ATTR, STACK_ATTR, counted_trials

    study = optuna.load_study(study_name="rebalance", storage=storage)
    counted = counted_trials(study)
    if len(counted) != TOTAL:
        raise RuntimeError(f"the study counts {len(counted)} finished trials, not {TOTAL}")
    first = min(counted, key=lambda t: t.number)
    timed = [t for t in counted if t.number != first.number]
    threads = {t.user_attrs.get(STACK_ATTR, {}).get("threads") for t in timed}
    if threads != {1}:
        raise RuntimeError(f"torch threads of the pinned workers' trials: {threads}, not {{1}}")
    spans: dict[str, list[Any]] = defaultdict(list)
    for t in timed:
        spans[t.user_attrs["worker"]].append(t)
    steady = sum(len(ts) / (max(t.datetime_complete for t in ts)
                            - min(t.datetime_start for t in ts)).total_seconds()
                 for ts in spans.values())
    epochs = sum(int(t.user_attrs.get("epochs_run") or 0) for t in timed)
    return {"processes": len(spans), "trials": len(timed), "epochs": epochs,
            "wall_s": wall_s, "trials_per_s": len(timed) / wall_s,
            "steady_trials_per_s": steady, "epochs_per_s": epochs / wall_s,
            "run_ids": {t.user_attrs[RUN_ID_ATTR] for t in counted}}


def _check_runs(url: str, run_ids: set[str], database: str, every: int) -> None:
    """One child run per counted trial, none RUNNING, every epoch (every ``every``-th) in the
    server's database."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("rebalance")
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    if {r.info.run_id for r in children} != run_ids or len(children) != len(run_ids):
        raise RuntimeError(f"{len(children)} child runs for {len(run_ids)} trials with a run")
    if any(r.info.status == "RUNNING" for r in runs):
        raise RuntimeError("a run was left RUNNING")
    if not loss_rows_complete(database, "rebalance", every):
        raise RuntimeError("the server's database misses epochs")


def _one_run(repo: Path, where: Path, cores: tuple[str, ...], every: int, postgres: Any,
             tag: str) -> dict[str, Any]:
    """Create the study (one trial, as the recipe does), then run the worker command on
    ``cores``, timed and checked."""
    from tests.servers import MlflowServer

    database = postgres.create_database(f"machines_mlflow_{tag}")
    storage = postgres.create_database(f"machines_study_{tag}")
    with MlflowServer(database) as server:
        create = where / "create"
        create.mkdir(parents=True)
        subprocess.run(_command("--n-trials", "1", "--storage", storage,
                                "--tracking-uri", server.url, "--log-every", str(every)),
                       cwd=create, env=_env(repo), check=True, stdout=subprocess.DEVNULL)
        assert server.proc is not None
        services = (server.proc.pid, postmaster_pid(postgres.data_dir))
        before = [family_cpu_s(pid) for pid in services] + [machine_busy_s()]
        wall, sweeps = _run_pinned(repo, where, cores, [
            "--n-trials", str(TOTAL), "--storage", storage, "--tracking-uri", server.url,
            "--tracking-db", database, "--log-every", str(every)])
        after = [family_cpu_s(pid) for pid in services] + [machine_busy_s()]
        figures = _study_figures(storage, wall)
        used = [b - a for a, b in zip(before, after)]
        figures["cpu_s"] = {"sweeps": sweeps, "server": used[0], "postgres": used[1],
                            "machine": used[2],
                            "other work": used[2] - sweeps - sum(used[:2])}
        figures["metric_rows"] = metric_rows(database)
        _check_runs(server.url, figures.pop("run_ids"), database, every)
    return figures


def measure(repos: dict[str, Path], repeats: int, scratch: Path) -> dict[str, Any]:
    """Each repetition runs one core then two, for each ``--log-every`` of ``EVERY``."""
    from tests.servers import PostgresCluster

    out: dict[str, Any] = {}
    with PostgresCluster() as postgres:
        for label, repo in repos.items():
            out[label] = {}
            for every in EVERY:
                runs: dict[str, list[dict[str, Any]]] = {"one core": [], "two cores": []}
                for i in range(repeats):
                    for name, cores in (("one core", CORES[:1]), ("two cores", CORES)):
                        tag = f"{label}_{every}_{i}_{len(cores)}"
                        runs[name].append(_one_run(repo, scratch / tag, cores, every,
                                                   postgres, tag))
                        print(f"--log-every {every}, {name}: {runs[name][-1]}",
                              file=sys.stderr, flush=True)
                out[label][f"--log-every {every}"] = {"runs": runs,
                                                      "speedup": _speedups(runs)}
    return out


def _speedups(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Two cores against one, per rate: the ratio of the medians."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    return {key: median("two cores", key) / median("one core", key)
            for key in ("trials_per_s", "steady_trials_per_s", "epochs_per_s")}
