"""Issue 5, scenarios 4 and 5: workers started at the same instant on one study (journal
file, PostgreSQL), and the multi-machine recipe (PostgreSQL study storage, ``mlflow server``
tracking, separate ``sweeps.run`` processes). Afterwards the study holds exactly its target,
every trial ran once, and the study and the MLflow runs agree one to one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import MlflowServer, PostgresCluster

from .helpers import (
    NO_PLOTS,
    SEQUENTIAL,
    Processes,
    assert_study_and_runs_agree,
    counted,
    journal_url,
    load_study,
    load_trials,
    mlflow_runs,
    one_line,
    tracking_url,
)

pytestmark = pytest.mark.slow

# Short trials (about a third of a second): the workers race on the storage, yet the main
# process, which runs trials from the start, cannot finish the study before its helpers
# arrive (forked, they start trials about a second after it).
QUICK = ["--epochs", "3000", "--optimizers", "adam,sgd", "--schedulers", "none,cosine",
         "--quiet", *NO_PLOTS, *SEQUENTIAL]
# Quadratic with an lr range that reaches divergence: COMPLETE, PRUNED and FAIL trials.
MIXED = ["--objective", "tests.toy_objectives:Quadratic", "--epochs", "2000",
         "--optimizers", "sgd,adam", "--schedulers", "none", "--lr-min", "1e-3",
         "--lr-max", "1e2", "--sampler", "random", "--pruner", "median", "--quiet", *NO_PLOTS,
         *SEQUENTIAL, "--no-prune-stalled"]  # diverging trials run on to fail (FAIL states)


def _database(postgres: PostgresCluster, prefix: str) -> str:
    return postgres.create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")


# Two workers on the journal (the --workers default) start together in
# test_kills.py::test_kill_9_of_one_worker_..., which checks the same invariants.
@pytest.mark.parametrize(("backend", "workers"), [("journal", 4), ("postgres", 2),
                                                  ("postgres", 4)])
def test_workers_started_together_run_each_trial_once_and_stop_at_the_target(
        backend: str, workers: int, workdir: Path, processes: Processes,
        request: pytest.FixtureRequest) -> None:
    target = 24
    if backend == "journal":
        url, storage = journal_url(workdir), []  # --workers' default storage
    else:
        url = _database(request.getfixturevalue("postgres"), "workers")
        storage = ["--storage", url]
    args = ["--study", "race", "--workers", str(workers), "--n-trials", str(target), *storage,
            *QUICK]

    done = processes.run(workdir, *args, timeout=240)

    assert done.rc == 0, done.stderr[-3000:]
    trials = load_trials(url, "race")
    assert len(counted(trials)) == target
    workers_seen = {t.user_attrs["worker"] for t in counted(trials)}
    assert len(workers_seen) >= 2, "the trials were not shared between workers"
    parent = load_study(url, "race").user_attrs["mlflow_parent_run_id"]
    runs = mlflow_runs(tracking_url(workdir), "race")
    assert_study_and_runs_agree(trials, runs, parent_id=parent)


def test_separate_processes_on_postgres_and_an_mlflow_server_agree_one_to_one(
        postgres: PostgresCluster, make_mlflow_server: Callable[[str], MlflowServer],
        tmp_path: Path, processes: Processes) -> None:
    """The multi-machine recipe: every process points at one PostgreSQL study storage and one
    tracking server (itself backed by PostgreSQL). The first command creates the study, then
    two more start at the same instant on it."""
    server = make_mlflow_server(_database(postgres, "tracking"))
    storage = _database(postgres, "study")
    common = ["--study", "scale", "--storage", storage, "--tracking-uri", server.url, *MIXED]
    homes = [tmp_path / f"machine-{i}" for i in range(3)]
    for home in homes:
        home.mkdir()

    first = processes.run(homes[0], *common, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    racing = [processes.start(home, *common, "--n-trials", "10") for home in homes[1:]]
    for proc in racing:
        assert proc.wait(240) == 0, proc.stderr[-3000:]

    trials = load_trials(storage, "scale")
    assert len(counted(trials)) == 10
    ran_by = [t.user_attrs["worker"] for t in sorted(counted(trials), key=lambda t: t.number)]
    assert len(set(ran_by[1:]) - {ran_by[0]}) == 2  # both racers ran trials
    assert {"COMPLETE", "FAIL"} <= {t.state.name for t in counted(trials)}
    parent = load_study(storage, "scale").user_attrs["mlflow_parent_run_id"]
    runs = mlflow_runs(server.url, "scale")
    assert_study_and_runs_agree(trials, runs, parent_id=parent)
    assert runs.parents[0].info.status == "FINISHED"
    for home in homes:  # nothing local: the servers hold everything
        assert not (home / "mlruns").exists()


def test_the_recipe_writes_metrics_into_the_servers_database_readable_through_its_api(
        postgres: PostgresCluster, make_mlflow_server: Callable[[str], MlflowServer],
        tmp_path: Path, processes: Processes) -> None:
    """The README's recipe as written: PostgreSQL for the study and for the tracking server
    (proxied artifacts), two workers as separate processes naming the server's database with
    ``--tracking-db``. Each writes its per-epoch metrics there directly; every value, the
    plots and the export are reachable through the server."""
    tracking_db = _database(postgres, "tracking")
    server = make_mlflow_server(tracking_db)
    storage = _database(postgres, "study")
    loud = [a for a in MIXED if a not in ("--quiet", *NO_PLOTS)]  # its log lines, its plots
    common = ["--study", "recipe", "--storage", storage, "--tracking-uri", server.url,
              "--tracking-db", tracking_db, *loud]
    homes = [tmp_path / f"machine-{i}" for i in range(3)]
    for home in homes:
        home.mkdir()
    first = processes.run(homes[0], *common, "--n-trials", "1")
    assert first.rc == 0, first.stderr[-3000:]
    racing = [processes.start(home, *common, "--n-trials", "6") for home in homes[1:]]
    for proc in racing:
        assert proc.wait(240) == 0, proc.stderr[-3000:]
        assert "per-epoch metrics are written straight into the tracking server's database" \
            in proc.stderr

    trials = load_trials(storage, "recipe")
    assert len(counted(trials)) == 6
    runs = mlflow_runs(server.url, "recipe")  # through the server's REST API
    assert_study_and_runs_agree(trials, runs, parent_id=None)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete
    for trial in complete:
        epochs = trial.user_attrs["epochs_run"]
        history = runs.client.get_metric_history(trial.user_attrs["mlflow_run_id"], "loss")
        assert sorted(m.step for m in history) == list(range(epochs)), trial.number
    parent = runs.parents[0].info.run_id
    artifacts = {a.path for a in runs.client.list_artifacts(parent)}
    assert {"best_params.json", "trials.csv", "plots"} <= artifacts
    assert runs.client.list_artifacts(parent, "plots"), "no plots behind the server"


def test_a_database_that_is_not_the_servers_is_refused_in_one_line_and_left_untouched(
        postgres: PostgresCluster, make_mlflow_server: Callable[[str], MlflowServer],
        tmp_path: Path, processes: Processes) -> None:
    """``--tracking-db`` naming an unrelated PostgreSQL database: one line that says so (its
    password masked), nothing written there, every metric through the server instead."""
    server = make_mlflow_server(_database(postgres, "tracking"))
    unrelated = _database(postgres, "unrelated")
    secret = "pw-not-to-be-seen"
    named = unrelated.replace(f"{postgres.user}@", f"{postgres.user}:{secret}@")
    args = ["--study", "elsewhere", "--storage", _database(postgres, "study"),
            "--tracking-uri", server.url, "--tracking-db", named, "--n-trials", "3",
            *[a for a in MIXED if a != "--quiet"]]

    done = processes.run(tmp_path, *args)

    assert done.rc == 0, done.stderr[-3000:]
    assert secret not in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("tracking-db ")]
    assert said == [f"tracking-db {named.replace(secret, '***')}: not a database whose MLflow "
                    "schema this version writes; per-epoch metrics go through the tracking "
                    "server"]
    engine = sa.create_engine(unrelated, poolclass=sa.NullPool)
    assert sa.inspect(engine).get_table_names() == []  # nothing written there
    engine.dispose()
    trials = load_trials(args[3], "elsewhere")
    runs = mlflow_runs(server.url, "elsewhere")
    assert_study_and_runs_agree(trials, runs)
    for run in runs.all:
        assert not [v for v in (*run.data.params.values(), *run.data.tags.values())
                    if secret in v]
    for trial in (t for t in trials if t.state.name == "COMPLETE"):
        history = runs.client.get_metric_history(trial.user_attrs["mlflow_run_id"], "loss")
        assert len(history) == trial.user_attrs["epochs_run"]


def _session_processes(sid: int) -> list[str]:
    """Names of the live processes of session ``sid`` (the tests start each command in one)."""
    names = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            names.append((stat.parent / "comm").read_text().strip())
    return names


def test_workers_that_cannot_open_the_sweep_leave_one_line_and_no_helper(
        workdir: Path, processes: Processes) -> None:
    """The helpers are forked before the sweep is opened: when opening fails (an objective
    that does not exist), they are ended with the command, which says so in one line."""
    proc = processes.start(workdir, "--workers", "3", "--objective", "tests.nosuch:Thing",
                           *QUICK)
    assert proc.wait(120) == 2
    assert "objective" in one_line(proc.stderr)
    assert _session_processes(proc.pid) == []
    assert not (workdir / "mlruns" / "optuna.journal").exists()  # nothing written


@pytest.mark.parametrize("workers", [1, 2])
def test_a_finished_command_leaves_each_sqlite_file_whole(
        workers: int, workdir: Path, processes: Processes) -> None:
    """The sweep closes its connections when it ends, after the summary it prints: each
    SQLite file (the study's and MLflow's) holds everything, no write-ahead log is left
    beside it, however quickly the process then exits."""
    storage = ["--storage", "sqlite:///mlruns/optuna.db"] if workers == 1 else []  # journal
    done = processes.run(workdir, "--study", "whole", "--workers", str(workers),
                         "--n-trials", "4", *storage, *[a for a in QUICK if a != "--quiet"])
    assert done.rc == 0, done.stderr[-3000:]
    files = sorted(p.name for p in (workdir / "mlruns").iterdir() if p.is_file())
    assert "mlflow.db" in files and ("optuna.db" in files or workers > 1)
    assert "top 4 of 4 trials" in done.stdout  # the summary was printed
    assert not [name for name in files if name.endswith(("-wal", "-shm"))], files
    runs = mlflow_runs(tracking_url(workdir), "whole")
    assert len(runs.children) == 4
