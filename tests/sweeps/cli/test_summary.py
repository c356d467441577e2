"""The end-of-sweep summary counts the trials by state and the trial-epochs they trained."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sweeps.cli.summary import summary
from sweeps.study.goals import Goals
from sweeps.study.metric import StudyMetric
from sweeps.study.results import trials_frame


def test_the_summary_counts_states_and_trial_epochs() -> None:
    study = optuna.create_study()
    for state, epochs, value in [(TrialState.COMPLETE, 20, 0.5), (TrialState.PRUNED, 1, None),
                                 (TrialState.PRUNED, 3, None), (TrialState.FAIL, 2, None),
                                 (TrialState.COMPLETE, 20, 0.25)]:
        trial = study.ask()
        trial.set_user_attr("epochs_run", epochs)
        trial.set_user_attr("hparams", {"optimizer": "adam", "lr": 0.1, "scheduler": "none"})
        study.tell(trial, value, state=state)
    trial = study.ask()  # still running: neither counted nor trained
    trial.set_user_attr("epochs_run", 7)

    text = summary(trials_frame(study), Goals((StudyMetric(),)), 5, [], {})

    assert text.splitlines()[0] == (
        "trials: 2 complete, 2 pruned, 1 failed; 46 trial-epochs trained")
