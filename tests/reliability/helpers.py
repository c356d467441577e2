"""Real ``python -m sweeps.run`` processes, and read-only views of what they leave in the
Optuna storage and the MLflow store.

Processes run in their own session (so a worker pool can be torn down as a group), with the
repository root on ``PYTHONPATH`` (``tests.toy_objectives:Quadratic`` and
``tests.bad_objectives:...`` are imported by the child), stdout and stderr in files next to
the test's folder (a pipe nobody reads can block a chatty child).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from optuna.trial import FrozenTrial, TrialState

from sweeps.study.config import SweepConfig

REPO = Path(__file__).resolve().parents[2]
PARENT_TAG = "mlflow.parentRunId"
INTERRUPTED = "interrupted"
# Optuna's terminal state -> the MLflow run status SPEC section 6 requires.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# One trial at a time where a scenario needs "the" running trial (trials are batched
# together by default where the product supports it).
_OPTIONS = {f.name for f in fields(SweepConfig)}
SEQUENTIAL = ["--batch", "1"] if "batch" in _OPTIONS else []
# Plots cost a few seconds per run and are not what these tests are about.
NO_PLOTS = ["--no-plots"] if "plots" in _OPTIONS else []
# The rebalance objective with Adam and no pruning: 3,000 epochs last about a second.
ADAM = ["--optimizers", "adam", "--schedulers", "none", "--pruner", "none", "--quiet",
        *NO_PLOTS]

optuna.logging.set_verbosity(optuna.logging.WARNING)
_counter = itertools.count()


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A started command; its output goes to ``out`` and ``err``."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass(frozen=True)
class Done:
    rc: int
    stdout: str
    stderr: str
    seconds: float


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


class Processes:
    """Starts commands and, at teardown, kills the process groups of those still alive."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Proc] = []

    def start(self, cwd: Path, *args: str, module: str = "sweeps.run") -> Proc:
        n = next(_counter)
        out, err = self.logs / f"proc-{n}.out", self.logs / f"proc-{n}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            popen = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd,
                                     env=child_env(), stdin=subprocess.DEVNULL, stdout=o,
                                     stderr=e, start_new_session=True)
        proc = Proc(popen, out, err)
        self.started.append(proc)
        return proc

    def run(self, cwd: Path, *args: str, module: str = "sweeps.run",
            timeout: float = 180) -> Done:
        began = time.monotonic()
        proc = self.start(cwd, *args, module=module)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{module} {' '.join(args)} still running after {timeout}s"
                                 f"\n{proc.stderr[-3000:]}") from None
        return Done(rc, proc.stdout, proc.stderr, time.monotonic() - began)

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait()


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def wait_until(condition: Callable[[], Any], timeout: float, proc: Proc | None = None,
               what: str = "the condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds
    or as soon as ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.poll()}) before {what}"
                                 f"\n{proc.stderr[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout}s")
        time.sleep(0.2)


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``R``, ``S``, ``T`` stopped, ``Z``...), or None
    once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def open_files(pid: int) -> set[Path]:
    """The files ``pid`` has open now (from /proc)."""
    found: set[Path] = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        with contextlib.suppress(OSError):
            found.add(Path(os.readlink(fd)))
    return found


def _stop(pid: int, proc: Proc) -> None:
    """SIGSTOP ``pid`` and wait until /proc shows it stopped: from then on, what it has
    written stays as it is."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: process_state(pid) == "T", 30, proc, f"process {pid} stopped")


@contextlib.contextmanager
def paused_when(proc: Proc, condition: Callable[[], Any], timeout: float,
                what: str = "the condition", pid: int | None = None) -> Iterator[Any]:
    """Stop ``proc`` (or its process ``pid``) with SIGSTOP at a moment where ``condition()``,
    read from what the sweep has written, holds while it is stopped; yield that value with the
    process still stopped, and continue it (SIGCONT) after the block. A signal sent in the
    block reaches the process exactly in the state ``condition`` saw. Fails after ``timeout``
    seconds, or once ``proc`` exits."""
    target = proc.pid if pid is None else pid
    deadline = time.monotonic() + timeout
    while True:
        wait_until(condition, deadline - time.monotonic(), proc, what)  # cheap, running
        _stop(target, proc)
        value = condition()  # again, now that nothing can change it
        if value:
            break
        os.kill(target, signal.SIGCONT)  # it moved on in between: try again
    try:
        yield value
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGCONT)


def one_line(stderr: str) -> str:
    """The only non-empty line of ``stderr`` (and no traceback)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    return lines[0]


# --------------------------------------------------------------------------- Optuna


def sqlite_url(cwd: Path) -> str:
    return f"sqlite:///{cwd}/mlruns/optuna.db"


def journal_url(cwd: Path) -> str:
    return f"journal:///{cwd}/mlruns/optuna.journal"


def tracking_url(cwd: Path) -> str:
    return f"sqlite:///{cwd}/mlruns/mlflow.db"


def _storage(url: str) -> optuna.storages.BaseStorage | None:
    """A read-only handle on ``url``: nothing is created that the sweep has not created."""
    from sqlalchemy.pool import NullPool

    if url.startswith("journal:///"):
        path = Path(url.removeprefix("journal:///"))
        if not path.exists() or not path.stat().st_size:
            return None
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine: dict[str, Any] = {"poolclass": NullPool}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}
    if not _schema_ready(url, engine):
        return None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, skip_table_creation=True)


def _schema_ready(url: str, engine: dict[str, Any]) -> bool:
    """Whether the sweep has finished setting up Optuna's schema: opening ``RDBStorage``
    earlier would stamp the schema version itself and race the sweep doing the same."""
    import sqlalchemy

    db = sqlalchemy.create_engine(url, **engine)
    try:
        with db.connect() as connection:
            return connection.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")).first() is not None
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        db.dispose()


def load_trials(url: str, study: str) -> list[FrozenTrial]:
    """The study's trials; fails if the study does not exist."""
    storage = _storage(url)
    assert storage is not None, f"no storage at {url}"
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def load_study(url: str, study: str) -> optuna.Study:
    storage = _storage(url)
    assert storage is not None, f"no storage at {url}"
    return optuna.load_study(study_name=study, storage=storage)


def poll_trials(url: str, study: str) -> list[FrozenTrial]:
    """The study's trials, or [] while the sweep has not created it yet."""
    try:
        return load_trials(url, study) if _storage(url) is not None else []
    except (KeyError, AssertionError):
        return []
    except Exception as exc:  # tables half-created, a database not yet there
        if type(exc).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg2")):
            return []
        raise


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that count towards ``--n-trials`` (finished, not interrupted)."""
    return [t for t in trials if t.state in COUNTED and INTERRUPTED not in t.user_attrs]


def running_with_progress(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """RUNNING trials that have an MLflow run and have reported at least one chunk."""
    return [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values
            and "mlflow_run_id" in t.user_attrs]


def mid_training(url: str, study: str, epochs: int) -> Callable[[], FrozenTrial | None]:
    """A condition for ``paused_when``: the one RUNNING trial of ``study`` when it has
    reported epochs, all in the first half of its ``epochs`` (stopped there, the process is
    training it and will be for a while); else None."""

    def condition() -> FrozenTrial | None:
        running = running_with_progress(poll_trials(url, study))
        if len(running) == 1 and max(running[0].intermediate_values) < epochs // 2:
            return running[0]
        return None

    return condition


def snapshot(trial: FrozenTrial) -> tuple[Any, ...]:
    """What must never change about a finished trial."""
    return (trial.state, trial.value, trial.params, trial.user_attrs.get("hparams"),
            trial.user_attrs.get("mlflow_run_id"), dict(trial.intermediate_values))


@contextlib.contextmanager
def sqlite_exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``BEGIN EXCLUSIVE`` on a SQLite file (no other connection reads or writes)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# --------------------------------------------------------------------------- MLflow


@dataclass
class Runs:
    client: MlflowClient
    parents: list[Run]
    children: list[Run]

    @property
    def all(self) -> list[Run]:
        return self.parents + self.children


def mlflow_runs(tracking_uri: str, experiment: str) -> Runs:
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL,
                              max_results=5000)
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    kids = [r for r in runs if PARENT_TAG in r.data.tags]
    return Runs(client, parents, kids)


def expected_status(trial: FrozenTrial) -> str:
    if INTERRUPTED in trial.user_attrs:
        return "KILLED"
    return RUN_STATUS[trial.state.name]


def assert_study_and_runs_agree(trials: list[FrozenTrial], runs: Runs,
                                parent_id: str | None = None) -> None:
    """One parent run; one child run per trial that started one, nested under the parent,
    tagged with its trial number, in the state its trial ended in; nothing RUNNING."""
    assert len(runs.parents) == 1, [r.info.run_name for r in runs.parents]
    parent = runs.parents[0]
    if parent_id is not None:
        assert parent.info.run_id == parent_id
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    with_run = [t for t in trials if "mlflow_run_id" in t.user_attrs]
    for t in trials:
        if "mlflow_run_id" not in t.user_attrs:  # drawn as surplus or killed before it began
            assert t.state == TrialState.FAIL and INTERRUPTED in t.user_attrs, t.number
    run_ids = [t.user_attrs["mlflow_run_id"] for t in with_run]
    assert len(run_ids) == len(set(run_ids)), "two trials share an MLflow run"
    by_id = {r.info.run_id: r for r in runs.children}
    assert len(by_id) == len(runs.children)
    assert set(by_id) == set(run_ids), "child runs and trials differ"
    tags = [r.data.tags.get("trial_number") for r in runs.children]
    assert len(tags) == len(set(tags)), "a trial has two child runs"
    for t in with_run:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags[PARENT_TAG] == parent.info.run_id
        assert run.data.tags["trial_number"] == str(t.number)
        assert run.info.run_name == f"trial-{t.number}"
        assert run.info.status == expected_status(t), (t.number, t.state, run.info.status)
        hp = t.user_attrs["hparams"]
        assert run.data.params["optimizer"] == hp["optimizer"]
        assert float(run.data.params["lr"]) == hp["lr"]
    assert not [r.info.run_name for r in runs.all if r.info.status == "RUNNING"]
