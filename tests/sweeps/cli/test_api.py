"""The Python API: a sweep of an objective object from a program, with the command line's
settings and outcome; bad settings, and an object whose name does not load it back, raise
``UsageError`` before anything is written."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps.api import sweep
from sweeps.cli.api import LOAD_BACK_RULE
from sweeps.errors import UsageError
from sweeps.study.results import RUN_ID_ATTR, best_documents
from tests.minibatch_objectives import held_out_test

# An objective object held by a module, named by its import path: a new process loads it back.
NOTEBOOK = held_out_test()
NOTEBOOK.name = f"{__name__}:NOTEBOOK"


def test_a_sweep_of_an_objective_object(tmp_path: Path) -> None:
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    result = sweep(NOTEBOOK, study="notebook", n_trials=4, epochs=3, storage=storage,
                   tracking_uri=tracking, lr_min=1e-3, lr_max=1.0, quiet=True, plots=False)
    assert result.status == 0
    assert result.study.study_name == "notebook" and len(result.study.trials) == 4
    stored = optuna.load_study(study_name="notebook", storage=storage)
    assert result.best == best_documents(stored)[0]
    assert result.best_value == stored.best_value
    assert result.best_params == stored.best_trial.user_attrs["hparams"]
    run = MlflowClient(tracking_uri=tracking).get_run(stored.best_trial.user_attrs[RUN_ID_ATTR])
    assert run.data.params["objective"] == NOTEBOOK.name


@pytest.mark.parametrize(("settings", "field", "allowed"), [
    ({"n_trails": 3}, "setting", "use one of "),
    ({"workers": 2}, "workers", "use 1 with an objective object"),
    ({"n_trials": 0}, "n-trials", "use an integer >= 1"),
])
def test_bad_settings_raise_before_anything_is_written(
        tmp_path: Path, settings: dict[str, int], field: str, allowed: str) -> None:
    with pytest.raises(UsageError) as caught:
        sweep(NOTEBOOK, storage=f"sqlite:///{tmp_path}/optuna.db",
              tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", **settings)
    assert caught.value.field == field and caught.value.allowed.startswith(allowed)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [
    "my_objective",  # no import path: what the README once showed
    "tests.minibatch_objectives:held_out_test",  # loads back a factory, not this object
    "__main__:objective",  # a script's or a notebook's: a new process has another __main__
    "tests.no_such_module:objective",
])
def test_an_objective_object_whose_name_does_not_load_it_back_is_refused(
        tmp_path: Path, name: str) -> None:
    objective = held_out_test()
    objective.name = name
    with pytest.raises(UsageError) as caught:
        sweep(objective, storage=f"sqlite:///{tmp_path}/optuna.db",
              tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert (caught.value.field, caught.value.value) == ("objective name", name)
    assert caught.value.allowed == LOAD_BACK_RULE and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
