"""Bad input (SPEC section 9): exit status 2, one stderr line naming the field and the bad value,
no traceback, and nothing written to the current folder.

Every CLI is called in-process as ``main(argv)`` inside a fresh temporary folder. Cases that
need an existing study get a copy of one tiny study, built once per module.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeps.cli.common import guarded
from sweeps.cli.run import build_parser, config_from_args
from sweeps.study.config import SweepConfig, field_names, load_toml
from tests.sweeps.cli.run_inputs import (
    CHOICES,
    FLOATS,
    FREE,
    LEAST,
    NAME_LISTS,
    NAMED,
    PROBED,
    RANGES,
    SWITCHES,
    TEXT_LISTS,
    RunInput,
    bad,
    field_inputs,
    run_inputs,
    value_outcome,
)

STUDY = "s"  # the prepared study: 2 trials of 20 epochs in sqlite:///mlruns/optuna.db
STUDY_ARGS = ("--n-trials", "2", "--epochs", "20", "--study", STUDY, "--quiet")
FAST_RUN = ("--n-trials", "1", "--epochs", "5", "--quiet")  # if a bad input slips through
TMP = "{tmp}"  # replaced by the test's folder: an absolute MLflow URI for cases that reach
# MLflow (MLflow caches its store per URI in-process; a relative one would leak across tests)
ABS_TRACKING = f"sqlite:///{TMP}/mlruns/mlflow.db"

Prep = Callable[[Path, Callable[[], Path]], None]  # (test folder, built study folder) -> None


# --------------------------------------------------------------------------- preparations


def study() -> Prep:
    """A copy of the prepared study's ``mlruns`` folder."""

    def prepare(tmp: Path, built: Callable[[], Path]) -> None:
        shutil.copytree(built() / "mlruns", tmp / "mlruns")

    return prepare


def empty_study(name: str) -> Prep:
    """A study with no trial at all, beside the prepared one."""

    def prepare(tmp: Path, built: Callable[[], Path]) -> None:
        import optuna

        storage = optuna.storages.RDBStorage("sqlite:///mlruns/optuna.db")
        optuna.create_study(storage=storage, study_name=name)
        storage.engine.dispose()  # close it, as a separate process would

    return prepare


def file(name: str, content: str | bytes) -> Prep:
    def prepare(tmp: Path, built: Callable[[], Path]) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (tmp / name).write_bytes(data)

    return prepare


def folder(name: str) -> Prep:
    def prepare(tmp: Path, built: Callable[[], Path]) -> None:
        (tmp / name).mkdir()

    return prepare


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    module: str  # the CLI module whose main(argv) is called
    argv: tuple[str, ...]  # its arguments; "{tmp}" is replaced by the test's folder
    expect: tuple[str, ...]  # substrings of the one stderr line: the field and the bad value
    prepare: tuple[Prep, ...] = ()  # files or a study to create before the call
    absent: tuple[str, ...] = ()  # substrings the line must not contain (secrets)
    max_seconds: float | None = None  # the call must fail this fast


def case(id: str, module: str, argv: Sequence[str], *expect: str, prepare: Sequence[Prep] = (),
         absent: Sequence[str] = (), max_seconds: float | None = None,
         bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    value = Case(module, tuple(argv), expect, tuple(prepare), tuple(absent), max_seconds)
    return pytest.param(value, id=id, marks=marks)


def run(id: str, argv: Sequence[str], *expect: str, **kw: Any) -> Any:
    return case(id, "sweeps.run", (*FAST_RUN, *argv), *expect, **kw)


def config(id: str, text: str | bytes, *expect: str, **kw: Any) -> Any:
    return run(id, ["--config", "sweep.toml"], *expect,
               prepare=[file("sweep.toml", text)], **kw)


def train(id: str, argv: Sequence[str], *expect: str, **kw: Any) -> Any:
    return case(id, "sweeps.train", argv, *expect, **kw)


def params(id: str, doc: Any, *expect: str, **kw: Any) -> Any:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    argv = ["--params", "best.json", "--tracking-uri", ABS_TRACKING]
    return train(id, argv, "params", "best.json", *expect,
                 prepare=[file("best.json", text)], **kw)


def export(id: str, argv: Sequence[str], *expect: str, **kw: Any) -> Any:
    return case(id, "sweeps.export", argv, *expect, **kw)


def compare(id: str, argv: Sequence[str], *expect: str, **kw: Any) -> Any:
    return case(id, "sweeps.compare", argv, *expect, **kw)


def ui(id: str, argv: Sequence[str], *expect: str, **kw: Any) -> Any:
    return case(id, "sweeps.ui", argv, *expect, **kw)


GOOD_PARAMS = {"objective": {"name": "rebalance", "args": {}}, "epochs": 3, "value": 0.0,
               "params": {"optimizer": "sgd", "lr": 0.01, "scheduler": "none"}}
LONG_NAME = "a" * 300

CASES = [
    # sweeps.run: values of the search space
    run("run-unknown-optimizer", ["--optimizers", "sgd,lion"], "optimizers", "lion"),
    run("run-unknown-scheduler", ["--schedulers", "none,warp"], "schedulers", "warp"),
    run("run-no-optimizer", ["--optimizers", ","], "optimizers", "''"),
    run("run-lr-min-zero", ["--lr-min", "0"], "lr-min", "0.0"),
    run("run-lr-max-negative", ["--lr-max", "-1"], "lr-max", "-1.0"),
    run("run-lr-max-infinite", ["--lr-max", "inf"], "lr-max", "inf"),
    run("run-lr-min-nan", ["--lr-min", "nan"], "lr-min", "nan"),
    run("run-lr-min-above-lr-max", ["--lr-min", "1", "--lr-max", "0.1"], "lr-min", "1.0", "0.1"),
    run("run-lr-min-equals-lr-max", ["--lr-min", "0.5", "--lr-max", "0.5"], "lr-min", "0.5"),
    run("run-lr-min-above-default-max", ["--lr-min", "1e8", "--tracking-uri", ABS_TRACKING],
        "lr-min", "100000000.0"),
    run("run-lr-max-below-default-min", ["--lr-max", "1e-6", "--tracking-uri", ABS_TRACKING],
        "lr-max", "1e-06"),
    run("run-epochs-zero", ["--epochs", "0"], "epochs", "0"),
    run("run-epochs-negative", ["--epochs", "-5"], "epochs", "-5"),
    run("run-n-trials-zero", ["--n-trials", "0"], "n-trials", "0"),
    run("run-n-trials-negative", ["--n-trials", "-3"], "n-trials", "-3"),
    run("run-seed-negative", ["--seed", "-1", "--tracking-uri", ABS_TRACKING], "seed", "-1"),
    # sweeps.run: the objective
    run("run-unknown-objective", ["--objective", "nope"], "objective", "nope"),
    run("run-objective-module-missing", ["--objective", "no_such_pkg.mod:Obj"],
        "objective", "no_such_pkg.mod:Obj"),
    run("run-objective-attr-missing", ["--objective", "objectives.rebalance:Nope"],
        "objective", "objectives.rebalance:Nope"),
    run("run-objective-not-an-objective", ["--objective", "json:dumps"],
        "objective", "json:dumps"),
    run("run-objective-arg-malformed", ["--objective-arg", "size16"], "objective-arg", "size16"),
    run("run-objective-arg-empty-key", ["--objective-arg", "=16"], "objective-arg", "=16"),
    run("run-objective-arg-unknown-key", ["--objective-arg", "colour=red"],
        "objective-arg", "colour"),
    run("run-objective-arg-bad-type", ["--objective-arg", "size=big"], "size", "big"),
    run("run-objective-arg-bad-bool-value", ["--objective-arg", "dtype=float16"],
        "dtype", "float16"),
    run("run-objective-arg-out-of-range", ["--objective-arg", "size=1"], "size", "1"),
    run("run-batch-size-zero", ["--objective", "digits", "--objective-arg", "batch_size=0"],
        "objective-arg batch_size", "0"),
    run("run-batch-size-not-an-integer",
        ["--objective", "digits-cnn", "--objective-arg", "batch_size=1.5"], "batch_size", "1.5"),
    run("run-validation-inputs-misshapen", ["--objective", "tests.minibatch_objectives:misshapen"],
        "validation inputs", "(20, 5)", "(4,)"),
    run("run-validation-targets-too-few",
        ["--objective", "tests.minibatch_objectives:misshapen", "--objective-arg", "part=targets"],
        "validation", "(20, 4) and (19,)"),
    # sweeps.run: search, execution and names
    run("run-bad-sampler", ["--sampler", "bayes"], "sampler", "bayes"),
    run("run-bad-pruner", ["--pruner", "always"], "pruner", "always"),
    run("run-bad-device", ["--device", "gpu"], "device", "gpu"),
    run("run-log-every-zero", ["--log-every", "0"], "log-every", "0"),
    run("run-workers-zero", ["--workers", "0"], "workers", "0"),
    run("run-threads-zero", ["--threads", "0"], "threads", "0"),
    run("run-batch-zero", ["--batch", "0"], "batch", "0"),
    run("run-unknown-direction", ["--direction", "up"], "direction", "up"),
    run("run-unknown-metric-at", ["--metric-at", "first"], "metric-at", "first"),
    run("run-unknown-precision", ["--precision", "fp8"], "precision", "fp8"),
    run("run-precision-of-a-full-batch-objective", ["--precision", "bf16"],
        "precision", "bf16", "rebalance"),
    run("run-precision-of-a-float64-module",
        ["--objective", "digits", "--objective-arg", "dtype=float64", "--precision", "fp16"],
        "digits parameters", "float64"),
    # several metrics and constraints
    run("run-metrics-with-one-direction", ["--metric", "loss,trial_seconds",
                                           "--direction", "minimize"], "direction", "minimize"),
    run("run-metrics-with-three-directions", ["--metric", "loss,trial_epochs", "--direction",
                                              "minimize,minimize,maximize"],
        "direction", "minimize,minimize,maximize"),
    run("run-metrics-repeated", ["--metric", "loss,loss"], "metric", "loss,loss"),
    run("run-metrics-cost-first", ["--metric", "trial_seconds,loss"],
        "metric", "trial_seconds,loss"),
    run("run-metrics-unknown-second", ["--metric", "loss,val_f1"], "metric", "val_f1"),
    run("run-metrics-with-cmaes", ["--metric", "loss,trial_seconds", "--sampler", "cmaes"],
        "sampler", "cmaes"),
    run("run-constraint-unknown-metric", ["--constraint", "val_f1<=3"],
        "constraint", "val_f1<=3"),
    run("run-constraint-unparsable", ["--constraint", "trial_seconds<30"],
        "constraint", "trial_seconds<30"),
    run("run-constraint-no-number", ["--constraint", "trial_seconds<=soon"],
        "constraint", "trial_seconds<=soon"),
    run("run-lr-range-auto-with-lr-min", ["--lr-range", "auto", "--lr-min", "1e-4"],
        "lr-range", "auto"),
    # both wrong: the clash is checked first (a property-test example the model got wrong)
    run("run-lr-range-auto-with-a-negative-lr-min",
        ["--lr-range", "auto", "--lr-min", "-0.5"], "lr-range", "auto"),
    run("run-timeout-zero", ["--timeout", "0"], "timeout", "0"),
    run("run-study-path", ["--study", "../x"], "study", "../x"),
    run("run-study-300-chars", ["--study", LONG_NAME], "study", LONG_NAME),
    run("run-study-empty", ["--study", ""], "study", "''"),
    run("run-experiment-space", ["--experiment", "my experiment"],
        "experiment", "my experiment"),
    run("run-study-trailing-newline", ["--study", "s\n", "--storage", "redis://localhost/0"],
        "study", "'s\\n'"),
    run("run-export-name-too-long", ["--export", LONG_NAME], "export", LONG_NAME),
    run("run-export-missing-folder",
        ["--export", "nodir/best.json", "--optimizers", "adam", "--schedulers", "none",
         "--tracking-uri", ABS_TRACKING], "export", "nodir/best.json"),
    # sweeps.run: servers and stores
    run("run-unreachable-tracking-server", ["--tracking-uri", "http://127.0.0.1:9"],
        "tracking-uri", "http://127.0.0.1:9", max_seconds=10),
    run("run-tracking-uri-no-scheme", ["--tracking-uri", "mlruns"], "tracking-uri", "mlruns"),
    run("run-unknown-storage-scheme", ["--storage", "redis://localhost/0"],
        "storage", "redis://localhost/0"),
    run("run-unreachable-postgres",
        ["--storage", "postgresql+psycopg2://u:secret@127.0.0.1:9/db"],
        "storage", "127.0.0.1:9", absent=["secret"], max_seconds=10),
    # sweeps.run: values argparse rejects
    run("run-n-trials-not-a-number", ["--n-trials", "many"], "n-trials", "many"),
    run("run-epochs-not-an-integer", ["--epochs", "1.5"], "epochs", "1.5"),
    run("run-lr-min-not-a-number", ["--lr-min", "tiny"], "lr-min", "tiny"),
    run("run-seed-not-a-number", ["--seed", "x1"], "seed", "x1"),
    run("run-unknown-flag", ["--learning-rate", "0.1"], "--learning-rate"),
    run("run-flag-without-value", ["--epochs"], "--epochs"),
    run("run-unrecognised-multiline-argument", ["stray\nword"], "unrecognized", "stray"),
    # TOML config files
    run("config-missing-file", ["--config", "missing.toml"], "config", "missing.toml"),
    run("config-is-a-folder", ["--config", "conf.d"], "config", "conf.d",
        prepare=[folder("conf.d")]),
    config("config-invalid-toml", "n_trials = \n", "config", "sweep.toml"),
    config("config-not-utf8", b"study = '\xff\xfe'\n", "config", "sweep.toml"),
    config("config-unknown-key", "learning_rate = 0.1\n", "config key", "learning_rate"),
    config("config-unknown-table", "[sweep]\nn_trials = 3\n", "config key", "sweep"),
    config("config-string-for-int", 'n_trials = "5"\n', "n_trials", "'5'"),
    config("config-bool-for-int", "epochs = true\n", "epochs", "True"),
    config("config-float-for-int", "seed = 1.5\n", "seed", "1.5"),
    config("config-string-for-bool", 'log_steps = "yes"\n', "log_steps", "'yes'"),
    config("config-int-for-string", "sampler = 3\n", "sampler", "3"),
    config("config-optimizers-not-a-list", "optimizers = 5\n", "optimizers", "5"),
    config("config-optimizers-list-of-ints", "optimizers = [1, 2]\n", "optimizers", "[1, 2]"),
    config("config-objective-args-not-a-table", 'objective_args = "size=3"\n',
           "objective_args", "size=3"),
    config("config-unknown-optimizer", 'optimizers = ["sgd", "lion"]\n', "optimizers", "lion"),
    config("config-lr-min-negative", "lr_min = -1.0\n", "lr-min", "-1.0"),
    config("config-huge-integer", "lr_min = 1" + "0" * 400 + "\n", "lr_min", "1" + "0" * 400),
    # sweeps.train
    train("train-unknown-optimizer", ["--optimizer", "lion", "--lr", "0.1"],
          "optimizer", "lion"),
    train("train-unknown-scheduler", ["--optimizer", "sgd", "--lr", "0.1", "--scheduler", "warp"],
          "scheduler", "warp"),
    train("train-lr-zero", ["--optimizer", "sgd", "--lr", "0"], "lr", "0.0"),
    train("train-lr-negative", ["--optimizer", "sgd", "--lr", "-0.1"], "lr", "-0.1"),
    train("train-lr-nan", ["--optimizer", "sgd", "--lr", "nan"], "lr", "nan"),
    train("train-lr-not-a-number", ["--optimizer", "sgd", "--lr", "fast"], "lr", "fast"),
    train("train-missing-lr", ["--optimizer", "sgd"], "--lr"),
    train("train-epochs-zero", ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "0"],
          "epochs", "0"),
    train("train-unknown-objective", ["--optimizer", "sgd", "--lr", "0.1", "--objective", "nope"],
          "objective", "nope"),
    train("train-objective-arg-malformed",
          ["--optimizer", "sgd", "--lr", "0.1", "--objective-arg", "size"],
          "objective-arg", "size"),
    train("train-unreachable-tracking-server",
          ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "3",
           "--tracking-uri", "http://127.0.0.1:9"],
          "tracking-uri", "http://127.0.0.1:9", max_seconds=10),
    train("train-bad-device",
          ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "3", "--device", "gpu",
           "--tracking-uri", ABS_TRACKING], "device", "gpu"),
    train("train-option-malformed", ["--optimizer", "momentum", "--lr", "0.1", "--option",
                                     "momentum"], "option", "momentum"),
    train("train-option-not-a-number", ["--optimizer", "momentum", "--lr", "0.1", "--option",
                                        "momentum=fast"], "momentum", "fast"),
    train("train-option-out-of-range",
          ["--optimizer", "momentum", "--lr", "0.1", "--epochs", "3", "--option",
           "momentum=-1", "--tracking-uri", ABS_TRACKING], "momentum", "-1"),
    train("train-option-unknown-key",
          ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "3", "--option", "colour=1",
           "--no-track"], "option", "colour"),
    train("train-unknown-precision", ["--optimizer", "sgd", "--lr", "0.1", "--precision",
                                      "bf8"], "precision", "bf8"),
    train("train-precision-of-a-full-batch-objective",
          ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "3", "--precision", "bf16"],
          "precision", "bf16", "rebalance"),
    train("train-params-at-another-precision", ["--params", "best.json", "--precision", "fp32"],
          "precision", "fp32", "bf16",
          prepare=[file("best.json", json.dumps({**GOOD_PARAMS, "precision": "bf16"}))]),
    train("train-params-missing-file", ["--params", "best.json"], "params", "best.json"),
    params("train-params-invalid-json", "{not json"),
    params("train-params-not-an-object", "[1, 2]"),
    params("train-params-missing-keys", {"objective": {"name": "rebalance"}}),
    params("train-params-lr-not-a-number",
           {**GOOD_PARAMS, "params": {"optimizer": "sgd", "lr": "fast"}}),
    params("train-params-epochs-missing", {k: v for k, v in GOOD_PARAMS.items() if k != "epochs"}),
    params("train-params-unknown-precision", {**GOOD_PARAMS, "precision": "fp64"},
           "precision", "fp64"),
    params("train-params-params-not-an-object", {**GOOD_PARAMS, "params": []}),
    params("train-params-args-not-an-object",
           {**GOOD_PARAMS, "objective": {"name": "rebalance", "args": []}}),
    params("train-params-sub-parameter-not-a-number",
           {**GOOD_PARAMS, "params": {"optimizer": "momentum", "lr": 0.1, "momentum": "abc"}},
           "momentum"),
    train("train-params-unknown-optimizer", ["--params", "best.json"], "optimizer", "lion",
          prepare=[file("best.json", json.dumps(
              {**GOOD_PARAMS, "params": {"optimizer": "lion", "lr": 0.1}}))]),
    # sweeps.export
    export("export-storage-file-missing", ["--study", STUDY, "--out", "best.json"],
           "storage", "sqlite:///mlruns/optuna.db"),
    export("export-study-not-found", ["--study", "nope", "--out", "best.json"],
           "study", "nope", prepare=[study()]),
    export("export-top-zero", ["--study", STUDY, "--out", "best.json", "--top", "0"],
           "top", "0", prepare=[study()]),
    export("export-top-not-a-number", ["--study", STUDY, "--out", "best.json", "--top", "all"],
           "top", "all", prepare=[study()]),
    export("export-out-exists", ["--study", STUDY, "--out", "best.json"], "out", "best.json",
           prepare=[study(), file("best.json", "{}\n")]),
    export("export-out-missing-folder", ["--study", STUDY, "--out", "nodir/best.json"],
           "out", "nodir/best.json", prepare=[study()]),
    export("export-no-completed-trial", ["--study", "empty", "--out", "best.json"],
           "study", "empty", prepare=[study(), empty_study("empty")]),
    export("export-unknown-storage-scheme",
           ["--study", STUDY, "--out", "best.json", "--storage", "redis://localhost/0"],
           "storage", "redis://localhost/0"),
    export("export-journal-study-not-found",
           ["--study", STUDY, "--out", "best.json", "--storage", "journal:///j/sweeps.journal"],
           "study", STUDY),
    export("export-missing-out", ["--study", STUDY], "--out"),
    # sweeps.compare
    compare("compare-unknown-sort", ["--study", STUDY, "--sort", "loss"], "sort", "loss",
            prepare=[study()]),
    compare("compare-study-not-found", ["--study", "nope"], "study", "nope", prepare=[study()]),
    compare("compare-top-zero", ["--study", STUDY, "--top", "0"], "top", "0", prepare=[study()]),
    compare("compare-storage-file-missing", ["--study", STUDY],
            "storage", "sqlite:///mlruns/optuna.db"),
    compare("compare-csv-missing-folder", ["--study", STUDY, "--csv", "nodir/trials.csv"],
            "csv", "nodir/trials.csv", prepare=[study()]),
    compare("compare-journal-study-not-found",
            ["--study", STUDY, "--storage", "journal:///j/sweeps.journal"], "study", STUDY),
    # sweeps.ui
    ui("ui-port-zero", ["--port", "0"], "port", "0"),
    ui("ui-port-too-large", ["--port", "70000"], "port", "70000"),
    ui("ui-port-not-a-number", ["--port", "http"], "port", "http"),
    ui("ui-missing-database", [], "tracking-uri", "sqlite:///mlruns/mlflow.db"),
    ui("ui-missing-database-elsewhere", ["--tracking-uri", "sqlite:///runs/other.db"],
       "tracking-uri", "sqlite:///runs/other.db"),
]


# --------------------------------------------------------------------------- helpers


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at the time (capsys's, in a test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_CURRENT_STDERR = _CurrentStderr()


@pytest.fixture(autouse=True)
def _isolated_process_state(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Log handlers bound once to an earlier test's stderr write to the current one; the
    environment variables the CLIs set (MLflow retry bounds) do not leak out of the test."""

    def rebind() -> None:
        for name in ("", "optuna"):
            for handler in logging.getLogger(name).handlers:
                if type(handler) is logging.StreamHandler:
                    handler.stream = _CURRENT_STDERR  # not setStream: it flushes a closed one

    environ = dict(os.environ)
    rebind()
    yield
    rebind()
    os.environ.clear()
    os.environ.update(environ)


def call(module: str, argv: Sequence[str]) -> int:
    """``module.main(argv)``; argparse's ``SystemExit`` becomes its exit status."""
    main = importlib.import_module(module).main
    try:
        return int(main(list(argv)))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def listing(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a digest of its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got {err!r}"
    return lines[0]


@pytest.fixture(scope="module")
def built_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``mlruns/`` with study ``s`` (2 trials of 20 epochs).

    Built in a child process: MLflow caches its store per (relative) URI in-process, which
    would tie later in-process runs to this folder.
    """
    where = tmp_path_factory.mktemp("study")
    done = subprocess.run([sys.executable, "-m", "sweeps.run", *STUDY_ARGS], cwd=where,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return where


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        bad: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(tmp_path)
    for prepare in bad.prepare:
        prepare(tmp_path, lambda: request.getfixturevalue("built_study"))
    before = listing(tmp_path)
    capsys.readouterr()
    argv = [a.replace(TMP, str(tmp_path)) for a in bad.argv]

    started = time.monotonic()
    status = call(bad.module, argv)
    took = time.monotonic() - started

    err = capsys.readouterr().err
    assert status == 2, err
    line = one_error_line(err)
    for expected in bad.expect:
        assert expected in line
    for secret in bad.absent:
        assert secret not in line
    assert listing(tmp_path) == before
    if bad.max_seconds is not None:
        assert took < bad.max_seconds


@pytest.mark.parametrize(("changed", "field", "value"), [
    (("--epochs", "30"), "epochs", "30"),
    (("--objective-arg", "size=8"), "objective-args", "8"),
], ids=["epochs", "objective-args"])
def test_resuming_with_other_fixed_settings_is_refused(
        changed: tuple[str, str], field: str, value: str, built_study: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(built_study / "mlruns", tmp_path / "mlruns")
    before = listing(tmp_path)
    argv = [*STUDY_ARGS, *changed]  # the study's command with one fixed setting changed

    assert call("sweeps.run", argv) == 2

    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"sweeps.run: error: {field}: ")
    assert value in line and STUDY in line
    assert listing(tmp_path) == before


def test_refused_resume_prints_one_line_from_a_fresh_process(built_study: Path,
                                                             tmp_path: Path) -> None:
    """Optuna configures its logger lazily, once per process: only a fresh process shows
    whether its "Using an existing study" INFO line reaches stderr before the error."""
    shutil.copytree(built_study / "mlruns", tmp_path / "mlruns")
    before = listing(tmp_path)
    argv = [*STUDY_ARGS, "--epochs", "30"]
    done = subprocess.run([sys.executable, "-m", "sweeps.run", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "epochs: 30" in one_error_line(done.stderr)
    assert listing(tmp_path) == before


# --------------------------------------------------------------------------- properties

PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_the_model_checks_the_lr_range_clash_before_an_lr_bound_value() -> None:
    """As the config does: ``--lr-range auto --lr-min -0.5`` names lr-range (an example the
    property test below once found); a bound of 0 is not set, so it names lr-min."""
    assert value_outcome("lr_min", -0.5, {"lr_range": "auto"}) == bad("lr-range", "auto")
    assert value_outcome("lr_max", 0.0, {"lr_range": "auto"}) == bad("lr-max", 0.0)


def test_the_input_rules_cover_every_config_field() -> None:
    """``run_inputs`` knows the rule of each field a config file may hold."""
    ruled = [*LEAST, "seed", *FLOATS, *CHOICES, *NAME_LISTS, *TEXT_LISTS, *NAMED, *FREE,
             *RANGES, *SWITCHES,
             "objective_args"]
    assert sorted(ruled) == sorted(field_names())


def assert_outcome(drawn: RunInput, status: int, made: list[SweepConfig], err: str) -> None:
    """Valid: exit status 0, nothing on stderr, a config holding every setting; invalid:
    exit status 2, no config, one stderr line naming the field (and showing the value)."""
    if drawn.outcome.error is None:
        assert (status, err, len(made)) == (0, "", 1)
        for name, value in drawn.outcome.sets.items():
            assert getattr(made[0], name) == value, name
    else:
        assert status == 2 and not made
        line = one_error_line(err)
        assert line.startswith(f"sweeps.run: error: {drawn.outcome.error}"), line
        if drawn.outcome.shows is not None:
            assert drawn.outcome.shows in line


def write_config(folder: Path, drawn: RunInput) -> None:
    if drawn.toml is not None:
        assert drawn.config is not None
        (folder / drawn.config).write_bytes(drawn.toml)


def parse_run_arguments(argv: list[str],
                        capsys: pytest.CaptureFixture[str]) -> tuple[int, list[SweepConfig], str]:
    """``argv`` parsed inside main's guard, without running a sweep: the exit status, the
    config made (if any) and stderr."""
    capsys.readouterr()
    made: list[SweepConfig] = []

    def body() -> int:
        made.append(config_from_args(build_parser().parse_args(argv)))
        return 0

    try:
        status = guarded("sweeps.run", body)
    except SystemExit as exc:  # argparse's error
        status = exc.code if isinstance(exc.code, int) else 1
    return status, made, capsys.readouterr().err


@PROPERTY
@given(data=st.data())
def test_random_run_arguments_give_their_config_or_one_line_naming_the_bad_field(
        data: st.DataObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # before the draw: the outcome of --export looks at folders
    drawn = data.draw(run_inputs(), label="input")
    write_config(tmp_path, drawn)
    before = listing(tmp_path)
    assert_outcome(drawn, *parse_run_arguments(drawn.argv, capsys))
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name", PROBED)
@settings(PROPERTY, max_examples=25)
@given(data=st.data())
def test_each_field_on_either_side_of_its_rule_gives_its_config_or_one_line_naming_it(
        name: str, data: st.DataObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each field gets a few values of its type (a rule of one field broken does not wait on
    the draws of the test above to land on it)."""
    monkeypatch.chdir(tmp_path)
    drawn = data.draw(field_inputs(name), label="input")
    write_config(tmp_path, drawn)
    before = listing(tmp_path)
    assert_outcome(drawn, *parse_run_arguments(drawn.argv, capsys))
    assert listing(tmp_path) == before


@PROPERTY
@given(data=st.data())
def test_random_toml_files_give_their_config_or_one_line_naming_the_bad_field(
        data: st.DataObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    drawn = data.draw(run_inputs(command_line=False), label="input")
    assert drawn.config is not None and drawn.argv == ["--config", drawn.config]
    write_config(tmp_path, drawn)
    capsys.readouterr()
    made: list[SweepConfig] = []

    def body() -> int:  # what --config does, inside the guard every command runs in
        made.append(SweepConfig().with_overrides(load_toml(drawn.config)).validated())
        return 0

    status = guarded("sweeps.run", body)

    assert_outcome(drawn, status, made, capsys.readouterr().err)
