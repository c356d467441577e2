"""Torch's intra-op threads per process: the rule as a table, then real processes that run
with what it decides (``sweeps.parallel.threads``)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from sweeps.parallel.threads import (
    AUXILIARY,
    TorchThreads,
    available_cores,
    decide_threads,
    physical_cores,
    use_threads,
)

REPO = Path(__file__).resolve().parents[3]
OBJECTIVE = "tests.sweeps.parallel.thread_objectives:ThreadCount"
# trials whose value is the thread count of the process that ran them, one at a time
TINY = ["--objective", OBJECTIVE, "--optimizers", "adam", "--schedulers", "none",
        "--pruner", "none", "--no-prune-stalled", "--batch", "1", "--no-plots", "--quiet",
        "--study", "t"]
NO_VARIABLES: dict[str, str] = {}
OMP_3 = {"OMP_NUM_THREADS": "3"}

# --------------------------------------------------------------------------- the rule

# workers, --threads, cores (affinity), torch's default, torch's count now, environment
# -> count, source
TABLE = [
    (1, None, 2, 2, 2, NO_VARIABLES, 2, "2 cores / 1 worker"),
    (2, None, 2, 2, 2, NO_VARIABLES, 1, "2 cores / 2 workers"),
    (3, None, 2, 2, 2, NO_VARIABLES, 1, "2 cores / 3 workers"),  # at least one
    (4, None, 16, 16, 16, NO_VARIABLES, 4, "16 cores / 4 workers"),
    (3, None, 16, 16, 16, NO_VARIABLES, 5, "16 cores / 3 workers"),  # rounded down
    (2, None, 16, 8, 8, NO_VARIABLES, 4, "8 cores / 2 workers"),  # hyper-threads: torch's 8
    (2, None, 4, 64, 64, NO_VARIABLES, 2, "4 cores / 2 workers"),  # an affinity of 4 of 64
    (2, None, 8, 3, 3, OMP_3, 3, "OMP_NUM_THREADS"),  # the user's variable is kept
    (2, None, 8, 8, 5, {"MKL_NUM_THREADS": "5"}, 5, "MKL_NUM_THREADS"),
    (2, None, 8, 8, 8, {"OMP_NUM_THREADS": " "}, 4, "8 cores / 2 workers"),  # blank: unset
    (2, None, 8, 8, 3, NO_VARIABLES, 3, "torch.set_num_threads"),  # the user's call is kept
    (2, 6, 8, 8, 8, NO_VARIABLES, 6, "--threads"),  # --threads wins over the share,
    (2, 1, 8, 3, 3, OMP_3, 1, "--threads"),  # the variable
    (2, 2, 8, 8, 3, NO_VARIABLES, 2, "--threads"),  # and the call
    (1, 32, 2, 2, 2, NO_VARIABLES, 32, "--threads"),  # even beyond the cores
]


@pytest.mark.parametrize(("workers", "threads", "cores", "default", "current", "environ",
                          "count", "source"), TABLE)
def test_decide_threads_follows_the_table(workers: int, threads: int | None, cores: int,
                                          default: int, current: int,
                                          environ: dict[str, str], count: int,
                                          source: str) -> None:
    decided = decide_threads(workers, threads, cores=cores, default=default, current=current,
                             environ=environ)

    assert decided == TorchThreads(count, source)
    assert decided.user_choice == (source in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                              "torch.set_num_threads"))


def test_the_cores_are_those_this_process_may_use() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))
    assert physical_cores() >= 1


# --------------------------------------------------------------------------- one process


def _counts() -> tuple[int, int, str | None]:
    import torch

    return (torch.get_num_threads(), torch.get_num_interop_threads(),
            os.environ.get("OMP_NUM_THREADS"))


def _load_torch_then_use(count: int) -> None:
    """A helper worker's start: torch loaded, then its count set."""
    import torch  # noqa: F401

    use_threads(count)


@pytest.mark.parametrize(("start", "expected"), [
    (_load_torch_then_use, (1, 1, "1")),  # a worker: one intra-op and one inter-op thread
    (use_threads, (1, None, "1")),  # the plots child: torch loaded later reads the variable
], ids=["worker", "plots"])
def test_a_started_process_runs_torch_with_the_count_it_was_given(
        start: Callable[[int], None], expected: tuple[int, int | None, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # none of the user's in the child
        monkeypatch.delenv(name, raising=False)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=start, initargs=(AUXILIARY,)) as pool:
        intra, interop, variable = pool.submit(_counts).result(timeout=60)

    assert (intra, variable) == (expected[0], expected[2])
    if expected[1] is not None:
        assert interop == expected[1]


def test_the_metric_writer_process_never_loads_torch(tmp_path: Path) -> None:
    """It does no torch work, so it has no torch threads to compete for the cores."""
    from tracking.metric_process import MetricProcess

    before = set(multiprocessing.active_children())
    writer = MetricProcess(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        assert writer.flush() == []  # the child is serving: its imports are done
        (child,) = set(multiprocessing.active_children()) - before
        maps = Path(f"/proc/{child.pid}/maps")
        if not maps.exists():
            pytest.skip("no /proc here")
        assert "libtorch" not in maps.read_text()
    finally:
        writer.close()


# --------------------------------------------------------------------------- a real sweep


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """This process's torch count, as it is before the test and again after it."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _sweep_in_process(tmp_path: Path, *argv: str) -> tuple[list[float], dict[str, str]]:
    """``sweeps.run.main`` called by this program, as a user's script would: the trials'
    values (the thread counts they ran with) and the parent run's params."""
    from sweeps.cli.run import main

    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    assert main([*TINY, "--n-trials", "2", "--epochs", "2", "--objective-arg", "pause=0",
                 "--storage", storage, "--tracking-uri", tracking, *argv]) == 0
    return _read_back(storage, tracking)


def _read_back(storage: str, tracking: str) -> tuple[list[float], dict[str, str]]:
    from mlflow import MlflowClient

    from sweeps.study.results import opened_study

    with opened_study(storage, "t") as study:
        values = [t.value for t in study.trials]
        workers = {t.user_attrs["worker"] for t in study.trials}
        parent = study.user_attrs["mlflow_parent_run_id"]
    params = MlflowClient(tracking_uri=tracking).get_run(parent).data.params
    return values, {**params, "processes": str(len(workers))}


def test_a_program_that_set_torch_threads_keeps_them(tmp_path: Path,
                                                     torch_threads: int) -> None:
    torch.set_num_threads(3)

    values, params = _sweep_in_process(tmp_path)

    assert values == [3.0, 3.0]
    assert params["torch_threads"] == "3"
    assert torch.get_num_threads() == 3


def test_threads_given_to_a_program_apply_during_the_sweep_only(
        tmp_path: Path, torch_threads: int) -> None:
    values, params = _sweep_in_process(tmp_path, "--threads", "5")

    assert values == [5.0, 5.0]
    assert params["torch_threads"] == "5"
    assert torch.get_num_threads() == torch_threads  # the program's own count, restored


def _command_env(variables: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MLFLOW_TRACKING_URI")}
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, **variables, "PYTHONPATH": path}


def _fresh_torch_threads(env: dict[str, str]) -> int:
    """What torch makes of ``env`` in a new process (it caps OMP_NUM_THREADS at the cores)."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout)


# OMP_NUM_THREADS=2: what a two-core machine has, and not its share for two workers
@pytest.mark.parametrize("variables", [NO_VARIABLES, {"OMP_NUM_THREADS": "2"}],
                         ids=["share", "user-variable"])
def test_each_worker_process_of_a_sweep_runs_its_share_of_the_cores(
        tmp_path: Path, variables: dict[str, str]) -> None:
    """``--workers 2`` as a command: every trial, whichever process ran it, and the parent
    run say the same count: half the cores, or what the user's OMP_NUM_THREADS gives."""
    env = _command_env(variables)
    storage = f"journal:///{tmp_path}/mlruns/optuna.journal"  # --workers' default
    done = subprocess.run([sys.executable, "-m", "sweeps.run", *TINY, "--workers", "2",
                           "--n-trials", "8"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    values, params = _read_back(storage, f"sqlite:///{tmp_path}/mlruns/mlflow.db")

    share = max(1, min(available_cores(), physical_cores()) // 2)
    expected = _fresh_torch_threads(env) if variables else share
    assert values == [float(expected)] * 8
    assert params["torch_threads"] == str(expected)
    assert params["processes"] == "2", "the helper ran no trial: nothing said about its count"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "config", "expect"), [
    (["--threads", "0"], None, ("threads", "0", ">= 1")),
    (["--threads", "-1"], None, ("threads", "-1", ">= 1")),
    (["--threads", "x"], None, ("--threads", "'x'")),
    (["--threads", "1.5"], None, ("--threads", "'1.5'")),
    ([], "threads = 0\n", ("threads", "0")),
    ([], 'threads = "2"\n', ("threads", "'2'")),
    ([], "threads = true\n", ("threads", "True")),
], ids=["zero", "negative", "not-a-number", "fraction", "config-zero", "config-string",
        "config-bool"])
def test_a_bad_thread_count_is_one_line_and_exit_2(
        argv: list[str], config: str | None, expect: tuple[str, ...], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sweeps.cli.run import main

    monkeypatch.chdir(tmp_path)
    if config is not None:
        (tmp_path / "sweep.toml").write_text(config, encoding="utf-8")
        argv = ["--config", "sweep.toml"]
    try:
        status = main([*argv, "--n-trials", "1", "--epochs", "5", "--quiet"])
    except SystemExit as exc:  # argparse
        status = exc.code

    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(part in err for part in expect), err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["sweep.toml"] if config else [])
